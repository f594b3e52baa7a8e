"""The warehouse: the processed events by type and day.

``ddl`` generates the Redshift side from ``event_types/*.yaml`` (cluster tables, COPY jsonpaths, Spectrum
external tables, union views, ``migrations/redshift/``); ``local`` serves the same layout locally with DuckDB,
``redshift_sql`` lets it take Redshift SQL (``equivalents`` says what to write for what does not translate),
``dbapi`` hands it to a notebook as a DB-API connection and ``demo`` is ``make run``'s last step.
Applying the migrations to a deployed cluster and loading it are AWS operations: :mod:`letgo.ops.warehouse`.
"""
from letgo import REPO_ROOT

DEFAULT_DIR = REPO_ROOT / ".local" / "warehouse"  # `make run` and `letgo warehouse sync` fill it
