"""Team isolation end to end (SPEC §6 "Team isolation is absolute", §13).

Two teams use the same session ids. Team B's data is hostile: its events carry
a `team_id` property claiming team A, URLs and event names written as SQL, and
far larger counters. Through real rollups and sweeps (chDB, pgserver, a local
object store), team A's scanners must never see, count or observe anything of
team B: not with plain filters, not with filters whose values try to reach
`team_id` or break out of their string, not with a regex that matches anything;
and one team's quota never moves the other's.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from session_assets.stores import sql
from tests.support import (
    add_scanner,
    at,
    event,
    expected_rollups,
    insert_rows,
    roll_for_sweeps,
    observed,
    rollups_frame,
    sweep,
    sweep_metadata,
)

DAY = date(2024, 3, 1)
AS_OF = at("2024-03-01T12:00:00")
T = at("2024-03-01T09:00:00")
A, B = 1, 2
INJECT = "') OR 1=1 --"


@pytest.fixture
def resources(clickhouse_resource, postgres_resource, local_object_store) -> dict[str, Any]:
    return {"clickhouse": clickhouse_resource, "postgres": postgres_resource, "object_store": local_object_store}


def at_minute(n: int):
    return T + timedelta(minutes=n)


def team_a_events() -> list[dict[str, Any]]:
    return [
        event("$pageview", at_minute(0), "shared-1", team_id=A, distinct_id="a-user",
              properties={"$current_url": "https://a.example/checkout"}),
        event("$exception", at_minute(1), "shared-1", team_id=A, distinct_id="a-user"),
        event("$ai_generation", at_minute(2), "shared-2", team_id=A, distinct_id="a-user",
              properties={"$ai_input_tokens": 10, "$ai_output_tokens": 5, "$ai_total_cost_usd": "0.1"}),
        event("$pageview", at_minute(3), "a-only", team_id=A, distinct_id="a-user",
              properties={"$current_url": "https://a.example/home"}),
    ]  # fmt: skip


def team_b_events() -> list[dict[str, Any]]:
    """Same session ids, bigger counters, and values that look like team A or like SQL."""
    claims_a = {"team_id": A, "$current_url": f"https://b.example/checkout{INJECT}"}
    rows = [
        event("$pageview", at_minute(n), "shared-1", team_id=B, distinct_id="b-user", properties=claims_a)
        for n in range(3)
    ]
    rows += [event("$exception", at_minute(3 + n), "shared-1", team_id=B, distinct_id="b-user") for n in range(2)]
    rows.append(event("$rageclick", at_minute(5), "shared-1", team_id=B, distinct_id="b-user"))
    rows.append(
        event("$ai_generation", at_minute(2), "shared-2", team_id=B, distinct_id="b-user",
              properties={"$ai_input_tokens": 1000, "$ai_output_tokens": 500, "$ai_total_cost_usd": "5"})
    )  # fmt: skip
    rows.append(event("{team_id:Int64}", at_minute(6), "b-only", team_id=B, distinct_id="b-user", properties=claims_a))
    rows.append(event("$pageview' OR team_id = 2 OR '", at_minute(7), "b-only", team_id=B, distinct_id="b-user"))
    return rows


def pageview_with(*properties: dict[str, Any]) -> dict[str, Any]:
    return {"events": [{"event": "$pageview", "properties": list(properties)}]}


# Team A's scanners: what each may observe, given only team A's data.
TEAM_A_SCANNERS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "a-all": ({}, {"shared-1", "shared-2", "a-only"}),
    "a-errors": ({"kind": "threshold", "rule": {"score": "exception_count * 10 + rageclick_count", "flag_at": 5}},
                 {"shared-1", "shared-2", "a-only"}),
    "a-cost": ({"kind": "ai_cost", "rule": {"max_cost_usd": 1, "max_total_tokens": 100},
                "filter": {"counters": {"ai_generation_count": {"gte": 1}}}}, {"shared-2"}),
    # Values that try to reach team_id or to leave their string: matched literally, in team A only.
    "a-claims-team": ({"filter": pageview_with({"key": "team_id", "op": "exact", "value": A})}, set()),
    "a-inject-url": ({"filter": pageview_with({"key": "$current_url", "op": "icontains", "value": INJECT})}, set()),
    "a-inject-event": ({"filter": {"events": [{"event": "$pageview' OR team_id = 2 OR '"}]}}, set()),
    "a-placeholder-event": ({"filter": {"events": [{"event": "{team_id:Int64}"}]}}, set()),
    "a-regex-anything": ({"filter": pageview_with({"key": "$current_url", "op": "regex", "value": ".*"})},
                         {"shared-1", "a-only"}),
    "a-b-users": ({"filter": {"distinct_ids": ["b-user"]}}, set()),
    "a-counters-of-b": ({"filter": {"counters": {"exception_count": {"gte": 2}}}}, set()),
}  # fmt: skip


def roll(instance, resources, as_of) -> None:
    for result in roll_for_sweeps(instance, resources["clickhouse"], as_of):
        assert all(check.passed for check in result.get_asset_check_evaluations())


def set_quota(postgres, team_id: int, limit: int) -> None:
    with postgres.pool().connection() as conn:
        conn.execute(sql.load("postgres/quota_set.sql"), {"team_id": team_id, "period": date(2024, 3, 1), "limit": limit})


def quota_used(postgres, team_id: int) -> int:
    with postgres.pool().connection() as conn:
        row = conn.execute("SELECT used FROM team_quotas WHERE team_id = %s", (team_id,)).fetchone()
    return 0 if row is None else int(row[0])


def test_team_a_never_sees_counts_or_observes_team_b(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    for scanner_id, (definition, _) in TEAM_A_SCANNERS.items():
        add_scanner(instance, pg, scanner_id=scanner_id, team_id=A, **definition)
    add_scanner(instance, pg, scanner_id="b-all", team_id=B)
    a_rows, b_rows = team_a_events(), team_b_events()
    insert_rows(ch, b_rows + a_rows)
    roll(instance, resources, AS_OF)

    # Rollups: one row per (team, session); the shared ids hold each team's own counters.
    rolled = rollups_frame(ch, DAY)
    assert rolled.equals(expected_rollups(a_rows + b_rows, AS_OF, DAY))
    by_key = {(r.team_id, r.session_id): r for r in rolled.itertuples()}
    assert by_key[(A, "shared-1")].event_count == 2 and by_key[(B, "shared-1")].event_count == 6
    assert by_key[(A, "shared-2")].cost_usd == Decimal("0.1") and by_key[(B, "shared-2")].cost_usd == Decimal(5)

    for scanner_id in [*TEAM_A_SCANNERS, "b-all"]:
        result = sweep(instance, resources, scanner_id, DAY, AS_OF)
        assert all(check.passed for check in result.get_asset_check_evaluations()), scanner_id

    for scanner_id, (_, expected) in TEAM_A_SCANNERS.items():
        assert set(observed(pg, scanner_id)) == expected, scanner_id
    # Team A's counters only, for the ids team B uses too.
    a_all = observed(pg, "a-all")
    assert a_all["shared-1"]["evidence"]["event_count"] == 2
    assert a_all["shared-1"]["evidence"]["session"]["distinct_id"] == "a-user"
    assert "rageclick_count" not in a_all["shared-1"]["evidence"]
    errors = observed(pg, "a-errors")
    assert (errors["shared-1"]["verdict"], errors["shared-1"]["score"]) == ("flagged", 10.0)
    assert errors["shared-1"]["evidence"]["inputs"] == {"exception_count": 1, "rageclick_count": 0}
    cost = observed(pg, "a-cost")["shared-2"]
    assert cost["verdict"] == "ok"
    assert (cost["evidence"]["cost_usd"], cost["evidence"]["total_tokens"]) == ("0.1", 15)
    # Team B's own scanner sees its sessions with its counters.
    b_all = observed(pg, "b-all")
    assert set(b_all) == {"shared-1", "shared-2", "b-only"}
    assert b_all["shared-1"]["evidence"]["event_count"] == 6

    # Nothing of team B's was written anywhere on team A's behalf.
    candidate_teams = ch.client().query(
        "SELECT scanner_id, groupUniqArray(team_id) FROM scanner_candidates GROUP BY scanner_id"
    ).result_rows
    assert {scanner: sorted(teams) for scanner, teams in candidate_teams} == {
        scanner: [B] if scanner == "b-all" else [A] for scanner, _ in candidate_teams
    }
    with pg.pool().connection() as conn:
        teams = dict(conn.execute("SELECT scanner_id, array_agg(DISTINCT team_id) FROM observations GROUP BY 1"))
    assert teams == {s: [B] if s == "b-all" else [A] for s in teams}
    keys = list(resources["object_store"].list_keys("observations/"))
    assert keys and all(("team=2/" in k) == ("scanner=b-all/" in k) for k in keys)
    assert quota_used(pg, A) == sum(len(observed(pg, s)) for s in TEAM_A_SCANNERS)
    assert quota_used(pg, B) == 3


def test_late_events_of_team_b_do_not_resurface_team_a_sessions(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="a-all", team_id=A)
    add_scanner(instance, pg, scanner_id="b-all", team_id=B)
    insert_rows(ch, team_a_events() + team_b_events())
    roll(instance, resources, AS_OF)
    for scanner_id in ("a-all", "b-all"):
        sweep(instance, resources, scanner_id, DAY, AS_OF)

    # Team B's shared-1 gets late events; team A's shared-1 gets none.
    later = AS_OF + timedelta(minutes=5)
    late = [event("$exception", at_minute(30), "shared-1", team_id=B, inserted_at=AS_OF + timedelta(minutes=1))]
    insert_rows(ch, late)
    roll(instance, resources, later)
    a_meta = sweep_metadata(sweep(instance, resources, "a-all", DAY, later), "scanner_candidate_windows")
    b_meta = sweep_metadata(sweep(instance, resources, "b-all", DAY, later), "scanner_candidate_windows")
    assert (a_meta["candidates"], a_meta["late_candidates"]) == (0, 0)
    assert (b_meta["candidates"], b_meta["late_candidates"]) == (1, 1)
    assert observed(pg, "a-all")["shared-1"]["evidence"]["event_count"] == 2


def test_one_teams_quota_never_moves_the_others(instance, resources):
    ch, pg = resources["clickhouse"], resources["postgres"]
    add_scanner(instance, pg, scanner_id="a-all", team_id=A)
    add_scanner(instance, pg, scanner_id="b-all", team_id=B)
    set_quota(pg, A, 2)
    set_quota(pg, B, 1000)
    a_ids = [f"s{n}" for n in range(4)]
    # Team B runs the same ids, and more: its sweep uses its own quota only.
    b_ids = a_ids + [f"b{n}" for n in range(6)]
    rows = [event("$pageview", at_minute(n), sid, team_id=A) for n, sid in enumerate(a_ids)]
    rows += [event("$pageview", at_minute(n), sid, team_id=B) for n, sid in enumerate(b_ids)]
    insert_rows(ch, rows)
    roll(instance, resources, AS_OF)

    b_meta = sweep_metadata(sweep(instance, resources, "b-all", DAY, AS_OF, page_size=3))
    a_meta = sweep_metadata(sweep(instance, resources, "a-all", DAY, AS_OF, page_size=3))
    assert (b_meta["observed"], b_meta["quota_skipped"]) == (10, 0)
    assert (a_meta["observed"], a_meta["quota_skipped"]) == (2, 2)
    assert set(observed(pg, "a-all")) == {"s0", "s1"}
    assert (quota_used(pg, A), quota_used(pg, B)) == (2, 10)

    # Team B exhausting its quota leaves team A's untouched, and the other way round.
    set_quota(pg, A, 100)
    set_quota(pg, B, 10)
    insert_rows(ch, [event("$pageview", at_minute(20), "b-late", team_id=B, inserted_at=AS_OF + timedelta(minutes=1))])
    later = AS_OF + timedelta(minutes=5)
    roll(instance, resources, later)
    b_meta = sweep_metadata(sweep(instance, resources, "b-all", DAY, later))
    a_meta = sweep_metadata(sweep(instance, resources, "a-all", DAY, later))
    assert (b_meta["observed"], b_meta["quota_skipped"]) == (0, 1)
    assert (a_meta["observed"], a_meta["quota_skipped"]) == (2, 0)
    assert set(observed(pg, "a-all")) == set(a_ids)
    assert (quota_used(pg, A), quota_used(pg, B)) == (4, 10)
