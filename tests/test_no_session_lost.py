"""Issue #11: histories real deployments produce, each of which used to let a watermark
pass a session that was never observed (or observe one before it settled).

Each test is written as the history that produced the loss: rollup runs that lag or
are missing, an insert visible after its stamp, quota that runs out, a pause across
midnight, a backdated scanner, a team move, a future as-of, the start boundary, a
retried run. Real chDB, pgserver and a local object store.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
import pytest

from session_assets.stores import sql
from session_assets.assets import scanner_observations, session_counter_rollups
from session_assets.partitions import scanner_day_partitions_def
from session_assets.core.run_context import AS_OF_TAG
from session_assets.scanners import parse_scanner
from session_assets.scanners import store
from tests.support import (
    add_scanner,
    at,
    event,
    insert_rows,
    materialize_rollup,
    observed,
    roll_for_sweeps,
    sweep,
    sweep_metadata,
)

DAY = date(2024, 3, 1)
ERRORS = {"counters": {"exception_count": {"gte": 1}}}


@pytest.fixture
def resources(clickhouse_resource, postgres_resource, local_object_store) -> dict[str, Any]:
    return {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": local_object_store}


def roll(instance, resources, as_of: datetime, days: tuple[str, ...] | None = None) -> None:
    if days is None:
        roll_for_sweeps(instance, resources["clickhouse"], as_of, with_check=False)
    else:
        for day in days:
            materialize_rollup(instance, resources["clickhouse"], day, as_of, with_check=False)


def set_quota(resources, team_id: int, limit: int) -> None:
    with resources["postgres"].pool().connection() as conn:
        conn.execute(sql.load("postgres/quota_set.sql"), {"team_id": team_id, "period": DAY, "limit": limit})


def test_a_late_session_behind_a_sweep_that_read_stale_rollups_is_found(instance, resources):
    """1. A sweep as of T2 ran on rollups covered only until T1 (its rollup run still queued
    behind it). An event inserted between T1 and T2 was invisible to it; the late pass of the
    next sweep compared with T2 and did not count it as late."""
    add_scanner(instance, resources["postgres"], filter=ERRORS)
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T08:00:00"), "early")])
    t1 = at("2024-03-01T11:00:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    # Ended 10:10 (behind the watermark), its events inserted at 11:05: late.
    late = [event("$pageview", at("2024-03-01T10:00:00"), "late", inserted_at=at("2024-03-01T11:05:00")),
            event("$exception", at("2024-03-01T10:10:00"), "late", inserted_at=at("2024-03-01T11:05:00"))]  # fmt: skip
    insert_rows(resources["clickhouse"], late)
    t2 = at("2024-03-01T11:30:00")
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, t2))  # the rollups still say T1
    assert meta["seen_until"] == t1.timestamp()
    t3 = at("2024-03-01T12:00:00")
    roll(instance, resources, t3)
    sweep(instance, resources, "errors", DAY, t3)
    seen = observed(resources["postgres"], "errors")
    assert set(seen) == {"early", "late"} and seen["late"]["evidence"]["session"]["late"] is True


def test_a_sweep_without_rollups_keeps_what_the_last_one_saw(instance, resources):
    """1b. A sweep that read nothing ("no rollups yet") used to record its as-of as seen."""
    add_scanner(instance, resources["postgres"], filter=ERRORS)
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T10:00:00"), "late", inserted_at=t1 + timedelta(minutes=2))])
    t2 = at("2024-03-02T00:05:00")
    # The next day's partition, before its rollups exist: nothing read, nothing recorded as seen.
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY + timedelta(days=1), t2))
    assert meta["frontier"] == "no rollups yet" and meta["seen_until"] == t1.timestamp()
    t3 = at("2024-03-02T01:00:00")
    roll(instance, resources, t3)
    sweep(instance, resources, "errors", DAY + timedelta(days=1), t3)
    assert set(observed(resources["postgres"], "errors")) == {"late"}


def test_an_insert_visible_after_its_stamp_is_found_as_late(instance, resources):
    """2. The loader stamps a batch when it starts: an event stamped a minute before a sweep's
    as-of may only become visible after that sweep. The rollups re-read 5 minutes back; the
    sweep's late pass now does too."""
    add_scanner(instance, resources["postgres"], filter=ERRORS)
    insert_rows(resources["clickhouse"], [event("$pageview", at("2024-03-01T09:00:00"), "quiet")])
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    assert observed(resources["postgres"], "errors") == {}
    # Stamped before t1, visible only now.
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T09:05:00"), "quiet", inserted_at=t1 - timedelta(minutes=1))])
    t2 = t1 + timedelta(minutes=5)
    roll(instance, resources, t2)
    sweep(instance, resources, "errors", DAY, t2)
    assert set(observed(resources["postgres"], "errors")) == {"quiet"}


def test_a_late_session_refused_for_quota_is_observed_once_quota_is_raised(instance, resources):
    """3. Quota refused a late session: the walk stopped, the keyset stayed, but what the
    sweep had seen moved on, and the session was no longer late for the next sweep."""
    add_scanner(instance, resources["postgres"], filter=ERRORS)
    set_quota(resources, 1, 1)
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T08:00:00"), "first"),
                                          event("$pageview", at("2024-03-01T09:00:00"), "late")])  # fmt: skip
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T09:01:00"), "late", inserted_at=t1 + timedelta(minutes=1))])
    t2 = t1 + timedelta(minutes=5)
    roll(instance, resources, t2)
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, t2))
    assert meta["quota_stopped"] is True and meta["quota_skipped"] == 1
    set_quota(resources, 1, 100)
    t3 = t2 + timedelta(minutes=5)
    roll(instance, resources, t3)
    sweep(instance, resources, "errors", DAY, t3)
    assert set(observed(resources["postgres"], "errors")) == {"first", "late"}


def test_a_session_paused_across_midnight_is_observed_whole_by_the_day_it_ends(instance, resources):
    """4. At 00:20 the frontier is 23:45: a session that paused at 23:40 and went on at 00:10
    looked finished to a sweep that read the day's rollups only."""
    add_scanner(instance, resources["postgres"])
    insert_rows(resources["clickhouse"], [event("$pageview", at("2024-03-01T23:30:00"), "night"),
                                          event("$pageview", at("2024-03-01T23:40:00"), "night"),
                                          event("$exception", at("2024-03-02T00:10:00"), "night")])  # fmt: skip
    t1 = at("2024-03-02T00:20:00")
    roll(instance, resources, t1)
    sweep(instance, resources, "errors", DAY, t1)
    assert observed(resources["postgres"], "errors") == {}
    t2 = at("2024-03-02T01:00:00")
    roll(instance, resources, t2)
    assert sweep_metadata(sweep(instance, resources, "errors", DAY, t2))["complete"] is True
    sweep(instance, resources, "errors", DAY + timedelta(days=1), t2)
    seen = observed(resources["postgres"], "errors")
    assert set(seen) == {"night"}
    assert (seen["night"]["day"], seen["night"]["evidence"]["event_count"]) == (DAY + timedelta(days=1), 3)


def test_a_lagging_next_day_rollup_holds_the_day_open(instance, resources):
    """4b. With the next day's rollups stuck at 00:05, a sweep at 00:50 used frontier = day end,
    marked the day complete and observed the truncated session."""
    add_scanner(instance, resources["postgres"])
    insert_rows(resources["clickhouse"], [event("$pageview", at("2024-03-01T23:40:00"), "night"),
                                          event("$exception", at("2024-03-02T00:10:00"), "night")])  # fmt: skip
    t0 = at("2024-03-02T00:05:00")
    roll(instance, resources, t0)
    t1 = at("2024-03-02T00:50:00")
    roll(instance, resources, t1, days=("2024-03-01",))  # today's rollup run failed
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, t1))
    assert meta["complete"] is False and meta["seen_until"] == t0.timestamp()
    assert observed(resources["postgres"], "errors") == {}
    t2 = at("2024-03-02T01:00:00")
    roll(instance, resources, t2)
    sweep(instance, resources, "errors", DAY, t2)
    sweep(instance, resources, "errors", DAY + timedelta(days=1), t2)
    assert observed(resources["postgres"], "errors")["night"]["evidence"]["event_count"] == 2


def test_a_backdated_scanner_waits_for_every_day_it_reads(instance, resources):
    """6. A scanner starting two days back reads from its start - 26 h; only the day and the one
    before were checked for rollups, and sessions of the days never rolled were passed."""
    add_scanner(instance, resources["postgres"], start_at="2024-02-28T06:00:00Z")
    insert_rows(resources["clickhouse"], [event("$pageview", at("2024-02-28T10:00:00"), "older"),
                                          event("$pageview", at("2024-03-01T10:00:00"), "recent")])  # fmt: skip
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1, days=("2024-02-29", "2024-03-01"))
    meta = sweep_metadata(sweep(instance, resources, "errors", DAY, t1))
    assert meta["frontier"] == "no rollups yet" and meta["watermark_end"] == at("2024-02-28T06:00:00").timestamp()
    roll(instance, resources, t1 + timedelta(minutes=5), days=("2024-02-26", "2024-02-27", "2024-02-28"))
    sweep(instance, resources, "errors", DAY, t1 + timedelta(minutes=5))
    assert set(observed(resources["postgres"], "errors")) == {"older", "recent"}


def test_a_scanner_cannot_move_to_another_team(instance, resources):
    """7. Moving an id to another team carried team 1's watermark and candidates to team 2."""
    add_scanner(instance, resources["postgres"], team_id=1)
    pool = resources["postgres"].pool()
    other = parse_scanner({"id": "keep", "team_id": 5, "name": "k", "kind": "match"}, source="test")
    moved = parse_scanner({"id": "errors", "team_id": 2, "name": "moved", "kind": "match"}, source="test")
    with pytest.raises(store.TeamChange, match=r"scanner 'errors': team_id 2 differs from its saved team_id 1"):
        store.save_all(pool, [other, moved])
    assert store.get(pool, "errors").row["team_id"] == 1
    assert store.get(pool, "errors").row["name"] == "test scanner errors"
    with pytest.raises(store.UnknownScanner):  # one transaction: the valid one before it is not saved either
        store.get(pool, "keep")


def test_an_as_of_in_the_future_is_refused(instance, resources):
    """8. A mistyped `--now` or a run tag set in the UI marked days complete and moved
    watermarks past sessions that had not happened yet."""
    add_scanner(instance, resources["postgres"])
    future = datetime.now(timezone.utc) + timedelta(days=1)
    result = sweep(instance, resources, "errors", DAY, future, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1  # not retried
    message = str(failures[0].event_specific_data.error)
    assert f"run tag {AS_OF_TAG}=" in message and "ahead of the clock" in message
    rolled = dg.materialize(
        [session_counter_rollups], partition_key=str(DAY), resources={"clickhouse": resources["clickhouse"]},
        instance=instance, tags={AS_OF_TAG: future.isoformat()}, raise_on_error=False,
    )  # fmt: skip
    assert not rolled.success
    assert not instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("observation_batches")), limit=1).records
    assert not instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=session_counter_rollups.key), limit=1).records


def test_a_session_ending_exactly_at_the_scanner_start_is_not_after_it(instance, resources):
    """9. SPEC §6.1: with no session id stored the comparison is `end > watermark_end`."""
    start = at("2024-03-01T09:00:00")
    add_scanner(instance, resources["postgres"], start_at=start.isoformat())
    insert_rows(resources["clickhouse"], [event("$pageview", start - timedelta(minutes=5), "at-start"),
                                          event("$pageview", start, "at-start"),
                                          event("$pageview", start + timedelta(microseconds=1), "just-after")])  # fmt: skip
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1, days=("2024-02-28", "2024-02-29", "2024-03-01"))
    sweep(instance, resources, "errors", DAY, t1)
    assert set(observed(resources["postgres"], "errors")) == {"just-after"}


def test_a_retry_as_of_the_same_time_walks_only_its_own_candidates(instance, resources, tmp_path):
    """A Dagster retry reuses the run's as-of: it used to walk the failed attempt's candidate
    rows too, computed with a filter edited since."""
    add_scanner(instance, resources["postgres"])
    for n in range(4):
        start = at("2024-03-01T08:00:00") + timedelta(minutes=n)
        insert_rows(resources["clickhouse"], [event("$pageview", start, f"s{n}", properties={"$current_url": f"https://x/{n}"})])
    as_of = at("2024-03-01T12:00:00")
    roll(instance, resources, as_of)
    blocker = tmp_path / "objects/observations/team=1/scanner=errors/date=2024-03-01/000001.jsonl.gz"
    blocker.mkdir(parents=True)  # the first batch object cannot be written: the attempt fails
    assert not sweep(instance, resources, "errors", DAY, as_of, raise_on_error=False).success
    blocker.rmdir()
    with resources["postgres"].pool().connection() as conn:  # the filter is edited before the retry
        conn.execute("""UPDATE scanners SET filter = '{"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "exact", "value": "https://x/2"}]}]}'""")
    sweep(instance, resources, "errors", DAY, as_of)
    assert set(observed(resources["postgres"], "errors")) == {"s2"}


def test_a_scanners_start_day_is_its_utc_day_whatever_the_server_time_zone(postgres_resource, postgres_admin_url):
    """`start_at.date()` used the connection's TimeZone: at UTC+14 a scanner starting at 20:00
    UTC began its partitions a day late."""
    import psycopg

    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        database = postgres_resource.resolved_url().rsplit("/", 1)[1]
        conn.execute(f'ALTER DATABASE "{database}" SET timezone = \'Pacific/Kiritimati\'')
    from session_assets.stores import postgres

    postgres.close_pools()  # new connections take the database's setting
    pool = postgres_resource.pool()
    store.save(pool, parse_scanner({"id": "late-start", "team_id": 1, "name": "n", "kind": "match",
                                    "start_at": "2024-03-01T20:00:00Z"}, source="test"))  # fmt: skip
    with pool.connection() as conn:
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "UTC"
    assert store.get(pool, "late-start").start_at.date() == date(2024, 3, 1)


# --- the checks that can now fail --------------------------------------------------------


def _check(result, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_the_checks_find_an_unobserved_session_and_one_observed_past_the_watermark(instance, resources):
    """Replacing `one_observation_per_session` (which the UNIQUE constraint made unfailable):
    a complete day re-counts the eligibility rule against the observations, and no
    observation may be of a session that ended past the partition's watermark."""
    from session_assets.checks import no_session_behind_watermark_unobserved, observations_behind_watermark

    add_scanner(instance, resources["postgres"], filter=ERRORS)
    insert_rows(resources["clickhouse"], [event("$exception", at("2024-03-01T08:00:00"), "kept"),
                                          event("$exception", at("2024-03-01T09:00:00"), "dropped"),
                                          event("$pageview", at("2024-03-01T10:00:00"), "no-error")])  # fmt: skip
    t1 = at("2024-03-01T12:00:00")
    roll(instance, resources, t1)
    open_run = sweep(instance, resources, "errors", DAY, t1)
    assert _check(open_run, "no_session_behind_watermark_unobserved").metadata["scope"].value.startswith("open")
    t2 = at("2024-03-02T01:00:00")
    roll(instance, resources, t2)
    done = sweep(instance, resources, "errors", DAY, t2)
    assert sweep_metadata(done)["complete"] is True
    evaluation = _check(done, "no_session_behind_watermark_unobserved")
    assert evaluation.passed and evaluation.metadata["sessions_checked"].value == 2
    assert _check(done, "observations_behind_watermark").passed

    with resources["postgres"].pool().connection() as conn:
        conn.execute("DELETE FROM observations WHERE session_id = 'dropped'")
        conn.execute("""UPDATE observations SET evidence = jsonb_set(evidence, '{session,end}', '"2024-03-02T05:00:00+00:00"')
                        WHERE session_id = 'kept'""")  # fmt: skip
    # Launched on their own, as from the UI.
    check_job = dg.define_asset_job(
        "checks_only",
        selection=dg.AssetSelection.checks(no_session_behind_watermark_unobserved, observations_behind_watermark),
        partitions_def=scanner_day_partitions_def,
    )
    defs = dg.Definitions(
        assets=[scanner_observations], asset_checks=[no_session_behind_watermark_unobserved, observations_behind_watermark],
        jobs=[check_job], resources=resources,
    )  # fmt: skip
    result = defs.resolve_job_def("checks_only").execute_in_process(
        instance=instance, raise_on_error=False,
        tags={"dagster/partition": f"{DAY}|errors", "dagster/partition/date": str(DAY), "dagster/partition/scanner": "errors"},
    )  # fmt: skip
    lost = _check(result, "no_session_behind_watermark_unobserved")
    assert not lost.passed and lost.metadata["examples"].value == ["dropped"]
    past = _check(result, "observations_behind_watermark")
    assert not past.passed and past.metadata["examples"].value == ["kept"]


def test_a_scanner_re_enabled_after_the_watched_days_resumes_from_its_last_watermark(instance, resources):
    """It restarted from its start_at (re-walking everything since) when its last watermark
    was older than the days the sensor watches."""
    add_scanner(instance, resources["postgres"], start_at="2024-03-01T06:00:00Z")
    insert_rows(resources["clickhouse"], [event("$pageview", at("2024-03-01T09:00:00"), "before"),
                                          event("$pageview", at("2024-03-05T10:00:00"), "during-pause")])  # fmt: skip
    t1 = at("2024-03-02T01:00:00")
    roll_for_sweeps(instance, resources["clickhouse"], t1, "2024-03-01T06:00:00Z", with_check=False)
    assert sweep_metadata(sweep(instance, resources, "errors", DAY, t1))["complete"] is True
    t2 = at("2024-03-12T12:00:00")  # re-enabled ten days later; the rollups were backfilled meanwhile
    for n in range(16):
        materialize_rollup(instance, resources["clickhouse"], date(2024, 2, 26) + timedelta(days=n), t2, with_check=False)
    meta = sweep_metadata(sweep(instance, resources, "errors", date(2024, 3, 5), t2))
    assert meta["resumed_from"] == "earlier day: 2024-03-02T00:00:00+00:00"
    assert (meta["observed"], meta["already_observed"]) == (1, 0)  # "before" is not walked again
    assert set(observed(resources["postgres"], "errors")) == {"before", "during-pause"}
