-- The columns of one session folded from its day rollups (a GROUP BY team_id,
-- session_id over session_counter_rollups_v2 FINAL), as a sweep's filter and
-- verdict see them. Shared by the candidates INSERT and its asset check.
    team_id,
    session_id,
    -- Text bound for Postgres and JSON: no NUL, valid UTF-8 (bad bytes become U+FFFD).
    toValidUTF8(replaceAll(argMin(distinct_id, first_timestamp), '\0', '')) AS distinct_id,
    min(first_timestamp) AS session_start,
    max(last_timestamp) AS session_end,
    dateDiff('second', session_start, session_end) AS duration_s,
    sum(event_count) AS event_count,
    sum(pageview_count) AS pageview_count,
    sum(autocapture_count) AS autocapture_count,
    sum(rageclick_count) AS rageclick_count,
    sum(exception_count) AS exception_count,
    sum(ai_generation_count) AS ai_generation_count,
    -- Saturating sums, as in fragments/session_counters.sql: never wrap round.
    toUInt64(least(sum(toUInt128(input_tokens)), 18446744073709551615)) AS input_tokens,
    toUInt64(least(sum(toUInt128(output_tokens)), 18446744073709551615)) AS output_tokens,
    toDecimal128(least(sum(toDecimal256(cost_usd, 12)), toDecimal256('99999999999999999999999999.999999999999', 12)), 12) AS cost_usd,
    toValidUTF8(replaceAll(argMinIf(entry_url, first_timestamp, entry_url != ''), '\0', '')) AS entry_url,
    max(max_inserted_at) AS max_inserted_at
