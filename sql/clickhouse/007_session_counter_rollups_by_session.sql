-- The rollups again, one partition per day and sorted by (team_id, session_id, day),
-- the key SPEC §4 names. A sweep folds each session's day rows together
-- (GROUP BY team_id, session_id over the window's days): with the session before
-- the day in the sorting key that fold runs in key order, one session at a time
-- (optimize_aggregation_in_order), instead of a hash table of every session of
-- the window spilled to disk (+42 MB, and the sweep's memory peak, at 1M
-- sessions). The day partitions keep every read of one day as narrow as before:
-- they are pruned, where the day used to be second in the key. `day` stays in
-- the sorting key so that FINAL replaces rows within a (team, session, day) only.
--
-- A new table, not an ALTER (a sorting key cannot be reordered): its rows are
-- copied from session_counter_rollups, which 008 then drops. Each step can run
-- twice: a copied row and its copy are identical (same key, same computed_as_of)
-- and fold into one, and a rollup written to the new table meanwhile has a newer
-- computed_as_of, so it wins. Stop old versions' runs before upgrading: what
-- they write to the old table after the copy is not carried over (re-materialize
-- those days if any did).
CREATE TABLE IF NOT EXISTS session_counter_rollups_v2
(
    team_id Int64,
    day Date,
    session_id String,
    distinct_id String,
    first_timestamp DateTime64(6, 'UTC'),
    last_timestamp DateTime64(6, 'UTC'),
    event_count UInt64,
    pageview_count UInt64,
    autocapture_count UInt64,
    rageclick_count UInt64,
    exception_count UInt64,
    ai_generation_count UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cost_usd Decimal(38, 12),
    entry_url String,
    max_inserted_at DateTime64(6, 'UTC'),
    computed_as_of DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_as_of)
PARTITION BY day
ORDER BY (team_id, session_id, day);

INSERT INTO session_counter_rollups_v2 (
    team_id, day, session_id, distinct_id, first_timestamp, last_timestamp,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count, ai_generation_count,
    input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at, computed_as_of
)
SELECT
    team_id, day, session_id, distinct_id, first_timestamp, last_timestamp,
    event_count, pageview_count, autocapture_count, rageclick_count, exception_count, ai_generation_count,
    input_tokens, output_tokens, cost_usd, entry_url, max_inserted_at, computed_as_of
FROM session_counter_rollups
SETTINGS max_partitions_per_insert_block = 0;

-- One row per (team_id, session_id): the session's day rollups folded together.
CREATE OR REPLACE VIEW sessions AS
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
FROM session_counter_rollups_v2 FINAL
GROUP BY team_id, session_id;
