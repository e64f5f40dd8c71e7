-- The day-ordered rollups table, once 007 has copied every row of it into
-- session_counter_rollups_v2 (a separate migration, so that 007 can run again
-- after an interruption: it reads this table).
DROP TABLE IF EXISTS session_counter_rollups;
