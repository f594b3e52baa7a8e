"""The warehouse: the processed events by type and day.

``ddl`` generates the Redshift side from ``event_types/*.yaml`` (cluster tables, COPY jsonpaths, Spectrum
external tables, union views, ``migrations/redshift/``); ``local`` serves the same layout locally with DuckDB.
Applying the migrations to a deployed cluster and loading it are AWS operations: :mod:`letgo.ops.warehouse`.
"""
