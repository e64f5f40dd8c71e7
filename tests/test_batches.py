"""Issue #12: sweeps batched per tick. One run sweeps many (scanner, day) partitions, the
candidates of a team and day in one pass over the rollups, and each partition keeps its
own materialization records. Real chDB, pgserver and a local object store."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from session_assets.commands import demo_data
from session_assets.core import watermarks
from session_assets.assets.scanning import OBSERVATION_BATCHES, SweepRecords, _candidates_pass, plan_sweep
from session_assets.batches import BATCH_TAG, FAILURE_KEY, batch_run_config, crash_suspect, processing_order
from session_assets.definitions import build_definitions
from session_assets.stores.events_io import insert_events
from session_assets.core.run_context import latest_materializations
from session_assets.scanners import store
from session_assets.core.run_context import AS_OF_TAG
from session_assets.tick_state import read_tick_state
from session_assets.commands.ticks import execute_request, execute_tick
from session_assets.core.tick_plan import LAUNCHED_BY_TAG, plan_tick
from tests.support import add_scanner, at, observed, roll_for_sweeps

END = at("2026-11-20T14:00:00")
DAY = END.date()

# Filter shapes a pass has to keep apart: counters, duration, event and property
# conditions (subqueries with their own bound window), samples, all-pass.
SCANNERS: dict[str, dict[str, Any]] = {
    "errors": {"filter": {"counters": {"exception_count": {"gte": 1}}}},
    "long": {"filter": {"min_duration_seconds": 120}, "sample_rate": 0.5},
    "checkout": {
        "filter": {"events": [{"event": "$pageview", "properties": [{"key": "$current_url", "op": "icontains", "value": "/checkout"}]}]}
    },
    "pages": {"filter": {"counters": {"pageview_count": {"gte": 3}}}},
    "all": {"filter": {}, "sample_rate": 0.3},
    "ai": {"filter": {"counters": {"ai_generation_count": {"gte": 1}}}},
}


@pytest.fixture
def resources(clickhouse_resource, postgres_resource, local_object_store) -> dict[str, Any]:
    return {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": local_object_store}


def load_day(resources: dict[str, Any], seed: int = 5) -> None:
    columns = demo_data.generate_events(days=1, now=END, seed=seed, teams=(1, 2))
    insert_events(resources["clickhouse"].client(), resources["clickhouse"].events, columns)


def add_scanners(instance, resources, start: datetime) -> None:
    for n, (scanner_id, definition) in enumerate(SCANNERS.items()):
        add_scanner(instance, resources["postgres"], scanner_id=scanner_id, team_id=1 + n % 2,
                    start_at=start.isoformat(), **definition)  # fmt: skip


def candidate_rows(clickhouse, window_id: str) -> set[tuple]:
    rows = clickhouse.client().query(
        "SELECT scanner_id, session_id, session_end, late, sampled, event_count, entry_url FROM scanner_candidates "
        "WHERE window_id = {w:String}",
        parameters={"w": window_id},
    ).result_rows
    return set(rows)


def test_one_pass_for_many_scanners_finds_what_a_pass_per_scanner_finds(instance, resources):
    """Each scanner's window (its own watermark, late mark, frontier), filter and sample
    applied inside one pass give exactly the rows of a pass of its own."""
    load_day(resources)
    add_scanners(instance, resources, END - timedelta(days=1))
    as_of = END
    roll_for_sweeps(instance, resources["clickhouse"], as_of, END - timedelta(days=1), with_check=False)
    records = SweepRecords(instance)
    plans = []
    for n, scanner_id in enumerate(SCANNERS):
        plan = plan_sweep(records, f"{DAY}|{scanner_id}", store.get(resources["postgres"].pool(), scanner_id), as_of)
        # Watermarks of their own: some mid-day with a session id, some with late marks.
        mark = watermarks.Watermark(at("2026-11-20T04:00:00") + timedelta(minutes=37 * n), f"s{n}" if n % 2 else "",
                                    at("2026-11-20T09:00:00") if n % 3 == 0 else None)  # fmt: skip
        start = watermarks.StartingPoint(mark, "test")
        bounds = watermarks.window(mark, plan.bounds.watermark.end - timedelta(days=1))
        plans.append(dataclasses.replace(plan, start=start, bounds=bounds, read_days=bounds.read_days(as_of)))
    teams = {p.scanner.team_id for p in plans}
    assert len(teams) == 2
    for team in teams:
        group = [p for p in plans if p.scanner.team_id == team]
        shared = _candidates_pass(resources["clickhouse"], group)
        assert len({o.window_id for o in shared}) == 1
        together = candidate_rows(resources["clickhouse"], shared[0].window_id)
        alone: set[tuple] = set()
        for plan in group:
            (outcome,) = _candidates_pass(resources["clickhouse"], [plan])
            alone |= candidate_rows(resources["clickhouse"], outcome.window_id)
            found = next(o for o in shared if o.plan.scanner.id == plan.scanner.id)
            assert found.counts == outcome.counts, plan.scanner.id
        assert together == alone
        assert len({row[0] for row in together}) >= 2  # several scanners found something


def test_a_batch_with_a_broken_scanner_materializes_the_others_and_retries_only_it(instance, resources):
    load_day(resources)
    start = END - timedelta(days=1)
    add_scanners(instance, resources, start)
    add_scanner(instance, resources["postgres"], scanner_id="broken", team_id=1, start_at=start.isoformat())
    with resources["postgres"].pool().connection() as conn:
        conn.execute("""UPDATE scanners SET filter = '{"counters": {"bogus_count": {"gte": 1}}}' WHERE id = 'broken'""")
    defs = build_definitions(resources)
    pool = resources["postgres"].pool()

    first = execute_tick(defs, instance, pool, END)
    by_partition = {r["partition"]: r for r in first["runs"] if "|" in r["partition"]}
    broken = f"{DAY}|broken"
    for key in (broken, f"{DAY - timedelta(days=1)}|broken"):  # its two days
        assert by_partition[key]["success"] is False and "bogus_count" in by_partition[key]["error"]
    others = [k for k in by_partition if not k.endswith("|broken")]
    assert len(others) == 2 * len(SCANNERS) and all(by_partition[k]["success"] for k in others)
    assert len({by_partition[k]["run_id"] for k in by_partition}) == 1  # one batch run
    # Every other partition's watermark is in its own materialization records.
    stored = latest_materializations(instance, OBSERVATION_BATCHES, others)
    assert set(stored) == set(others)
    for key in others:
        assert stored[key]["watermark_end"] == datetime.fromisoformat(by_partition[key]["watermark_end"]).timestamp()
    assert any(observed(resources["postgres"], s) for s in SCANNERS)
    # The failure is on the partition, for the UI and the sensor.
    failure = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=OBSERVATION_BATCHES, asset_partitions=[broken]), limit=1
    ).records[0].asset_observation
    assert "bogus_count" in failure.metadata[FAILURE_KEY].value

    # The next tick after the backoff: the broken partition alone in a run of its own, as a retry.
    later = END + timedelta(minutes=10)
    plan = plan_tick(read_tick_state(instance, pool, later))
    retried = [r for r in plan.requests if r.alone]
    assert sorted(r.partition_key for r in retried) == sorted(k for k in by_partition if k.endswith("|broken"))
    second = execute_tick(defs, instance, pool, later)
    runs = {r["partition"]: r for r in second["runs"] if "|" in r["partition"]}
    assert runs[broken]["success"] is False
    assert runs[broken]["run_id"] not in {runs[k]["run_id"] for k in runs if not k.endswith("|broken")}
    assert all(runs[k]["success"] for k in runs if not k.endswith("|broken"))


def test_a_batch_as_of_the_future_fails_whole_and_records_nothing(instance, resources):
    add_scanners(instance, resources, END - timedelta(days=1))
    defs = build_definitions(resources)
    result = defs.resolve_job_def("scanner_batch_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"sweep_partitions": {"config": {"partitions": [f"{date.today() + timedelta(days=3)}|errors"]}}}},
        tags={"session_assets/as_of": (datetime.now().astimezone() + timedelta(days=3)).isoformat()},
        raise_on_error=False,
    )
    assert not result.success
    assert result.get_asset_materialization_events() == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "ahead of the clock" in str(failure.event_specific_data.error)


def test_processing_order_is_day_by_day_in_the_order_given():
    keys = ["2026-11-20|b", "2026-11-19|c", "2026-11-20|a", "2026-11-19|a", "2026-11-20|b"]
    assert processing_order(keys) == ["2026-11-19|c", "2026-11-19|a", "2026-11-20|b", "2026-11-20|a"]
    assert crash_suspect(processing_order(keys), {"2026-11-19|c"}) == "2026-11-19|a"
    assert crash_suspect(["2026-11-19|c"], {"2026-11-19|c"}) is None


def test_a_batch_that_stopped_whole_has_the_partition_it_was_sweeping_retried_alone(instance, resources):
    """A batch killed mid-way (a crash, an out-of-memory kill) records nothing for the partition
    it was on. Retried with the others, a partition that crashes its process would stop them
    all on every tick; so the first partition the batch left unrecorded is retried alone, and
    the rest with the next batch."""
    load_day(resources)
    add_scanners(instance, resources, END - timedelta(days=1))
    defs = build_definitions(resources)
    pool = resources["postgres"].pool()
    first = execute_tick(defs, instance, pool, END)
    assert all(r["success"] for r in first["runs"])

    # The next tick's batch: it materialized `errors` (its run of its own stands in for the
    # batch's record), then its process died on `checkout`, before `pages`.
    stopped_at = END + timedelta(minutes=5)
    done, crashed, unreached = (f"{DAY}|{s}" for s in ("errors", "checkout", "pages"))
    tags = {AS_OF_TAG: stopped_at.isoformat(), LAUNCHED_BY_TAG: "sensor"}
    (summary,) = execute_request(
        defs, instance, dg.RunRequest(job_name="scanner_partition_job", partition_key=done, run_key="own", tags=tags)
    )
    assert summary["success"], summary
    batch = instance.create_run_for_job(
        defs.resolve_job_def("scanner_batch_job"),
        run_config=batch_run_config([crashed, done, unreached]),  # swept in the order given
        tags={**tags, BATCH_TAG: "3"},
    )
    instance.report_run_failed(batch, "the run worker was killed")

    plan = plan_tick(read_tick_state(instance, pool, stopped_at + timedelta(minutes=10)))
    by_key = {r.partition_key: r for r in plan.requests}
    assert by_key[crashed].alone and by_key[crashed].attempt == 1
    assert not by_key[unreached].alone and by_key[unreached].attempt == 1  # retried with the next batch
    assert not by_key[done].alone and by_key[done].attempt == 0
