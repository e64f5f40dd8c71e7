-- Set a team's limit for a period.
INSERT INTO team_quotas (team_id, period, observation_limit) VALUES (%(team_id)s, %(period)s, %(limit)s)
ON CONFLICT (team_id, period) DO UPDATE SET observation_limit = EXCLUDED.observation_limit
