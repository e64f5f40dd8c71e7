-- The sessions a scanner's sweep found eligible in one (scanner, day) window,
-- with the counters its verdict was computed from. One row per
-- (scanner, day, session) in effect: a later window replaces an earlier one.
CREATE TABLE IF NOT EXISTS scanner_candidates
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
    window_as_of DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(window_as_of)
PARTITION BY toYYYYMM(day)
ORDER BY (scanner_id, day, session_id);
