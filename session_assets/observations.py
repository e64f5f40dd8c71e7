"""Turning a window's candidates into observations (SPEC §8).

Each page of candidates is one Postgres transaction: lock the partition,
drop sessions already observed, reserve quota in one conditional statement,
apply the scanner, insert the observations with ON CONFLICT DO NOTHING, write
the batch object (gzipped JSONL, deterministic key), record the batch row, give
back unused quota, commit. A failure anywhere rolls the page back; the object,
if written, is overwritten by the retry that takes the same batch number.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator, Sequence

from psycopg_pool import ConnectionPool

from session_assets import sql
from session_assets.failpoints import failpoint
from session_assets.resources import ObjectStoreResource
from session_assets.scanners import COUNTER_COLUMNS, Scanner, SessionSummary, get_kind

DEFAULT_MONTHLY_QUOTA = 1_000_000

CANDIDATE_COLUMNS = (
    "team_id", "session_id", "distinct_id", "session_start", "session_end", "duration_s",
    "event_count", "pageview_count", "autocapture_count", "rageclick_count", "exception_count",
    "ai_generation_count", "input_tokens", "output_tokens", "cost_usd", "entry_url", "late",
)  # fmt: skip


def batch_key(team_id: int, scanner_id: str, day: date, seq: int) -> str:
    return f"observations/team={team_id}/scanner={scanner_id}/date={day.isoformat()}/{seq:06d}.jsonl.gz"


def quota_period(as_of: datetime) -> date:
    return as_of.date().replace(day=1)


@dataclass
class WalkResult:
    """What walking one window's candidates did."""

    observed: int = 0
    deduplicated: int = 0
    handled: int = 0  # observed, already observed, or lost to a race: decided either way
    pages: int = 0
    batch_keys: list[str] = field(default_factory=list)
    last_handled: tuple[datetime, str] | None = None
    finished: bool = True


def pages(rows: Iterable[Sequence[Any]], page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Candidate rows in keyset order, cut into pages; a row repeating the key before it
    (a retried window's copy, not merged yet) is skipped."""
    page: list[dict[str, Any]] = []
    previous = None
    for row in rows:
        candidate = dict(zip(CANDIDATE_COLUMNS, row))
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

    The caller counts what was left (quota_skipped) as candidates - handled.
    """
    result = WalkResult()
    for page in candidate_pages:
        result.pages += 1
        outcome = write_page(pool, object_store, scanner, day, as_of, page, default_quota)
        result.observed += outcome.observed
        result.deduplicated += outcome.deduplicated
        result.handled += outcome.handled
        if outcome.batch_key:
            result.batch_keys.append(outcome.batch_key)
        if outcome.last_handled is not None:
            result.last_handled = outcome.last_handled
        if outcome.refused:
            result.finished = False
            break
    return result


@dataclass(frozen=True)
class PageOutcome:
    observed: int
    deduplicated: int
    refused: int
    handled: int
    batch_key: str | None
    last_handled: tuple[datetime, str] | None


def write_page(
    pool: ConnectionPool,
    object_store: ObjectStoreResource,
    scanner: Scanner,
    day: date,
    as_of: datetime,
    page: list[dict[str, Any]],
    default_quota: int = DEFAULT_MONTHLY_QUOTA,
) -> PageOutcome:
    kind = get_kind(scanner.kind)
    rule = scanner.parsed_rule
    period = quota_period(as_of)
    team = {"team_id": scanner.team_id, "period": period}
    with pool.connection() as conn, conn.transaction():
        conn.execute(sql.load("postgres/partition_lock.sql"), {"partition": f"{scanner.id}|{day.isoformat()}"})
        ids = [c["session_id"] for c in page]
        seen = {row[0] for row in conn.execute(sql.load("postgres/observations_existing.sql"), {"scanner_id": scanner.id, "session_ids": ids})}
        new = [c for c in page if c["session_id"] not in seen]
        granted = 0
        if new:
            conn.execute(sql.load("postgres/quota_ensure.sql"), {**team, "default_limit": default_quota})
            granted = conn.execute(sql.load("postgres/quota_reserve.sql"), {**team, "n": len(new)}).fetchone()[0]
            failpoint("after_quota_reserve")
        accepted, refused = new[:granted], new[granted:]
        verdicts = [kind.apply(summary(c), None, rule) for c in accepted]
        key = None
        inserted: list[tuple] = []
        if accepted:
            seq = conn.execute(sql.load("postgres/batch_next_seq.sql"), {"scanner_id": scanner.id, "day": day}).fetchone()[0]
            key = batch_key(scanner.team_id, scanner.id, day, seq)
            # Evidence is serialized once: sent as text (binary protocol, no escaping pass)
            # and reused for the batch object.
            evidence = [json.dumps(_evidence(c, v.evidence), default=_json_default, separators=(",", ":")) for c, v in zip(accepted, verdicts)]
            created = dict(
                conn.execute(
                    sql.load("postgres/observations_insert.sql"),
                    {
                        "team_id": scanner.team_id,
                        "scanner_id": scanner.id,
                        "day": day,
                        "batch_key": key,
                        "session_ids": [c["session_id"] for c in accepted],
                        "verdicts": [v.verdict for v in verdicts],
                        "scores": [v.score for v in verdicts],
                        "evidence": evidence,
                    },
                ).fetchall()
            )
            inserted = [
                (c["session_id"], v.verdict, v.score, e, created[c["session_id"]])
                for c, v, e in zip(accepted, verdicts, evidence)
                if c["session_id"] in created
            ]
            unused = granted - len(inserted)
            if unused:  # lost a race with another run for the same sessions
                conn.execute(sql.load("postgres/quota_release.sql"), {**team, "n": unused})
            if inserted:
                body = _batch_body(scanner, day, inserted)
                object_store.put(key, body)
                failpoint("after_object_write")
                conn.execute(
                    sql.load("postgres/batch_insert.sql"),
                    {
                        "scanner_id": scanner.id,
                        "day": day,
                        "seq": seq,
                        "object_key": key,
                        "rows": len(inserted),
                        "bytes": len(body),
                        "sha256": hashlib.sha256(body).hexdigest(),
                    },
                )
            else:
                key = None
    failpoint("after_page_commit")
    # The walk may advance up to, not past, the first session quota refused.
    handled = page[: page.index(refused[0])] if refused else page
    last = (handled[-1]["session_end"], handled[-1]["session_id"]) if handled else None
    return PageOutcome(
        observed=len(inserted),
        deduplicated=len(page) - len(new) + (len(accepted) - len(inserted)),
        refused=len(refused),
        handled=len(handled),
        batch_key=key,
        last_handled=last,
    )


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


def _batch_body(scanner: Scanner, day: date, rows: list[tuple]) -> bytes:
    """JSONL, one observation a line; `evidence` is spliced in already serialized."""
    head = f'{{"team_id":{scanner.team_id},"scanner_id":{json.dumps(scanner.id)},"day":"{day.isoformat()}"'
    lines = [
        f'{head},"session_id":{json.dumps(session_id)},"verdict":{json.dumps(verdict)},'
        f'"score":{json.dumps(score)},"evidence":{evidence},"created_at":"{created_at.isoformat()}"}}'
        for session_id, verdict, score, evidence, created_at in rows
    ]
    # mtime=0: the same rows give the same bytes; level 6: most of the size, a third of the time.
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
