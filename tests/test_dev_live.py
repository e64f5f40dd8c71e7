"""`session-assets dev` left to run by itself: the sensor's ticks retry a failed
partition until it succeeds, and a hand backfill launched while the sensor sweeps
double-counts nothing."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
import pytest

from tests.support import DevProcess, wait_until

BROKEN = "checkout-errors"  # its stored filter is broken, then mended, while dev runs
BACKFILLED = "ai-spend"


@pytest.mark.timeout(900)
def test_dev_retries_a_failed_partition_until_it_succeeds_and_a_backfill_beside_sweeps_double_counts_nothing(tmp_path):
    # Ticks every 20 s and a first retry after 5 s, so a few ticks fit in a test.
    dev = DevProcess(
        tmp_path / "home",
        tmp_path / "dev.log",
        "--days", "1",
        env={"SESSION_ASSETS_SWEEP_INTERVAL_SECONDS": "20", "SESSION_ASSETS_RETRY_BACKOFF_SECONDS": "5"},
    )  # fmt: skip
    try:
        dev.wait_ready()
        today = datetime.now(timezone.utc).date().isoformat()
        partition = f"{today}|{BROKEN}"

        def partition_runs(status: str | None = None) -> list[dict]:
            dev.alive()
            runs = [r for r in dev.runs("dagster/partition", partition) if r["tags"].get("session_assets/sweep") == "sensor"]
            return [r for r in runs if status is None or r["status"] == status]

        wait_until(lambda: partition_runs("SUCCESS"), 480, f"a sensor run of {partition} to succeed", 1.0)

        env_lines = dev.cli("env").stdout.splitlines()
        postgres_url = next(l.split("=", 1)[1].strip("'") for l in env_lines if l.startswith("export SESSION_ASSETS_POSTGRES_URL="))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            (good_filter,) = conn.execute("SELECT filter FROM scanners WHERE id = %s", (BROKEN,)).fetchone()
            conn.execute("UPDATE scanners SET filter = %s WHERE id = %s", (json.dumps({"no_such_key": 1}), BROKEN))
        broken_after = {r["runId"] for r in partition_runs()}

        def failed_again() -> list[dict]:
            failed = [r for r in partition_runs("FAILURE") if r["runId"] not in broken_after]
            return failed if len(failed) >= 2 else []

        failed = wait_until(failed_again, 480, f"two failed sensor runs of {partition}", 1.0)
        assert len({r["runId"] for r in failed}) == len(failed)  # every retry is a new run
        assert sorted(int(r["tags"]["session_assets/attempt"]) for r in failed)[-1] >= 1  # retried after a failure
        report = json.loads(dev.cli("status", "--json").stdout)
        (row,) = [s for s in report["scanners"] if s["id"] == BROKEN]
        assert today in row["failed"], row

        # A hand backfill of another scanner's day while the sensor goes on sweeping it.
        backfill = dev.cli("backfill", "--scanner", BACKFILLED, "--start", today, "--end", today, "--wait")
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr + dev.log_tail()

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE scanners SET filter = %s WHERE id = %s", (json.dumps(good_filter), BROKEN))
        mended_after = {r["runId"] for r in partition_runs()}
        wait_until(
            lambda: [r for r in partition_runs("SUCCESS") if r["runId"] not in mended_after],
            480, f"a sensor retry of {partition} to succeed once mended", 1.0,
        )  # fmt: skip
        report = json.loads(dev.cli("status", "--json").stdout)
        (row,) = [s for s in report["scanners"] if s["id"] == BROKEN]
        assert row["failed"] == [], row

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            per_scanner = conn.execute(
                "SELECT o.scanner_id, count(*), count(DISTINCT o.session_id), "
                "(SELECT coalesce(sum(rows), 0) FROM observation_batches b WHERE b.scanner_id = o.scanner_id) "
                "FROM observations o GROUP BY o.scanner_id"
            ).fetchall()
            quota = dict(conn.execute("SELECT team_id, sum(used) FROM team_quotas GROUP BY team_id").fetchall())
            per_team = dict(conn.execute("SELECT team_id, count(*) FROM observations GROUP BY team_id").fetchall())
        assert any(scanner == BACKFILLED for scanner, *_ in per_scanner), per_scanner
        for scanner, rows, sessions, batch_rows in per_scanner:
            # Each observation was written once, in exactly one batch: the backfill and
            # the sweeps never both counted a session.
            assert rows == sessions == batch_rows, (scanner, rows, sessions, batch_rows)
        assert {t: int(n) for t, n in quota.items() if n} == per_team
    finally:
        dev.stop()
