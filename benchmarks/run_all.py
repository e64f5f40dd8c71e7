"""Run every benchmark on generated data and print one summary line per figure (issue #5).

Runs, one after another (never two at once: they would measure each other),
each as a subprocess of this interpreter with modest flags:

    rollups       benchmarks/rollups.py       --events 5000000 --repeat 3
    observations  benchmarks/observations.py  --observations 100000 --naive-observations 10000 --repeat 3
    sensor        benchmarks/sensor.py        (its documented defaults: 50 scanners, 365 days of history)
    e2e           benchmarks/e2e.py           (its defaults: 10,000,000 events, 20 scanners)
    shared_pass   benchmarks/shared_pass.py   (its defaults: 1,000,000 events, 50 scanners of a team)
    scale         benchmarks/scale.py         (its defaults: 10, 100, 1,000 scanners through `dev`)
    soak          benchmarks/soak.py          (its defaults: 200 scanners, 30 min of `dev`)

and parses the figure lines they print, the ones ending in `(goal ...) PASS`
or `MISS` (e2e also prints `(info)` figures without a goal; they are kept).
Each benchmark's whole output goes to `<log dir>/<name>.log`. The summary
prints every figure as `<benchmark>: <label>: <value> (goal <goal>) PASS|MISS`,
then per benchmark its correctness verdict, exit code and wall time.

`--quick` runs each with small sizes (a smoke run of the whole set, 2-5
minutes on this project's 2-core machine; its figures are not the documented
ones). The full run takes about an hour there (scale 14 min, soak 30 min); docs/performance.md has its figures.
`--only NAME ...` runs a subset. Extra flags for one benchmark:
`--flags e2e="--events 2000000"` (repeatable).

    python benchmarks/run_all.py [--quick] [--only rollups observations sensor e2e]
                                 [--flags NAME="..."] [--log-dir DIR] [--verbose]

Exit code 0 when every benchmark ran and its correctness checks passed
(whatever the goals); 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"

# name -> (full flags, quick flags)
PLAN: dict[str, tuple[list[str], list[str]]] = {
    "rollups": (["--events", "5000000", "--repeat", "3"], ["--events", "200000", "--repeat", "2"]),
    "observations": (
        ["--observations", "100000", "--naive-observations", "10000", "--repeat", "3"],
        ["--observations", "10000", "--naive-observations", "2000", "--repeat", "1", "--candidates", "50000"],
    ),
    "sensor": (
        [],
        ["--scanners", "10", "--days", "9", "--evaluations", "3", "--tick-scanners", "3", "--ticks", "2"],
    ),
    "e2e": ([], ["--quick"]),
    "shared_pass": ([], ["--events", "200000", "--scanners", "20", "--repeat", "1"]),
    "scale": ([], ["--scanners", "10", "50", "--ticks", "2", "--interval", "30"]),
    "soak": ([], ["--scanners", "20", "--minutes", "6", "--interval", "60"]),
}

# `label: value (goal[:] G) PASS|MISS`, or (e2e) `label: value (info)`.
GOAL_LINE = re.compile(r"^(?P<label>.+?): (?P<value>.*?) \(goal:? (?P<goal>.*)\) (?P<verdict>PASS|MISS)$")
INFO_LINE = re.compile(r"^(?P<label>.+?): (?P<value>.*) \(info\)$")


@dataclass
class Outcome:
    name: str
    command: list[str]
    exit_code: int
    seconds: float
    log: Path
    figures: list[str] = field(default_factory=list)
    correctness: str = ""


def figures_of(name: str, text: str) -> list[str]:
    """The figure lines of one benchmark's output, in order, each once (some print them twice)."""
    seen: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        match = GOAL_LINE.match(line)
        if match:
            figure = f"{match['label']}: {match['value']} (goal {match['goal']}) {match['verdict']}"
        elif INFO_LINE.match(line):
            figure = line
        else:
            continue
        if figure not in seen:
            seen.append(figure)
    return seen


def correctness_of(name: str, text: str, exit_code: int) -> str:
    lines = text.splitlines()
    failed = [line for line in lines if "CORRECTNESS" in line or line.startswith("correctness FAIL")]
    if name == "rollups":
        verdicts = [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("correctness (rollup_check")]
        failed += [] if verdicts == ["PASS"] else [f"rollup_check {verdicts or 'missing'}"]
    elif name in ("observations", "e2e"):
        if not any(line.startswith("correctness: PASS") for line in lines):
            failed.append("no 'correctness: PASS' line")
    if exit_code != 0:
        failed.append(f"exit code {exit_code}")
    return "PASS" if not failed else "FAIL (" + "; ".join(failed[:3]) + ")"


def run(name: str, flags: list[str], log_dir: Path, verbose: bool) -> Outcome:
    command = [sys.executable, "-u", str(BENCHMARKS / f"{name}.py"), *flags]
    log = log_dir / f"{name}.log"
    print(f"[run_all] {datetime.now(timezone.utc):%H:%M:%S} {name}: {shlex.join(command[2:])} -> {log}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    with open(log, "w") as handle:
        child = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        assert child.stdout is not None
        for line in child.stdout:
            handle.write(line)
            handle.flush()
            lines.append(line)
            if verbose:
                sys.stderr.write(f"  [{name}] {line}")
        exit_code = child.wait()
    seconds = time.perf_counter() - started
    text = "".join(lines)
    figures = figures_of(name, text)
    if name == "sensor":
        # Its labels say "1 year"; say how much history this run really loaded.
        found = re.search(r"older days in the 1-year history: (\d+)", text)
        if found:
            figures = [f.replace("1 year / 1 day", f"1 year ({found[1]} days) / 1 day") for f in figures]
    outcome = Outcome(name, command, exit_code, seconds, log, figures, correctness_of(name, text, exit_code))
    print(
        f"[run_all] {name}: exit {exit_code} after {seconds / 60:.1f} min, {len(outcome.figures)} figures, "
        f"correctness {outcome.correctness}",
        file=sys.stderr,
        flush=True,
    )
    return outcome


def code_version() -> str:
    """The checkout measured: HEAD and the files that differ from it."""
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h %cs %s"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--short"], cwd=REPO, capture_output=True, text=True).stdout.split("\n")
    except OSError:
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f"; uncommitted: {', '.join(changed)}" if changed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for every benchmark (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=list(PLAN), help="run only these benchmarks")
    parser.add_argument("--flags", action="append", default=[], metavar='NAME="FLAGS"', help="extra flags for one benchmark")
    parser.add_argument("--log-dir", type=Path, help="where each benchmark's output goes (default: a new temp dir, kept)")
    parser.add_argument("--verbose", action="store_true", help="echo the benchmarks' output to stderr as it comes")
    args = parser.parse_args(argv)

    extra: dict[str, list[str]] = {}
    for item in args.flags:
        name, sep, flags = item.partition("=")
        if not sep or name not in PLAN:
            parser.error(f"--flags wants NAME=\"FLAGS\" with NAME one of {', '.join(PLAN)}: {item!r}")
        extra.setdefault(name, []).extend(shlex.split(flags))
    log_dir = (args.log_dir or Path(tempfile.mkdtemp(prefix="run_all-"))).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)

    print(f"[run_all] code: {code_version()}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    outcomes = []
    for name, (full, quick) in PLAN.items():
        if args.only and name not in args.only:
            continue
        outcomes.append(run(name, (quick if args.quick else full) + extra.get(name, []), log_dir, args.verbose))
    total = time.perf_counter() - started

    print(f"# benchmarks, {'quick' if args.quick else 'full'} run, {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"logs: {log_dir}")
    print(f"code: {code_version()}")
    print()
    print("## figures")
    passed = missed = 0
    for outcome in outcomes:
        if not outcome.figures:
            print(f"{outcome.name}: NO FIGURES (exit {outcome.exit_code}; see {outcome.log})")
        for line in outcome.figures:
            print(line if line.startswith(f"{outcome.name} ") else f"{outcome.name}: {line}")
            passed += line.endswith(" PASS")
            missed += line.endswith(" MISS")
    print()
    print("## runs")
    for outcome in outcomes:
        print(
            f"{outcome.name}: {shlex.join(outcome.command[2:]).replace(str(REPO) + '/', '')}: exit {outcome.exit_code}, "
            f"{outcome.seconds / 60:.1f} min, correctness {outcome.correctness}"
        )
    print(f"goals: {passed} PASS, {missed} MISS; total {total / 60:.1f} min")
    ok = all(o.exit_code == 0 and o.correctness == "PASS" and o.figures for o in outcomes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
