-- Quota rows of a period, for `session-assets status`.
SELECT team_id, observation_limit, used FROM team_quotas WHERE period = %(period)s
