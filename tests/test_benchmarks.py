"""Smoke tests of the benchmarks: each runs on tiny data, passes its own correctness
checks and prints its figures (e2e: every figure, by label).

No timing is asserted: the figures of such a small run mean nothing, and the
machine is shared. benchmarks/run_all.py's parser reads the same lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run_all import PLAN, figures_of, run

REPO = Path(__file__).resolve().parent.parent

# The figure labels benchmarks/e2e.py must print (each line: "label: value (goal ...) PASS|MISS" or "(info)").
E2E_FIGURES = [
    "e2e sweep throughput, asset path (execute_tick)",
    "e2e sweep throughput, raw SQL",
    "e2e sweep throughput ratio (asset rate / raw SQL rate = raw s / asset s",
    "e2e asset sweep time split",
    "e2e cost growth time(N)/time(N/10)",
    "e2e latency session end -> observed in Postgres, median",
    "e2e latency session end -> observed in Postgres, max",
]


def test_e2e_benchmark_smoke(tmp_path: Path) -> None:
    command = [
        sys.executable, str(REPO / "benchmarks" / "e2e.py"), "--quick",
        "--events", "20000", "--scanners", "3", "--teams", "1",
        "--latency-events", "20000", "--latency-hours", "0.25",
        "--path", str(tmp_path / "work"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    figures_section = done.stdout.split("## figures", 1)[-1]
    figures = figures_of("e2e", figures_section)
    for label in E2E_FIGURES:
        assert any(line.startswith(label) for line in figures), f"no figure line {label!r} in:\n{figures_section}"
    assert len(figures) == len(E2E_FIGURES), figures
    assert all(line.endswith((" PASS", " MISS", "(info)")) for line in figures), figures
    assert "correctness: PASS" in done.stdout


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["rollups", "observations", "sensor", "shared_pass"])
def test_benchmark_quick_run_passes_its_correctness_checks(name: str, tmp_path: Path) -> None:
    """As `run_all.py --quick --only NAME` runs it: a benchmark whose data set-up or checks
    drift from the code (a moved function, a new migration step) fails here, not in a
    release's benchmark run. scale and soak need `dev` for minutes: run_all covers them."""
    outcome = run(name, PLAN[name][1], tmp_path, verbose=False)
    log = outcome.log.read_text()
    assert outcome.exit_code == 0 and outcome.correctness == "PASS", f"{outcome.correctness}\n{log[-4000:]}"
    assert outcome.figures, log[-4000:]
