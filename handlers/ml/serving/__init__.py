"""Serving of the models declared in ``models/<name>.yaml``: a Flask wrapper and the validator behind it.

* :mod:`.app` — ``create_app(definitions, store, config=...)``: one route per declared endpoint of every model,
  the validator's signed internal route, ``/health``, ``/metrics`` and ``/openapi.json``;
* :mod:`.fleet` — several models in one process, the ones that cannot be served disabled alone;
* :mod:`.service` — one model's core: live versions only, the background poll, the kill switch, canaries;
* :mod:`.inputs` — reading a request strictly (JSON only, bounded, exact types);
* :mod:`.guards` and :mod:`.memory` — the guard rails, and the change limit's memory shared by the fleet;
* :mod:`.routing` — sticky canary assignment and counters; :mod:`.auth` — the validator's signature;
* :mod:`.openapi` — the API's contract, generated from the definitions;
* :mod:`.wsgi` — ``gunicorn handlers.ml.serving.wsgi:app`` with the configuration from the environment;
* :mod:`.validator` and :mod:`.judging` — the Lambda behind the store's pointers: a candidate goes live only after
  answering its golden requests on the fleet; a broken live pointer is rolled back.

A data scientist imports nothing from here by hand to serve a model: declaring it in YAML (endpoints, guard
rails, golden requests) and writing its model module is the interface; the image serves every model under
``models/``.
"""
