"""Machine learning (system 4): model definitions, data checks, gated training and a safe model store.

A scheduled AWS Batch job (:mod:`handlers.ml.batch_job`) trains a model declared in ``models/<name>.yaml``
(:mod:`handlers.ml.definition`, validated into :mod:`handlers.ml.definition_types`) on the processed events
(:mod:`handlers.ml.data`), refuses data that fails its checks (:mod:`handlers.ml.datachecks`), judges the
candidate against absolute thresholds and against the model currently served, and publishes it to S3 only when
it passes (:mod:`handlers.ml.training`, :mod:`handlers.ml.store`); every run leaves a
:mod:`handlers.ml.report`. The serving wrapper and the validator (``handlers/ml/serving``) read the same
definitions and the same store; an operator switches a model off with :mod:`handlers.ml.killswitch`.
"""
