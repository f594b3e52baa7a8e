-- One row per messageId, whatever the timestamp.
--
-- events is partitioned by day on event_time, and PostgreSQL only enforces a unique constraint on a
-- partitioned table when it includes the partition key: its primary key (message_id, event_time) let the
-- same messageId in twice when an app re-sent it with another timestamp. event_ids is a plain table with
-- message_id alone as primary key, written by the consumer (handlers/tracking/sinks/postgres.py) in the same
-- transaction as the events rows: a messageId is in event_ids exactly when its one row is in events, and
-- event_time says which partition holds it.
CREATE TABLE event_ids (
    message_id text        PRIMARY KEY,
    event_time timestamptz NOT NULL
);

COMMENT ON TABLE event_ids IS 'The messageIds in events, one each: the uniqueness the partitioned events table '
    'cannot enforce across days (its primary key must include event_time). Written with events, same transaction';

-- Backfill from the rows already there. Where a messageId was stored more than once (re-sent with another
-- timestamp), the copy received first is the one kept: the warehouse de-duplicates the same way
-- (ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY received_at), handlers/warehouse/loader.py), so
-- PostgreSQL and the warehouse agree on which copy is the event; event_time breaks ties deterministically.
INSERT INTO event_ids (message_id, event_time)
SELECT DISTINCT ON (message_id) message_id, event_time
FROM events
ORDER BY message_id, received_at, event_time;

-- The later copies are deleted, not left alone: they are exactly what the README promises is never stored
-- ("a messageId already in PostgreSQL counts as a duplicate"), every reader of events (row counts in
-- letgo inventory, ad-hoc queries, comparisons with the warehouse) assumes one row per messageId, and the
-- warehouse already hides them. Nothing is lost: every received record stays in the raw archive. (events'
-- primary key makes event_time unique per messageId, so it names the copy kept.)
DELETE FROM events e
USING event_ids i
WHERE e.message_id = i.message_id
  AND e.event_time <> i.event_time;
