-- scanner_candidates keyed by window: each attempt of a sweep writes its
-- candidates under a window id of its own, and its walk reads only those. A
-- retry as of the same time (Dagster's run retry reuses the as-of tag) used to
-- walk the failed attempt's rows as well, computed with a filter since edited or
-- a session end since moved. team_id follows scanner_id in the key, so every
-- read names the team: a scanner's rows of another team are never walked.
-- The rows are work in progress (see 005): dropping them loses nothing, and a
-- sweep interrupted by this recomputes its window from the watermark.
DROP TABLE IF EXISTS scanner_candidates;

CREATE TABLE scanner_candidates
(
    scanner_id String,
    team_id Int64,
    day Date,
    window_id String,  -- one per sweep attempt
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
ORDER BY (scanner_id, team_id, day, window_id, session_end, session_id)
TTL written_at + INTERVAL 7 DAY
SETTINGS index_granularity = 1024;
