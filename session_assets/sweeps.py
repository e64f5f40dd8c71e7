"""What a sweep tick should request (SPEC §9), as a pure function of state.

The sensor and `session-assets sweep` read the state (Dagster records and the
scanners table, never ClickHouse) and call `plan_tick`; both then launch the
same run requests. Nothing here keeps state of its own: the sensor cursor is
only a cache of the tick count, so losing it neither skips nor repeats work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from session_assets.days import day_start
from session_assets.watermarks import LOOKBACK
from session_assets.watermarks import frontier as sweep_frontier

# Only this many days back are watched; an older incomplete partition needs a hand backfill.
CATCH_UP_DAYS = 7
MAX_REQUESTS_PER_TICK = 40
RETRY_BACKOFF_BASE = timedelta(minutes=5)
RETRY_BACKOFF_CAP = timedelta(hours=1)

SWEEP_TAG = "session_assets/sweep"  # who launched the run: sensor | cli
ATTEMPT_TAG = "session_assets/attempt"  # consecutive failures before this run


@dataclass(frozen=True)
class ScannerState:
    id: str
    enabled: bool
    start_at: datetime


@dataclass(frozen=True)
class PartitionState:
    """One partition as the records show it."""

    materialized_at: datetime | None = None  # latest successful materialization
    complete: bool = False
    covered_until: datetime | None = None  # rollups: as-of of the latest materialization
    frontier: datetime | None = None  # scanner partitions: frontier of the latest sweep
    in_flight: bool = False  # a queued or running run targets it
    failures: int = 0  # failed runs since the latest success (Dagster's own retries excluded)
    last_failure_at: datetime | None = None
    watermark_end: datetime | None = None  # scanner partitions: the stored keyset
    watermark_session_id: str = ""


@dataclass(frozen=True)
class TickState:
    now: datetime
    start_date: date
    scanners: list[ScannerState]
    known_scanner_partitions: set[str]
    rollups: dict[date, PartitionState]
    sweeps: dict[tuple[str, date], PartitionState]


@dataclass(frozen=True)
class Request:
    asset: str  # "rollups" | "sweep"
    day: date
    scanner_id: str | None
    attempt: int
    reason: str

    @property
    def partition_key(self) -> str:
        return self.day.isoformat() if self.scanner_id is None else f"{self.day.isoformat()}|{self.scanner_id}"

    def run_key(self, now: datetime) -> str:
        # Unique per tick and attempt: a run key is used up by any run, failed ones included.
        return f"{self.asset}:{self.partition_key}:{now.isoformat()}:{self.attempt}"


@dataclass(frozen=True)
class TickPlan:
    add_scanner_partitions: list[str]
    requests: list[Request]
    deferred: int  # wanted but over the per-tick cap
    waiting: dict[str, str] = field(default_factory=dict)  # partition -> why not requested


def watched_days(now: datetime, start: date) -> list[date]:
    today = now.date()
    first = max(start, today - timedelta(days=CATCH_UP_DAYS))
    return [first + timedelta(days=n) for n in range((today - first).days + 1)]


def scanner_days(scanner: ScannerState, now: datetime, start: date) -> list[date]:
    return [d for d in watched_days(now, start) if d >= scanner.start_at.date()]


def backoff(failures: int, base: timedelta = RETRY_BACKOFF_BASE) -> timedelta:
    """Doubling from `base` per failure, capped at 12 x base (5 min -> 1 h by default)."""
    cap = RETRY_BACKOFF_CAP * (base / RETRY_BACKOFF_BASE)
    return min(cap, base * (2 ** max(0, failures - 1)))


def _retry_ready(state: PartitionState, now: datetime, base: timedelta) -> bool:
    if state.failures == 0 or state.last_failure_at is None:
        return True
    return now >= state.last_failure_at + backoff(state.failures, base)


def plan_tick(
    state: TickState,
    max_requests: int = MAX_REQUESTS_PER_TICK,
    only_scanner: str | None = None,
    retry_backoff: timedelta = RETRY_BACKOFF_BASE,
) -> TickPlan:
    now = state.now
    waiting: dict[str, str] = {}
    wanted: list[Request] = []

    # Rollups: today; earlier days until they settle, if rolled before or needed by a scanner.
    enabled = [s for s in state.scanners if s.enabled]
    # A first sweep reads sessions that started up to LOOKBACK before the scanner's start, and
    # the day before that too (so a too-early start shows whole and is excluded, not truncated).
    needed_from = min(((s.start_at - LOOKBACK).date() for s in enabled), default=now.date()) - timedelta(days=1)
    rolling: set[date] = set()
    for day in sorted(state.rollups.keys() | set(watched_days(now, state.start_date))):
        rollup = state.rollups.get(day, PartitionState())
        if day < now.date() and rollup.complete:
            continue
        if rollup.materialized_at is None and day < min(needed_from, now.date() - timedelta(days=1)):
            continue  # history nobody needs yet: backfilled by hand, not by the sensor
        if rollup.in_flight:
            waiting[day.isoformat()] = "run in flight"
        elif not _retry_ready(rollup, now, retry_backoff):
            waiting[day.isoformat()] = f"backing off after {rollup.failures} failure(s)"
        else:
            wanted.append(Request("rollups", day, None, rollup.failures, "open day"))
            rolling.add(day)

    scanners = [s for s in enabled if only_scanner is None or s.id == only_scanner]
    for scanner in scanners:
        for day in scanner_days(scanner, now, state.start_date):
            sweep = state.sweeps.get((scanner.id, day), PartitionState())
            if sweep.complete:
                continue
            key = f"{day.isoformat()}|{scanner.id}"
            if sweep.in_flight:
                waiting[key] = "run in flight"
                continue
            if not _retry_ready(sweep, now, retry_backoff):
                waiting[key] = f"backing off after {sweep.failures} failure(s)"
                continue
            reachable = _reachable_frontier(state, day, rolling)
            if reachable is None:
                waiting[key] = "rollups not materialized"
                continue
            # Only sweep when it can move: past the last frontier, or (first sweep) into the day.
            floor = sweep.frontier if sweep.frontier is not None else max(day_start(day), scanner.start_at)
            if sweep.failures == 0 and reachable <= floor:
                waiting[key] = "rollups have not advanced since the last sweep"
                continue
            reason = "retry" if sweep.failures else ("new" if sweep.materialized_at is None else "open")
            wanted.append(Request("sweep", day, scanner.id, sweep.failures, reason))

    # Rollups first (a handful, never starved by a catch-up), then sweeps oldest day first, capped.
    rollups = [r for r in wanted if r.asset == "rollups"]
    sweeps = sorted((r for r in wanted if r.asset == "sweep"), key=lambda r: (r.day, r.scanner_id))
    new_ids = sorted({s.id for s in state.scanners} - state.known_scanner_partitions)
    return TickPlan(
        add_scanner_partitions=new_ids,
        requests=rollups + sweeps[:max_requests],
        deferred=max(0, len(sweeps) - max_requests),
        waiting=waiting,
    )


def _reachable_frontier(state: TickState, day: date, rolling: set[date]) -> datetime | None:
    """The frontier a sweep could reach with the rollups as they are now, or as this
    tick's rollup runs leave them (the run queue starts runs in the order requested)."""
    covered = []
    for d in (day, day - timedelta(days=1)):
        if d < state.start_date:
            continue
        rollup = state.rollups.get(d, PartitionState())
        if d in rolling:
            covered.append(state.now)
            continue
        if rollup.covered_until is None:
            return None
        if d != day and rollup.complete:
            continue
        covered.append(rollup.covered_until)
    return sweep_frontier(day, state.now, min(covered))
