"""The command line, run as a newcomer would: separate processes, a fresh home."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

CLI = [sys.executable, "-m", "session_assets.cli"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_ASSETS_") and k != "DAGSTER_HOME"}
    env["SESSION_ASSETS_HOME"] = str(home)
    return env


def test_demo_loads_events_and_rolls_up_every_day(tmp_path):
    result = subprocess.run(
        [*CLI, "demo", "--days", "2"], env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout and "demo events" in result.stdout
    today = datetime.now(timezone.utc).date().isoformat()
    assert today in result.stdout
    assert result.stdout.count("passed") == 3 and "FAILED" not in result.stdout
    assert (tmp_path / "dagster" / "dagster.yaml").exists()


def test_user_mistakes_are_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [*CLI, "load-events", str(tmp_path / "missing.jsonl")], env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "missing.jsonl" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)  # polling a server's readiness, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(900)
def test_dev_serves_the_ui_and_materializes_rollups_through_the_run_queue(tmp_path):
    port = _free_port()
    log = open(tmp_path / "dev.log", "w")
    dev = subprocess.Popen(
        [*CLI, "dev", "--days", "1", "--port", str(port)],
        env=_env(tmp_path / "home"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=10)

        def ready():
            if dev.poll() is not None:
                raise AssertionError(f"dev exited: {(tmp_path / 'dev.log').read_text()[-3000:]}")
            try:
                return client._execute("{ version }")  # noqa: SLF001 - the public client has no ping
            except Exception:
                return None

        _wait_until(ready, 300, "the Dagster UI")
        today = datetime.now(timezone.utc).date().isoformat()
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            tags={"dagster/partition": today},
            asset_selection=[["session_counter_rollups"]],
        )
        finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        status = _wait_until(
            lambda: (s := client.get_run_status(run_id)) in finished and s, 300, "the queued run to finish"
        )
        assert status == DagsterRunStatus.SUCCESS, (tmp_path / "dev.log").read_text()[-5000:]
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
