-- Enable or disable; with a new start_at (enable --from-now) the scanner skips ahead.
UPDATE scanners
SET enabled = %(enabled)s, start_at = coalesce(%(start_at)s, start_at), updated_at = now()
WHERE id = %(id)s
RETURNING id
