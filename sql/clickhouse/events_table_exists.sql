-- Whether the events table ({events_db}.{events_table}) exists: checked before a run
-- reads it, so that a SESSION_ASSETS_EVENTS_TABLE naming no table is one clear error.
SELECT count()
FROM system.tables
WHERE database = {events_db:String} AND name = {events_table:String}
