-- PostHog-compatible events. In production SESSION_ASSETS_EVENTS_TABLE may point
-- at an existing PostHog table instead; this one then stays empty.
-- Sorted by session so that re-rolling a few sessions reads few granules; the
-- minmax index on inserted_at makes "what arrived since T" cheap; the
-- deduplication window lets load-events retry a batch without doubling it.
CREATE TABLE IF NOT EXISTS events
(
    uuid UUID,
    event String,
    properties String,
    timestamp DateTime64(6, 'UTC'),
    team_id Int64,
    distinct_id String,
    `$session_id` String,
    inserted_at DateTime64(6, 'UTC'),
    INDEX inserted_at_minmax inserted_at TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), `$session_id`, timestamp)
SETTINGS non_replicated_deduplication_window = 10000;
