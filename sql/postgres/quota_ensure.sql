-- The team's quota row for this period, carrying the latest limit forward (or the default).
INSERT INTO team_quotas (team_id, period, observation_limit)
VALUES (
    %(team_id)s,
    %(period)s,
    coalesce(
        (SELECT observation_limit FROM team_quotas WHERE team_id = %(team_id)s ORDER BY period DESC LIMIT 1),
        %(default_limit)s
    )
)
ON CONFLICT (team_id, period) DO NOTHING
