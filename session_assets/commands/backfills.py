"""Hand backfills of (scanner, day) partitions as real Dagster backfills.

Launched through Dagster's public GraphQL API (`launchPartitionBackfill`, the
mutation the UI's "Materialize" dialog sends), executed in-process by the
`dagster-graphql` command against this code location, so no webserver is needed
and no private Dagster module is imported. The backfill daemon (`session-assets
dev`, or `dagster-daemon run` in production) launches one run per partition;
each run carries `dagster/backfill`, so the sweep recomputes its whole partition
and dedupes against live sweeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from session_assets.assets.scanning import CANDIDATE_WINDOWS, OBSERVATION_BATCHES
from session_assets.core.tick_plan import LAUNCHED_BY_TAG
from session_assets.partitions import scanner_day_key, scanner_partitions_def

DAEMON_SILENT_AFTER_S = 90.0  # the daemon beats every 30 s or so
LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""


class BackfillError(ValueError):
    """A backfill could not be launched or followed; the message says what to do."""


def partition_keys(scanner_id: str, start: date, end: date) -> list[str]:
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    if (end - start).days > 366:
        raise ValueError(f"--start {start} to --end {end} is over a year: split it")
    return [scanner_day_key(start + timedelta(days=n), scanner_id) for n in range((end - start).days + 1)]


def launch_params(scanner_id: str, start: date, end: date) -> dict:
    return {
        "partitionNames": partition_keys(scanner_id, start, end),
        "assetSelection": [{"path": key.path} for key in (CANDIDATE_WINDOWS, OBSERVATION_BATCHES)],
        "tags": [{"key": LAUNCHED_BY_TAG, "value": "backfill"}],
        "title": f"{scanner_id} {start}..{end}",
        "description": "session-assets backfill",
    }


def launch(instance: dg.DagsterInstance, scanner_id: str, start: date, end: date) -> str:
    """Submit the backfill; its id. The daemon runs it."""
    if scanner_id not in instance.get_dynamic_partitions(scanner_partitions_def.name):
        raise ValueError(f"scanner {scanner_id!r} is not a partition yet: add it with `session-assets scanners add`")
    params = launch_params(scanner_id, start, end)
    with tempfile.TemporaryDirectory(prefix="session-assets-backfill-") as folder:
        output = Path(folder) / "response.json"
        command = [
            str(Path(sys.executable).with_name("dagster-graphql")),
            "-m", "session_assets.definitions",
            "-t", LAUNCH_BACKFILL,
            "-v", json.dumps({"params": params}),
            "-o", str(output),
        ]  # fmt: skip
        done = subprocess.run(command, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not output.exists():
            raise BackfillError(f"dagster-graphql failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        response = json.loads(output.read_text())
    if response.get("errors"):
        raise BackfillError(f"launchPartitionBackfill: {response['errors'][0].get('message')}")
    result = response["data"]["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"launchPartitionBackfill: {result['__typename']}: {result.get('message', '')}")
    return str(result["backfillId"])


def progress(instance: dg.DagsterInstance, backfill_id: str) -> tuple[str, int, int, int]:
    """(status, runs succeeded, runs failed, runs in flight) of a backfill."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise BackfillError(f"no backfill {backfill_id!r} in this Dagster instance")
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    by_status = [r.dagster_run.status for r in runs]
    done = sum(s == dg.DagsterRunStatus.SUCCESS for s in by_status)
    failed = sum(s in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED) for s in by_status)
    return str(backfill.status.value), done, failed, len(by_status) - done - failed


def finished(instance: dg.DagsterInstance, backfill_id: str) -> bool:
    return progress(instance, backfill_id)[0] != "REQUESTED"


def daemon_silence(instance: dg.DagsterInstance, now: float | None = None) -> str | None:
    """Why no backfill daemon is running (None when one beat recently): a backfill waits
    REQUESTED for ever without one."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    now = time.time() if now is None else now
    if beat is None:
        return "no Dagster daemon has run on this instance"
    silent = now - beat.timestamp
    if silent > DAEMON_SILENT_AFTER_S:
        return f"the Dagster daemon's last heartbeat was {silent:.0f} s ago"
    return None
