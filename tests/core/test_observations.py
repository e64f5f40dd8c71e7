"""Writing observation pages to real Postgres: quota races, retries, batch objects."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import date, timedelta
from decimal import Decimal

from session_assets.core import observations
from session_assets.resources import PostgresResource
from session_assets.scanners import parse_scanner
from session_assets.scanners import store
from tests.support import at, scanner_definition

DAY = date(2024, 3, 1)
AS_OF = at("2024-03-01T12:00:00")


def candidate(session_id: str, minute: int = 0, team_id: int = 1) -> dict:
    end = at("2024-03-01T09:00:00") + timedelta(minutes=minute)
    return {
        "team_id": team_id, "session_id": session_id, "distinct_id": "u", "session_start": end - timedelta(minutes=5),
        "session_end": end, "duration_s": 300, "event_count": 3, "pageview_count": 1, "autocapture_count": 1,
        "rageclick_count": 0, "exception_count": 1, "ai_generation_count": 0, "input_tokens": 0, "output_tokens": 0,
        "cost_usd": Decimal("0"), "entry_url": "https://x/", "late": 0,
    }  # fmt: skip


def saved_scanner(postgres: PostgresResource, scanner_id: str):
    scanner = parse_scanner(scanner_definition(scanner_id), source="test")
    store.save(postgres.pool(), scanner)
    return scanner


def test_eight_concurrent_runs_never_exceed_the_team_quota(postgres_url, local_object_store):
    postgres = PostgresResource(url=postgres_url, pool_max_size=12)
    scanners = [saved_scanner(postgres, f"racer-{n}") for n in range(8)]
    limit, per_run = 120, 50
    barrier = threading.Barrier(len(scanners))
    outcomes: dict[str, observations.PageOutcome] = {}
    errors: list[BaseException] = []

    def run(scanner):
        page = [candidate(f"{scanner.id}-s{n}", n) for n in range(per_run)]
        barrier.wait()
        try:
            outcomes[scanner.id] = observations.write_page(
                postgres.pool(), local_object_store, scanner, DAY, AS_OF, page, default_quota=limit
            )
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,)) for s in scanners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(o.observed for o in outcomes.values()) == limit
    assert all(o.observed + o.refused == per_run for o in outcomes.values())
    with postgres.pool().connection() as conn:
        used, cap = conn.execute("SELECT used, observation_limit FROM team_quotas WHERE team_id = 1").fetchone()
        rows = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
    assert (used, cap, rows) == (limit, limit, limit)


def test_replaying_a_page_changes_nothing(postgres_resource, local_object_store):
    scanner = saved_scanner(postgres_resource, "replay")
    page = [candidate(f"s{n}", n) for n in range(5)]
    first = observations.write_page(postgres_resource.pool(), local_object_store, scanner, DAY, AS_OF, page)
    again = observations.write_page(postgres_resource.pool(), local_object_store, scanner, DAY, AS_OF, page)
    assert (first.observed, first.deduplicated) == (5, 0)
    assert (again.observed, again.deduplicated, again.batch_key) == (0, 5, None)
    with postgres_resource.pool().connection() as conn:
        assert conn.execute("SELECT used FROM team_quotas").fetchone()[0] == 5
    body = gzip.decompress(local_object_store.get(first.batch_key)).decode().splitlines()
    assert [json.loads(line)["session_id"] for line in body] == [c["session_id"] for c in page]
    assert first.batch_key == "observations/team=1/scanner=replay/date=2024-03-01/000001.jsonl.gz"


def test_pages_skip_a_row_repeating_the_key_before_it():
    def row(session_id: str, minute: int) -> tuple:
        return tuple(candidate(session_id, minute)[name] for name in observations.CANDIDATE_WALK_COLUMNS)

    # A retried window's copies sit next to the originals in keyset order; a tie
    # on the end with another id, or the same id at another end, is not a copy.
    rows = [row("a", 0), row("a", 0), row("b", 0), row("b", 1), row("b", 1), row("c", 1), row("c", 1), row("d", 2)]
    got = [[(c["session_id"], c["session_end"].minute) for c in page] for page in observations.pages(rows, 2)]
    assert got == [[("a", 0), ("b", 0)], [("b", 1), ("c", 1)], [("d", 2)]]


def test_a_page_of_hostile_text_stays_far_below_postgres_parameter_limit(postgres_resource, local_object_store):
    """Issue #14: a page's evidence goes to Postgres as one array parameter (at most 1 GB),
    and its lines into one object. With every candidate carrying a 10 MB distinct id and
    entry URL of the costliest characters to escape, each built-in kind's evidence stays
    under MAX_EVIDENCE_BYTES, so a page of MAX_PAGE_SIZE stays under a sixth of the limit;
    the cut text is still valid JSON that Postgres stores as written."""
    from json.encoder import encode_basestring_ascii as json_text

    from session_assets.assets.scanning import MAX_PAGE_SIZE

    ten_mb = 10 * 1024 * 1024
    hostile = ["a" * ten_mb, "é" * (ten_mb // 2), "😀" * (ten_mb // 4), "\x01" * ten_mb, '"\\' * (ten_mb // 2)]
    page = []
    for n in range(500):
        row = candidate(f"s{n:03d}", n % 60)
        row.update(distinct_id=hostile[n % 5], entry_url=hostile[(n + 1) % 5][:2048], cost_usd=Decimal("2.5"))
        page.append(row)
    rules = {"match": {}, "threshold": {"score": "pageview_count * 2", "flag_at": 1}, "ai_cost": {"max_cost_usd": 1}}
    for kind, rule in rules.items():
        scanner = parse_scanner(scanner_definition(f"hostile-{kind.replace('_', '-')}", kind=kind, rule=rule), source="test")
        prepared = observations.prepare_page(scanner, DAY, page)
        assert max(len(text) for text in prepared.evidence) <= observations.MAX_EVIDENCE_BYTES, kind
        for text in prepared.evidence:
            strings = [json.loads(text)["session"]["distinct_id"], *([json.loads(text)["entry_url"]] if kind == "match" else [])]
            assert all(len(json_text(s)) - 2 <= observations.MAX_EVIDENCE_TEXT_BYTES for s in strings)
    assert MAX_PAGE_SIZE * observations.MAX_EVIDENCE_BYTES <= 2**30 // 6

    scanner = saved_scanner(postgres_resource, "hostile")
    outcome = observations.write_page(postgres_resource.pool(), local_object_store, scanner, DAY, AS_OF, page[:50])
    assert outcome.observed == 50
    with postgres_resource.pool().connection() as conn:
        stored = dict(conn.execute("SELECT session_id, evidence->'session'->>'distinct_id' FROM observations").fetchall())
    assert all(hostile[n % 5].startswith(stored[f"s{n:03d}"]) and stored[f"s{n:03d}"] for n in range(50))
