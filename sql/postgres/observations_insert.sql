-- One page of observations in one statement (arrays sent in binary; evidence as
-- JSON text). A session already observed keeps its row and created_at (DO
-- NOTHING); RETURNING names the rows really added.
INSERT INTO observations (team_id, scanner_id, session_id, day, verdict, score, evidence, batch_key)
SELECT %(team_id)s, %(scanner_id)s, page.session_id, %(day)s, page.verdict, page.score, page.evidence::jsonb, %(batch_key)s
FROM unnest(%(session_ids)b::text[], %(verdicts)b::text[], %(scores)b::float8[], %(evidence)b::text[])
    AS page(session_id, verdict, score, evidence)
ON CONFLICT (scanner_id, session_id) DO NOTHING
RETURNING session_id, created_at
