-- Add a scanner, or replace its definition (created_at and start_at are kept).
-- Never moves a scanner to another team: then no row comes back and nothing changes.
INSERT INTO scanners (id, team_id, name, enabled, kind, filter, rule, sample_rate, start_at)
VALUES (%(id)s, %(team_id)s, %(name)s, %(enabled)s, %(kind)s, %(filter)s, %(rule)s, %(sample_rate)s, %(start_at)s)
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, enabled = EXCLUDED.enabled, kind = EXCLUDED.kind,
    filter = EXCLUDED.filter, rule = EXCLUDED.rule, sample_rate = EXCLUDED.sample_rate, updated_at = now()
WHERE scanners.team_id = EXCLUDED.team_id
RETURNING (xmax = 0) AS inserted
