"""Where records go: the raw archive and the quarantine (S3), Firehose (warehouse) and PostgreSQL.

One small wrapper per service. Each write is idempotent or retried per entry so that a retried batch
never duplicates: S3 keys are deterministic (shard + sequence range), PostgreSQL rows are keyed on
``messageId``, Firehose retries only the entries a partial failure rejected.
"""
