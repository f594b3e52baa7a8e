"""gunicorn settings of the search API: ``gunicorn -c handlers/search/gunicorn_conf.py handlers.search.wsgi:app``.

The Procfile of the search-api bundle (``deploy/package.py``) runs exactly that; the local stage and the tests
use the same file. Why each setting:

* **one worker per core, one thread each** (``WEB_CONCURRENCY`` / ``SEARCH_THREADS`` override): a search is
  CPU work — numpy over the matches, JSON of the page, tantivy on the local stage — and Python threads in
  one worker take turns on the GIL. ``make bench`` runs the API under 16 concurrent clients with both
  layouts in the same run (``bench/search_api_bench.py``): 2 workers x 4 threads gave several times the
  server time of 2 x 1 for the same throughput, because each request's CPU slices are interleaved with
  three others'. Requests beyond the workers wait in the listen backlog (``backlog``), not half-served.
  (Against OpenSearch the worker also waits on the network; if a deployed domain's latency dominates,
  raise ``SEARCH_THREADS`` after measuring there — nothing here can measure a real domain.)
* ``limit_request_line`` at gunicorn's maximum, so the app sees URLs up to 8 KB and answers its own JSON 414
  over :data:`handlers.search.api.MAX_URL_BYTES`; what gunicorn still refuses is answered as JSON too
  (:mod:`handlers.search.server_errors`).
* ``timeout`` 30 s: above the app's own deadline (8 s, a 504) and API Gateway's 10 s.
"""
import multiprocessing
import os

from handlers.search.server_errors import install

bind = os.environ.get("SEARCH_BIND", ":8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
threads = int(os.environ.get("SEARCH_THREADS") or 1)
worker_class = "gthread" if threads > 1 else "sync"
timeout = 30
graceful_timeout = 20
backlog = 256
limit_request_line = 8190
limit_request_field_size = 8190

install()
