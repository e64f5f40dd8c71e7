-- Observations per scanner, for `session-assets status`.
SELECT scanner_id, count(*) FROM observations GROUP BY scanner_id
