-- Take up to n observations of quota in one conditional statement: concurrent
-- runs serialise on the row and can never push used past the limit. SET
-- expressions all read the old row, so last_granted is exactly what this took.
UPDATE team_quotas
SET last_granted = GREATEST(0, LEAST(%(n)s, observation_limit - used)),
    used = used + GREATEST(0, LEAST(%(n)s, observation_limit - used))
WHERE team_id = %(team_id)s AND period = %(period)s
RETURNING last_granted
