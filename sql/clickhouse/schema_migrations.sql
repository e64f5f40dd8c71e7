-- Which clickhouse/NNN_*.sql files have run in this database.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    name String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY name
