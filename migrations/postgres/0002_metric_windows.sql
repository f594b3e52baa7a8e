-- Real-time statistics (handlers/statistics): one row per metric, stream window, group and shard.
-- Written at the final invocation of each Lambda tumbling window, as an upsert on the primary key, so a
-- repeated final invocation (or a replay) rewrites the same rows instead of adding to them.
-- metric_window_start is the metric's own window (a multiple of the stream window); the view
-- `metric_values` adds up the stream windows and shards that make one metric window. Distinct-user
-- counts add up across shards because events are partitioned by user id (one user, one shard) and a
-- distinct_users metric's window equals the stream window (enforced by handlers/statistics/definitions.py).
CREATE TABLE metric_windows (
    metric              text             NOT NULL,
    version             integer          NOT NULL,
    metric_window_start timestamptz      NOT NULL,
    metric_window_end   timestamptz      NOT NULL,
    stream_window_start timestamptz      NOT NULL,
    shard_id            text             NOT NULL,
    dims_key            text             NOT NULL,
    dims                jsonb            NOT NULL,
    count               bigint           NOT NULL,
    sum                 double precision,
    min                 double precision,
    max                 double precision,
    distinct_estimate   bigint,
    written_at          timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, version, stream_window_start, shard_id, dims_key)
);
CREATE INDEX metric_windows_metric_time_idx ON metric_windows (metric, metric_window_start);

CREATE VIEW metric_values AS
SELECT metric, version, metric_window_start AS window_start, metric_window_end AS window_end, dims,
       sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sum) / nullif(sum(count), 0) AS avg, sum(distinct_estimate)::bigint AS distinct_users
FROM metric_windows
GROUP BY metric, version, metric_window_start, metric_window_end, dims_key, dims;
