"""The command line, run as a newcomer would: separate processes, a fresh home."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import DagsterRunStatus

from tests.support import DevProcess, cli_env, listening_addresses, wait_until

CLI = [sys.executable, "-m", "session_assets.cli"]


def test_demo_loads_events_and_rolls_up_every_day(tmp_path):
    result = subprocess.run(
        [*CLI, "demo", "--days", "2"], env=cli_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout and "demo events" in result.stdout
    today = datetime.now(timezone.utc).date().isoformat()
    assert today in result.stdout
    assert result.stdout.count("passed") == 4 + 3 * 3 and "FAILED" not in result.stdout  # 4 rollup days, 3 scanners x 3 days
    assert all(f"({n} of 4)" in result.stdout for n in range(1, 5))  # progress, a day at a time
    for scanner_id in ("checkout-errors", "ai-spend", "rage-clicks"):
        assert scanner_id in result.stdout
    assert (tmp_path / "dagster" / "dagster.yaml").exists()


def test_user_mistakes_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [*CLI, "load-events", str(tmp_path / "missing.jsonl")], env=cli_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "missing.jsonl" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_load_events_into_a_missing_events_table_is_one_line_naming_it(tmp_path):
    """Issue #14: SESSION_ASSETS_EVENTS_TABLE naming no table gave a raw DatabaseError traceback at the first insert."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"e","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1,"properties":{}}\n')
    for table in ("missing", "nowhere.missing"):
        env = {**cli_env(tmp_path / "home"), "SESSION_ASSETS_EVENTS_TABLE": table}
        result = subprocess.run([*CLI, "load-events", str(path)], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "does not exist" in line and f"SESSION_ASSETS_EVENTS_TABLE='{table}'" in line, line
        assert ("session_assets.missing" if table == "missing" else "nowhere.missing") in line


def test_sweep_on_a_fresh_embedded_home_prepares_its_own_stores(tmp_path):
    """The embedded stack owns its stores: `sweep` first thing in a new home migrates chDB
    (as the stack's start-up migrates its Postgres) and rolls up, instead of failing every run."""
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    result = subprocess.run(
        [*CLI, "sweep", "--now", now], env=cli_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["runs"] and all(run["success"] for run in report["runs"]), report


@pytest.mark.timeout(900)
def test_dev_serves_the_ui_and_materializes_rollups_through_the_run_queue(tmp_path):
    dev = DevProcess(tmp_path / "home", tmp_path / "dev.log", "--days", "1")
    try:
        dev.wait_ready()
        # Dagster's UI has no login: reachable from this machine only.
        assert listening_addresses(dev.port) == {"127.0.0.1"}
        client = dev.client
        today = datetime.now(timezone.utc).date().isoformat()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            tags={"dagster/partition": today},
            asset_selection=[["session_counter_rollups"]],
        )
        finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        status = wait_until(
            lambda: (s := client.get_run_status(run_id)) in finished and s, 300, "the queued run to finish"
        )
        assert status == DagsterRunStatus.SUCCESS, dev.log_tail()

        # A (scanner, day) partition, as an analyst launches it from the UI.
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            tags={
                "dagster/partition": f"{today}|checkout-errors",
                "dagster/partition/date": today,
                "dagster/partition/scanner": "checkout-errors",
            },
            asset_selection=[["scanner_candidate_windows"], ["observation_batches"]],
        )
        status = wait_until(
            lambda: (s := client.get_run_status(run_id)) in finished and s, 300, "the sweep run to finish"
        )
        assert status == DagsterRunStatus.SUCCESS, dev.log_tail()
        records = client._execute(  # noqa: SLF001
            """query { assetOrError(assetKey: {path: ["observation_batches"]}) { ... on Asset {
                 assetMaterializations(limit: 1) { partition metadataEntries { label } } } } }"""
        )
        (latest,) = records["assetOrError"]["assetMaterializations"]
        assert latest["partition"] == f"{today}|checkout-errors"
        labels = {entry["label"] for entry in latest["metadataEntries"]}
        assert {"watermark_end", "watermark_session_id", "frontier", "observed", "batch_keys"} <= labels
    finally:
        dev.stop(terminate_only_dev=True)  # SIGTERM to dev alone: dg dev, its daemon, servers and Postgres go too


def test_dev_binds_the_ui_to_loopback_unless_told_otherwise(tmp_path):
    from session_assets.cli import dev, dg_dev_command

    (host,) = [param for param in dev.params if param.name == "host"]
    assert host.default == "127.0.0.1"
    command = dg_dev_command(tmp_path / "workspace.yaml", host.default, 3000)
    assert command[1] == "dev" and command[command.index("-h") + 1] == "127.0.0.1"
    assert dg_dev_command(tmp_path / "workspace.yaml", "0.0.0.0", 3001)[-4:] == ["-h", "0.0.0.0", "-p", "3001"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=cli_env(home), capture_output=True, text=True, timeout=300)


def test_scanners_commands(tmp_path):
    good = tmp_path / "scanners.yaml"
    good.write_text(
        "- {id: checkout, team_id: 1, name: Checkout, kind: match}\n"
        "- {id: spend, team_id: 2, name: Spend, kind: ai_cost, rule: {max_cost_usd: 1}}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: Bad_Id\nteam_id: 1\nname: x\nkind: match\nfilter: {counters: {exception_count: {gte: lots}}}\n")

    added = _cli(tmp_path, "scanners", "add", str(good))
    assert added.returncode == 0, added.stderr
    assert "added scanner checkout" in added.stdout and "added scanner spend" in added.stdout

    rejected = _cli(tmp_path, "scanners", "add", str(bad))
    assert rejected.returncode == 1 and "Traceback" not in rejected.stderr
    assert "bad.yaml" in rejected.stderr and "filter.counters.exception_count.gte" in rejected.stderr and "'lots'" in rejected.stderr

    assert _cli(tmp_path, "scanners", "disable", "checkout").returncode == 0
    enabled = _cli(tmp_path, "scanners", "enable", "spend", "--from-now")
    assert enabled.returncode == 0 and "restarting at" in enabled.stdout
    assert _cli(tmp_path, "scanners", "remove", "spend").returncode == 0

    listed = _cli(tmp_path, "scanners", "list")
    assert listed.returncode == 0
    assert "checkout" in listed.stdout and "spend" not in listed.stdout and " no " in listed.stdout

    unknown = _cli(tmp_path, "scanners", "enable", "nope")
    assert unknown.returncode == 1 and "no scanner with id 'nope'" in unknown.stderr


def test_a_backfill_waited_on_with_no_daemon_is_launched_and_says_what_it_waits_for(tmp_path):
    """Issue #13: launched through the public GraphQL API; `--wait` with no daemon running
    printed REQUESTED for ever."""
    scanners = tmp_path / "scanners.yaml"
    scanners.write_text("- {id: checkout, team_id: 1, name: Checkout, kind: match}\n")
    assert _cli(tmp_path, "scanners", "add", str(scanners)).returncode == 0
    waited = _cli(tmp_path, "backfill", "--scanner", "checkout", "--start", "2024-03-01", "--end", "2024-03-02", "--wait")
    assert waited.returncode == 1 and "Traceback" not in waited.stderr, waited.stdout + waited.stderr
    assert "backfill " in waited.stdout and "checkout 2024-03-01..2024-03-02" in waited.stdout
    assert "waiting for a Dagster daemon" in waited.stderr and "no Dagster daemon has run" in waited.stderr
    assert "session-assets dev" in waited.stderr


def test_scanner_names_print_as_written_never_as_rich_markup(tmp_path):
    """Issue #14: a scanner named `[/]` broke `scanners list` (rich markup), and a name could plant a
    terminal hyperlink (`[link=...]`, or the escape sequence itself)."""
    names = ["[/]", "[link=http://x]a[/link]", "[bold red]loud", "\x1b]8;;http://x\x1b\\b\x1b]8;;\x1b\\"]
    path = tmp_path / "odd [names].yaml"
    path.write_text("".join(f"- {{id: odd-{n}, team_id: 1, name: {json.dumps(name)}, kind: match}}\n" for n, name in enumerate(names)))

    added = _cli(tmp_path, "scanners", "add", str(path))
    assert added.returncode == 0, added.stderr
    listed = _cli(tmp_path, "scanners", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    for shown in ("[/]", "[link=http://x]a[/link]", "[bold red]loud", "\\x1b]8;;http://x\\x1b\\b"):
        assert shown in listed.stdout, (shown, listed.stdout)
    assert "\x1b" not in listed.stdout

    loaded = tmp_path / "[bold]events.jsonl"  # a file name cannot hold "/"
    loaded.write_text('{"event":"e","distinct_id":"d","timestamp":"2024-05-01T00:00:00Z","team_id":1}\n')
    result = _cli(tmp_path, "load-events", str(loaded))
    assert result.returncode == 0, result.stderr
    assert "[bold]events.jsonl in 1 batches" in " ".join(result.stdout.split())
    # Not a terminal: progress comes as lines, with the file's total known from the first.
    assert "[bold]events.jsonl: 0 of 1 rows (0%)" in " ".join(result.stdout.split())
    assert "[bold]events.jsonl: 1 of 1 rows (100%)" in " ".join(result.stdout.split())


def test_the_readmes_hand_materialize_recipe_works_while_up_runs(tmp_path):
    """Issue #13: `session-assets env` alone starts the embedded Postgres, prints and exits, and
    the server goes with it; `up` keeps the stack up for `dagster` commands in another shell."""
    import os
    import shlex
    import signal

    up = subprocess.Popen([*CLI, "up"], env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "stack up" in up.stderr.readline()  # blocks until the stack is up
        printed = _cli(tmp_path, "env")
        assert printed.returncode == 0, printed.stderr
        env = dict(cli_env(tmp_path))
        for line in printed.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
        day = datetime.now(timezone.utc).date().isoformat()
        materialized = subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", "session_assets.definitions",
             "--select", "session_counter_rollups", "--partition", day],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert materialized.returncode == 0, materialized.stderr[-3000:]
        assert "RUN_SUCCESS" in materialized.stderr + materialized.stdout
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0
    assert os.path.isdir(tmp_path / "postgres")
