-- The sampled candidates of one window in keyset order (session_end, session_id),
-- read in the table's own order (no sort, no FINAL) and streamed in blocks, so
-- memory stays flat however many there are. One reader thread and no buffering
-- before the merge of parts (`read_in_order_use_buffering` buys parallelism the
-- caller, writing pages to Postgres, cannot use; measured +135 MB over 8 parts).
-- Each attempt writes its own window id; the caller still skips a row whose key
-- equals the one before (the table is a ReplacingMergeTree: copies are harmless).
SELECT
    team_id, session_id, distinct_id, session_start, session_end, duration_s,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd, entry_url, late
FROM scanner_candidates
WHERE scanner_id = {scanner_id:String}
  AND team_id = {team_id:Int64}
  AND day = {day:Date}
  AND window_id = {window_id:String}
  AND sampled = 1
ORDER BY session_end, session_id
SETTINGS optimize_read_in_order = 1, read_in_order_use_buffering = 0, max_threads = 1
