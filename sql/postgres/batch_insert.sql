-- The batch row, written after its object. A retry that reuses the number
-- (its first attempt never committed) overwrites the same object and row.
INSERT INTO observation_batches (scanner_id, day, seq, object_key, rows, bytes, sha256)
VALUES (%(scanner_id)s, %(day)s, %(seq)s, %(object_key)s, %(rows)s, %(bytes)s, %(sha256)s)
ON CONFLICT (scanner_id, day, seq) DO UPDATE
SET object_key = EXCLUDED.object_key, rows = EXCLUDED.rows, bytes = EXCLUDED.bytes,
    sha256 = EXCLUDED.sha256, created_at = now()
