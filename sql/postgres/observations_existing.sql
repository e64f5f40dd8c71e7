-- Which of these sessions the scanner has already observed.
SELECT session_id FROM observations WHERE scanner_id = %(scanner_id)s AND session_id = ANY(%(session_ids)s)
