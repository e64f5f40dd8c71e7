-- SPEC §6: the sessions of one team eligible for the windows of one or more of
-- its scanners (a batch's scanners of one team and day, or a single sweep), in
-- one pass over the rollups, written to scanner_candidates under this pass's
-- {window_id}: one row per (scanner, session) it qualifies for. Each scanner's
-- rule is one `-- @scanners` entry (fragments/scanner_window.sql with its
-- filter, its parameters prefixed s<index>_). A session needs a 1..128-character
-- id whatever the scanner. Sampling is recorded, not applied, so that what was
-- sampled out can be counted.
INSERT INTO scanner_candidates (
    scanner_id, team_id, day, window_id, session_id, distinct_id, session_start, session_end, duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at,
    late, sampled, window_as_of
)
SELECT
    {scanner_ids:Array(String)}[hit.2 + 1] AS scanner_id,
    team_id,
    {day:Date},
    {window_id:String},
    session_id,
    distinct_id,
    session_start,
    session_end,
    duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at,
    NOT hit.3 AS late,
    cityHash64(concat(session_id, scanner_id)) % 10000 < {sample_thresholds:Array(UInt32)}[hit.2 + 1] AS sampled,
    {as_of:DateTime64(6, 'UTC')}
FROM
(
    SELECT
        -- @include fragments/session_fold.sql
    FROM session_counter_rollups_v2 FINAL
    WHERE team_id = {team_id:Int64}
      -- From the day before the earliest allowed start of any scanner in the pass (a
      -- session that began earlier then shows its true, too-early start and is
      -- excluded, never truncated) to the as-of day (a session that went on after
      -- the frontier, across midnight say, shows its true end and is not taken for finished).
      AND day >= {read_from:Date}
      AND day <= {read_until:Date}
    GROUP BY team_id, session_id
    HAVING lengthUTF8(session_id) BETWEEN 1 AND 128  -- characters (valid UTF-8 below), as Postgres counts them
      -- An id with NUL or invalid UTF-8 cannot be stored as Postgres text: never a candidate.
      AND isValidUTF8(session_id) AND position(session_id, '\0') = 0
)
ARRAY JOIN arrayFilter(entry -> entry.1 = 1, [
    -- @scanners
]) AS hit
-- Bounded memory however many sessions a day has: the GROUP BY folds sessions in
-- the rollups' key order (team_id, session_id, day), one at a time; should a plan
-- ever hash instead, it spills to disk past 20 MB. Rows are written in blocks of
-- 8k rather than buffering ~1M.
SETTINGS optimize_aggregation_in_order = 1, max_bytes_before_external_group_by = 20000000, max_block_size = 8192,
    min_insert_block_size_rows = 8192, min_insert_block_size_bytes = 4194304
