-- scanner_candidates in granules of 1024 rows instead of 8192. A window's rows
-- land in many small parts (the INSERT writes 8k-row blocks to keep its own
-- memory flat), and the walk, the stats query and background merges each hold
-- a decompressed granule of every column of every part they read: ~2.3 MB a
-- part at 8192 rows, ~1.3 MB at 1024 (walk over 86 parts: +202 -> +110 MB; a
-- merge of them: +32 -> +7 MB). The primary index grows 8x, to one mark per
-- 1024 rows: ~1000 marks for a 1M-candidate window.
-- The setting is fixed when a table is created, so the table is made again;
-- its rows are work in progress (see 005): dropping them loses nothing, and a
-- sweep interrupted by this recomputes its window from the watermark.
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
TTL written_at + INTERVAL 7 DAY
SETTINGS index_granularity = 1024;
