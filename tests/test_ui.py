"""`session-assets dev` end to end, left to run by itself: the sensor's own runs,
the UI seen through Debian's headless Chromium driven by Playwright (no downloaded
browser: the README's test command installs the `chromium` package), a failed partition
retried by the sensor until it succeeds, and a hand backfill beside the sweeps."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.support import DevProcess, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASSETS = ("events", "session_counter_rollups", "scanner_candidate_windows", "observation_batches")
METADATA_LABELS = ("watermark_end", "watermark_session_id", "frontier", "observed", "summary", "flagged_sessions")
POSTHOG_URL = "https://posthog.example.test"  # flagged-session previews link to its replays
LAUNCHED_BY_TAG = "session_assets/launched_by"  # set by the sensor on the runs it requests
# Groups are collapsed by default on the global lineage page; `expanded` opens them.
GRAPH_PATH = "/asset-groups?expanded=global@global:sessions,global@global:scanning"
# Dagster's "Join the Dagster community" dialog covers the page on localhost until dismissed.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"

ROLLUP_PARTITIONS = """query {
  assetNodes(assetKeys: [{path: ["session_counter_rollups"]}]) {
    partitionStats { numMaterialized numPartitions numFailed } } }"""
EVENTS_NODE = """query {
  assetNodes(assetKeys: [{path: ["events"]}]) {
    kinds owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    assetObservations(limit: 1) { timestamp metadataEntries { label } } } }"""
LATEST_MATERIALIZATION = """query {
  assetOrError(assetKey: {path: ["observation_batches"]}) { ... on Asset {
    assetMaterializations(partitions: [%s], limit: %d) {
      partition runId
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on BoolMetadataEntry { boolValue }
        ... on MarkdownMetadataEntry { mdStr } } } } } }"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory):
    """One `dev` for this module: the UI test looks first, then the live test acts."""
    folder = tmp_path_factory.mktemp("dev")
    process = DevProcess(
        folder / "home",
        folder / "dev.log",
        "--days", "1",
        # Ticks every 20 s and a first retry after 5 s, so several ticks fit in a test.
        env={
            "SESSION_ASSETS_SWEEP_INTERVAL_SECONDS": "20",
            "SESSION_ASSETS_RETRY_BACKOFF_SECONDS": "5",
            "SESSION_ASSETS_POSTHOG_URL": POSTHOG_URL,
        },
    )  # fmt: skip
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.mark.timeout(900)
def test_ui_shows_the_asset_graph_and_a_swept_partitions_metadata(dev, tmp_path):
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium "
            "(`apt-get install -y chromium`, as the README's test command does); Playwright must not download a browser"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")

    base = f"http://127.0.0.1:{dev.port}"
    client = dev.client

    # The daemon's first tick of `sweep_sensor` requests rollup runs and a batch run sweeping
    # the (scanner, day) partitions, which the queued run coordinator executes one at a time.
    def sensor_sweeps() -> list[dict]:
        return [r for r in dev.runs(LAUNCHED_BY_TAG, "sensor") if any("|" in p for p in r["partitions"])]

    def materializations(partition: str, limit: int) -> list[dict]:
        found = client._execute(LATEST_MATERIALIZATION % (json.dumps(partition), limit))  # noqa: SLF001
        return [
            {**m, "metadata": {e["label"]: e for e in m["metadataEntries"]}}
            for m in found["assetOrError"]["assetMaterializations"]
        ]

    def a_finished_sweep():
        dev.alive()
        sweeps = sensor_sweeps()
        failed = [r for r in sweeps if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, f"sensor sweep runs failed: {failed}\n{dev.log_tail()}"
        return sorted((r for r in sweeps if r["status"] == "SUCCESS"), key=lambda r: r["endTime"])

    first = wait_until(a_finished_sweep, 480, "a sensor-launched sweep run to succeed", 1.0)[0]
    # Each partition of a batch has its own materialization, with its own watermark and a
    # preview of what it flagged. A completed day's partition is not swept again, so its
    # latest materialization stays the one with the flagged sessions: prefer one of those.
    swept = {p: materializations(p, 1)[0] for p in first["partitions"] if "|" in p}
    for latest in swept.values():
        assert set(METADATA_LABELS) <= set(latest["metadata"]), latest["metadata"]
    flagging = [p for p, m in swept.items() if m["metadata"]["flagged"]["intValue"] > 0]
    assert flagging, f"the first sweep flagged nothing: {swept}"
    partition = min(flagging, key=lambda p: not swept[p]["metadata"]["complete"]["boolValue"])
    preview = swept[partition]["metadata"]["flagged_sessions"]["mdStr"]
    assert f"]({POSTHOG_URL}/project/" in preview and "/replay/" in preview, preview
    print(f"\nsensor run {first['runId']} swept {len(first['partitions'])} partitions, {partition} among them")

    # `events`, the source: its kind and owner shown, and observed by the rollup runs.
    (events_node,) = client._execute(EVENTS_NODE)["assetNodes"]  # noqa: SLF001
    assert events_node["kinds"] == ["clickhouse"], events_node
    assert events_node["owners"] == [{"team": "data-platform"}], events_node
    (observed_events,) = events_node["assetObservations"]
    assert {"events_last_2_days", "newest_inserted_at"} <= {e["label"] for e in observed_events["metadataEntries"]}

    # The lineage's rollup partitions begin where the demo data does: all of them filled.
    (rollups_node,) = client._execute(ROLLUP_PARTITIONS)["assetNodes"]  # noqa: SLF001
    stats = rollups_node["partitionStats"]
    assert stats["numMaterialized"] == stats["numPartitions"] and stats["numPartitions"] <= 4, stats

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 2200, "height": 1100})
            context.add_init_script(DISMISS_COMMUNITY_DIALOG)
            page = context.new_page()
            page.set_default_timeout(60_000)

            # 1. The lineage: every asset by name, with its latest materialization loaded.
            page.goto(base + GRAPH_PATH)
            graph = page.locator("svg foreignObject")
            for name in ASSETS:
                graph.get_by_text(name, exact=True).first.wait_for()
            node = graph.filter(has=page.get_by_text("observation_batches", exact=True)).filter(
                has_text="Latest event"
            )
            node.get_by_text(re.compile(r" ago$")).first.wait_for()
            graph_png = tmp_path / "graph.png"
            page.screenshot(path=str(graph_png))

            # 2. The partition the sensor swept: its latest materialization's metadata.
            page.set_viewport_size({"width": 1800, "height": 1500})
            page.goto(f"{base}/assets/observation_batches?view=partitions&partition={quote(partition)}")
            page.get_by_text(partition, exact=True).first.wait_for()
            page.get_by_text("Materialized", exact=True).first.wait_for()
            rows = {}
            for label in METADATA_LABELS:
                row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
                row.wait_for()
                rows[label] = row.locator("td").nth(1).inner_text().strip()
            assert rows["watermark_end"] and rows["frontier"], rows  # timestamps, shown in UTC
            # The flagged-sessions preview is rendered in place: a table linking PostHog replays.
            flagged_row = page.locator("tr").filter(has=page.get_by_text("flagged_sessions", exact=True)).first
            preview_cell = flagged_row.locator("td").nth(1)
            replay_links = [a.get_attribute("href") for a in preview_cell.locator(f"a[href^='{POSTHOG_URL}/project/']").all()]
            preview_text = preview_cell.inner_text()
            run_link = page.locator("a[href*='/runs/']").first
            run_link.wait_for()
            shown_run = run_link.get_attribute("href").split("/runs/")[1].split("?")[0]
            partition_png = tmp_path / "partition.png"
            page.screenshot(path=str(partition_png))
        finally:
            browser.close()

    # The run the UI links is a sensor run, and the metadata shown is that run's for this
    # partition (a later tick may have swept it again since).
    sensor_run_ids = {r["runId"] for r in sensor_sweeps() if r["status"] == "SUCCESS"}
    assert shown_run in sensor_run_ids, (shown_run, sensor_run_ids)
    (shown,) = [m for m in materializations(partition, 50) if m["runId"] == shown_run]
    assert rows["observed"] == str(shown["metadata"]["observed"]["intValue"]), (rows, shown["metadata"])
    # The page rendered that run's preview: its replay links, or its "nothing flagged" line.
    shown_preview = shown["metadata"]["flagged_sessions"]["mdStr"]
    assert replay_links == re.findall(r"\]\((%s/project/[^)]+)\)" % re.escape(POSTHOG_URL), shown_preview), (
        replay_links,
        shown_preview,
    )
    if not replay_links:
        assert shown_preview in preview_text, (preview_text, shown_preview)
    print(f"{partition} flagged-sessions preview shows {len(replay_links)} replay links")
    print(f"{partition} metadata shown: {rows}")
    print(f"screenshots: {graph_png} {partition_png}")


BROKEN = "checkout-errors"  # its stored filter is broken, then mended, while dev runs
BACKFILLED = "ai-spend"


@pytest.mark.timeout(900)
def test_the_sensor_retries_a_failed_partition_until_it_succeeds_and_a_backfill_beside_it_double_counts_nothing(dev):
    # A partition the sensor sweeps on every tick for the next few minutes: today's, once its
    # frontier (now - 35 min) is inside it; just after midnight, yesterday's, until it settles.
    now = datetime.now(timezone.utc)
    if time(0, 28) <= now.time() < time(0, 40):  # neither day is swept for long enough
        wait_until(lambda: datetime.now(timezone.utc).time() >= time(0, 40), 13 * 60, "00:40 UTC", 5.0)
        now = datetime.now(timezone.utc)
    today = (now.date() if now.time() >= time(0, 40) else now.date() - timedelta(days=1)).isoformat()
    partition = f"{today}|{BROKEN}"

    def partition_runs(status: str | None = None) -> list[dict]:
        dev.alive()
        # Its own runs and the batch runs that swept it among others.
        runs = [r for r in dev.runs(LAUNCHED_BY_TAG, "sensor") if partition in r["partitions"]]
        return [r for r in runs if status is None or r["status"] == status]

    wait_until(lambda: partition_runs("SUCCESS"), 480, f"a sensor run of {partition} to succeed", 1.0)

    env_lines = dev.cli("env").stdout.splitlines()
    postgres_url = next(l.split("=", 1)[1].strip("'") for l in env_lines if l.startswith("export SESSION_ASSETS_POSTGRES_URL="))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (good_filter,) = conn.execute("SELECT filter FROM scanners WHERE id = %s", (BROKEN,)).fetchone()
        conn.execute("UPDATE scanners SET filter = %s WHERE id = %s", (json.dumps({"no_such_key": 1}), BROKEN))
    broken_after = {r["runId"] for r in partition_runs()}

    def failed_since_broken() -> list[dict]:
        return [r for r in partition_runs("FAILURE") if r["runId"] not in broken_after]

    wait_until(failed_since_broken, 480, f"a failed sensor run of {partition}", 1.0)
    report = json.loads(dev.cli("status", "--json").stdout)
    (row,) = [s for s in report["scanners"] if s["id"] == BROKEN]
    assert today in row["failed"], row

    # A hand backfill of another scanner's day while the sensor goes on sweeping it.
    backfill = dev.cli("backfill", "--scanner", BACKFILLED, "--start", today, "--end", today, "--wait")
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr + dev.log_tail()

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE scanners SET filter = %s WHERE id = %s", (json.dumps(good_filter), BROKEN))
    # The first success since the break is the sensor's retry of the failed partition, in a
    # run of its own (a run queued behind the backfill may be the one that meets the mended
    # filter); the batches sweep it again after that.
    succeeded = wait_until(
        lambda: [r for r in partition_runs("SUCCESS") if r["runId"] not in broken_after],
        480, f"a sensor retry of {partition} to succeed once mended", 1.0,
    )  # fmt: skip
    retried = min(succeeded, key=lambda r: r["startTime"])
    failed_runs = {r["runId"] for r in failed_since_broken()}
    assert retried["runId"] not in failed_runs  # a retry is a new run, with a fresh run key
    assert retried["partitions"] == [partition], retried  # retried alone: the batches go on without it
    assert int(retried["tags"]["session_assets/attempt"]) >= 1, retried  # requested as a retry of a failure
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
