"""One candidates pass for many scanners of a team and day, against one pass per scanner.

Issue #12 asks to measure the shared pass and keep what is faster. On a fresh
embedded stack (chDB in this process, pgserver), one generated day of events
for one team (`--events`), its rollups and the day before's, and `--scanners`
scanners of that team with the mixed filters of benchmarks/scale.py; then, as
of the end of the day, `--repeat` times each: the batch's shared pass (at most
50 scanners an entry each, as the batch runs it) and one pass per scanner (what
one run per partition did). Both write the same candidate rows (tests/test_batches.py
proves it); the figure is the ratio of their medians.

    python benchmarks/shared_pass.py [--events 1000000] [--scanners 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402

from benchmarks.rollups import insertable  # noqa: E402
from benchmarks.scale import FILTERS, say, verdict  # noqa: E402
from benchmarks.bulk_events import generate_bulk_events  # noqa: E402
from session_assets import settings  # noqa: E402
from session_assets.commands import demo  # noqa: E402
from session_assets.assets.scanning import MAX_SCANNERS_PER_PASS, SweepRecords, _candidates_pass, plan_sweep  # noqa: E402
from session_assets.stores.events_io import insert_events  # noqa: E402
from session_assets.partitions import scanner_partitions_def  # noqa: E402
from session_assets.scanners import parse_scanner  # noqa: E402
from session_assets.scanners import store as scanner_store  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scanners", type=int, default=MAX_SCANNERS_PER_PASS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shared-pass-") as tmp:
        os.environ[settings.HOME_VAR] = tmp
        os.environ.pop("DAGSTER_HOME", None)
        from session_assets.commands import stack
        from session_assets.definitions import build_definitions
        from session_assets.resources import build_resources

        stack.bring_up()
        resources = build_resources(deferred=False)
        clickhouse = resources["clickhouse"]
        clickhouse.migrate()
        day = (datetime.now(timezone.utc) - timedelta(days=2)).date()
        columns = generate_bulk_events(n_events=args.events, day=day, seed=5, teams=(1,))
        insert_events(clickhouse.client(), clickhouse.events, insertable(columns))
        start_at = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
        made = []
        for n in range(args.scanners):
            kind, flt, rule, rate = FILTERS[n % len(FILTERS)]
            made.append(
                parse_scanner(
                    {"id": f"pass-{n:03d}", "team_id": 1, "name": f"pass {n}", "kind": kind, "filter": flt,
                     "rule": rule, "sample_rate": rate, "start_at": start_at.isoformat()},
                    source="benchmark",
                )
            )  # fmt: skip
        scanner_store.save_all(resources["postgres"].pool(), made)
        as_of = start_at + timedelta(days=1, hours=1)
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in made])
            demo.materialize_rollups(build_definitions(), instance, [day + timedelta(days=n) for n in range(-3, 2)], as_of)
            records = SweepRecords(instance)
            stored = {s.id: s for s in scanner_store.list_all(resources["postgres"].pool())}
            plans = [plan_sweep(records, f"{day.isoformat()}|{s.id}", stored[s.id], as_of) for s in made]
        if any(p.frontier is None for p in plans):
            say(f"CORRECTNESS: rollups missing for {plans[0].missing_days}")
            return 1
        say(f"{args.events:,} events of one team on {day}, {len(plans)} scanners, as of {as_of:%Y-%m-%d %H:%M}")
        shared_s, separate_s = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            found_shared = 0
            for n in range(0, len(plans), MAX_SCANNERS_PER_PASS):
                found_shared += sum(o.counts["candidates"] for o in _candidates_pass(clickhouse, plans[n : n + MAX_SCANNERS_PER_PASS]))
            shared_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            found_separate = sum(_candidates_pass(clickhouse, [plan])[0].counts["candidates"] for plan in plans)
            separate_s.append(time.perf_counter() - started)
            if found_shared != found_separate:
                say(f"CORRECTNESS: the shared pass found {found_shared} candidates, the separate passes {found_separate}")
                return 1
        say(f"candidates found by either: {found_shared:,}")
        say(f"shared pass, {len(plans)} scanners: median {median(shared_s):.2f} s of {[round(x, 2) for x in shared_s]}")
        say(f"one pass per scanner: median {median(separate_s):.2f} s of {[round(x, 2) for x in separate_s]}")
        ratio = median(shared_s) / median(separate_s)
        say(f"shared candidates pass / one pass per scanner, {len(plans)} scanners: {ratio:.2f}x (goal < 1: keep the faster) {verdict(ratio < 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
