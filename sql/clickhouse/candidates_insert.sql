-- SPEC §6: the sessions of one team eligible for one scanner's window, written
-- to scanner_candidates. A session qualifies when it ended after the watermark
-- keyset and started within the lookback, or (late data) when events arrived
-- after the previous sweep's as-of time and it ended within the lateness
-- horizon; and it ended at or before the frontier, has a 1..128-character id,
-- and passes the scanner's filter. Sampling is recorded, not applied, so that
-- what was sampled out can be counted.
INSERT INTO scanner_candidates (
    scanner_id, team_id, day, session_id, distinct_id, session_start, session_end, duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at,
    late, sampled, window_as_of
)
SELECT
    {scanner_id:String},
    team_id,
    {day:Date},
    session_id,
    distinct_id,
    session_start,
    session_end,
    duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at,
    (session_end, session_id) <= ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String}) AS late,
    cityHash64(concat(session_id, {scanner_id:String})) % 10000 < {sample_threshold:UInt32} AS sampled,
    {as_of:DateTime64(6, 'UTC')}
FROM
(
    SELECT
        team_id,
        session_id,
        argMin(distinct_id, first_timestamp) AS distinct_id,
        min(first_timestamp) AS session_start,
        max(last_timestamp) AS session_end,
        dateDiff('second', session_start, session_end) AS duration_s,
        sum(event_count) AS event_count,
        sum(pageview_count) AS pageview_count,
        sum(autocapture_count) AS autocapture_count,
        sum(rageclick_count) AS rageclick_count,
        sum(exception_count) AS exception_count,
        sum(ai_generation_count) AS ai_generation_count,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cost_usd) AS cost_usd,
        argMinIf(entry_url, first_timestamp, entry_url != '') AS entry_url,
        max(max_inserted_at) AS max_inserted_at
    FROM session_counter_rollups FINAL
    WHERE team_id = {team_id:Int64}
      -- One day before the earliest allowed start: a session that began earlier
      -- then shows its true, too-early start and is excluded, never truncated.
      AND day >= toDate({window_start:DateTime64(6, 'UTC')}) - 1
      AND day <= toDate({window_end:DateTime64(6, 'UTC')})
    GROUP BY team_id, session_id
)
WHERE session_end <= {window_end:DateTime64(6, 'UTC')}
  AND length(session_id) BETWEEN 1 AND 128
  AND (
      (
          (session_end, session_id) > ({watermark_end:DateTime64(6, 'UTC')}, {watermark_session_id:String})
          AND session_start >= {min_start:DateTime64(6, 'UTC')}
      )
      OR (
          {late_enabled:Bool}
          AND max_inserted_at > {late_since:DateTime64(6, 'UTC')}
          AND session_end > {late_floor:DateTime64(6, 'UTC')}
          AND session_start >= {late_min_start:DateTime64(6, 'UTC')}
      )
  )
  AND (
      -- @filter
  )
-- Write in blocks of 64k rows rather than buffering ~1M: lower peak memory, measured faster.
SETTINGS min_insert_block_size_rows = 65536, min_insert_block_size_bytes = 16777216
