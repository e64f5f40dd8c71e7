-- What one candidates pass found, per scanner: sampled candidates, sampled-out
-- ones, late ones. A pass writes each (scanner, session) once under its own
-- window id, so no FINAL is needed; naming the scanners keeps the read on the key.
SELECT
    scanner_id,
    countIf(sampled = 1) AS candidates,
    countIf(sampled = 0) AS sampled_out,
    countIf(sampled = 1 AND late = 1) AS late_candidates
FROM scanner_candidates
WHERE scanner_id IN {scanner_ids:Array(String)} AND team_id = {team_id:Int64} AND day = {day:Date}
  AND window_id = {window_id:String}
GROUP BY scanner_id
