-- Sessions observed more than once by a scanner on a day (the UNIQUE constraint says 0).
SELECT count(*) - count(DISTINCT session_id) FROM observations WHERE scanner_id = %(scanner_id)s AND day = %(day)s
