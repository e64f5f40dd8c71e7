-- Whether this database has a schema_migrations table yet (1 or 0).
SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'
