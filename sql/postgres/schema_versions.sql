-- The migrations recorded in this database (read-only: run-time code checks the schema with it).
SELECT version FROM schema_migrations
