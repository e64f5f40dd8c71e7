-- Which of these session ids the scanner has no observation of.
SELECT s FROM unnest(%(session_ids)s::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM observations o WHERE o.scanner_id = %(scanner_id)s AND o.session_id = s)
ORDER BY s
