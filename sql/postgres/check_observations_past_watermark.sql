-- Observations a (scanner, day) partition wrote for sessions that ended after its
-- watermark: none should exist, a sweep observes only settled sessions (end at or
-- before its frontier) and its watermark follows them.
SELECT count(*), coalesce((array_agg(session_id ORDER BY session_id))[1:5], '{}')
FROM observations
WHERE scanner_id = %(scanner_id)s AND day = %(day)s
  AND (evidence -> 'session' ->> 'end')::timestamptz > %(watermark_end)s
