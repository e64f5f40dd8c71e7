-- The sessions a (scanner, day) partition's watermark has passed and that its sweeps
-- must therefore have observed (or counted as already observed): of the scanner's
-- team, with a valid 1..128-character id, ended in ({lower}, the watermark] (on `end`
-- alone when no session id is stored), no longer than the 26 h lookback (so the
-- lookback held whatever the watermark was), every event inserted by what the last
-- sweep saw less the visibility lag (so it was whole when passed, or found late),
-- in the sample, passing the scanner's (current) filter. The rule again, written
-- from the SPEC rather than from the sweep's own bounds.
SELECT session_id
FROM
(
    SELECT
        -- @include fragments/session_fold.sql
    FROM session_counter_rollups_v2 FINAL
    WHERE team_id = {team_id:Int64}
      AND day >= {read_from:Date}
      AND day <= {read_until:Date}
    GROUP BY team_id, session_id
)
WHERE session_end > {lower:DateTime64(6, 'UTC')}
  AND if({watermark_session_id:String} = '',
         session_end <= {watermark_end:DateTime64(6, 'UTC')},
         (session_end, session_id) <= ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String}))
  AND session_start >= session_end - toIntervalHour(26)
  AND max_inserted_at <= {settled_inserts:DateTime64(6, 'UTC')}
  AND lengthUTF8(session_id) BETWEEN 1 AND 128
  AND isValidUTF8(session_id) AND position(session_id, '\0') = 0
  AND cityHash64(concat(session_id, {scanner_id:String})) % 10000 < {sample_threshold:UInt32}
  AND (
      -- @filter
  )
ORDER BY session_id
SETTINGS optimize_aggregation_in_order = 1, max_bytes_before_external_group_by = 20000000
