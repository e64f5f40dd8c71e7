"""Turning a window's candidates into observations (SPEC §8).

Each page of candidates is one Postgres transaction: lock the partition,
reserve quota for the page in one conditional statement (when the team is short
of quota, only for the sessions not observed yet), insert the observations with
ON CONFLICT DO NOTHING, write the batch object (gzipped JSONL, deterministic
key), record the batch row, give back the unused reservation, commit. Verdicts
are computed before the transaction, for the whole page. A failure anywhere rolls the page back; the object,
if written, is overwritten by the retry that takes the same batch number.
Pages commit without waiting for the WAL flush; the walk flushes once at its
end, before the sweep records its watermark.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from json.encoder import (
    encode_basestring_ascii as _json_text,  # C-accelerated json.dumps of a str
)
from typing import Annotated, Any, Iterable, Iterator, Sequence

from psycopg_pool import ConnectionPool
from pydantic import Field

from session_assets.core.failpoints import failpoint
from session_assets.partitions import scanner_day_key
from session_assets.resources import ObjectStoreResource
from session_assets.scanners import (
    COUNTER_COLUMNS,
    Scanner,
    SessionSummary,
    Verdict,
    get_kind,
)
from session_assets.stores import sql

DEFAULT_MONTHLY_QUOTA = 1_000_000
# A monthly quota (observations per team) given in run config: at least 1, at most a billion.
MAX_MONTHLY_QUOTA = 10**9
MonthlyQuota = Annotated[int, Field(ge=1, le=MAX_MONTHLY_QUOTA)]

# Each string in an observation's evidence (the visitor's distinct id, the entry URL, a
# custom kind's text) is cut to at most this many bytes of JSON text between its quotes
# (escapes counted: 4,096 ASCII characters, 682 `é`, 341 emoji), so a page of evidence,
# sent to Postgres as one array parameter and written as one batch object, stays far
# below Postgres's 1 GB parameter limit: the built-in kinds' evidence stays under
# MAX_EVIDENCE_BYTES an observation, 160 MiB at the largest page (10,000 candidates).
MAX_EVIDENCE_TEXT_BYTES = 4096
MAX_EVIDENCE_BYTES = 16 * 1024

CANDIDATE_WALK_COLUMNS = (
    "team_id", "session_id", "distinct_id", "session_start", "session_end", "duration_s",
    "event_count", "pageview_count", "autocapture_count", "rageclick_count", "exception_count",
    "ai_generation_count", "input_tokens", "output_tokens", "cost_usd", "entry_url", "late",
)  # fmt: skip


def batch_key(team_id: int, scanner_id: str, day: date, seq: int) -> str:
    return f"observations/team={team_id}/scanner={scanner_id}/date={day.isoformat()}/{seq:06d}.jsonl.gz"


def quota_period(as_of: datetime) -> date:
    return as_of.date().replace(day=1)


PREVIEW_ROWS = 20  # flagged sessions listed in a partition's materialization


@dataclass(frozen=True)
class FlaggedSession:
    session_id: str
    verdict: str
    score: float | None


@dataclass
class WalkResult:
    """What walking one window's candidates did."""

    observed: int = 0
    deduplicated: int = 0
    handled: int = 0  # observed, already observed, or lost to a race: decided either way
    pages: int = 0
    batch_keys: list[str] = field(default_factory=list)
    last_handled: tuple[datetime, str] | None = None
    stopped_at: tuple[datetime, str] | None = None  # keyset of the first session quota refused
    flagged: int = 0  # observations written with a verdict other than "ok"
    preview: list[FlaggedSession] = field(default_factory=list)  # the first PREVIEW_ROWS of them

    @property
    def finished(self) -> bool:
        return self.stopped_at is None


def pages(rows: Iterable[Sequence[Any]], page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Candidate rows in keyset order, cut into pages; a row repeating the key before it
    (a retried window's copy, not merged yet) is skipped."""
    page: list[dict[str, Any]] = []
    previous = None
    for row in rows:
        candidate = dict(zip(CANDIDATE_WALK_COLUMNS, row))
        key = (candidate["session_end"], candidate["session_id"])
        if key == previous:
            continue
        previous = key
        page.append(candidate)
        if len(page) == page_size:
            yield page
            page = []
    if page:
        yield page


def summary(candidate: dict[str, Any]) -> SessionSummary:
    counters = {name: candidate[name] for name in COUNTER_COLUMNS if name != "duration_s"}
    return SessionSummary(
        team_id=candidate["team_id"],
        session_id=candidate["session_id"],
        distinct_id=candidate["distinct_id"],
        start=candidate["session_start"],
        end=candidate["session_end"],
        duration_s=float(candidate["duration_s"]),
        counters=counters,
        entry_url=candidate["entry_url"],
    )


def walk(
    pool: ConnectionPool,
    object_store: ObjectStoreResource,
    scanner: Scanner,
    day: date,
    as_of: datetime,
    candidate_pages: Iterable[list[dict[str, Any]]],
    default_quota: int = DEFAULT_MONTHLY_QUOTA,
) -> WalkResult:
    """Write every page; stop at the first session the team's quota refuses.

    Verdicts, evidence and batch lines of the next page are computed on a helper
    thread while this one waits on Postgres for the current page (psycopg and
    zlib release the GIL). The caller counts what was left (quota_skipped) as
    candidates - handled.
    """
    result = WalkResult()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-page") as helper:
        upcoming = ((page, helper.submit(prepare_page, scanner, day, page)) for page in candidate_pages)
        ahead = next(upcoming, None)
        while ahead is not None:
            page, prepared = ahead
            ahead = next(upcoming, None)  # starts preparing the next page
            result.pages += 1
            outcome = write_page(pool, object_store, scanner, day, as_of, page, default_quota, prepared.result())
            result.observed += outcome.observed
            result.deduplicated += outcome.deduplicated
            result.flagged += len(outcome.flagged)
            result.preview.extend(outcome.flagged[: PREVIEW_ROWS - len(result.preview)])
            result.handled += outcome.handled
            if outcome.batch_key:
                result.batch_keys.append(outcome.batch_key)
            if outcome.last_handled is not None:
                result.last_handled = outcome.last_handled
            if outcome.stopped_at is not None:
                result.stopped_at = outcome.stopped_at
                break
    if result.pages:
        flush_commits(pool)
    return result


def flush_commits(pool: ConnectionPool) -> None:
    """Make every page committed so far durable (pages commit without waiting for the flush)."""
    with pool.connection() as conn, conn.transaction():
        conn.execute(sql.load("postgres/flush_commits.sql"))


@dataclass(frozen=True)
class PreparedPage:
    """What a page's observations will say, computed before knowing which are new."""

    verdicts: list[Verdict]
    evidence: list[str]  # JSON text, sent as is and spliced into the batch lines
    lines: list[str]  # each observation's batch line, up to its created_at


def prepare_page(scanner: Scanner, day: date, page: list[dict[str, Any]]) -> PreparedPage:
    kind = get_kind(scanner.kind)
    rule = scanner.parsed_rule
    verdicts = [kind.apply(summary(c), None, rule) for c in page]
    evidence = [
        json.dumps(bounded(_evidence(c, v.evidence)), default=_json_default, separators=(",", ":"))
        for c, v in zip(page, verdicts)
    ]
    head = f'{{"team_id":{scanner.team_id},"scanner_id":{_json_text(scanner.id)},"day":"{day.isoformat()}"'
    lines = [
        f'{head},"session_id":{_json_text(c["session_id"])},"verdict":{_json_text(v.verdict)},'
        f'"score":{"null" if v.score is None else json.dumps(v.score)},"evidence":{e},"created_at":"'
        for c, v, e in zip(page, verdicts, evidence)
    ]
    return PreparedPage(verdicts, evidence, lines)


@dataclass(frozen=True)
class PageOutcome:
    observed: int
    deduplicated: int
    refused: int
    handled: int
    batch_key: str | None
    last_handled: tuple[datetime, str] | None
    stopped_at: tuple[datetime, str] | None = None
    flagged: list[FlaggedSession] = field(default_factory=list)  # written with a verdict other than "ok"


def write_page(
    pool: ConnectionPool,
    object_store: ObjectStoreResource,
    scanner: Scanner,
    day: date,
    as_of: datetime,
    page: list[dict[str, Any]],
    default_quota: int = DEFAULT_MONTHLY_QUOTA,
    prepared: PreparedPage | None = None,
) -> PageOutcome:
    prepared = prepared or prepare_page(scanner, day, page)
    period = quota_period(as_of)
    team = {"team_id": scanner.team_id, "period": period}
    with pool.connection() as conn, conn.transaction():
        conn.execute(sql.load("postgres/page_commit_async.sql"))
        conn.execute(sql.load("postgres/partition_lock.sql"), {"partition": scanner_day_key(day, scanner.id)})
        ids = [c["session_id"] for c in page]
        granted = _reserve(conn, team, len(page), default_quota)
        failpoint("after_quota_reserve")
        if granted == len(page):
            # Quota for the whole page: insert it all; ON CONFLICT sorts out what was already observed.
            accepted, refused = list(range(len(page))), []
        else:
            # Short of quota: spend it only on sessions not observed yet, in keyset order.
            if granted:
                conn.execute(sql.load("postgres/quota_release.sql"), {**team, "n": granted})
            seen = {row[0] for row in conn.execute(sql.load("postgres/observations_existing.sql"), {"scanner_id": scanner.id, "session_ids": ids})}
            new = [i for i, session_id in enumerate(ids) if session_id not in seen]
            granted = _reserve(conn, team, len(new), default_quota) if new else 0
            accepted, refused = new[:granted], new[granted:]
        key = None
        inserted = 0
        flagged: list[FlaggedSession] = []
        if accepted:
            seq = conn.execute(sql.load("postgres/batch_next_seq.sql"), {"scanner_id": scanner.id, "day": day}).fetchone()[0]
            key = batch_key(scanner.team_id, scanner.id, day, seq)
            created = dict(
                conn.execute(
                    sql.load("postgres/observations_insert.sql"),
                    {
                        "team_id": scanner.team_id,
                        "scanner_id": scanner.id,
                        "day": day,
                        "batch_key": key,
                        "session_ids": [ids[i] for i in accepted],
                        "verdicts": [prepared.verdicts[i].verdict for i in accepted],
                        "scores": [prepared.verdicts[i].score for i in accepted],
                        "evidence": [prepared.evidence[i] for i in accepted],
                    },
                ).fetchall()
            )
            lines = [f'{prepared.lines[i]}{created[ids[i]].isoformat()}"}}' for i in accepted if ids[i] in created]
            flagged = [
                FlaggedSession(ids[i], prepared.verdicts[i].verdict, prepared.verdicts[i].score)
                for i in accepted
                if ids[i] in created and prepared.verdicts[i].verdict != "ok"
            ]
            inserted = len(lines)
            unused = granted - inserted
            if unused:  # already observed, or lost a race with another run for the same sessions
                conn.execute(sql.load("postgres/quota_release.sql"), {**team, "n": unused})
            if lines:
                # mtime=0: the same rows give the same bytes; level 6: most of the size, a third of the time.
                body = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)
                object_store.put(key, body)
                failpoint("after_object_write")
                conn.execute(
                    sql.load("postgres/batch_insert.sql"),
                    {
                        "scanner_id": scanner.id,
                        "day": day,
                        "seq": seq,
                        "object_key": key,
                        "rows": inserted,
                        "bytes": len(body),
                        "sha256": hashlib.sha256(body).hexdigest(),
                    },
                )
            else:
                key = None
    failpoint("after_page_commit")
    # The walk may advance up to, not past, the first session quota refused.
    handled = page[: refused[0]] if refused else page
    last = (handled[-1]["session_end"], handled[-1]["session_id"]) if handled else None
    stopped = (page[refused[0]]["session_end"], page[refused[0]]["session_id"]) if refused else None
    return PageOutcome(
        observed=inserted,
        deduplicated=len(page) - len(refused) - inserted,
        refused=len(refused),
        handled=len(handled),
        batch_key=key,
        last_handled=last,
        stopped_at=stopped,
        flagged=flagged,
    )


def _reserve(conn: Any, team: dict[str, Any], n: int, default_quota: int) -> int:
    """Take up to n of the team's quota for the period; the part granted."""
    row = conn.execute(sql.load("postgres/quota_reserve.sql"), {**team, "n": n}).fetchone()
    if row is None:  # the team's first page of the period
        conn.execute(sql.load("postgres/quota_ensure.sql"), {**team, "default_limit": default_quota})
        row = conn.execute(sql.load("postgres/quota_reserve.sql"), {**team, "n": n}).fetchone()
    return row[0]


def _evidence(candidate: dict[str, Any], kind_evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        **kind_evidence,
        "session": {
            "start": candidate["session_start"].isoformat(),
            "end": candidate["session_end"].isoformat(),
            "distinct_id": candidate["distinct_id"],
            "late": bool(candidate["late"]),
        },
    }


def bounded(value: Any) -> Any:
    """`value` (evidence: dicts, lists, scalars) with every string cut to MAX_EVIDENCE_TEXT_BYTES of JSON text."""
    if isinstance(value, str):
        return cut_text(value)
    if isinstance(value, dict):
        return {key: bounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(item) for item in value]
    return value


def cut_text(text: str, limit: int = MAX_EVIDENCE_TEXT_BYTES) -> str:
    """The longest prefix of `text` whose JSON text (as json.dumps writes it) is at most `limit` bytes."""
    if len(text) * 12 <= limit:  # an escaped character takes at most 12 bytes (a surrogate pair)
        return text
    text = text[:limit]  # at least a byte a character: never look at more (a 10 MB value)
    if len(_json_text(text)) - 2 <= limit:
        return text
    shortest, longest = 0, len(text)  # the longest prefix that fits lies in [shortest, longest)
    while longest - shortest > 1:
        middle = (shortest + longest) // 2
        if len(_json_text(text[:middle])) - 2 <= limit:
            shortest = middle
        else:
            longest = middle
    return text[:shortest]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
