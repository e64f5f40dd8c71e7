-- One row per (team_id, day, session_id): a full aggregation of the session's
-- events of that UTC day with inserted_at <= computed_as_of. Rows are never
-- summed: a newer computation replaces an older one (ReplacingMergeTree on
-- computed_as_of), so re-running, retrying or racing a backfill cannot double count.
-- Read with FINAL, or argMax(..., computed_as_of).
CREATE TABLE IF NOT EXISTS session_counter_rollups
(
    team_id Int64,
    day Date,
    session_id String,
    distinct_id String,
    first_timestamp DateTime64(6, 'UTC'),
    last_timestamp DateTime64(6, 'UTC'),
    event_count UInt64,
    pageview_count UInt64,
    autocapture_count UInt64,
    rageclick_count UInt64,
    exception_count UInt64,
    ai_generation_count UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cost_usd Decimal(38, 12),
    entry_url String,
    max_inserted_at DateTime64(6, 'UTC'),
    computed_as_of DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_as_of)
PARTITION BY toYYYYMM(day)
ORDER BY (team_id, day, session_id);
