-- Compare one day of rollups, as they stood at {as_of}, with a fresh aggregation
-- of raw events inserted up to {as_of}. Without {full}, only the sessions the
-- run as of {as_of} recomputed are compared (the cheap per-sweep check).
WITH
rolled AS (
    SELECT
        team_id,
        session_id,
        argMax(
            (event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
             ai_generation_count, input_tokens, output_tokens, cost_usd,
             first_timestamp, last_timestamp, max_inserted_at),
            computed_as_of) AS counters,
        max(computed_as_of) AS version,
        toUInt8(1) AS in_rollups
    FROM session_counter_rollups_v2
    WHERE day = {day:Date} AND computed_as_of <= {as_of:DateTime64(6, 'UTC')}
    GROUP BY team_id, session_id
    HAVING {full:Bool} OR version = {as_of:DateTime64(6, 'UTC')}
),
fresh AS (
    SELECT
        team_id,
        `$session_id` AS session_id,
        (event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
         ai_generation_count, input_tokens, output_tokens, cost_usd,
         first_timestamp, last_timestamp, max_inserted_at) AS counters,
        toUInt8(1) AS in_events
    FROM (
        SELECT
            team_id,
            `$session_id`,
            -- @include fragments/session_counters.sql
        FROM (
            -- One row per event, as first inserted (as the rollup counts them).
            SELECT team_id, `$session_id`, timestamp, event, properties, inserted_at,
                   row_number() OVER (PARTITION BY team_id, toDate(timestamp), `$session_id`, timestamp, uuid
                                      ORDER BY inserted_at) AS copy
            FROM {events_db:Identifier}.{events_table:Identifier}
            WHERE timestamp >= {day_start:DateTime64(6, 'UTC')}
              AND timestamp < {day_end:DateTime64(6, 'UTC')}
              AND inserted_at <= {as_of:DateTime64(6, 'UTC')}
              AND ({full:Bool} OR (team_id, `$session_id`) IN (SELECT team_id, session_id FROM rolled))
            SETTINGS optimize_read_in_window_order = 1
        )
        WHERE copy = 1
        GROUP BY team_id, `$session_id`
    )
)
SELECT
    count() AS compared,
    countIf(in_events = 0) AS rows_without_events,
    countIf(in_rollups = 0) AS sessions_not_rolled_up,
    countIf(in_rollups = 1 AND in_events = 1 AND rolled.counters != fresh.counters) AS counters_differ,
    groupArrayIf(5)(concat(toString(team_id), '/', session_id),
                    in_rollups = 0 OR in_events = 0 OR rolled.counters != fresh.counters) AS examples
FROM rolled
FULL OUTER JOIN fresh USING (team_id, session_id)
