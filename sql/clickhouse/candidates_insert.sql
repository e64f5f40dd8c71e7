-- SPEC §6: the sessions of one team eligible for one scanner's window, written
-- to scanner_candidates under this attempt's {window_id}. A session qualifies
-- when it ended after the watermark keyset (on `end` alone when no session id is
-- stored) and started within the lookback, or (late data) when the watermark
-- passed it but events arrived after what the previous sweep saw, and it ended
-- within the lateness horizon; and it ended at or before the frontier, has a
-- 1..128-character id, and passes the scanner's filter. Sampling is recorded,
-- not applied, so that what was sampled out can be counted.
INSERT INTO scanner_candidates (
    scanner_id, team_id, day, window_id, session_id, distinct_id, session_start, session_end, duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at,
    late, sampled, window_as_of
)
SELECT
    {scanner_id:String},
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
    NOT after_watermark AS late,
    cityHash64(concat(session_id, {scanner_id:String})) % 10000 < {sample_threshold:UInt32} AS sampled,
    {as_of:DateTime64(6, 'UTC')}
FROM
(
    SELECT
        -- @include fragments/session_fold.sql
        ,
        if({watermark_session_id:String} = '',
           session_end > {watermark_end:DateTime64(6, 'UTC')},
           (session_end, session_id) > ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String})) AS after_watermark
    FROM session_counter_rollups_v2 FINAL
    WHERE team_id = {team_id:Int64}
      -- From the day before the earliest allowed start (a session that began earlier
      -- then shows its true, too-early start and is excluded, never truncated) to
      -- the as-of day (a session that went on after the frontier, across midnight
      -- say, shows its true end and is not taken for finished).
      AND day >= {read_from:Date}
      AND day <= {read_until:Date}
    GROUP BY team_id, session_id
)
WHERE session_end <= {window_end:DateTime64(6, 'UTC')}
  AND lengthUTF8(session_id) BETWEEN 1 AND 128  -- characters (valid UTF-8 below), as Postgres counts them
  -- An id with NUL or invalid UTF-8 cannot be stored as Postgres text: never a candidate.
  AND isValidUTF8(session_id) AND position(session_id, '\0') = 0
  AND (
      (
          after_watermark
          AND session_start >= {min_start:DateTime64(6, 'UTC')}
      )
      OR (
          -- Late: the watermark passed it before its last events arrived.
          {late_enabled:Bool}
          AND NOT after_watermark
          AND max_inserted_at > {late_since:DateTime64(6, 'UTC')}
          AND session_end > {late_floor:DateTime64(6, 'UTC')}
          AND session_start >= {late_min_start:DateTime64(6, 'UTC')}
      )
  )
  AND (
      -- @filter
  )
-- Bounded memory however many sessions a day has: the GROUP BY folds sessions in
-- the rollups' key order (team_id, session_id, day), one at a time; should a plan
-- ever hash instead, it spills to disk past 20 MB. Rows are written in blocks of
-- 8k rather than buffering ~1M.
SETTINGS optimize_aggregation_in_order = 1, max_bytes_before_external_group_by = 20000000, max_block_size = 8192,
    min_insert_block_size_rows = 8192, min_insert_block_size_bytes = 4194304
