-- Serialise concurrent migrators of one database (session-level advisory lock).
SELECT pg_advisory_lock(%(key)s)
