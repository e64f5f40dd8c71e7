"""The sweep sensor on real records, and ticks driven through `execute_tick`
(the code path of `session-assets sweep`), with a store failing for a tick."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta, timezone

SETTLE = timedelta(minutes=35)
from pathlib import Path  # noqa: E402

import dagster as dg  # noqa: E402
import pytest  # noqa: E402
from dagster_aws.s3 import S3Resource  # noqa: E402

from session_assets.commands import demo, demo_data  # noqa: E402
from session_assets.definitions import build_definitions  # noqa: E402
from session_assets.stores.events_io import insert_events  # noqa: E402
from session_assets.resources import ClickHouseResource, object_store_for, PostgresResource  # noqa: E402
from session_assets.sensors import sweep_sensor  # noqa: E402
from session_assets.commands.ticks import execute_tick, status_report  # noqa: E402
from tests.support import app_database, at  # noqa: E402


def batch_partitions_of(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["sweep_partitions"]["config"]["partitions"]


def build_defs(resources: dict) -> dg.Definitions:
    return build_definitions(resources)


def new_stack(chdb_url: str, postgres_url: str, folder: Path) -> dict:
    clickhouse = ClickHouseResource(url=chdb_url, database=f"t_{uuid.uuid4().hex[:12]}")
    clickhouse.migrate()
    return {
        "clickhouse": clickhouse,
        "postgres": PostgresResource(url=postgres_url),
        "object_store": object_store_for(f"file://{folder}", S3Resource()),
    }


def test_the_sensor_registers_scanners_and_requests_due_runs(instance, chdb_url, postgres_url, tmp_path):
    resources = new_stack(chdb_url, postgres_url, tmp_path / "objects")
    defs = build_defs(resources)
    now = datetime.now().astimezone()
    demo.install_example_scanners(resources["postgres"].pool(), instance, now - timedelta(days=1))
    instance.delete_dynamic_partition("scanners", "ai-spend")  # as if added by hand in Postgres only
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
            result = sweep_sensor(context)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    # The scanners start a day ago: their first sweeps read sessions that started up to 26 h
    # earlier, and the day before that.
    first = (now - timedelta(days=1, hours=26)).astimezone(timezone.utc).date() - timedelta(days=1)
    days = [first + timedelta(days=n) for n in range((today - first).days + 1)]
    requested = [r.partition_key for r in result.run_requests]
    # Rollups first; the sweeps are queued behind them and see what they roll up.
    assert requested[: len(days)] == [d.isoformat() for d in days]
    # A day's sweep waits until its frontier (now - 35 min settle) is inside the day.
    # The due partitions go in one batch run (one process), each materialized on its own.
    sweep_days = [d for d in (yesterday, today) if now - SETTLE > datetime.combine(d, datetime.min.time(), timezone.utc)]
    (batch,) = result.run_requests[len(days) :]
    assert batch.job_name == "scanner_batch_job" and batch.partition_key is None
    assert sorted(batch_partitions_of(batch)) == sorted(f"{d}|{s}" for d in sweep_days for s in ("ai-spend", "checkout-errors", "rage-clicks"))
    assert batch.tags["session_assets/batch"] == str(len(batch_partitions_of(batch)))
    assert all(r.tags["session_assets/as_of"] for r in result.run_requests)
    assert all(r.tags["dagster/max_runtime"] == "3600" for r in result.run_requests)  # a killed worker is failed
    (added,) = result.dynamic_partitions_requests
    assert list(added.partition_keys) == ["ai-spend"]
    assert result.cursor == "1"


@pytest.mark.timeout(900)
def test_ticks_with_a_failing_store_end_where_uninterrupted_ticks_do(chdb_url, postgres_admin_url, tmp_path):

    end = at("2026-11-20T14:00:00")
    columns = demo_data.generate_events(days=1, now=end, seed=3)
    ticks = [end - timedelta(hours=2) + timedelta(minutes=20 * n) for n in range(6)]
    outcomes = {}
    for name in ("steady", "faulty"):
        folder = tmp_path / name / "objects"
        resources = new_stack(chdb_url, app_database(postgres_admin_url), folder)
        insert_events(resources["clickhouse"].client(), resources["clickhouse"].events, columns)
        defs = build_defs(resources)
        with dg.instance_for_test() as instance:
            pool = resources["postgres"].pool()
            demo.install_example_scanners(pool, instance, end - timedelta(days=1, hours=2))
            failed_runs = 0
            for n, now in enumerate(ticks):
                broken = name == "faulty" and n in (0, 1)
                if broken:  # the object store is unavailable for these ticks: its root is a file
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.move(folder, folder.with_name("aside"))
                    folder.write_text("not a folder")
                report = execute_tick(defs, instance, pool, now)
                failed_runs += sum(not run["success"] for run in report["runs"])
                if broken:
                    folder.unlink()
                    shutil.move(folder.with_name("aside"), folder)
            status = status_report(instance, pool, ticks[-1])
            with pool.connection() as conn:
                observed = conn.execute(
                    "SELECT scanner_id, session_id, verdict FROM observations ORDER BY 1, 2"
                ).fetchall()
                batches = conn.execute("SELECT object_key FROM observation_batches ORDER BY 1").fetchall()
            objects = sorted(object_store_for(f"file://{folder}", S3Resource()).list_keys())
        outcomes[name] = (observed, status, failed_runs, [b[0] for b in batches], objects)

    steady, faulty = outcomes["steady"], outcomes["faulty"]
    assert steady[2] == 0 and faulty[2] > 0  # the fault really failed runs
    assert steady[0] and faulty[0] == steady[0]  # exactly the observations of an uninterrupted run
    assert faulty[3] == faulty[4]  # every batch row has its object, no orphan object
    for scanner in faulty[1]["scanners"]:
        assert scanner["failed"] == []  # retried until it succeeded: no gap left
    assert [s["watermark_end"] for s in faulty[1]["scanners"]] == [s["watermark_end"] for s in steady[1]["scanners"]]
