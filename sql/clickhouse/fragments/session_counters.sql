-- The counters of a group of events, shared by the rollup and its check so the
-- two can never drift apart. Malformed AI numbers in a PostHog table count as 0.
count() AS event_count,
countIf(event = '$pageview') AS pageview_count,
countIf(event = '$autocapture') AS autocapture_count,
countIf(event = '$rageclick') AS rageclick_count,
countIf(event = '$exception') AS exception_count,
countIf(event = '$ai_generation') AS ai_generation_count,
toUInt64(sumIf(greatest(ifNull(JSONExtract(properties, '$ai_input_tokens', 'Nullable(Int64)'), 0), 0), event = '$ai_generation')) AS input_tokens,
toUInt64(sumIf(greatest(ifNull(JSONExtract(properties, '$ai_output_tokens', 'Nullable(Int64)'), 0), 0), event = '$ai_generation')) AS output_tokens,
toDecimal128(sumIf(greatest(ifNull(toDecimal128OrNull(trimBoth(JSONExtractRaw(properties, '$ai_total_cost_usd'), '"'), 12), toDecimal128(0, 12)), toDecimal128(0, 12)), event = '$ai_generation'), 12) AS cost_usd,
min(timestamp) AS first_timestamp,
max(timestamp) AS last_timestamp,
max(inserted_at) AS max_inserted_at
