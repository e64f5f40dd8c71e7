-- What one window found: sampled candidates, sampled-out ones, late ones.
SELECT
    countIf(sampled = 1) AS candidates,
    countIf(sampled = 0) AS sampled_out,
    countIf(sampled = 1 AND late = 1) AS late_candidates
FROM scanner_candidates FINAL
WHERE scanner_id = {scanner_id:String} AND team_id = {team_id:Int64} AND day = {day:Date}
  AND window_id = {window_id:String}
