-- Serialise page writes of one (scanner, day) partition across runs (a backfill
-- racing a sweep), so batch sequence numbers are never taken twice.
SELECT pg_advisory_xact_lock(hashtextextended(%(partition)s, 0))
