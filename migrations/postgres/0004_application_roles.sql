-- Application database users instead of the master credentials (issue 12, item 8).
--
-- Each deployed application logs in as its own role, with IAM database authentication on Aurora (rds_iam:
-- a 15-minute token from its Lambda role's rds-db:connect, no password, nothing to rotate) and only the
-- grants it needs. The master user stays the migrator (`letgo db migrate`) and the operator's.
--
--   letgo_consumer         writes events and event_ids (handlers/tracking/sinks/postgres.py) and creates the
--                          day partitions of events on demand: PostgreSQL lets only the owner of a partitioned
--                          table add partitions, so events and event_ids belong to letgo_events_owner (NOLOGIN),
--                          of which the consumer is a member. No access to the statistics.
--   letgo_statistics       upserts and re-reads metric windows (handlers/statistics/sink.py). No events.
--   letgo_upstream_alerts  reads metric windows (handlers/statistics/upstream.py). Nothing else.
--
-- Roles belong to the server, not to a database: created only when missing (several databases of one server,
-- as in the tests, share them). Grants are per database and repeated harmlessly.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['letgo_events_owner'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
    FOREACH role_name IN ARRAY ARRAY['letgo_consumer', 'letgo_statistics', 'letgo_upstream_alerts'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN CONNECTION LIMIT 200', role_name);
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN  -- Aurora: IAM authentication only
            EXECUTE format('GRANT rds_iam TO %I', role_name);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
    END LOOP;
END
$$;

-- The migrating user must be able to act as the new owner to hand the tables over (PostgreSQL 16 asks for it
-- of a non-superuser such as Aurora's master user).
GRANT letgo_events_owner TO CURRENT_USER;
GRANT USAGE, CREATE ON SCHEMA public TO letgo_events_owner;  -- CREATE: the day partitions
ALTER TABLE events OWNER TO letgo_events_owner;
ALTER TABLE event_ids OWNER TO letgo_events_owner;
GRANT letgo_events_owner TO letgo_consumer;

GRANT USAGE ON SCHEMA public TO letgo_statistics, letgo_upstream_alerts;
GRANT SELECT, INSERT, UPDATE, DELETE ON metric_windows TO letgo_statistics;
GRANT SELECT ON metric_values TO letgo_statistics;
GRANT SELECT ON metric_windows TO letgo_upstream_alerts;
