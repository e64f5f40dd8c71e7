-- Recent activity in the events table, for the source asset's observation.
SELECT count(), max(inserted_at)
FROM {events_db:Identifier}.{events_table:Identifier}
WHERE timestamp >= {since:DateTime64(6, 'UTC')}
