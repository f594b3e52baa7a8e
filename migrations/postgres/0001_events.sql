-- The events table for microservices (Aurora PostgreSQL in AWS).
-- Partitioned by day on event_time so old days can be detached/dropped cheaply; partitions are created
-- on demand by the consumer (handlers/tracking/sinks/postgres.py). The primary key makes writes
-- idempotent on messageId (PostgreSQL requires the partition key in it; a retried or re-driven event
-- carries the same timestamp, so it conflicts and is skipped).
CREATE TABLE events (
    message_id     text        NOT NULL,
    event_type     text        NOT NULL,
    event_time     timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    sent_at        timestamptz,
    user_id        text,
    anonymous_id   text,
    schema_version integer     NOT NULL,
    context        jsonb       NOT NULL,
    properties     jsonb       NOT NULL,
    PRIMARY KEY (message_id, event_time)
) PARTITION BY RANGE (event_time);

CREATE INDEX events_time_idx ON events (event_time);
CREATE INDEX events_type_time_idx ON events (event_type, event_time);

COMMENT ON TABLE events IS 'Validated marketplace events, one row per messageId (see event_types/*.yaml)';
