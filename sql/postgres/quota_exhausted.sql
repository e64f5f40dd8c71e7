-- Teams with no observation left in the period (the sweep sensor waits for them).
SELECT team_id FROM team_quotas WHERE period = %(period)s AND used >= observation_limit
