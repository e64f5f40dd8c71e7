-- A page's commit does not wait for its WAL flush: the walk makes every page
-- durable at once (flush_commits.sql) before the sweep records its watermark.
SET LOCAL synchronous_commit = off
