"""The UI end to end: `dagster dev` on the embedded stack, the sensor's own runs, and
Debian's headless Chromium driven by Playwright (no downloaded browser: CI installs
the `chromium` package, see .ci/run)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from dagster_graphql import DagsterGraphQLClient

from tests.support import cli_env, free_port, wait_until

CLI = [sys.executable, "-m", "session_assets.cli"]
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
METADATA_LABELS = ("watermark_end", "watermark_session_id", "frontier", "observed")
SWEEP_TAG = "session_assets/sweep"  # set by the sensor on the runs it requests
# Groups are collapsed by default on the global lineage page; `expanded` opens them.
GRAPH_PATH = "/asset-groups?expanded=global@global:sessions,global@global:scanning"
# Dagster's "Join the Dagster community" dialog covers the page on localhost until dismissed.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"

SENSOR_RUNS = """query { runsOrError(filter: {tags: [{key: "%s", value: "sensor"}]}) {
  __typename
  ... on Runs { results { runId status endTime tags { key value } } }
  ... on PythonError { message } } }""" % SWEEP_TAG

LATEST_MATERIALIZATION = """query {
  assetOrError(assetKey: {path: ["observation_batches"]}) { ... on Asset {
    assetMaterializations(partitions: [%s], limit: 1) {
      partition runId
      metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


def _tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


@pytest.mark.timeout(900)
def test_ui_shows_the_asset_graph_and_a_swept_partitions_metadata(tmp_path):
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium "
            "(`apt-get install -y chromium`, as .ci/run does); Playwright must not download a browser"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dev.log"
    log = open(log_path, "w")
    dev = subprocess.Popen(
        [*CLI, "dev", "--days", "1", "--port", str(port)],
        env=cli_env(tmp_path / "home"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # A shell's background job ignores SIGINT and its children inherit that: undo it, or the
        # SIGINT that stops `dev` below would be ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def log_tail(n: int = 5000) -> str:
        return log_path.read_text(errors="replace")[-n:]

    def alive():
        if dev.poll() is not None:
            raise AssertionError(f"dev exited with {dev.returncode}:\n{log_tail()}")

    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=10)

        def ready():
            alive()
            try:
                return client._execute("{ version }")  # noqa: SLF001 - the public client has no ping
            except Exception:
                return None

        wait_until(ready, 300, "the Dagster UI")

        # The daemon's first tick of `sweep_sensor` requests rollup and (scanner, day) sweep runs,
        # which the queued run coordinator executes one at a time.
        def sensor_sweeps() -> list[dict]:
            try:
                result = client._execute(SENSOR_RUNS)["runsOrError"]  # noqa: SLF001
            except Exception:
                return []  # the webserver is busy: poll again
            assert result["__typename"] == "Runs", result
            return [r for r in result["results"] if "|" in _tags(r).get("dagster/partition", "")]

        def a_finished_sweep():
            alive()
            sweeps = sensor_sweeps()
            failed = [r for r in sweeps if r["status"] in ("FAILURE", "CANCELED")]
            assert not failed, f"sensor sweep runs failed: {failed}\n{log_tail()}"
            return sorted((r for r in sweeps if r["status"] == "SUCCESS"), key=lambda r: r["endTime"])

        first = wait_until(a_finished_sweep, 480, "a sensor-launched sweep run to succeed", 1.0)[0]
        partition = _tags(first)["dagster/partition"]
        (latest,) = client._execute(  # noqa: SLF001
            LATEST_MATERIALIZATION % json.dumps(partition)
        )["assetOrError"]["assetMaterializations"]
        metadata = {entry["label"]: entry for entry in latest["metadataEntries"]}
        assert set(METADATA_LABELS) <= set(metadata), metadata
        observed = metadata["observed"]["intValue"]
        print(f"\nsensor run {first['runId']} swept {partition}: observed {observed}")

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
                assert rows["observed"] == str(observed), rows
                assert rows["watermark_end"] and rows["frontier"], rows  # timestamps, shown in UTC
                run_link = page.locator("a[href*='/runs/']").first
                run_link.wait_for()
                shown_run = run_link.get_attribute("href").split("/runs/")[1].split("?")[0]
                partition_png = tmp_path / "partition.png"
                page.screenshot(path=str(partition_png))
            finally:
                browser.close()

        sensor_run_ids = {r["runId"] for r in sensor_sweeps() if r["status"] == "SUCCESS"}
        assert shown_run in sensor_run_ids, (shown_run, sensor_run_ids)
        print(f"{partition} metadata shown: {rows}")
        print(f"screenshots: {graph_png} {partition_png}")
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        log.close()
