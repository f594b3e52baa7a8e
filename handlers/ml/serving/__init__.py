"""Serving of the models declared in ``models/<name>.yaml``: a Flask wrapper and the validator behind it.

* :mod:`.app` — ``create_app(definition, store, config=...)``: one route per declared endpoint (inputs checked
  by the definition's own compiled checks), ``/health`` and ``/metrics``; the definition's guard rails, the
  kill switch, canary routing and hot reloads when the store's pointer moves.
* :mod:`.service` — the pure core the routes call: which model answers, what it may answer, counters.
* :mod:`.guards` and :mod:`.routing` — the guard rails and the sticky canary assignment, plain functions.
* :mod:`.wsgi` — ``gunicorn handlers.ml.serving.wsgi:app`` with the configuration from the environment.
* :mod:`.validator` — the Lambda behind the pointer: golden requests against the live API, then a validated
  marker or an alert and a rollback.

A data scientist imports nothing from here by hand to serve a model: declaring it in YAML (endpoints, guard
rails, golden requests) is the interface; the image serves whatever ``MODEL_DEFINITION`` names.
"""
