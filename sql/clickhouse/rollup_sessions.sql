-- Recompute rollup rows from raw events as of {as_of}: every (team, session, day)
-- of the {full_days}, and of the {incremental_days} only the keys that received
-- events inserted in (that day's {incremental_since}, {as_of}]. Each row is a
-- complete aggregation of its key, so a recomputed row replaces the old one.
INSERT INTO session_counter_rollups_v2 (
    team_id, day, session_id, distinct_id,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count,
    ai_generation_count, input_tokens, output_tokens, cost_usd,
    first_timestamp, last_timestamp, max_inserted_at,
    entry_url, computed_as_of
)
SELECT
    team_id,
    toDate(timestamp) AS day,
    `$session_id` AS session_id,
    -- Cut to {max_distinct_id_chars} characters, as the URL below: ids come from visitors.
    argMin(leftUTF8(distinct_id, {max_distinct_id_chars:UInt32}), timestamp) AS distinct_id,
    -- @include fragments/session_counters.sql
    ,
    -- A visitor's URL, cut to {max_url_chars} characters (before aggregating: a 10 MB URL is
    -- never held per session, nor stored, nor copied into candidates and evidence).
    argMinIf(leftUTF8(JSONExtractString(properties, '$current_url'), {max_url_chars:UInt32}), timestamp, event = '$pageview') AS entry_url,
    {as_of:DateTime64(6, 'UTC')} AS computed_as_of
FROM
(
    -- One row per event: an event stored twice (same uuid, session and time: at-least-once
    -- ingestion, PostHog's ReplacingMergeTree before its merge) counts once, as first
    -- inserted. Numbered within each copy group, read in the events table's own order.
    SELECT team_id, `$session_id`, timestamp, uuid, event, properties, distinct_id, inserted_at,
           row_number() OVER (PARTITION BY team_id, toDate(timestamp), `$session_id`, timestamp, uuid
                              ORDER BY inserted_at) AS copy
    FROM {events_db:Identifier}.{events_table:Identifier}
    WHERE timestamp >= {range_start:DateTime64(6, 'UTC')}
      AND timestamp < {range_end:DateTime64(6, 'UTC')}
      AND toDate(timestamp) IN {days:Array(Date)}
      AND inserted_at <= {as_of:DateTime64(6, 'UTC')}
      AND (
          toDate(timestamp) IN {full_days:Array(Date)}
          OR (team_id, `$session_id`, toDate(timestamp)) IN (
              SELECT team_id, `$session_id`, toDate(timestamp)
              FROM {events_db:Identifier}.{events_table:Identifier}
              -- {min_since}: the oldest of the days' since, a constant the inserted_at index skips on
              WHERE inserted_at > {min_since:DateTime64(6, 'UTC')}
                AND inserted_at <= {as_of:DateTime64(6, 'UTC')}
                AND timestamp >= {range_start:DateTime64(6, 'UTC')}
                AND timestamp < {range_end:DateTime64(6, 'UTC')}
                AND toDate(timestamp) IN {incremental_days:Array(Date)}
                AND inserted_at > {incremental_since:Array(DateTime64(6, 'UTC'))}[indexOf({incremental_days:Array(Date)}, toDate(timestamp))]
          )
      )
    SETTINGS optimize_read_in_window_order = 1
)
WHERE copy = 1
GROUP BY team_id, day, session_id
