"""An independent reference implementation of SPEC §4–§6, for the property tests.

Deliberately simple and slow: pandas over the raw event dicts, and a plain
Python loop for the sweeps. It imports nothing from `session_assets` and shares
no SQL with it, so a mistake in the package is not repeated here.

What it models:

- `rollups(events, as_of)`: the counters of `session_counter_rollups`, one row
  per (team, UTC day of the event's timestamp, session), from the events with
  `inserted_at <= as_of` (SPEC §4, §5 "covered_until").
- `sessions(events, as_of)`: the `sessions` view, one row per (team, session),
  `start = min`, `end = max`, counters summed over *all* of its events (§4).
- `Sweeps`: the observations that a sequence of sweep ticks at as-of times
  T1 < T2 < ... leaves in Postgres (§5 watermark contract, §6 eligibility,
  §8 "exactly one observation per (scanner, session)").

Where the SPEC leaves a rule open, the package's choice is written out plainly
here, with a comment that says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

UTC = timezone.utc

# SPEC §6 defaults.
SETTLE = timedelta(minutes=35)  # 30 min inactivity + 5 min ingestion lag
LOOKBACK = timedelta(hours=26)  # SDK session-id rotation (24 h) + 2 h skew
LATENESS_HORIZON = timedelta(hours=48)
MAX_SESSION_ID_LENGTH = 128

COUNTERS = (
    "event_count",
    "pageview_count",
    "autocapture_count",
    "rageclick_count",
    "exception_count",
    "ai_generation_count",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
_EVENT_COUNTERS = {
    "$pageview": "pageview_count",
    "$autocapture": "autocapture_count",
    "$rageclick": "rageclick_count",
    "$exception": "exception_count",
    "$ai_generation": "ai_generation_count",
}


# --- counters -------------------------------------------------------------------


def _frame(events: Iterable[Mapping[str, Any]], as_of: datetime, tick: int | None = None) -> pd.DataFrame:
    """The events visible as of `as_of`, one row each, with their per-event counter values.

    An event with `_visible_tick` k is in the events table only from tick k on (it was
    stamped before it became visible); `tick` None means every event is in the table.
    """
    # An event stored more than once (at-least-once ingestion: same uuid, session and
    # timestamp) is one event, as first inserted.
    first: dict[Any, Mapping[str, Any]] = {}
    for e in events:
        if e["inserted_at"] > as_of or (tick is not None and e.get("_visible_tick", 0) > tick):
            continue
        key = (int(e["team_id"]), e["$session_id"], e["timestamp"], e["uuid"])
        if key not in first or e["inserted_at"] < first[key]["inserted_at"]:
            first[key] = e
    rows = []
    for e in first.values():
        props = json.loads(e["properties"])
        ai = e["event"] == "$ai_generation"
        row = {
            "team_id": int(e["team_id"]),
            "session_id": e["$session_id"],
            "day": e["timestamp"].astimezone(UTC).date(),
            "timestamp": e["timestamp"],
            "inserted_at": e["inserted_at"],
            "event": e["event"],
            "distinct_id": e["distinct_id"],
            "properties": props,
            "event_count": 1,
            # AI numbers count on $ai_generation events only; absent, malformed or negative count as 0.
            "input_tokens": _non_negative_int(props.get("$ai_input_tokens")) if ai else 0,
            "output_tokens": _non_negative_int(props.get("$ai_output_tokens")) if ai else 0,
            "cost_usd": _non_negative_decimal(props.get("$ai_total_cost_usd")) if ai else Decimal(0),
            # The rollup keeps a URL's first 2,048 characters (docs/bad-input.md).
            "url": _first_chars(props.get("$current_url"), 2048) if e["event"] == "$pageview" else None,
        }
        for name, counter in _EVENT_COUNTERS.items():
            row[counter] = int(e["event"] == name)
        rows.append(row)
    columns = ["team_id", "session_id", "day", "timestamp", "inserted_at", "event", "distinct_id", "properties", "url", *COUNTERS]
    return pd.DataFrame(rows, columns=columns)


def _first_chars(value: Any, n: int) -> Any:
    return value[:n] if isinstance(value, str) else value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def _non_negative_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return Decimal(0)
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return Decimal(0)
    return max(number, Decimal(0)) if number.is_finite() else Decimal(0)


def _aggregate(group: pd.DataFrame) -> dict[str, Any]:
    """Counters of one group of events. Ties on the earliest timestamp are left open:
    `distinct_id` and `entry_url` list every value a correct implementation may pick."""
    first = group["timestamp"].min()
    pageviews = group[group["event"] == "$pageview"]
    out: dict[str, Any] = {name: int(group[name].sum()) for name in COUNTERS if name != "cost_usd"}
    out["cost_usd"] = sum(group["cost_usd"], Decimal(0))
    out["first_timestamp"] = _py(first)
    out["last_timestamp"] = _py(group["timestamp"].max())
    out["max_inserted_at"] = _py(group["inserted_at"].max())
    out["distinct_ids"] = frozenset(group.loc[group["timestamp"] == first, "distinct_id"])
    if len(pageviews):
        first_view = pageviews["timestamp"].min()
        urls = pageviews.loc[pageviews["timestamp"] == first_view, "url"]
        out["entry_urls"] = frozenset(u if isinstance(u, str) else "" for u in urls)
    else:
        out["entry_urls"] = frozenset({""})
    return out


def _py(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def rollups(
    events: Iterable[Mapping[str, Any]], as_of: datetime, tick: int | None = None
) -> dict[tuple[int, date, str], dict[str, Any]]:
    """`session_counter_rollups` as it must read after rolling every day as of `as_of`:
    {(team_id, day, session_id): counters}. Every session id is rolled up, even
    ones no scanner may look at ("" or longer than 128)."""
    frame = _frame(events, as_of, tick)
    return {
        (int(team), day_value, sid): _aggregate(group)
        for (team, day_value, sid), group in frame.groupby(["team_id", "day", "session_id"], sort=True)
    }


@dataclass(frozen=True)
class Session:
    """A row of the `sessions` view (SPEC §4) plus the events it folds."""

    team_id: int
    session_id: str
    start: datetime
    end: datetime
    counters: Mapping[str, Any]
    max_inserted_at: datetime
    events: tuple[Mapping[str, Any], ...]  # event, properties (decoded), timestamp

    @property
    def duration_s(self) -> int:
        # ClickHouse `dateDiff('second', start, end)` counts second boundaries crossed.
        return math.floor(self.end.timestamp()) - math.floor(self.start.timestamp())

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.end, self.session_id)

    def value(self, name: str) -> int | Decimal:
        return self.duration_s if name == "duration_s" else self.counters[name]


def sessions(events: Iterable[Mapping[str, Any]], as_of: datetime, tick: int | None = None) -> list[Session]:
    """One `Session` per (team, session id), folding all of its days, as of `as_of`."""
    return _fold(_frame(events, as_of, tick))


def _fold(frame: pd.DataFrame) -> list[Session]:
    out = []
    for (team, sid), group in frame.groupby(["team_id", "session_id"], sort=True):
        agg = _aggregate(group)
        out.append(
            Session(
                team_id=int(team),
                session_id=sid,
                start=agg["first_timestamp"],
                end=agg["last_timestamp"],
                counters={name: agg[name] for name in COUNTERS},
                max_inserted_at=agg["max_inserted_at"],
                events=tuple(
                    {"event": r.event, "properties": r.properties, "timestamp": _py(r.timestamp)}
                    for r in group.itertuples()
                ),
            )
        )
    return out


# --- sampling: CityHash64 v1.0.2, the version ClickHouse's cityHash64 uses -------

_M = (1 << 64) - 1
_K0 = 0xC3A5C85C97CB3127
_K1 = 0xB492B66FBE98F273
_K2 = 0x9AE16A3B2F90404F
_K3 = 0xC949D7C7509E6557
_KMUL = 0x9DDFEA08EB382D69


def _f64(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 8], "little")


def _f32(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 4], "little")


def _rotate(v: int, shift: int) -> int:
    return v if shift == 0 else ((v >> shift) | (v << (64 - shift))) & _M


def _shift_mix(v: int) -> int:
    return v ^ (v >> 47)


def _hash16(u: int, v: int) -> int:  # Hash128to64
    a = ((u ^ v) * _KMUL) & _M
    a ^= a >> 47
    b = ((v ^ a) * _KMUL) & _M
    b ^= b >> 47
    return (b * _KMUL) & _M


def _len0to16(s: bytes, n: int) -> int:
    if n > 8:
        a, b = _f64(s, 0), _f64(s, n - 8)
        return _hash16(a, _rotate((b + n) & _M, n)) ^ b  # RotateByAtLeast1: 8 < n <= 16
    if n >= 4:
        return _hash16((n + (_f32(s, 0) << 3)) & _M, _f32(s, n - 4))
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * _K2) ^ (z * _K3)) & _M) * _K2) & _M
    return _K2


def _len17to32(s: bytes, n: int) -> int:
    a = (_f64(s, 0) * _K1) & _M
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * _K2) & _M
    d = (_f64(s, n - 16) * _K0) & _M
    return _hash16(
        (_rotate((a - b) & _M, 43) + _rotate(c, 30) + d) & _M,
        (a + _rotate(b ^ _K3, 20) - c + n) & _M,
    )


def _weak32(s: bytes, i: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & _M
    b = _rotate((b + a + z) & _M, 21)
    c = a
    a = (a + x + y) & _M
    b = (b + _rotate(a, 44)) & _M
    return (a + z) & _M, (b + c) & _M


def _len33to64(s: bytes, n: int) -> int:
    z = _f64(s, 24)
    a = (_f64(s, 0) + (n + _f64(s, n - 16)) * _K0) & _M
    b = _rotate((a + z) & _M, 52)
    c = _rotate(a, 37)
    a = (a + _f64(s, 8)) & _M
    c = (c + _rotate(a, 7)) & _M
    a = (a + _f64(s, 16)) & _M
    vf = (a + z) & _M
    vs = (b + _rotate(a, 31) + c) & _M
    a = (_f64(s, 16) + _f64(s, n - 32)) & _M
    z = _f64(s, n - 8)
    b = _rotate((a + z) & _M, 52)
    c = _rotate(a, 37)
    a = (a + _f64(s, n - 24)) & _M
    c = (c + _rotate(a, 7)) & _M
    a = (a + _f64(s, n - 16)) & _M
    wf = (a + z) & _M
    ws = (b + _rotate(a, 31) + c) & _M
    r = _shift_mix(((vf + ws) * _K2 + (wf + vs) * _K0) & _M)
    return (_shift_mix((r * _K0 + vs) & _M) * _K2) & _M


def city_hash64(data: str | bytes) -> int:
    """CityHash64 v1.0.2 of the UTF-8 bytes (ClickHouse `cityHash64(String)`)."""
    s = data.encode() if isinstance(data, str) else bytes(data)
    n = len(s)
    if n <= 16:
        return _len0to16(s, n)
    if n <= 32:
        return _len17to32(s, n)
    if n <= 64:
        return _len33to64(s, n)
    x = _f64(s, 0)
    y = _f64(s, n - 16) ^ _K1
    z = _f64(s, n - 56) ^ _K0
    v = _weak32(s, n - 64, n, y)
    w = _weak32(s, n - 32, (n * _K1) & _M, _K0)
    z = (z + _shift_mix(v[1]) * _K1) & _M
    x = (_rotate((z + x) & _M, 39) * _K1) & _M
    y = (_rotate(y, 33) * _K1) & _M
    for i in range(0, (n - 1) & ~63, 64):
        x = (_rotate((x + y + v[0] + _f64(s, i + 16)) & _M, 37) * _K1) & _M
        y = (_rotate((y + v[1] + _f64(s, i + 48)) & _M, 42) * _K1) & _M
        x ^= w[1]
        y ^= v[0]
        z = _rotate(z ^ w[0], 33)
        v = _weak32(s, i, (v[1] * _K1) & _M, (x + w[0]) & _M)
        w = _weak32(s, i + 32, (z + w[1]) & _M, y)
        z, x = x, z
    return _hash16((_hash16(v[0], w[0]) + _shift_mix(y) * _K1 + z) & _M, (_hash16(v[1], w[1]) + x) & _M)


def sample_threshold(rate: float) -> int:
    """`round(sample_rate * 10000)`, half up, of the rate as written (0.29 -> 2900, 0.00004 -> 0)."""
    return int((Decimal(str(rate)) * 10000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def sampled(session_id: str, scanner_id: str, rate: float) -> bool:
    """SPEC §6.6: `cityHash64(concat(session_id, scanner_id)) % 10000 < round(rate * 10000)`."""
    return city_hash64(session_id + scanner_id) % 10000 < sample_threshold(rate)


# --- scanners -------------------------------------------------------------------


@dataclass(frozen=True)
class Scanner:
    """The part of a scanner definition the oracle understands.

    `filter` uses the YAML shape (SPEC §7) restricted to: min/max_duration_seconds,
    counters {name: {gte|gt|lte|lt|eq: n}} and events [{event, properties:
    [{key, op: exact|icontains, value: str}]}]. `kind` is match, or threshold with
    score = sum(weight * counter) and verdict flagged at score >= flag_at.
    """

    id: str
    team_id: int
    start_at: datetime
    filter: Mapping[str, Any] = field(default_factory=dict)
    sample_rate: float = 1.0
    kind: str = "match"
    weights: Mapping[str, int] = field(default_factory=dict)  # threshold only
    flag_at: int = 0

    def holds(self, s: Session, events: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """The filter on the session's counters and, for event conditions, on `events`
        (default: the session's own events)."""
        f = self.filter
        if "min_duration_seconds" in f and not s.duration_s >= f["min_duration_seconds"]:
            return False
        if "max_duration_seconds" in f and not s.duration_s <= f["max_duration_seconds"]:
            return False
        for name, ops in f.get("counters", {}).items():
            for op, threshold in ops.items():
                if not _compare(s.value(name), op, threshold):
                    return False
        for wanted in f.get("events", []):
            if not any(_event_matches(e, wanted) for e in (s.events if events is None else events)):
                return False
        return True

    def verdict(self, s: Session) -> tuple[str, float | None]:
        if self.kind == "match":
            return "match", None
        score = float(sum(weight * s.value(name) for name, weight in self.weights.items()))
        return ("flagged" if score >= self.flag_at else "ok"), score


def _compare(value: Any, op: str, threshold: Any) -> bool:
    return {
        "gte": value >= threshold,
        "gt": value > threshold,
        "lte": value <= threshold,
        "lt": value < threshold,
        "eq": value == threshold,
    }[op]


def _event_matches(e: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    if e["event"] != wanted["event"]:
        return False
    for prop in wanted.get("properties", []):
        present = prop["key"] in e["properties"]
        raw = e["properties"].get(prop["key"])
        text = raw if isinstance(raw, str) else ""  # JSONExtractString of a non-string is ""
        if prop["op"] == "exact" and not (present and isinstance(raw, str) and raw == prop["value"]):
            return False
        if prop["op"] == "icontains" and prop["value"].lower() not in text.lower():
            return False
    return True


# --- sweeps ---------------------------------------------------------------------

# Package rules the SPEC leaves as configuration (defaults, stated here plainly):
PARTITIONS_START = date(2024, 1, 1)  # SESSION_ASSETS_START_DATE: days before it hold no data
VISIBILITY_LAG = timedelta(minutes=5)  # an event is visible at most this long after its stamp
LATE_HORIZON_DAYS = 7  # a rollup run of day X re-rolls late events of the 7 days before X
DEFAULT_MONTHLY_QUOTA = 1_000_000


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _after(key: tuple[datetime, str], watermark: tuple[datetime, str]) -> bool:
    """SPEC §6.1: strictly after the keyset; on `end` alone when no session id is stored."""
    return key[0] > watermark[0] if watermark[1] == "" else key > watermark


@dataclass(frozen=True)
class RollupDay:
    """What rollup day d's latest record says, and which events its rows hold."""

    covered_until: datetime
    complete: bool
    late_until: datetime  # this run's late pass re-rolled...
    late_days: frozenset[date]  # ...these earlier days, up to late_until
    data: tuple[datetime, int]  # (as-of, tick) of the newest computation of the day's rows


@dataclass(frozen=True)
class Partition:
    """What the latest sweep of one (scanner, day) recorded (SPEC §5)."""

    watermark: tuple[datetime, str]  # (watermark_end, watermark_session_id)
    seen_until: datetime | None  # what that sweep saw: its rollups' coverage, capped at its as-of
    frontier: datetime | None
    complete: bool
    quota_stopped: bool


@dataclass(frozen=True)
class Observation:
    verdict: str
    score: float | None
    day: date  # the (scanner, day) partition that wrote it
    as_of: datetime
    late: bool  # found behind the watermark, because its events arrived late


class Model:
    """The stores as the runs a history executed must leave them, run by run.

    The test tells the model which runs the package executed, in order, at which
    tick (the sensor's plan is the package's; this checks what each run does):

    - `roll(day, as_of, tick)`: a rollup run of `day`. Its rows are then those of a
      fresh aggregation of the events visible at that tick and inserted up to
      `as_of`; it also re-rolls the late events of the 7 days before, those rolled
      before. Its record says so (covered_until, late_until and late_days).
    - `sweep(scanner, day, as_of)`: a sweep (SPEC §5, §6, §8). It reads the rollup
      days from the day before its lookback to its as-of day; it sees events up
      to the oldest coverage of those days (`seen_until`), never past its as-of;
      its frontier follows from that. A session is late when the watermark has
      passed it and its events arrived after the previous sweep's `seen_until`,
      less the visibility lag. Quota is spent one new observation at a time, in
      keyset order; the walk stops at the first new session it cannot pay for.
    """

    def __init__(self, events: Sequence[Mapping[str, Any]], start_date: date = PARTITIONS_START):
        self.events = list(events)
        self.start_date = start_date
        self.scanners: dict[str, Scanner] = {}
        self.rollups: dict[date, RollupDay] = {}
        self.partitions: dict[tuple[str, date], Partition] = {}
        self.observations: dict[tuple[str, str], Observation] = {}
        self.quota_limits: dict[int, int] = {}
        self.quota_used: dict[int, int] = {}

    def add_scanner(self, scanner: Scanner) -> None:
        self.scanners[scanner.id] = scanner

    def set_quota(self, team_id: int, limit: int) -> None:
        self.quota_limits[team_id] = limit

    # --- rollups

    def roll(self, day: date, as_of: datetime, tick: int) -> None:
        first = max(self.start_date, day - timedelta(days=LATE_HORIZON_DAYS))
        late = frozenset(first + timedelta(days=n) for n in range((day - first).days) if first + timedelta(days=n) in self.rollups)
        for d in late:
            self.rollups[d] = replace(self.rollups[d], data=max(self.rollups[d].data, (as_of, tick)))
        previous = self.rollups.get(day)
        self.rollups[day] = RollupDay(
            covered_until=as_of,
            complete=as_of >= day_start(day) + timedelta(days=1) + SETTLE,
            late_until=as_of,
            late_days=late,
            data=max(previous.data, (as_of, tick)) if previous else (as_of, tick),
        )

    def rows(self, day: date) -> dict[tuple[int, date, str], dict[str, Any]]:
        """The rollup rows day `day` must hold."""
        as_of, tick = self.rollups[day].data
        return {k: v for k, v in rollups(self.events, as_of, tick).items() if k[1] == day}

    def coverage(self, day: date) -> datetime | None:
        own = self.rollups.get(day)
        if own is None:
            return None
        later = [r.late_until for d, r in self.rollups.items() if d > day and day in r.late_days]
        return max([own.covered_until, *later])

    # --- sweeps

    def sweep(self, scanner_id: str, day: date, as_of: datetime, tick: int) -> Partition:
        scanner = self.scanners[scanner_id]
        start = (scanner.start_at, "")
        found = self.partitions.get((scanner.id, day)) or self.partitions.get((scanner.id, day - timedelta(days=1)))
        if found is None:
            watermark, seen_before = start, None
        else:  # never before the scanner's start
            watermark, seen_before = (found.watermark if found.watermark >= start else start), found.seen_until
        min_start = watermark[0] - LOOKBACK
        late_since = seen_before - VISIBILITY_LAG if seen_before is not None else None
        late_floor = max(watermark[0] - LATENESS_HORIZON, scanner.start_at)
        late_min_start = late_floor - LOOKBACK
        window_start = min(min_start, late_min_start) if late_since is not None else min_start
        first = window_start.date() - timedelta(days=1)
        read = [first + timedelta(days=n) for n in range((max(first, as_of.date()) - first).days + 1)]

        covered = [self.coverage(d) for d in read if d >= self.start_date]
        if any(c is None for c in covered):
            # Nothing read: nothing moves, not even what was seen.
            result = Partition(watermark, seen_before, None, False, False)
            self.partitions[(scanner.id, day)] = result
            return result
        seen = min([as_of, *covered])  # type: ignore[list-item]
        frontier = min(day_start(day) + timedelta(days=1), seen - SETTLE)

        # The sessions as the read days' rollup rows show them.
        frames = [
            _frame([e for e in self.events if e["timestamp"].astimezone(UTC).date() == d], *self.rollups[d].data)
            for d in read
            if d in self.rollups
        ]
        visible = _fold(pd.concat(frames)) if frames else []
        # Event conditions look at the raw events the sweep saw (inserted up to `seen`), in its window.
        presence: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for e in self.events:
            if (
                e["inserted_at"] <= seen
                and e.get("_visible_tick", 0) <= tick
                and window_start <= e["timestamp"] <= frontier
            ):
                presence.setdefault((int(e["team_id"]), e["$session_id"]), []).append(
                    {"event": e["event"], "properties": json.loads(e["properties"]), "timestamp": e["timestamp"]}
                )

        def eligible(s: Session) -> bool:
            if s.team_id != scanner.team_id:  # §6: every query is scoped by team
                return False
            if not 1 <= len(s.session_id) <= MAX_SESSION_ID_LENGTH:  # §6.4
                return False
            if s.end > frontier:  # §6.2, inclusive
                return False
            fresh = _after(s.key, watermark) and s.start >= min_start  # §6.1, §6.3
            late = (
                late_since is not None
                and not _after(s.key, watermark)
                and s.max_inserted_at > late_since
                and s.end > late_floor
                and s.start >= late_min_start
            )
            return (fresh or late) and scanner.holds(s, presence.get((s.team_id, s.session_id), []))  # §6.5

        candidates = sorted((s for s in visible if eligible(s)), key=lambda s: s.key)  # §6 order
        walked = [s for s in candidates if sampled(s.session_id, scanner.id, scanner.sample_rate)]  # §6.6
        last_handled = stopped_at = None
        for s in walked:
            if (scanner.id, s.session_id) not in self.observations:
                used = self.quota_used.get(scanner.team_id, 0)
                if used >= self.quota_limits.get(scanner.team_id, DEFAULT_MONTHLY_QUOTA):
                    stopped_at = s.key  # §8: refused for quota; the walk stops here
                    break
                self.quota_used[scanner.team_id] = used + 1
                verdict, score = scanner.verdict(s)
                late = not _after(s.key, watermark)
                self.observations[(scanner.id, s.session_id)] = Observation(verdict, score, day, as_of, late)
            last_handled = s.key
        # The keyset never moves back: past every session handled and, when the walk finished,
        # to the frontier. What was seen moves on, unless the walk stopped at a late session.
        new = max([watermark, *([last_handled] if last_handled else []), *([(frontier, "")] if stopped_at is None else [])])
        if stopped_at is not None and seen_before is not None and not _after(stopped_at, watermark):
            new_seen = seen_before
        else:
            new_seen = max(seen, seen_before or seen)
        complete = stopped_at is None and frontier >= day_start(day) + timedelta(days=1)
        result = Partition(new, new_seen, frontier, complete, stopped_at is not None)
        self.partitions[(scanner.id, day)] = result
        return result
