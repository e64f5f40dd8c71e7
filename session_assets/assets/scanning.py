"""`scanner_candidate_windows` and `observation_batches`: one sweep of one scanner over one day.

Both are materialized by one step, at its end, only on success: the new
watermark is recorded once the observations it covers are durable, and a
failed run records nothing, so the next run resumes from the last good one.
"""

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Iterator
from urllib.parse import quote

import dagster as dg
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import Field

from session_assets import settings
from session_assets.assets.rollups import (
    LATENCY_FRESHNESS,
    ROLLUP_SCHEMA,
    read_rollup_records,
    session_counter_rollups,
)
from session_assets.core import observations, watermarks
from session_assets.core.coverage import coverage, missing_days
from session_assets.core.failpoints import failpoint
from session_assets.core.records import RollupRecord, ScannerDayRecord, watermark_of
from session_assets.core.run_context import (
    BadRunTag,
    is_backfill,
    latest_materializations,
    parse_as_of,
)
from session_assets.partitions import (
    daily_partitions_def,
    scanner_day_key,
    scanner_day_partitions_def,
    split_scanner_day_key,
)
from session_assets.resources import (
    ClickHouseResource,
    ObjectStoreResource,
    PostgresResource,
)
from session_assets.scanners import Scanner, ScannerError, compile_filter
from session_assets.scanners import store as scanner_store
from session_assets.scanners.filters import CompiledFilter
from session_assets.stores import sql

MAX_PAGE_SIZE = 10_000


class ScannerRunConfig(dg.Config):
    """Run configuration of a sweep (the defaults suit production)."""

    # Candidates per Postgres transaction and batch object (and chDB's read block):
    # 1..MAX_PAGE_SIZE, checked with the run config like the quota.
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 1000
    # For teams without a quota row yet; 1..MAX_MONTHLY_QUOTA, checked with the run config.
    default_monthly_quota: observations.MonthlyQuota = observations.DEFAULT_MONTHLY_QUOTA

CANDIDATE_WINDOWS = dg.AssetKey("scanner_candidate_windows")
OBSERVATION_BATCHES = dg.AssetKey("observation_batches")

COUNTER_NAMES = (
    "event_count", "pageview_count", "autocapture_count", "rageclick_count", "exception_count",
    "ai_generation_count", "input_tokens", "output_tokens", "cost_usd", "entry_url",
)  # fmt: skip
CANDIDATE_WINDOW_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("scanner_id", "String"),
        dg.TableColumn("team_id", "Int64"),
        dg.TableColumn("day", "Date", description="The (scanner, day) partition that found the session."),
        dg.TableColumn("session_id", "String"),
        dg.TableColumn("distinct_id", "String"),
        dg.TableColumn("session_start", "DateTime64(6, 'UTC')"),
        dg.TableColumn("session_end", "DateTime64(6, 'UTC')", description="Keyset with session_id."),
        dg.TableColumn("duration_s", "Int64"),
        # The session counters the verdict used, as in the rollups.
        *(column for column in ROLLUP_SCHEMA.columns if column.name in COUNTER_NAMES),
        dg.TableColumn("max_inserted_at", "DateTime64(6, 'UTC')", description="Newest inserted_at of the session's events."),
        dg.TableColumn("late", "UInt8", description="Found again because its events arrived late."),
        dg.TableColumn("sampled", "UInt8", description="Passed the scanner's deterministic sample."),
        dg.TableColumn("window_id", "String", description="The sweep attempt that wrote the row."),
        dg.TableColumn("window_as_of", "DateTime64(6, 'UTC')", description="As-of time of that sweep."),
    ]
)
OBSERVATION_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("id", "bigint"),
        dg.TableColumn("team_id", "bigint"),
        dg.TableColumn("scanner_id", "text"),
        dg.TableColumn("session_id", "text", description="Unique per scanner: exactly one observation."),
        dg.TableColumn("day", "date"),
        dg.TableColumn("verdict", "text", description="The scanner kind's label, e.g. flagged / ok / match."),
        dg.TableColumn("score", "double precision"),
        dg.TableColumn("evidence", "jsonb"),
        dg.TableColumn("batch_key", "text", description="Object holding this observation (gzipped JSONL)."),
        dg.TableColumn("created_at", "timestamptz", description="Never changed by a retry."),
    ]
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            CANDIDATE_WINDOWS,
            description=(
                "For each (scanner, day): the sessions of the scanner's team that ended after its watermark and "
                "went quiet (end at or before the frontier = min(day end, min(as-of, rollups' covered_until) - 35 "
                "min)), started within 26 h of the watermark, have a 1..128-character id, pass the filter, and the "
                "deterministic sample; plus sessions whose events arrived late (48 h horizon). Stored in the "
                "ClickHouse table `scanner_candidates`."
            ),
            deps=[session_counter_rollups],
            partitions_def=scanner_day_partitions_def,
            group_name="scanning",
            owners=["team:data-platform"],
            kinds={"clickhouse"},
            metadata={"dagster/column_schema": CANDIDATE_WINDOW_SCHEMA, "dagster/table_name": f"{settings.clickhouse_database_name()}.scanner_candidates"},
        ),
        dg.AssetSpec(
            OBSERVATION_BATCHES,
            description=(
                "Exactly one observation per (scanner, session) in Postgres `observations`, written page by page "
                "in one transaction each (quota reserved in one conditional statement, ON CONFLICT DO NOTHING), "
                "each page also saved as a gzipped JSONL object "
                "observations/team=<t>/scanner=<s>/date=<d>/<seq>.jsonl.gz and listed in `observation_batches`. "
                "Its metadata holds the partition's watermark."
            ),
            deps=[CANDIDATE_WINDOWS],
            partitions_def=scanner_day_partitions_def,
            group_name="scanning",
            owners=["team:data-platform"],
            kinds={"postgres", "s3"},
            metadata={"dagster/column_schema": OBSERVATION_SCHEMA, "dagster/table_name": "public.observations"},
            freshness_policy=LATENCY_FRESHNESS,
        ),
    ],
    can_subset=False,
    # Transient store errors (a page rolls back whole); invalid scanners raise non-retryable.
    # One quick retry for a blip; a longer outage is the sweep sensor's to retry, with backoff.
    retry_policy=dg.RetryPolicy(max_retries=1, delay=1),
)
def scanner_observations(
    context: dg.AssetExecutionContext,
    config: ScannerRunConfig,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
):
    # A sweep's process holds chDB's peaks (its INSERT, then the walk): before chDB
    # loads, ask it to return freed memory at once. Rollup runs keep the faster default.
    clickhouse.prefer_memory_to_speed()
    try:
        as_of = parse_as_of(context.run.tags)
    except BadRunTag as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    records = SweepRecords(context.instance, backfill=is_backfill(context.run.tags))
    stored = scanner_store.get(postgres.pool(), context.partition_key.keys_by_dimension["scanner"])
    try:
        plan = plan_sweep(records, context.partition_key, stored, as_of)
    except ScannerError as error:
        # A definition that no longer validates will not start validating on retry.
        raise dg.Failure(description=str(error), allow_retries=False) from error
    (outcome,) = sweep_plans(context.log, clickhouse, postgres, object_store, [plan], config)
    if outcome.error is not None:
        raise outcome.error
    failpoint("before_materialization")
    candidate_metadata, batch_metadata = outcome.metadata(object_store)
    yield dg.MaterializeResult(asset_key=CANDIDATE_WINDOWS, metadata=candidate_metadata)
    yield dg.MaterializeResult(asset_key=OBSERVATION_BATCHES, metadata=batch_metadata)


@dataclass(frozen=True)
class SweepPlan:
    """One partition's sweep as the records decide it, before any ClickHouse work."""

    partition_key: str
    day: date
    scanner: Scanner
    compiled: CompiledFilter
    start: watermarks.StartingPoint
    bounds: watermarks.Window
    read_days: list[date]
    missing_days: list[date]  # rollup days it needs that were never materialized
    seen: datetime | None
    frontier: datetime | None
    as_of: datetime

    def describe(self) -> str:
        start = self.start.watermark
        return (
            f"sweeping {self.scanner.id} for {self.day} as of {self.as_of.isoformat()}: from {_iso(start.end)} "
            f"{start.session_id!r} ({self.start.source}), rollups {self.read_days[0]}..{self.read_days[-1]} seen "
            f"until {_iso(self.seen)}, frontier {_iso(self.frontier)}"
        )

    def params(self, clickhouse: ClickHouseResource) -> dict[str, Any]:
        """This scanner's parameters in a candidates pass: its window, its filter's values, and what
        it saw (`seen`, the events its rollups cover), which bounds the events its filter looks at too."""
        assert self.frontier is not None and self.seen is not None
        return {
            **clickhouse.table_params(),
            **self.bounds.params(self.frontier),
            **self.compiled.params,
            "team_id": self.scanner.team_id,
            "seen_until": self.seen,
        }


@dataclass
class SweepOutcome:
    """What sweeping one plan did (or the error that stopped it)."""

    plan: SweepPlan
    counts: dict[str, int] = field(default_factory=lambda: {"candidates": 0, "sampled_out": 0, "late_candidates": 0})
    walk: observations.WalkResult = field(default_factory=observations.WalkResult)
    window_seconds: float = 0.0
    walk_seconds: float = 0.0
    window_id: str = ""  # the candidates pass that found them
    error: BaseException | None = None

    @property
    def metadata_complete(self) -> bool:
        """Whether the partition's day is complete after this sweep."""
        return watermarks.is_complete(self.plan.day, self.plan.frontier, self.walk.finished)

    @property
    def new_watermark(self) -> watermarks.Watermark:
        plan, walk = self.plan, self.walk
        return watermarks.next_watermark(plan.start.watermark, plan.frontier, walk.last_handled, walk.stopped_at, plan.seen)

    def flagged_preview(self, posthog: str | None) -> str:
        """Markdown: the first flagged sessions this run observed, linked to their PostHog replay."""
        walk = self.walk
        if not walk.preview:
            return f"No flagged session among the {walk.observed} new observations."
        rows = ["| session | verdict | score |", "|---|---|---|"]
        for flagged in walk.preview:
            shown = markdown_text(flagged.session_id)
            if posthog:
                shown = f"[{shown}]({posthog}/project/{self.plan.scanner.team_id}/replay/{quote(flagged.session_id, safe='')})"
            score = "" if flagged.score is None else f"{flagged.score:g}"
            rows.append(f"| {shown} | {markdown_text(flagged.verdict)} | {score} |")
        more = walk.flagged - len(walk.preview)
        if more > 0:
            rows.append(f"\n… and {more} more in the batch objects.")
        return "\n".join(rows)

    def summary(self) -> str:
        """One sentence an analyst reads first: found, new, already observed, held back."""
        walk, counts = self.walk, self.counts
        parts = [f"{walk.observed} new observation{'s' if walk.observed != 1 else ''}"]
        if walk.deduplicated:
            parts.append(f"{walk.deduplicated} already observed by an earlier sweep or backfill")
        if not walk.finished:
            parts.append(f"{counts['candidates'] - walk.handled} waiting for quota")
        return f"{counts['candidates']} sessions found in the window: " + ", ".join(parts)

    def metadata(self, object_store: ObjectStoreResource) -> tuple[dict[str, Any], dict[str, Any]]:
        """The two materializations' metadata: the candidate window's, and the batches' (with the watermark)."""
        plan, walk, counts = self.plan, self.walk, self.counts
        new_watermark = self.new_watermark
        complete = watermarks.is_complete(plan.day, plan.frontier, walk.finished)
        quota_skipped = counts["candidates"] - walk.handled if not walk.finished else 0
        start = plan.start.watermark
        record = ScannerDayRecord(new_watermark, plan.as_of, plan.frontier, complete, quota_stopped=not walk.finished)
        shared = {
            **record.to_metadata(),
            "resumed_from": dg.MetadataValue.text(f"{plan.start.source}: {start.end.isoformat()} {start.session_id}".strip()),
            "scanner": dg.MetadataValue.text(f"{plan.scanner.id} (team {plan.scanner.team_id}, {plan.scanner.kind})"),
        }
        candidates = {
            **shared,
            **{name: dg.MetadataValue.int(value) for name, value in counts.items()},
            "window_duration_s": dg.MetadataValue.float(round(self.window_seconds, 3)),
            "dagster/row_count": dg.MetadataValue.int(counts["candidates"]),
        }
        batches = {
            **shared,
            "summary": dg.MetadataValue.text(self.summary()),
            "flagged": dg.MetadataValue.int(walk.flagged),
            "flagged_sessions": dg.MetadataValue.md(self.flagged_preview(settings.posthog_url())),
            "observed": dg.MetadataValue.int(walk.observed),
            # Found again (a re-swept stretch, a backfill): observed once already, not counted twice.
            "already_observed": dg.MetadataValue.int(walk.deduplicated),
            "dagster/row_count": dg.MetadataValue.int(walk.observed),
            "quota_skipped": dg.MetadataValue.int(quota_skipped),
            "sampled_out": dg.MetadataValue.int(counts["sampled_out"]),
            "candidates": dg.MetadataValue.int(counts["candidates"]),
            "batches": dg.MetadataValue.int(len(walk.batch_keys)),
            "batch_keys": dg.MetadataValue.json([object_store.location(k) for k in walk.batch_keys]),
            "last_batch": dg.MetadataValue.path(object_store.location(walk.batch_keys[-1])) if walk.batch_keys else dg.MetadataValue.text("none"),
            "duration_s": dg.MetadataValue.float(round(self.window_seconds + self.walk_seconds, 3)),
        }
        return candidates, batches


def markdown_text(value: str) -> str:
    """`value` shown literally in a markdown table cell: a session id is whatever the SDK sent."""
    return "".join(f"&#{ord(c)};" if not (c.isascii() and (c.isalnum() or c in " -_.:")) else c for c in value)


class SweepRecords:
    """The Dagster records sweeps read (watermarks, rollup records), each read once per run
    and in bulk for a batch: two bounded queries per asset whatever the number of partitions."""

    def __init__(self, instance: dg.DagsterInstance, backfill: bool = False) -> None:
        self.instance = instance
        self.backfill = backfill
        self._watermarks: dict[str, watermarks.Watermark | None] = {}
        self._rollups: dict[date, RollupRecord | None] = {}

    def prefetch(self, partition_keys: list[str]) -> None:
        """Own and previous-day watermarks of these (scanner, day) partitions, in one read."""
        if self.backfill:
            return
        wanted = set()
        for key in partition_keys:
            day, scanner_id = split_scanner_day_key(key)
            wanted.update({key, scanner_day_key(day - timedelta(days=1), scanner_id)})
        self._load_watermarks(wanted)

    def recorded(self, partition_key: str, watermark: watermarks.Watermark) -> None:
        """A watermark this run just recorded: later sweeps of the run start from it."""
        self._watermarks[partition_key] = watermark

    def watermark(self, partition_key: str) -> watermarks.Watermark | None:
        if partition_key not in self._watermarks:
            self._load_watermarks({partition_key})
        return self._watermarks[partition_key]

    def _load_watermarks(self, keys: set[str]) -> None:
        missing = keys - self._watermarks.keys()
        found = latest_materializations(self.instance, OBSERVATION_BATCHES, missing)
        for key in missing:
            self._watermarks[key] = watermark_of(found[key]) if key in found else None

    def rollup_records(self, days: list[date]) -> dict[date, RollupRecord]:
        missing = [d for d in days if d not in self._rollups]
        if missing:
            found = read_rollup_records(self.instance, missing)
            self._rollups.update({d: found.get(d) for d in missing})
        return {d: r for d in days if (r := self._rollups[d]) is not None}

    def starting_point(self, day: date, scanner_id: str, scanner_start: datetime) -> watermarks.StartingPoint:
        own = previous = earlier = None
        if not self.backfill:
            own = self.watermark(scanner_day_key(day, scanner_id))
            if own is None:
                previous = self.watermark(scanner_day_key(day - timedelta(days=1), scanner_id))
            if own is None and previous is None:
                earlier = earlier_watermark(self.instance, scanner_id, scanner_start.date(), day - timedelta(days=1))
        return watermarks.starting_point(day, scanner_start, own, previous, self.backfill, earlier)


def plan_sweep(records: SweepRecords, partition_key: str, stored: scanner_store.StoredScanner, as_of: datetime) -> SweepPlan:
    """Where one partition's sweep starts, what it reads and how far it may go (ScannerError when
    the stored definition no longer validates)."""
    day, scanner_id = split_scanner_day_key(partition_key)
    try:
        scanner = stored.valid()
        compiled = compile_filter(scanner.filter)
    except ScannerError as error:
        raise ScannerError(f"scanner {scanner_id!r} is invalid: {error}") from error
    start = records.starting_point(day, scanner_id, stored.start_at)
    bounds = watermarks.window(start.watermark, stored.start_at)
    read_days = bounds.read_days(as_of)
    rollups = records.rollup_records(read_days)
    first_day = daily_partitions_def.start.date()
    seen = watermarks.seen_until(as_of, coverage(read_days, rollups, first_day))
    return SweepPlan(
        partition_key=partition_key,
        day=day,
        scanner=scanner,
        compiled=compiled,
        start=start,
        bounds=bounds,
        read_days=read_days,
        missing_days=missing_days(read_days, rollups, first_day),
        seen=seen,
        frontier=watermarks.frontier(day, seen),
        as_of=as_of,
    )


# Scanners of one team and day whose candidates come from one pass over the rollups.
MAX_SCANNERS_PER_PASS = 50


def sweep_plans(
    log: Any,
    clickhouse: ClickHouseResource,
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    plans: list[SweepPlan],
    config: ScannerRunConfig,
    retries: int = 0,
) -> Iterator[SweepOutcome]:
    """Sweep these partitions, yielding each outcome as soon as its observations are durable:
    the candidates of each team and day in one pass over the rollups, then each partition's
    walk. A failure is its partition's alone: a pass that fails is retried one scanner at a
    time, and a walk that fails leaves the others be; a partition that failed for a reason
    other than its definition gets `retries` more attempts of its own."""
    groups: dict[tuple[int, date], list[SweepPlan]] = {}
    for plan in plans:
        log.info(plan.describe())
        if plan.frontier is None:
            log.warning(
                f"{plan.partition_key}: rollups of {', '.join(map(str, plan.missing_days))} are not materialized "
                "yet: nothing to sweep, watermark kept"
            )
            yield SweepOutcome(plan)
        else:
            groups.setdefault((plan.scanner.team_id, plan.day), []).append(plan)
    # Only event filters read the events table: a scanner without one still sweeps the rollups.
    if any(_reads_events(p) for group in groups.values() for p in group):
        missing = clickhouse.missing_events_table()
        if missing:
            for key, group in groups.items():
                for plan in (p for p in group if _reads_events(p)):
                    error = f"scanner {plan.scanner.id!r} filters on events, but {missing}"
                    yield SweepOutcome(plan, error=dg.Failure(description=error, allow_retries=False))
                groups[key] = [p for p in group if not _reads_events(p)]
    pool = postgres.pool()
    for group in groups.values():
        for chunk in (group[i : i + MAX_SCANNERS_PER_PASS] for i in range(0, len(group), MAX_SCANNERS_PER_PASS)):
            for outcome in _find_candidates(log, clickhouse, chunk):
                if outcome.error is None:
                    _walk(clickhouse, pool, object_store, outcome, config)
                for _ in range(retries):
                    if outcome.error is None or not _retryable(outcome.error):
                        break
                    # A blip (a store restarting, a connection cut): the page rolled back whole,
                    # so the partition starts over from its watermark, once, after a second.
                    log.warning(f"retrying {outcome.plan.partition_key} after: {outcome.error}")
                    time.sleep(RETRY_DELAY_SECONDS)
                    (outcome,) = _find_candidates(log, clickhouse, [outcome.plan])
                    if outcome.error is None:
                        _walk(clickhouse, pool, object_store, outcome, config)
                yield outcome


RETRY_DELAY_SECONDS = 1.0


def _reads_events(plan: SweepPlan) -> bool:
    return "{events_table:Identifier}" in plan.compiled.sql


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ScannerError):
        return False
    if isinstance(error, dg.Failure):
        return error.allow_retries
    return True


class CandidateQueryTimeout(dg.Failure):
    """A candidates pass ran past SESSION_ASSETS_CANDIDATE_QUERY_SECONDS; the message names its scanners."""


def _timeout_errors(clickhouse: ClickHouseResource, plans: list[SweepPlan]) -> list[SweepOutcome]:
    """An outcome per plan of a pass that ran out of time, each naming its scanner and the pass's others."""
    limit = clickhouse.candidate_query_seconds
    outcomes = []
    for plan in plans:
        others = [repr(p.scanner.id) for p in plans if p is not plan]
        shared = ""
        if others:
            more = f" and {len(others) - 10} more" if len(others) > 10 else ""
            shared = f", in one pass with {', '.join(others[:10])}{more}"
        message = (
            f"the candidates query of scanner {plan.scanner.id!r} (team {plan.scanner.team_id}, {plan.day}{shared}) "
            f"ran past its time limit of {limit:g} s ({settings.CANDIDATE_QUERY_SECONDS_VAR}) and was stopped; "
            "nothing was observed for it: narrow its filter or raise the limit"
        )
        # Not retried in this run: the same query would run as long again. The sensor
        # retries each partition in a run of its own (a pass of its own), with backoff.
        outcomes.append(SweepOutcome(plan, error=CandidateQueryTimeout(description=message, allow_retries=False)))
    return outcomes


def _timed_out(error: BaseException) -> bool:
    return isinstance(error, ClickHouseError) and "TIMEOUT_EXCEEDED" in str(error)


def _find_candidates(log: Any, clickhouse: ClickHouseResource, plans: list[SweepPlan]) -> list[SweepOutcome]:
    """One candidates pass for these plans (one team, one day): an outcome per plan with its
    counts, or its error. When the shared pass fails, each plan gets a pass of its own; when it
    runs out of time, each of its plans fails naming them all (a pass each could take as long)."""
    try:
        return _candidates_pass(clickhouse, plans)
    except Exception as error:  # noqa: BLE001 - isolated below, one scanner at a time
        if _timed_out(error):
            return _timeout_errors(clickhouse, plans)
        if len(plans) == 1:
            return [SweepOutcome(plans[0], error=error)]
        log.warning(f"a candidates pass over {len(plans)} scanners failed ({error}); one pass per scanner instead")
    outcomes = []
    for plan in plans:
        try:
            outcomes.extend(_candidates_pass(clickhouse, [plan]))
        except Exception as error:  # noqa: BLE001 - this partition's failure only
            outcomes.extend(_timeout_errors(clickhouse, [plan]) if _timed_out(error) else [SweepOutcome(plan, error=error)])
    return outcomes


def _candidates_pass(clickhouse: ClickHouseResource, plans: list[SweepPlan]) -> list[SweepOutcome]:
    started = time.monotonic()
    window_id = uuid.uuid4().hex  # this attempt's rows only: a retry never walks a failed one's
    statement, params = candidates_statement(clickhouse, plans, window_id)
    client = clickhouse.client()
    # In-process chDB shares the run's memory and cores with Postgres and Python:
    # on one thread the INSERT peaked ~45 MB lower over 1M sessions, no slower on
    # two cores. A server keeps its own threads.
    limits: dict[str, Any] = {"max_execution_time": clickhouse.candidate_query_seconds}
    client.command(statement, parameters=sql.bind(statement, params), settings={**limits, "max_threads": 1} if clickhouse.embedded else limits)
    failpoint("after_candidates_insert")
    first = plans[0]
    stats = clickhouse.query(
        "candidates_stats",
        scanner_ids=[p.scanner.id for p in plans],
        team_id=first.scanner.team_id,
        day=first.day,
        window_id=window_id,
    )
    found = {row[0]: dict(zip(("candidates", "sampled_out", "late_candidates"), map(int, row[1:]))) for row in stats.result_rows}
    seconds = (time.monotonic() - started) / len(plans)
    return [
        SweepOutcome(
            plan,
            counts=found.get(plan.scanner.id, {"candidates": 0, "sampled_out": 0, "late_candidates": 0}),
            window_seconds=seconds,
            window_id=window_id,
        )
        for plan in plans
    ]


_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):")


def candidates_statement(clickhouse: ClickHouseResource, plans: list[SweepPlan], window_id: str) -> tuple[str, dict[str, Any]]:
    """The candidates INSERT of one pass and its parameters: one `-- @scanners` entry per plan,
    each plan's parameters (its window's and its filter's) renamed s<index>_<name>."""
    first = plans[0]
    entry = sql.load("clickhouse/fragments/scanner_window.sql")
    entries, params = [], {}
    for index, plan in enumerate(plans):
        prefix = f"s{index}_"
        text = sql.with_filter(entry, plan.compiled.sql)
        entries.append(_PARAMETER.sub(lambda m: "{" + prefix + m.group(1) + ":", text))
        params.update({prefix + name: value for name, value in {**plan.params(clickhouse), "index": index}.items()})
    statement = sql.with_scanners(sql.load("clickhouse/candidates_insert.sql"), ",\n".join(entries))
    params.update(
        {
            **clickhouse.table_params(),
            "scanner_ids": [p.scanner.id for p in plans],
            "sample_thresholds": [p.scanner.sample_threshold for p in plans],
            "team_id": first.scanner.team_id,
            "day": first.day,
            "read_from": min(p.read_days[0] for p in plans),
            "read_until": max(p.read_days[-1] for p in plans),
            "as_of": first.as_of,
            "window_id": window_id,
        }
    )
    return statement, params


def _walk(
    clickhouse: ClickHouseResource,
    pool: Any,
    object_store: ObjectStoreResource,
    outcome: SweepOutcome,
    config: ScannerRunConfig,
) -> None:
    """Turn one plan's sampled candidates into observations (nothing to read when it has none)."""
    plan = outcome.plan
    if outcome.counts["candidates"] == 0:
        return
    started = time.monotonic()
    params = {
        "scanner_id": plan.scanner.id,
        "team_id": plan.scanner.team_id,
        "day": plan.day,
        "window_id": outcome.window_id,
    }
    walk_sql = sql.load("clickhouse/candidates_walk.sql")
    try:
        with clickhouse.client().query_row_block_stream(
            walk_sql, parameters=sql.bind(walk_sql, params), settings={"max_block_size": config.page_size}
        ) as stream:
            rows = (row for block in stream for row in block)
            outcome.walk = observations.walk(
                pool,
                object_store,
                plan.scanner,
                plan.day,
                plan.as_of,
                observations.pages(rows, config.page_size),
                config.default_monthly_quota,
            )
    except Exception as error:  # noqa: BLE001 - this partition's failure only
        outcome.error = error
    outcome.walk_seconds = time.monotonic() - started


# How far back a partition without a watermark of its own or of the day before looks for
# the scanner's last one (a scanner re-enabled after a long pause resumes where it stopped).
RESUME_LOOKBACK_DAYS = 400


def earlier_watermark(
    instance: dg.DagsterInstance, scanner_id: str, first_day: date, before: date
) -> watermarks.Watermark | None:
    """The newest watermark of the scanner's partitions of days before `before` (two bounded queries)."""
    first = max(first_day, before - timedelta(days=RESUME_LOOKBACK_DAYS))
    keys = [scanner_day_key(first + timedelta(days=n), scanner_id) for n in range((before - first).days)]
    found = [watermark_of(values) for values in latest_materializations(instance, OBSERVATION_BATCHES, keys).values()]
    marks = [m for m in found if m is not None]
    return max(marks, key=lambda m: m.key) if marks else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "none"
