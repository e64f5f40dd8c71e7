SELECT team_id, period, observation_limit, used FROM team_quotas WHERE team_id = %(team_id)s AND period = %(period)s
