-- The team's quota rows whose use exceeds their limit (a CHECK constraint says none).
SELECT count(*) FROM team_quotas WHERE team_id = %(team_id)s AND used > observation_limit
