"""What a sweep tick should request (SPEC §9), as a pure function of state.

The sensor and `session-assets sweep` read the state (Dagster records and the
scanners table, never ClickHouse) and call `plan_tick`; both then launch the
same run requests. Nothing here keeps state of its own: the sensor cursor is
only a cache of the tick count, so losing it neither skips nor repeats work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from session_assets.core import coverage
from session_assets.core.days import day_start
from session_assets.core.watermarks import (
    Watermark,
    frontier,
    seen_until,
    starting_point,
    window,
)
from session_assets.partitions import scanner_day_key

# Only this many days back are watched; an older incomplete partition needs a hand backfill.
CATCH_UP_DAYS = 7
# Rollup days the sensor rolls by itself when a sweep needs them: the watched days
# and the lookback of the oldest (26 h + 48 h of late data + the day before).
ROLLUP_CATCH_UP_DAYS = CATCH_UP_DAYS + 4
# Partitions swept a tick: due ones go in batch runs (one process sweeps many), retries of
# failed ones in runs of their own (each a process), so fewer of those.
MAX_REQUESTS_PER_TICK = 2000
MAX_RETRY_RUNS_PER_TICK = 10
RETRY_BACKOFF_BASE = timedelta(minutes=5)
RETRY_BACKOFF_CAP = timedelta(hours=1)

LAUNCHED_BY_TAG = "session_assets/launched_by"  # who launched the run: sensor | cli
ATTEMPT_TAG = "session_assets/attempt"  # consecutive failures before this run


@dataclass(frozen=True)
class ScannerState:
    id: str
    enabled: bool
    start_at: datetime
    team_id: int = 0
    # Its newest watermark before the watched days, when it has none in them (re-enabled after a long pause).
    resume_from: Watermark | None = None


@dataclass(frozen=True)
class PartitionState:
    """One partition as the records show it."""

    materialized_at: datetime | None = None  # latest successful materialization
    succeeded_as_of: datetime | None = None  # its as-of time (the tick clock of `sweep --now`)
    complete: bool = False
    covered_until: datetime | None = None  # rollups: as-of of the latest materialization
    late_covered_until: datetime | None = None  # rollups: up to when its late pass re-rolled...
    late_covered_days: frozenset[date] = frozenset()  # ...these earlier days
    frontier: datetime | None = None  # scanner partitions: frontier of the latest sweep
    in_flight: bool = False  # a queued or running run targets it
    failures: int = 0  # failed runs since the latest success (Dagster's own retries excluded)
    last_failure_at: datetime | None = None
    # Its latest failure was its own (its run's, or recorded for it by a batch), not a whole
    # batch stopping (a store down for the tick): retried alone, not with the others.
    failed_alone: bool = False
    watermark_end: datetime | None = None  # scanner partitions: the stored keyset...
    watermark_session_id: str = ""
    seen_until: datetime | None = None  # ...and what its sweep saw
    quota_stopped: bool = False  # the latest sweep's walk stopped at a session quota refused

    @property
    def watermark(self) -> Watermark | None:
        if self.watermark_end is None:
            return None
        return Watermark(self.watermark_end, self.watermark_session_id, self.seen_until)

    @property
    def rollup_record(self) -> coverage.RollupRecord | None:
        if self.covered_until is None:
            return None
        return coverage.RollupRecord(self.covered_until, self.complete, self.late_covered_until, self.late_covered_days)


@dataclass(frozen=True)
class TickState:
    now: datetime
    start_date: date
    scanners: list[ScannerState]
    known_scanner_partitions: set[str]
    rollups: dict[date, PartitionState]
    sweeps: dict[tuple[str, date], PartitionState]
    teams_out_of_quota: frozenset[int] = frozenset()  # no observation left this month


@dataclass(frozen=True)
class Request:
    asset: str  # "rollups" | "scanner"
    day: date
    scanner_id: str | None
    attempt: int
    reason: str
    team_id: int = 0
    alone: bool = False  # a retry in a run of its own

    @property
    def batched(self) -> bool:
        return self.asset == "scanner" and not self.alone

    @property
    def partition_key(self) -> str:
        return self.day.isoformat() if self.scanner_id is None else scanner_day_key(self.day, self.scanner_id)

    def run_key(self, now: datetime) -> str:
        # Unique per tick and attempt: a run key is used up by any run, failed ones included.
        return f"{self.asset}:{self.partition_key}:{now.isoformat()}:{self.attempt}"


@dataclass(frozen=True)
class Batch:
    """One batch run: partitions swept by one process, each materialized on its own."""

    index: int
    partitions: tuple[str, ...]

    def run_key(self, now: datetime) -> str:
        return f"batch:{now.isoformat()}:{self.index}"


def runs(requests: list[Request], batches: int = 1) -> list[Request | Batch]:
    """The runs a tick launches: a run per rollup day and per partition retried alone (one
    that failed on its own is isolated from the others, and shows its own status), then the due
    partitions in at most `batches` batch runs, the partitions of one team together (they
    share a candidates pass), in the order given (longest-waiting first)."""
    singles = [r for r in requests if not r.batched]
    due = [r for r in requests if r.batched]
    if not due:
        return list(singles)
    by_team: dict[int, list[Request]] = {}
    for request in due:
        by_team.setdefault(request.team_id, []).append(request)
    bins: list[list[Request]] = [[] for _ in range(max(1, min(batches, len(by_team))))]
    for team_requests in sorted(by_team.values(), key=len, reverse=True):
        min(bins, key=len).extend(team_requests)  # greedy: the emptiest batch takes the next team
    # In the order the batch sweeps them: day by day, oldest first, a team's partitions
    # together (one candidates pass), the team that waited longest first.
    order = {id(r): n for n, r in enumerate(due)}
    team_rank = {team: n for n, team in enumerate(dict.fromkeys(r.team_id for r in due))}
    return [
        *singles,
        *(
            Batch(n, tuple(r.partition_key for r in sorted(b, key=lambda r: (r.day, team_rank[r.team_id], order[id(r)]))))
            for n, b in enumerate(bins)
            if b
        ),
    ]


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


def next_sweep_start(
    sweeps: dict[tuple[str, date], PartitionState], scanner: ScannerState, day: date
) -> Watermark:
    """Where the next sweep of (scanner, day) resumes, as the run will find it in the records."""
    own = sweeps.get((scanner.id, day), PartitionState()).watermark
    previous = sweeps.get((scanner.id, day - timedelta(days=1)), PartitionState()).watermark
    earlier = scanner.resume_from if own is None and previous is None else None
    return starting_point(day, scanner.start_at, own, None if own else previous, backfill=False, earlier=earlier).watermark


def rollup_days_needed(
    now: datetime, start: date, scanners: list[ScannerState], sweeps: dict[tuple[str, date], PartitionState]
) -> set[date]:
    """Every rollup day the next sweep of an open partition of an enabled scanner reads."""
    needed: set[date] = set()
    for scanner in scanners:
        if not scanner.enabled:
            continue
        for day in scanner_days(scanner, now, start):
            if sweeps.get((scanner.id, day), PartitionState()).complete:
                continue
            bounds = window(next_sweep_start(sweeps, scanner, day), scanner.start_at)
            needed.update(d for d in bounds.read_days(now) if d >= start)
    return needed


def plan_tick(
    state: TickState,
    max_requests: int = MAX_REQUESTS_PER_TICK,
    max_retry_runs: int = MAX_RETRY_RUNS_PER_TICK,
    only_scanner: str | None = None,
    retry_backoff: timedelta = RETRY_BACKOFF_BASE,
) -> TickPlan:
    now = state.now
    waiting: dict[str, str] = {}
    wanted: list[Request] = []

    # Rollups: today; earlier days until they settle, if rolled before or read by a due sweep
    # (a sweep reads from its lookback to today, so that sessions show their true start and end).
    needed = rollup_days_needed(now, state.start_date, state.scanners, state.sweeps)
    auto_from = now.date() - timedelta(days=ROLLUP_CATCH_UP_DAYS)
    rolling: set[date] = set()
    for day in sorted(state.rollups.keys() | set(watched_days(now, state.start_date)) | needed):
        rollup = state.rollups.get(day, PartitionState())
        if day < now.date() and rollup.complete:
            continue
        if rollup.materialized_at is None and day < now.date() - timedelta(days=1):
            if day not in needed:
                continue  # history nobody needs yet
            if day < auto_from:
                waiting[day.isoformat()] = "needed by a sweep, older than the catch-up window: backfill it by hand"
                continue
        if rollup.in_flight:
            waiting[day.isoformat()] = "run in flight"
        elif not _retry_ready(rollup, now, retry_backoff):
            waiting[day.isoformat()] = f"backing off after {rollup.failures} failure(s)"
        else:
            wanted.append(Request("rollups", day, None, rollup.failures, "open day"))
            rolling.add(day)

    # The rollup records as they will read once this tick's rollup runs (queued first) succeed.
    records = {d: r for d, p in state.rollups.items() if (r := p.rollup_record) is not None}
    projected = coverage.after_rollups(records, rolling, now, state.start_date)

    sweeps: list[tuple[datetime, Request]] = []
    scanners = [s for s in state.scanners if s.enabled and (only_scanner is None or s.id == only_scanner)]
    for scanner in scanners:
        for day in scanner_days(scanner, now, state.start_date):
            sweep = state.sweeps.get((scanner.id, day), PartitionState())
            if sweep.complete:
                continue
            key = scanner_day_key(day, scanner.id)
            if sweep.in_flight:
                waiting[key] = "run in flight"
                continue
            if not _retry_ready(sweep, now, retry_backoff):
                waiting[key] = f"backing off after {sweep.failures} failure(s)"
                continue
            quota_left = scanner.team_id not in state.teams_out_of_quota
            if sweep.quota_stopped and not quota_left:
                waiting[key] = f"team {scanner.team_id} has no observation quota left this month"
                continue
            # The same coverage the run will compute, over the same rollup days.
            read_days = window(next_sweep_start(state.sweeps, scanner, day), scanner.start_at).read_days(now)
            reachable = frontier(day, seen_until(now, coverage.coverage(read_days, projected, state.start_date)))
            if reachable is None:
                missing = coverage.missing_days(read_days, projected, state.start_date)
                waiting[key] = f"rollups of {', '.join(map(str, missing))} not materialized"
                continue
            # Only sweep when it can move: past the last frontier, or (first sweep) into the day;
            # or when the team has quota again after a walk stopped for want of it.
            floor = sweep.frontier if sweep.frontier is not None else max(day_start(day), scanner.start_at)
            if sweep.failures:
                reason = "retry"
            elif reachable > floor:
                reason = "new" if sweep.materialized_at is None else "open"
            elif sweep.quota_stopped:
                reason = "quota freed"
            else:
                waiting[key] = "rollups have not advanced since the last sweep"
                continue
            # Served longest-waiting first: since its last success, or since it could first run.
            waited_since = sweep.succeeded_as_of or sweep.materialized_at or max(day_start(day), scanner.start_at)
            alone = sweep.failures > 0 and sweep.failed_alone
            sweeps.append((waited_since, Request("scanner", day, scanner.id, sweep.failures, reason, scanner.team_id, alone)))

    # Rollups first (a handful, never starved by a catch-up), then the sweeps that waited longest
    # (oldest day first among equals, so a catch-up goes in order), capped.
    rollups = [r for r in wanted if r.asset == "rollups"]
    ordered = [r for _, r in sorted(sweeps, key=lambda item: (item[0], item[1].day, item[1].scanner_id))]
    alone = [r for r in ordered if r.alone][:max_retry_runs]
    chosen = [r for r in ordered if not r.alone or r in alone][:max_requests]
    new_ids = sorted({s.id for s in state.scanners} - state.known_scanner_partitions)
    return TickPlan(
        add_scanner_partitions=new_ids,
        requests=rollups + chosen,
        deferred=len(ordered) - len(chosen),
        waiting=waiting,
    )
