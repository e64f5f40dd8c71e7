-- The clickhouse/NNN_*.sql files recorded as applied in this database.
SELECT DISTINCT name FROM schema_migrations
