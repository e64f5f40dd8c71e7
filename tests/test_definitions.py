from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresRunStorage

from session_assets.stores import postgres
from session_assets.commands import stack
from session_assets.definitions import defs

REPO = Path(__file__).resolve().parent.parent


def test_definitions_load_with_lineage_and_descriptions():
    graph = defs.resolve_asset_graph()
    rollups = graph.get(dg.AssetKey("session_counter_rollups"))
    assert rollups.parent_keys == {dg.AssetKey("events")}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    assert "dagster/column_schema" in specs[dg.AssetKey("session_counter_rollups")].metadata
    assert defs.resolve_asset_graph().asset_check_keys


def test_dagster_yaml_points_dagster_at_postgres(tmp_path, postgres_admin_url, monkeypatch):
    postgres.ensure_database(postgres_admin_url, "dagster_yaml_test")
    url = postgres.sqlalchemy_url(postgres.with_database(postgres_admin_url, "dagster_yaml_test"))
    monkeypatch.setenv("SESSION_ASSETS_DAGSTER_POSTGRES_URL", url)
    monkeypatch.setenv("SESSION_ASSETS_MAX_CONCURRENT_RUNS", "1")
    stack.install_dagster_yaml(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 1
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        # An event write goes through: the psycopg2 scheme is right (DAGSTER_NOTES).
        result = dg.materialize([probe], instance=instance)
        assert result.success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


@dg.asset
def probe() -> None:
    return None


def test_no_secret_in_dagster_yaml():
    text = open(stack.DAGSTER_YAML).read()
    assert "postgresql://" not in text and "password" not in text.lower()


def test_the_code_location_loads_as_the_webserver_loads_it():
    """Sensor targets, jobs and partitions must resolve together (`dagster definitions validate`)."""
    dg.Definitions.validate_loadable(defs)
    for job in defs.resolve_all_job_defs():
        assert job.name  # resolving every job raises on mixed partitions definitions
    assert defs.resolve_sensor_def("sweep_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def test_every_clickhouse_assets_table_name_and_columns_exist(clickhouse_resource):
    """What an analyst reads in the UI (`dagster/table_name`, the column schema) is
    what ClickHouse holds after the migrations."""
    client = clickhouse_resource.client()
    checked = 0
    for spec in defs.resolve_all_asset_specs():
        qualified = spec.metadata.get("dagster/table_name")
        if "clickhouse" not in spec.kinds or not qualified:
            continue
        database, _, table = qualified.rpartition(".")
        assert database, f"{spec.key.to_user_string()}: {qualified} is not qualified with its database"
        columns = {
            row[0]
            for row in client.query(
                "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}", parameters={"t": table}
            ).result_rows
        }
        assert columns, f"{spec.key.to_user_string()}: no table {table}"
        schema = spec.metadata.get("dagster/column_schema")
        if schema is not None:
            named = {c.name for c in schema.columns}
            assert named and named <= columns, (spec.key, table, named - columns)
        checked += 1
    assert checked >= 3  # events, rollups, candidates


@pytest.mark.parametrize(
    "command", [["dagster", "definitions", "validate"], ["dg", "check", "defs"]], ids=lambda c: " ".join(c)
)
def test_stock_tools_load_the_code_location_in_a_checkout_with_no_environment(tmp_path, command):
    """In the repo, no DAGSTER_HOME and no SESSION_ASSETS_* variable: they read the checkout's
    dagster.yaml, and `[tool.dagster]` / `[tool.dg]` name the same module and location."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_ASSETS_", "DAGSTER_"))}
    env["HOME"] = str(tmp_path)  # nothing of the user's
    done = subprocess.run(
        [str(Path(sys.executable).with_name(command[0])), *command[1:]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "loaded successfully" in output or "Validation successful" in output, output[-2000:]


def test_rollups_and_observation_batches_are_fresh_within_the_latency_goal():
    """Issue #13: the UI shows them stale when not updated within 45 minutes (the latency goal)."""
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key in ("session_counter_rollups", "observation_batches"):
        policy = specs[dg.AssetKey(key)].freshness_policy
        assert policy is not None and policy.fail_window.to_timedelta().total_seconds() == 45 * 60, key


SNAPSHOT = REPO / "tests" / "snapshots" / "definitions.json"
UPDATE_SNAPSHOT_VAR = "SESSION_ASSETS_UPDATE_SNAPSHOT"


def _partitions_shape(partitions_def: dg.PartitionsDefinition | None) -> object:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return {d.name: _partitions_shape(d.partitions_def) for d in partitions_def.partitions_defs}
    if isinstance(partitions_def, dg.DynamicPartitionsDefinition):
        return f"dynamic:{partitions_def.name}"
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The start date is configuration (SESSION_ASSETS_START_DATE), not shape.
        return f"time:{partitions_def.cron_schedule} {partitions_def.timezone} end_offset={partitions_def.end_offset}"
    return type(partitions_def).__name__


def definitions_shape() -> dict:
    """What a code change must not alter by accident: assets, their partitions, lineage and
    checks, the jobs and sensors, and the metadata keys partitions keep their state in."""
    from session_assets.core import records

    graph = defs.resolve_asset_graph()
    return {
        "assets": {
            key.to_user_string(): {
                "partitions": _partitions_shape(graph.get(key).partitions_def),
                "upstream": sorted(k.to_user_string() for k in graph.get(key).parent_keys),
                "checks": sorted(c.name for c in graph.get(key).check_keys),
                "kinds": sorted(graph.get(key).kinds),
                "observable": graph.get(key).is_observable,
            }
            for key in sorted(graph.get_all_asset_keys())
        },
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs()),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
        "state_metadata_keys": sorted(
            value for name, value in vars(records).items() if name.isupper() and isinstance(value, str)
        ),
    }


def test_the_definitions_keep_their_shape():
    import json

    shape = definitions_shape()
    if os.environ.get(UPDATE_SNAPSHOT_VAR):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(shape, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert shape == expected, (
        f"the code location's shape changed (a renamed metadata key strands every partition's watermark). "
        f"If intended, run `{UPDATE_SNAPSHOT_VAR}=1 pytest {Path(__file__).name}` and review the diff of {SNAPSHOT.relative_to(REPO)}"
    )
