-- The counters of a group of events, shared by the rollup and its check so the
-- two can never drift apart. Malformed AI numbers in a PostHog table count as 0.
-- Token and cost sums are taken in a wider type and saturate at the column's
-- maximum, so absurd values cannot wrap a sum round to a small or negative one.
count() AS event_count,
countIf(event = '$pageview') AS pageview_count,
countIf(event = '$autocapture') AS autocapture_count,
countIf(event = '$rageclick') AS rageclick_count,
countIf(event = '$exception') AS exception_count,
countIf(event = '$ai_generation') AS ai_generation_count,
toUInt64(least(sumIf(toUInt128(greatest(ifNull(JSONExtract(properties, '$ai_input_tokens', 'Nullable(Int64)'), 0), 0)), event = '$ai_generation'), 18446744073709551615)) AS input_tokens,
toUInt64(least(sumIf(toUInt128(greatest(ifNull(JSONExtract(properties, '$ai_output_tokens', 'Nullable(Int64)'), 0), 0)), event = '$ai_generation'), 18446744073709551615)) AS output_tokens,
toDecimal128(least(sumIf(toDecimal256(greatest(ifNull(toDecimal128OrNull(trimBoth(JSONExtractRaw(properties, '$ai_total_cost_usd'), '"'), 12), toDecimal128(0, 12)), toDecimal128(0, 12)), 12), event = '$ai_generation'), toDecimal256('99999999999999999999999999.999999999999', 12)), 12) AS cost_usd,
min(timestamp) AS first_timestamp,
max(timestamp) AS last_timestamp,
max(inserted_at) AS max_inserted_at
