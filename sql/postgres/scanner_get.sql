SELECT id, team_id, name, enabled, kind, filter, rule, sample_rate, start_at, created_at, updated_at
FROM scanners WHERE id = %(id)s
