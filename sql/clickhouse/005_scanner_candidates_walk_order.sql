-- scanner_candidates sorted in walk order: a window's rows are read in
-- (session_end, session_id) order straight off the primary key, with no sort
-- and no FINAL, so a sweep's memory stays flat however many candidates a day
-- has. One row per (scanner, day, window, session): a retried window rewrites
-- identical rows, which merge away and which the walk skips while they have
-- not. The table only feeds sweeps: rows expire a week after they were
-- written (by the clock, not the as-of time, which a backfill sets in the past).
-- Rows are work in progress, not history: dropping them loses nothing.
DROP TABLE IF EXISTS scanner_candidates;

CREATE TABLE scanner_candidates
(
    scanner_id String,
    team_id Int64,
    day Date,
    session_id String,
    distinct_id String,
    session_start DateTime64(6, 'UTC'),
    session_end DateTime64(6, 'UTC'),
    duration_s Int64,
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
    late UInt8,     -- found again because its events arrived after the previous sweep
    sampled UInt8,  -- passed the scanner's deterministic sample
    window_as_of DateTime64(6, 'UTC'),
    written_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (scanner_id, day, window_as_of, session_end, session_id)
TTL written_at + INTERVAL 7 DAY;
