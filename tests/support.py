"""Shared test helpers: building events, materializing partitions, and an
independent pandas aggregation to compare the rollups with."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

import dagster as dg
import pandas as pd

from session_assets.assets import events, session_counter_rollups
from session_assets.checks import rollup_counters_match_events
from session_assets.events_io import EVENT_COLUMNS, insert_events
from session_assets.resources import ClickHouseResource
from session_assets.run_context import AS_OF_TAG, BACKFILL_TAG

UTC = timezone.utc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    """Poll a server's state until `predicate` is truthy, bounded by a deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: only SESSION_ASSETS_HOME set, no DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_ASSETS_") and k != "DAGSTER_HOME"}
    env["SESSION_ASSETS_HOME"] = str(home)
    return env


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(
    name: str,
    ts: datetime,
    session_id: str,
    *,
    team_id: int = 1,
    distinct_id: str = "user-1",
    properties: Mapping[str, Any] | None = None,
    inserted_at: datetime | None = None,
) -> dict[str, Any]:
    props = {"$session_id": session_id, **(properties or {})}
    return {
        "uuid": uuid.uuid4(),
        "event": name,
        "properties": json.dumps(props),
        "timestamp": ts,
        "team_id": team_id,
        "distinct_id": distinct_id,
        "$session_id": session_id,
        "inserted_at": inserted_at or ts + timedelta(seconds=2),
    }


def insert_rows(clickhouse: ClickHouseResource, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    columns = {name: [row[name] for row in rows] for name in EVENT_COLUMNS}
    insert_events(clickhouse.client(), clickhouse.events, columns)


def materialize_rollup(
    instance: dg.DagsterInstance,
    clickhouse: ClickHouseResource,
    day: date | str,
    as_of: datetime,
    *,
    backfill: bool = False,
    with_check: bool = True,
) -> dg.ExecuteInProcessResult:
    tags = {AS_OF_TAG: as_of.isoformat()}
    if backfill:
        tags[BACKFILL_TAG] = "test-backfill"
    selection = [session_counter_rollups.key]
    assets: list[Any] = [events, session_counter_rollups]
    if with_check:
        assets.append(rollup_counters_match_events)
    result = dg.materialize(
        assets,
        selection=dg.AssetSelection.assets(*selection) | dg.AssetSelection.checks(rollup_counters_match_events)
        if with_check
        else dg.AssetSelection.assets(*selection),
        partition_key=str(day),
        resources={"clickhouse": clickhouse},
        instance=instance,
        tags=tags,
    )
    assert result.success
    return result


def rollup_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node("session_counter_rollups")
    return {key: value.value for key, value in materialization.metadata.items()}


def check_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


COUNTER_COLUMNS = [
    "event_count",
    "pageview_count",
    "autocapture_count",
    "rageclick_count",
    "exception_count",
    "ai_generation_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "first_timestamp",
    "last_timestamp",
    "max_inserted_at",
    "entry_url",
    "distinct_id",
]


def rollups_frame(clickhouse: ClickHouseResource, day: date | None = None) -> pd.DataFrame:
    """The rollup table as it reads now (FINAL), one row per (team, day, session)."""
    where = "WHERE day = {day:Date}" if day else ""
    result = clickhouse.client().query(
        f"SELECT team_id, day, session_id, {', '.join(COUNTER_COLUMNS)} FROM session_counter_rollups FINAL {where}",
        parameters={"day": day} if day else None,
    )
    frame = pd.DataFrame(result.result_rows, columns=result.column_names)
    return _normalise(frame)


def expected_rollups(rows: Iterable[Mapping[str, Any]], as_of: datetime, day: date | None = None) -> pd.DataFrame:
    """Counters computed in pandas from the raw event dicts, sharing no code with the package."""
    frame = pd.DataFrame(list(rows))
    frame = frame[frame["inserted_at"] <= as_of].copy()
    frame["day"] = [ts.date() for ts in frame["timestamp"]]
    if day is not None:
        frame = frame[frame["day"] == day]
    props = [json.loads(p) for p in frame["properties"]]
    is_ai = frame["event"] == "$ai_generation"

    def number(key: str, cast):
        return [cast(p.get(key, 0)) if ai else cast(0) for p, ai in zip(props, is_ai)]

    frame["input_tokens"] = number("$ai_input_tokens", int)
    frame["output_tokens"] = number("$ai_output_tokens", int)
    frame["cost_usd"] = number("$ai_total_cost_usd", lambda v: Decimal(str(v)))
    frame["url"] = [p.get("$current_url", "") if e == "$pageview" else None for p, e in zip(props, frame["event"])]
    out = []
    for (team_id, day_value, session_id), group in frame.groupby(["team_id", "day", "$session_id"], sort=True):
        group = group.sort_values("timestamp", kind="stable")
        pageviews = group[group["event"] == "$pageview"]
        out.append(
            {
                "team_id": team_id,
                "day": day_value,
                "session_id": session_id,
                "event_count": len(group),
                "pageview_count": int((group["event"] == "$pageview").sum()),
                "autocapture_count": int((group["event"] == "$autocapture").sum()),
                "rageclick_count": int((group["event"] == "$rageclick").sum()),
                "exception_count": int((group["event"] == "$exception").sum()),
                "ai_generation_count": int((group["event"] == "$ai_generation").sum()),
                "input_tokens": int(sum(group["input_tokens"])),
                "output_tokens": int(sum(group["output_tokens"])),
                "cost_usd": sum(group["cost_usd"], Decimal(0)),
                "first_timestamp": group["timestamp"].min(),
                "last_timestamp": group["timestamp"].max(),
                "max_inserted_at": group["inserted_at"].max(),
                "entry_url": pageviews["url"].iloc[0] if len(pageviews) else "",
                "distinct_id": group["distinct_id"].iloc[0],
            }
        )
    return _normalise(pd.DataFrame(out, columns=["team_id", "day", "session_id", *COUNTER_COLUMNS]))


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("first_timestamp", "last_timestamp", "max_inserted_at"):
        frame[column] = [_utc(v) for v in frame[column]]
    frame["cost_usd"] = [Decimal(v).quantize(Decimal("1e-9")) for v in frame["cost_usd"]]
    for column in COUNTER_COLUMNS:
        if column.endswith("_count") or column.endswith("_tokens"):
            frame[column] = frame[column].astype("int64")
    frame["team_id"] = frame["team_id"].astype("int64")
    return frame.sort_values(["team_id", "day", "session_id"]).reset_index(drop=True)


def _utc(value: Any) -> datetime:
    value = pd.Timestamp(value).to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- scanners -------------------------------------------------------------------


def scanner_definition(scanner_id: str = "errors", team_id: int = 1, **overrides: Any) -> dict[str, Any]:
    definition = {
        "id": scanner_id,
        "team_id": team_id,
        "name": f"test scanner {scanner_id}",
        "kind": "match",
        "filter": {},
        "rule": {},
        "sample_rate": 1.0,
        "start_at": "2024-02-28T00:00:00Z",
    }
    definition.update(overrides)
    return definition


def add_scanner(instance: dg.DagsterInstance, postgres: Any, **definition: Any):
    from session_assets.partitions import scanner_partitions_def
    from session_assets.scanners import parse_scanner
    from session_assets.scanners import store

    scanner = parse_scanner(scanner_definition(**definition), source="test")
    store.save(postgres.pool(), scanner)
    instance.add_dynamic_partitions(scanner_partitions_def.name, [scanner.id])
    return scanner


def sweep(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    scanner_id: str,
    day: date | str,
    as_of: datetime,
    *,
    backfill: bool = False,
    page_size: int = 1000,
    default_monthly_quota: int | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    from session_assets.assets import scanner_sweep
    from session_assets.checks import one_observation_per_session, team_quota_not_exceeded, watermark_never_moves_backwards

    tags = {AS_OF_TAG: as_of.isoformat()}
    if backfill:
        tags[BACKFILL_TAG] = "test-backfill"
    config: dict[str, Any] = {"page_size": page_size}
    if default_monthly_quota is not None:
        config["default_monthly_quota"] = default_monthly_quota
    return dg.materialize(
        [session_counter_rollups, scanner_sweep, one_observation_per_session, team_quota_not_exceeded, watermark_never_moves_backwards],
        selection=dg.AssetSelection.assets(scanner_sweep) | dg.AssetSelection.checks_for_assets(scanner_sweep),
        partition_key=f"{day}|{scanner_id}",
        resources=dict(resources),
        instance=instance,
        tags=tags,
        run_config={"ops": {"scanner_sweep": {"config": config}}},
        raise_on_error=raise_on_error,
    )


def sweep_metadata(result: dg.ExecuteInProcessResult, asset: str = "observation_batches") -> dict[str, Any]:
    found = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(asset)]
    (event,) = found
    return {k: v.value for k, v in event.materialization.metadata.items()}


def observed(postgres: Any, scanner_id: str) -> dict[str, dict[str, Any]]:
    with postgres.pool().connection() as conn:
        rows = conn.execute(
            "SELECT session_id, verdict, score, evidence, batch_key, created_at, day FROM observations "
            "WHERE scanner_id = %s ORDER BY session_id",
            (scanner_id,),
        ).fetchall()
    return {r[0]: {"verdict": r[1], "score": r[2], "evidence": r[3], "batch_key": r[4], "created_at": r[5], "day": r[6]} for r in rows}
