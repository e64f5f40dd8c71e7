-- Size of one day of rollups, and how many rows the run as of {as_of} wrote.
SELECT
    count() AS sessions,
    sum(event_count) AS events,
    countIf(computed_as_of = {as_of:DateTime64(6, 'UTC')}) AS recomputed
FROM session_counter_rollups_v2 FINAL
WHERE day = {day:Date}
