from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from session_assets.assets import session_counter_rollups
from session_assets.assets.rollups import plan_rollup
from session_assets.core.coverage import VISIBILITY_LAG, RollupRecord, late_horizon
from session_assets.core.days import SETTLE, is_complete
from session_assets.checks import rollup_counters_match_events
from session_assets.resources import ClickHouseResource
from session_assets.partitions import daily_partitions_def
from tests.support import (
    at,
    check_evaluation,
    event,
    expected_rollups,
    insert_rows,
    materialize_rollup,
    rollup_metadata,
    rollups_frame,
)

DAY = date(2024, 3, 1)
START = date(2024, 1, 1)


# --- the pure decisions -------------------------------------------------------


def record(covered_until, complete=False, late_until=None, late_days=()):
    return RollupRecord(covered_until, complete, late_until, frozenset(late_days))


def test_first_run_and_backfill_recompute_the_whole_day():
    as_of = at("2024-03-01T12:00:00")
    assert plan_rollup(DAY, as_of, {}, backfill=False, start_date=START).mode == "full"
    rolled = {DAY: record(at("2024-03-01T11:00:00"))}
    assert plan_rollup(DAY, as_of, rolled, backfill=True, start_date=START).mode == "full"


def test_a_later_sweep_is_incremental_from_the_previous_covered_until_with_overlap():
    previous = at("2024-03-01T11:55:00")
    plan = plan_rollup(DAY, at("2024-03-01T12:00:00"), {DAY: record(previous)}, backfill=False, start_date=START)
    assert plan.mode == "incremental"
    assert plan.since == previous - VISIBILITY_LAG


def test_every_run_re_rolls_late_events_of_the_rolled_days_before_it_from_their_own_coverage():
    """Full runs too (a backfill of an open day, an older as-of): the late pass is what keeps
    earlier days whole, so skipping it once would drop what arrived meanwhile."""
    records = {
        date(2024, 2, 27): record(at("2024-02-28T00:40:00"), True),  # settled, not covered since by any later run
        date(2024, 2, 29): record(at("2024-03-01T00:40:00"), True),
        DAY: record(at("2024-03-01T11:55:00"), late_until=at("2024-03-01T11:55:00"), late_days=[date(2024, 2, 29)]),
    }
    for backfill in (False, True):
        plan = plan_rollup(DAY, at("2024-03-01T12:00:00"), records, backfill=backfill, start_date=START)
        assert plan.late_since == {
            date(2024, 2, 27): at("2024-02-28T00:40:00") - VISIBILITY_LAG,
            date(2024, 2, 29): at("2024-03-01T11:55:00") - VISIBILITY_LAG,  # covered by DAY's previous late pass
        }
    # 2024-02-28 was never rolled: nothing to keep whole, and no late pass claims it.
    assert date(2024, 2, 28) not in plan.late_since


def test_late_horizon_never_reaches_before_the_start_date():
    assert late_horizon(date(2024, 1, 2), START) == [START]
    assert late_horizon(DAY, START) == [DAY - timedelta(days=n) for n in range(7, 0, -1)]


def test_re_running_an_older_as_of_recomputes_fully():
    rolled = {DAY: record(at("2024-03-01T12:00:00"))}
    plan = plan_rollup(DAY, at("2024-03-01T10:00:00"), rolled, backfill=False, start_date=START)
    assert plan.mode == "full"


def test_day_is_complete_exactly_at_day_end_plus_settle():
    day_end = at("2024-03-02T00:00:00")
    assert is_complete(DAY, day_end + SETTLE)
    assert not is_complete(DAY, day_end + SETTLE - timedelta(microseconds=1))


# --- the asset on real chDB ----------------------------------------------------


def _two_day_history():
    """Sessions within a day, across midnight, of two teams sharing a session id, with AI numbers."""
    rows = [
        event("$pageview", at("2024-03-01T10:00:00"), "s-web", properties={"$current_url": "https://shop/a"}),
        event("$autocapture", at("2024-03-01T10:00:05"), "s-web"),
        event("$rageclick", at("2024-03-01T10:00:06"), "s-web"),
        event("$pageview", at("2024-03-01T10:01:00"), "s-web", properties={"$current_url": "https://shop/b"}),
        event("$exception", at("2024-03-01T10:02:00"), "s-web"),
        event(
            "$ai_generation",
            at("2024-03-01T23:50:00"),
            "s-midnight",
            properties={"$ai_input_tokens": 100, "$ai_output_tokens": "40", "$ai_total_cost_usd": 0.000123456},
        ),
        event(
            "$ai_generation",
            at("2024-03-02T00:10:00"),
            "s-midnight",
            properties={"$ai_input_tokens": 7, "$ai_output_tokens": 3, "$ai_total_cost_usd": "0.5"},
        ),
        event(
            "$ai_generation",
            at("2024-03-02T00:11:00"),
            "s-midnight",
            properties={"$ai_input_tokens": 0, "$ai_total_cost_usd": 1.2e-05},  # exponent form, as SDKs send it
        ),
        event("$pageview", at("2024-03-01T11:00:00"), "s-web", team_id=2, distinct_id="other-team"),
    ]
    return rows


def test_counters_equal_an_independent_pandas_aggregation(instance, clickhouse_resource):
    rows = _two_day_history()
    insert_rows(clickhouse_resource, rows)
    as_of = at("2024-03-03T00:35:00")  # the second day just settled
    for day in ("2024-03-01", "2024-03-02"):
        result = materialize_rollup(instance, clickhouse_resource, day, as_of)
        assert check_evaluation(result).passed
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource), expected_rollups(rows, as_of))
    meta = rollup_metadata(result)
    assert meta["complete"] is True and meta["mode"] == "full"
    assert (meta["sessions"], meta["events"]) == (1, 2)

    sessions = clickhouse_resource.client().query(
        "SELECT team_id, session_id, `start`, `end`, duration_s, ai_generation_count, input_tokens, cost_usd "
        "FROM sessions WHERE session_id = 's-midnight'"
    ).result_rows
    assert len(sessions) == 1
    _, _, start, end, duration, turns, tokens, cost = sessions[0]
    assert (duration, turns, tokens) == (21 * 60, 3, 107)
    assert str(cost.normalize()) == "0.500135456"


def test_materializing_twice_changes_nothing(instance, clickhouse_resource):
    rows = _two_day_history()
    insert_rows(clickhouse_resource, rows)
    as_of = at("2024-03-02T06:00:00")
    materialize_rollup(instance, clickhouse_resource, DAY, as_of)
    first = rollups_frame(clickhouse_resource, DAY)
    again = materialize_rollup(instance, clickhouse_resource, DAY, as_of)  # same as-of: a re-execution
    later = materialize_rollup(instance, clickhouse_resource, DAY, as_of + timedelta(hours=1))  # nothing new
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource, DAY), first)
    assert rollup_metadata(again)["sessions"] == rollup_metadata(later)["sessions"] == len(first)
    assert rollup_metadata(later)["mode"] == "incremental" and rollup_metadata(later)["rows"] == 0


def test_incremental_sweep_recomputes_only_sessions_with_new_events(instance, clickhouse_resource):
    t1 = at("2024-03-01T12:00:00")
    base = [event("$pageview", at("2024-03-01T09:00:00") + timedelta(minutes=i), f"s{i}") for i in range(20)]
    insert_rows(clickhouse_resource, base)
    assert rollup_metadata(materialize_rollup(instance, clickhouse_resource, DAY, t1))["rows"] == 20

    t2 = t1 + timedelta(minutes=5)
    new = [
        event("$exception", at("2024-03-01T11:58:00"), "s3", inserted_at=t1 + timedelta(minutes=1)),
        event("$pageview", at("2024-03-01T11:59:00"), "s-new", inserted_at=t1 + timedelta(minutes=2)),
        # inserted after t2: invisible to the sweep as of t2
        event("$pageview", at("2024-03-01T11:59:30"), "s4", inserted_at=t2 + timedelta(seconds=1)),
    ]
    insert_rows(clickhouse_resource, new)
    result = materialize_rollup(instance, clickhouse_resource, DAY, t2)
    meta = rollup_metadata(result)
    assert meta["mode"] == "incremental"
    assert meta["rows"] == 2  # s3 and s-new only
    assert check_evaluation(result).passed
    assert check_evaluation(result).metadata["sessions_compared"].value == 2
    recomputed = clickhouse_resource.client().query(
        "SELECT session_id FROM session_counter_rollups_v2 FINAL WHERE computed_as_of = {t:DateTime64(6, 'UTC')} ORDER BY session_id",
        parameters={"t": t2},
    ).result_rows
    assert [r[0] for r in recomputed] == ["s-new", "s3"]
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource, DAY), expected_rollups(base + new, t2, DAY))


def test_late_events_re_roll_their_day_and_are_named(instance, clickhouse_resource):
    early = [event("$pageview", at("2024-03-01T10:00:00"), "old"), event("$pageview", at("2024-03-02T10:00:00"), "new")]
    insert_rows(clickhouse_resource, early)
    t1 = at("2024-03-02T12:00:00")
    materialize_rollup(instance, clickhouse_resource, "2024-03-01", t1)
    materialize_rollup(instance, clickhouse_resource, "2024-03-02", t1)

    late = [event("$exception", at("2024-03-01T10:05:00"), "old", inserted_at=t1 + timedelta(minutes=3))]
    insert_rows(clickhouse_resource, late)
    t2 = t1 + timedelta(minutes=5)
    meta = rollup_metadata(materialize_rollup(instance, clickhouse_resource, "2024-03-02", t2))
    assert meta["late_days"] == ["2024-03-01"]
    pd.testing.assert_frame_equal(
        rollups_frame(clickhouse_resource, DAY), expected_rollups(early + late, t2, DAY)
    )


def test_an_older_computation_never_overwrites_a_newer_one(instance, clickhouse_resource):
    """A backfill racing a sweep: whichever lands last, the newest as-of wins."""
    t1 = at("2024-03-01T12:00:00")
    rows = [event("$pageview", at("2024-03-01T10:00:00"), "s1")]
    late = [event("$pageview", at("2024-03-01T10:01:00"), "s1", inserted_at=t1 + timedelta(minutes=1))]
    insert_rows(clickhouse_resource, rows + late)
    t2 = t1 + timedelta(minutes=5)
    materialize_rollup(instance, clickhouse_resource, DAY, t2)
    materialize_rollup(instance, clickhouse_resource, DAY, t1, backfill=True)  # lands after, older as-of
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource, DAY), expected_rollups(rows + late, t2, DAY))


def test_the_check_fails_when_a_counter_drifts(instance, clickhouse_resource):
    rows = _two_day_history()
    insert_rows(clickhouse_resource, rows)
    as_of = at("2024-03-01T18:00:00")
    assert check_evaluation(materialize_rollup(instance, clickhouse_resource, DAY, as_of)).passed
    clickhouse_resource.client().command(
        "ALTER TABLE session_counter_rollups_v2 UPDATE event_count = event_count + 1 WHERE session_id = 's-web' "
        "AND team_id = 1 SETTINGS mutations_sync = 1"
    )
    # Launched on its own, the check compares the whole day.
    check_job = dg.define_asset_job(
        "check_only", selection=dg.AssetSelection.checks(rollup_counters_match_events), partitions_def=daily_partitions_def
    )
    defs = dg.Definitions(
        assets=[session_counter_rollups],
        asset_checks=[rollup_counters_match_events],
        jobs=[check_job],
        resources={"clickhouse": clickhouse_resource},
    )
    # As the UI launches it: a check-only run tagged with the partition.
    result = defs.resolve_job_def("check_only").execute_in_process(
        tags={"dagster/partition": str(DAY)}, instance=instance, raise_on_error=False
    )
    evaluation = check_evaluation(result)
    assert not evaluation.passed
    assert evaluation.metadata["scope"].value == "full"
    assert evaluation.metadata["counters_differ"].value == 1
    assert evaluation.metadata["examples"].value == ["1/s-web"]


def test_backfill_tag_recomputes_the_whole_day(instance, clickhouse_resource):
    day = "2024-03-01"
    insert_rows(clickhouse_resource, _two_day_history())
    t1 = at("2024-03-01T12:00:00")
    materialize_rollup(instance, clickhouse_resource, day, t1)
    meta = rollup_metadata(materialize_rollup(instance, clickhouse_resource, day, t1 + timedelta(hours=1), backfill=True))
    assert meta["mode"] == "full" and meta["rows"] == meta["sessions"] == 2  # s-midnight not yet inserted at t1


POSTHOG_EVENTS_DDL = """
CREATE TABLE {db:Identifier}.events
(
    uuid UUID,
    event String,
    properties String CODEC(ZSTD(3)),
    timestamp DateTime64(6, 'UTC'),
    team_id Int64,
    distinct_id String,
    elements_chain String,
    created_at DateTime64(6, 'UTC'),
    person_id UUID,
    `$session_id` String MATERIALIZED JSONExtractString(properties, '$session_id'),
    `$window_id` String MATERIALIZED JSONExtractString(properties, '$window_id'),
    inserted_at DateTime64(6, 'UTC'),
    _timestamp DateTime,
    _offset UInt64
)
ENGINE = ReplacingMergeTree(_timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))
"""


def test_works_unchanged_on_a_posthog_events_table(instance, clickhouse_resource):
    """PostHog's layout: other sort key, extra columns, `$session_id` materialized from properties."""
    posthog_db = clickhouse_resource.database + "_posthog"
    client = clickhouse_resource.client()
    client.command("CREATE DATABASE {db:Identifier}", parameters={"db": posthog_db})
    client.command(POSTHOG_EVENTS_DDL, parameters={"db": posthog_db})
    rows = _two_day_history()
    client.insert(
        "events",
        [[r["uuid"], r["event"], r["properties"], r["timestamp"], r["team_id"], r["distinct_id"], r["inserted_at"]] for r in rows],
        column_names=["uuid", "event", "properties", "timestamp", "team_id", "distinct_id", "inserted_at"],
        database=posthog_db,
    )
    posthog = ClickHouseResource(
        url=clickhouse_resource.url, database=clickhouse_resource.database, events_table=f"{posthog_db}.events"
    )
    as_of = at("2024-03-02T12:00:00")
    assert check_evaluation(materialize_rollup(instance, posthog, DAY, as_of)).passed
    pd.testing.assert_frame_equal(rollups_frame(posthog, DAY), expected_rollups(rows, as_of, DAY))


def test_a_full_run_of_an_open_day_between_late_inserts_keeps_earlier_days_whole(instance, clickhouse_resource):
    """Issue #11.5: a backfill-tagged (full) run of today used to skip the late pass, and the
    next incremental run started after it: a late event of a settled day inserted in between
    was never rolled up."""
    yesterday, today = date(2024, 3, 1), date(2024, 3, 2)
    rows = [event("$pageview", at("2024-03-01T10:00:00"), "old"), event("$pageview", at("2024-03-02T09:00:00"), "new")]
    insert_rows(clickhouse_resource, rows)
    t1 = at("2024-03-02T12:00:00")
    materialize_rollup(instance, clickhouse_resource, yesterday, t1)  # settled: the sensor stops rolling it
    materialize_rollup(instance, clickhouse_resource, today, t1)
    late = [event("$exception", at("2024-03-01T10:05:00"), "old", inserted_at=t1 + timedelta(minutes=1))]
    insert_rows(clickhouse_resource, late)
    t2 = t1 + timedelta(minutes=10)
    assert rollup_metadata(materialize_rollup(instance, clickhouse_resource, today, t2, backfill=True))["mode"] == "full"
    materialize_rollup(instance, clickhouse_resource, today, t2 + timedelta(minutes=5))
    pd.testing.assert_frame_equal(
        rollups_frame(clickhouse_resource, yesterday), expected_rollups(rows + late, t2, yesterday)
    )


def test_an_event_visible_only_after_its_stamp_is_rolled_up_on_a_late_day_too(instance, clickhouse_resource):
    """The late pass starts VISIBILITY_LAG before the coverage it continues, like the day's own
    incremental read: an event stamped just before a run but inserted just after it is not missed."""
    yesterday, today = date(2024, 3, 1), date(2024, 3, 2)
    rows = [event("$pageview", at("2024-03-01T10:00:00"), "old"), event("$pageview", at("2024-03-02T09:00:00"), "new")]
    insert_rows(clickhouse_resource, rows)
    t1 = at("2024-03-02T12:00:00")
    materialize_rollup(instance, clickhouse_resource, yesterday, t1)
    materialize_rollup(instance, clickhouse_resource, today, t1)
    # Stamped a minute before t1 (the loader stamps a batch when it starts), visible after t1's runs.
    lagged = [event("$exception", at("2024-03-01T10:05:00"), "old", inserted_at=t1 - timedelta(minutes=1))]
    insert_rows(clickhouse_resource, lagged)
    t2 = t1 + timedelta(minutes=5)
    assert rollup_metadata(materialize_rollup(instance, clickhouse_resource, today, t2))["late_days"] == ["2024-03-01"]
    pd.testing.assert_frame_equal(
        rollups_frame(clickhouse_resource, yesterday), expected_rollups(rows + lagged, t2, yesterday)
    )


def test_an_event_stored_twice_counts_once_as_first_inserted(instance, clickhouse_resource):
    """At-least-once ingestion (and PostHog's ReplacingMergeTree before its merge) can hold the
    same event twice: it counts once, and its redelivery does not make the session late."""
    t1 = at("2024-03-01T12:00:00")
    first = event("$ai_generation", at("2024-03-01T10:00:00"), "s1", properties={"$ai_input_tokens": 7})
    rows = [event("$pageview", at("2024-03-01T09:59:00"), "s1"), first]
    insert_rows(clickhouse_resource, rows)
    materialize_rollup(instance, clickhouse_resource, DAY, t1)
    again = {**first, "inserted_at": t1 + timedelta(minutes=2)}  # redelivered
    insert_rows(clickhouse_resource, [again])
    result = materialize_rollup(instance, clickhouse_resource, DAY, t1 + timedelta(minutes=5))
    assert check_evaluation(result).passed
    (row,) = rollups_frame(clickhouse_resource, DAY).to_dict("records")
    assert (row["event_count"], row["ai_generation_count"], row["input_tokens"]) == (2, 1, 7)
    assert row["max_inserted_at"] == first["inserted_at"]
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource, DAY), expected_rollups(rows + [again], t1 + timedelta(minutes=5), DAY))


def test_the_rollup_of_the_as_of_day_observes_events(instance, clickhouse_resource):
    """`events` shows as observed in the UI: each tick's rollup of today logs what it saw."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rows = [event("$pageview", now - timedelta(minutes=m), "s1", inserted_at=now - timedelta(minutes=m)) for m in (3, 2)]
    insert_rows(clickhouse_resource, rows)
    materialize_rollup(instance, clickhouse_resource, now.date() - timedelta(days=1), now)  # an earlier day: none
    assert instance.fetch_observations(dg.AssetKey("events"), limit=1).records == []
    materialize_rollup(instance, clickhouse_resource, now.date(), now)
    (record,) = instance.fetch_observations(dg.AssetKey("events"), limit=5).records
    metadata = record.asset_observation.metadata
    assert metadata["events_last_2_days"].value == 2
    assert metadata["newest_inserted_at"].value == (now - timedelta(minutes=2)).timestamp()
