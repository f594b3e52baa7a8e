"""Machine learning (system 4): model definitions, data checks, gated training, a safe model store, serving.

A scheduled AWS Batch job (:mod:`handlers.ml.batch_job`) trains each model declared in ``models/<name>.yaml``
(:mod:`handlers.ml.definition`, validated into :mod:`handlers.ml.definition_types`) — a regression (the price
suggestion) or a classifier (the category suggestion) — on the processed events (:mod:`handlers.ml.data`),
refuses data that fails its checks (:mod:`handlers.ml.datachecks`), judges the candidate with the task's metrics
(:mod:`handlers.ml.metrics`) against absolute thresholds and against the live model, and publishes it to S3 as a
*candidate* only when it passes (:mod:`handlers.ml.training`, :mod:`handlers.ml.store`); every run leaves a
:mod:`handlers.ml.report`. The validator (``handlers/ml/serving/validator.py``) asks a candidate its golden
requests on the serving fleet and only then makes it live; the serving wrapper (``handlers/ml/serving``) answers
users from live, validated versions within each model's guard rails; an operator switches a model off with
:mod:`handlers.ml.killswitch`. A model's own code is a *model module* (``handlers/ml/models/``): ``train``, a
batch prediction for evaluation, and ``predict`` for one request.
"""
