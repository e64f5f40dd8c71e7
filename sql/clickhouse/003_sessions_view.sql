-- One row per (team_id, session_id): the session's day rollups folded together.
CREATE VIEW IF NOT EXISTS sessions AS
SELECT
    team_id,
    session_id,
    argMin(distinct_id, first_timestamp) AS distinct_id,
    min(first_timestamp) AS `start`,
    max(last_timestamp) AS `end`,
    dateDiff('second', min(first_timestamp), max(last_timestamp)) AS duration_s,
    sum(event_count) AS event_count,
    sum(pageview_count) AS pageview_count,
    sum(autocapture_count) AS autocapture_count,
    sum(rageclick_count) AS rageclick_count,
    sum(exception_count) AS exception_count,
    sum(ai_generation_count) AS ai_generation_count,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    argMinIf(entry_url, first_timestamp, entry_url != '') AS entry_url,
    max(max_inserted_at) AS max_inserted_at,
    count() AS days
FROM session_counter_rollups FINAL
GROUP BY team_id, session_id;
