-- Days before {day_start} (back to {horizon_start}) that received events inserted
-- in ({since}, {as_of}]: late data to re-roll.
SELECT DISTINCT toDate(timestamp) AS day
FROM {events_db:Identifier}.{events_table:Identifier}
WHERE inserted_at > {since:DateTime64(6, 'UTC')}
  AND inserted_at <= {as_of:DateTime64(6, 'UTC')}
  AND timestamp >= {horizon_start:DateTime64(6, 'UTC')}
  AND timestamp < {day_start:DateTime64(6, 'UTC')}
ORDER BY day
