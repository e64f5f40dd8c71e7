"""Concurrency (issue #5): runs racing for the same partition pages or the same quota.

Each race is forced, never hoped for: the test holds the lock the contended
statement needs (a partition's advisory lock, the team's quota row, Dagster's
runs table), waits until every contender is queued on it (pg_locks), then lets
go, so they all go through that statement together. No sleeps.

Runs share one process (threads), as chDB requires. Its client holds the
engine while a query result streams, so a sweep whose walk spans pages keeps
every other run out of ClickHouse until it ends: on the embedded stack sweeps
interleave only when each walk fits in one page, as here (with a ClickHouse
server they interleave page by page).
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pandas as pd
import psycopg
import pytest
import yaml
from dagster_aws.s3 import S3Resource

from session_assets.stores import postgres
from session_assets.partitions import scanner_day_key
from session_assets.core.days import SETTLE
from session_assets.definitions import build_definitions
from session_assets.resources import object_store_for, PostgresResource
from session_assets.commands.ticks import execute_tick
from tests.support import (
    FAULT_DAY,
    FAULT_SCANNER_START,
    add_scanner,
    assert_store_state,
    at,
    expected_observation_keys,
    expected_rollups,
    generate_sessions,
    insert_rows,
    local_objects,
    lock_waiters,
    roll_for_sweeps,
    partition_gate,
    rollups_frame,
    session_events,
    sweep,
    sweep_metadata,
    wait_until,
)
from tests.test_faults import (
    EXECUTABLE,
    SHOP,
    WEB,
    Zygote,
    exact_quotas,
    home_instance,
    home_state,
    new_home,
    seed_home,
    seed_stack,
    set_quotas,
    stack_resources,
    stack_state,
)


@pytest.fixture
def pg_instance(postgres_admin_url: str, tmp_path) -> Iterator[dg.DagsterInstance]:
    with _instance_on(postgres_admin_url, tmp_path / "dagster") as (instance, _):
        yield instance


class _instance_on:
    """A Dagster instance whose storage is a fresh database of the session's pgserver
    (SQLite storage locks under concurrent runs), and that database's URL.

    Its dagster.yaml holds storage only. An instance with any other setting runs
    `logging.config.dictConfig` at the start of every run, which deadlocks when
    another thread of the process is logging at that moment (seen here: two
    in-process runs starting together). Production runs are processes of their
    own; only this test's threads share one.
    """

    def __init__(self, admin_url: str, home: Path) -> None:
        name = f"t_{uuid.uuid4().hex[:12]}"
        postgres.ensure_database(admin_url, name)
        self.url = postgres.with_database(admin_url, name)
        home.mkdir(parents=True)
        storage = {"storage": {"postgres": {"postgres_url": postgres.sqlalchemy_url(self.url)}}}
        (home / "dagster.yaml").write_text(yaml.safe_dump(storage))
        self.home = home

    def __enter__(self) -> tuple[dg.DagsterInstance, str]:
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        return self.instance, self.url

    def __exit__(self, *exc: Any) -> None:
        self.instance.dispose()


def run_threads(*targets) -> tuple[list[threading.Thread], list[Any]]:
    """Start each target on its own thread behind one barrier; return their results (re-raising errors)."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)

    def run(n: int, target) -> None:
        barrier.wait()
        try:
            results[n] = target()
        except BaseException as error:  # re-raised by the caller's thread
            results[n] = error

    threads = [threading.Thread(target=run, args=(n, t)) for n, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    return threads, results


def joined(threads: list[threading.Thread], results: list[Any]) -> list[Any]:
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def release_partition(conn: Any, scanner_id: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (scanner_day_key(FAULT_DAY, scanner_id),))


def test_a_hand_backfill_racing_a_sensor_sweep_observes_each_session_once(
    clickhouse_resource, postgres_url, pg_instance, tmp_path
):
    """A backfill of shop's day (recomputes from the day start) and the sensor
    path's sweep of the same partition (from its watermark) both wait at the
    partition's page lock, then go together: every session is observed by exactly
    one of them, and the stores end as one run would leave them."""
    sessions = generate_sessions(1600, at("2026-11-20T00:05:00"), at("2026-11-20T03:00:00"), seed=21)
    as_of = at("2026-11-20T03:00:00")
    expected = expected_observation_keys(sessions, as_of - SETTLE)
    store = object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())
    resources = stack_resources(clickhouse_resource, postgres_url, store)
    seed_stack(resources, pg_instance, sessions, exact_quotas(expected))
    # Both runs see the same rollups, as of the same time.
    roll_for_sweeps(pg_instance, clickhouse_resource, as_of, FAULT_SCANNER_START, with_check=False)

    with psycopg.connect(postgres_url, autocommit=True) as gate:
        partition_gate(gate, "shop", FAULT_DAY)
        threads, results = run_threads(
            lambda: sweep(pg_instance, resources, "shop", FAULT_DAY, as_of, backfill=True),
            lambda: execute_tick(build_definitions(resources), pg_instance, resources["postgres"].pool(), as_of),
        )
        wait_until(lambda: lock_waiters(gate) == 2, 180, "the backfill and the sensor's sweep at shop's first page", 0.05)
        release_partition(gate, "shop")
        backfill, report = joined(threads, results)

    assert backfill.success and all(run["success"] for run in report["runs"]), report
    by_backfill = sweep_metadata(backfill)
    (by_sensor,) = [run for run in report["runs"] if run["partition"] == SHOP]
    shop = sum(1 for scanner_id, _ in expected if scanner_id == "shop")
    assert by_backfill["observed"] + by_sensor["observed"] == shop
    assert by_backfill["quota_skipped"] == by_sensor["quota_skipped"] == 0  # the exact limit: no double reservation
    assert by_backfill["observed"] + by_backfill["already_observed"] == by_backfill["candidates"] == shop
    assert all(check.passed for check in backfill.get_asset_check_evaluations())
    state = stack_state(resources, pg_instance, as_of, local_objects(tmp_path / "objects"))
    assert_store_state(state, expected, as_of - SETTLE, sessions)


def test_eight_runs_of_one_team_racing_for_the_last_of_its_quota_take_exactly_all_of_it(
    clickhouse_resource, postgres_url, pg_instance, tmp_path
):
    """8 scanners of team 1, 8 concurrent sweeps, the team's quota far below what
    they want: held at the quota row until all 8 wait on it, they take exactly the
    limit between them, never more; each stops at the last session it could
    observe. With the limit raised, the next sweeps resume there: no gaps."""
    racers = {f"racer-{n}": 1 for n in range(8)}
    sessions = generate_sessions(120, at("2026-11-20T00:05:00"), at("2026-11-20T01:00:00"), seed=22, teams=(1,))
    as_of = at("2026-11-20T02:00:00")
    expected = expected_observation_keys(sessions, as_of - SETTLE, racers)
    limit = 300
    assert len(expected) > 2 * limit
    store = object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())
    resources = {**stack_resources(clickhouse_resource, postgres_url, store), "postgres": PostgresResource(url=postgres_url, pool_max_size=12)}
    insert_rows(clickhouse_resource, session_events(sessions))
    for scanner_id in racers:
        add_scanner(
            pg_instance, resources["postgres"], scanner_id=scanner_id, team_id=1,
            filter={"counters": {"pageview_count": {"gte": 1}}}, start_at=FAULT_SCANNER_START.isoformat(),
        )  # fmt: skip
    set_quotas(postgres_url, {1: limit})
    roll_for_sweeps(pg_instance, clickhouse_resource, as_of, FAULT_SCANNER_START, with_check=False)

    with psycopg.connect(postgres_url) as gate:  # a transaction holding the quota row
        gate.execute("SELECT used FROM team_quotas WHERE team_id = 1 FOR UPDATE")
        threads, results = run_threads(
            *[lambda s=s: sweep(pg_instance, resources, s, FAULT_DAY, as_of) for s in racers]
        )
        wait_until(lambda: lock_waiters(gate) == 8, 180, "8 sweeps at the quota row", 0.05)
        gate.commit()
        runs = joined(threads, results)

    assert all(run.success for run in runs)
    metas = [sweep_metadata(run) for run in runs]
    assert sum(m["observed"] for m in metas) == limit
    assert all(m["observed"] + m["quota_skipped"] == m["candidates"] for m in metas)
    assert all(check.passed for run in runs for check in run.get_asset_check_evaluations())
    with psycopg.connect(postgres_url) as conn:
        used, cap = conn.execute("SELECT used, observation_limit FROM team_quotas WHERE team_id = 1").fetchone()
        observed = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    assert (used, cap, observed) == (limit, limit, limit)
    for meta in metas:  # refused: stopped at the last session handled, not at the frontier
        if meta["quota_skipped"]:
            assert not meta["complete"] and meta["watermark_end"] < (as_of - SETTLE).timestamp()

    set_quotas_limit(postgres_url, 1, len(expected))
    later = as_of + timedelta(minutes=10)
    roll_for_sweeps(pg_instance, clickhouse_resource, later, FAULT_SCANNER_START, with_check=False)
    threads, results = run_threads(*[lambda s=s: sweep(pg_instance, resources, s, FAULT_DAY, later) for s in racers])
    assert all(run.success for run in joined(threads, results))
    state = stack_state(resources, pg_instance, later, local_objects(tmp_path / "objects"))
    assert set(state.observations) == expected
    assert state.quotas == {1: (len(expected), len(expected))}
    assert state.objects == set(state.batch_rows) and state.batch_rows == state.batch_observations


def set_quotas_limit(postgres_url: str, team_id: int, limit: int) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE team_quotas SET observation_limit = %s WHERE team_id = %s", (limit, team_id))


def test_two_overlapping_ticks_plan_the_same_runs_and_observe_each_session_once(
    clickhouse_resource, postgres_url, postgres_admin_url, tmp_path
):
    """Two sensor-path ticks at once: both plan before either has a run in flight
    (held at Dagster's runs table until both are creating their first run), so
    both launch every run, rollups included; their shop sweeps are then held at
    the first page until both wait there. Each session is observed once, the
    rollups equal the raw events, and the stores end as one tick would leave them."""
    sessions = generate_sessions(800, at("2026-11-20T00:05:00"), at("2026-11-20T03:00:00"), seed=23)
    rows = session_events(sessions)
    as_of = at("2026-11-20T03:00:00")
    expected = expected_observation_keys(sessions, as_of - SETTLE)
    store = object_store_for(f"file://{tmp_path / 'objects'}", S3Resource())
    resources = stack_resources(clickhouse_resource, postgres_url, store)
    with _instance_on(postgres_admin_url, tmp_path / "dagster") as (instance, dagster_url):
        seed_stack(resources, instance, [], exact_quotas(expected))
        insert_rows(clickhouse_resource, rows)
        defs, pool = build_definitions(resources), resources["postgres"].pool()
        with psycopg.connect(dagster_url) as runs_gate, psycopg.connect(postgres_url, autocommit=True) as page_gate:
            runs_gate.execute("LOCK TABLE runs IN EXCLUSIVE MODE")  # reads go on, new runs wait
            partition_gate(page_gate, "shop", FAULT_DAY)
            threads, results = run_threads(
                lambda: execute_tick(defs, instance, pool, as_of), lambda: execute_tick(defs, instance, pool, as_of)
            )
            wait_until(lambda: lock_waiters(runs_gate) == 2, 180, "both ticks creating their first run", 0.05)
            runs_gate.commit()
            wait_until(lambda: lock_waiters(page_gate) == 2, 180, "both ticks' shop sweeps at the first page", 0.05)
            release_partition(page_gate, "shop")
            reports = joined(threads, results)
        for report in reports:
            assert all(run["success"] for run in report["runs"]), report
            assert all(run.get("quota_skipped", 0) == 0 for run in report["runs"]), report  # exact limits
        planned = [sorted(run["partition"] for run in report["runs"]) for report in reports]
        # The rollup days the scanners' first sweeps read (26 h lookback and the day before), and the sweeps.
        assert planned[0] == planned[1] == sorted(["2026-11-17", "2026-11-18", "2026-11-19", FAULT_DAY.isoformat(), SHOP, WEB])
        for partition in (SHOP, WEB):
            scanner_id = partition.split("|")[1]
            total = sum(run["observed"] for report in reports for run in report["runs"] if run["partition"] == partition)
            assert total == sum(1 for s, _ in expected if s == scanner_id)
        state = stack_state(resources, instance, as_of, local_objects(tmp_path / "objects"))
    assert_store_state(state, expected, as_of - SETTLE, sessions)
    pd.testing.assert_frame_equal(rollups_frame(clickhouse_resource), expected_rollups(rows, as_of))


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    forks = Zygote(tmp_path_factory.mktemp("zygote"))
    yield forks
    forks.close()


@pytest.mark.timeout(300)
def test_two_sweep_commands_at_once_take_turns_on_the_embedded_clickhouse(zygote, postgres_admin_url, tmp_path):
    """Two `session-assets sweep --now` processes started together on one home: chDB
    lets one process open the path, so the second waits for the first to exit
    (no crash), then plans from what the first recorded. Their runs never overlap
    in time, and nothing is observed twice."""
    sessions = generate_sessions(600, at("2026-11-20T00:05:00"), at("2026-11-20T03:00:00"), seed=24)
    as_of = at("2026-11-20T03:00:00")
    expected = expected_observation_keys(sessions, as_of - SETTLE)
    home = new_home(tmp_path / "home", postgres_admin_url)
    seed_home(zygote, home, session_events(sessions), exact_quotas(expected))

    command = [str(EXECUTABLE), "sweep", "--now", as_of.isoformat()]
    both = [subprocess.Popen(command, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=280) for process in both]
    for process, (out, err) in zip(both, outputs):
        assert process.returncode == 0, err[-3000:]
    reports = [json.loads(out) for out, _ in outputs]
    with home_instance(home) as instance:
        spans = [
            [(r.start_time, r.end_time) for r in instance.get_run_records(dg.RunsFilter(run_ids=[run["run_id"] for run in report["runs"]]))]
            for report in reports
        ]
    first, second = sorted(spans, key=lambda s: min(start for start, _ in s))
    # The later one re-rolled the open day and found little else to do, all after the first had exited.
    assert max(end for _, end in first) <= min(start for start, _ in second)
    observed = sum(run.get("observed", 0) for report in reports for run in report["runs"])
    assert observed == len(expected)
    assert_store_state(home_state(zygote, home, as_of), expected, as_of - SETTLE, sessions)
