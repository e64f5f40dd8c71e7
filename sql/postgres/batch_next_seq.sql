-- Next batch number of a (scanner, day) partition (under the partition lock).
SELECT coalesce(max(seq), 0) + 1 FROM observation_batches WHERE scanner_id = %(scanner_id)s AND day = %(day)s
