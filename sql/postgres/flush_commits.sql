-- Run in a transaction of its own with synchronous_commit on: taking a
-- transaction id makes its commit wait for a WAL flush, and WAL is flushed in
-- order, so every asynchronously committed page before it is durable after it.
SELECT pg_current_xact_id()
