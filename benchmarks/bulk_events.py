"""Millions of PostHog-shaped events for one UTC day, numpy-vectorised: the benchmarks'
data (and that of the tests that load a lot). Same event mix and property shapes as
`session_assets.commands.demo_data.generate_events`, simpler sessions; columns keyed by
`EVENT_COLUMNS`. numpy is a dev dependency: the code location never imports this."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np

from session_assets.commands.demo_data import (  # the shapes both generators share
    _AI_MODELS,
    _AI_MODEL_WEIGHTS,
    _ALL_PATHS,
    _CHANGE_TARGETS,
    _CLICK_TARGETS,
    _DAY,
    _EXCEPTIONS,
    _HOST,
    _HOUR,
    _HOUR_WEIGHTS,
    _JSON_SEP,
    _MAX_INPUT_TOKENS,
    _MAX_OUTPUT_TOKENS,
    _MIN,
    _PY_LIB_VERSION,
    _S,
    _SUBMIT_TARGETS,
    _UA_PROFILES,
    _UA_WEIGHTS,
    _WEB_LIB_VERSION,
)

# ---------------------------------------------------------------------------
# generate_bulk_events: vectorised, one UTC day
# ---------------------------------------------------------------------------

# Event codes of the bulk generator; index into _BULK_EVENTS.
_PV, _AC, _PL, _RC, _EX, _AI = range(6)
_BULK_EVENTS = np.array(
    [
        "$pageview",
        "$autocapture",
        "$pageleave",
        "$rageclick",
        "$exception",
        "$ai_generation",
    ],
    dtype=object,
)
# Cumulative probabilities of event codes for events after a session's first one,
# per session kind (web, ai, mixed).
_BULK_MIX = np.array(
    [
        [0.32, 0.82, 0.94, 0.97, 1.00, 1.00],
        [0.00, 0.00, 0.00, 0.00, 0.00, 1.00],
        [0.30, 0.45, 0.50, 0.51, 0.52, 1.00],
    ]
)
_AUTOCAPTURE_VARIANTS: tuple[tuple[str, str, str], ...] = tuple(
    [("click", t, s) for t, s in _CLICK_TARGETS]
    + [("change", t, s) for t, s in _CHANGE_TARGETS]
    + [("submit", t, s) for t, s in _SUBMIT_TARGETS]
)
_AUTOCAPTURE_P = np.array(
    [0.15] * len(_CLICK_TARGETS)
    + [0.075] * len(_CHANGE_TARGETS)
    + [0.05] * len(_SUBMIT_TARGETS)
)
_AUTOCAPTURE_P = _AUTOCAPTURE_P / _AUTOCAPTURE_P.sum()


def _piece(props: dict[str, Any]) -> str:
    """`,"k":v,...}`: the tail of a JSON object whose head is a per-session prefix."""
    return "," + json.dumps(props, separators=_JSON_SEP)[1:]


class _BulkTables:
    """Pre-rendered JSON tails, so each row costs one table lookup and one concat."""

    _cache: _BulkTables | None = None

    def __init__(self) -> None:
        pages = [
            {"$current_url": f"https://{_HOST}{p}", "$host": _HOST, "$pathname": p}
            for p in _ALL_PATHS
        ]
        self.pageview = np.array([_piece(p) for p in pages], dtype=object)
        self.pageleave = self.pageview  # same shape, different event name
        self.autocapture = np.array(
            [
                _piece({**p, "$event_type": k, "$el_text": t, "$elements_chain": s})
                for p in pages
                for k, t, s in _AUTOCAPTURE_VARIANTS
            ],
            dtype=object,
        )
        self.rageclick = np.array(
            [
                _piece({**p, "$el_text": t, "$elements_chain": s})
                for p in pages
                for t, s in _CLICK_TARGETS
            ],
            dtype=object,
        )
        self.exception = np.array(
            [
                _piece({**p, "$exception_type": k, "$exception_message": m})
                for p in pages
                for k, m in _EXCEPTIONS
            ],
            dtype=object,
        )
        self.ai_model = np.array(
            [
                _piece({"$ai_model": m, "$ai_provider": p, "$ai_http_status": 200})[:-1]
                + ',"$ai_input_tokens":'
                for m, p, _, _ in _AI_MODELS
            ],
            dtype=object,
        )
        self.input_tokens = np.array(
            [f'{i},"$ai_output_tokens":' for i in range(_MAX_INPUT_TOKENS + 1)],
            dtype=object,
        )
        self.output_tokens = np.array(
            [f'{i},"$ai_latency":' for i in range(_MAX_OUTPUT_TOKENS + 1)], dtype=object
        )
        self.latency_ms = np.array(
            [f'{ms / 1000:.3f},"$ai_total_cost_usd":' for ms in range(100_001)],
            dtype=object,
        )
        self.nano_hi = np.array([f"0.{hi:05d}" for hi in range(100_000)], dtype=object)
        self.nano_lo = np.array([f"{lo:04d}}}" for lo in range(10_000)], dtype=object)

    @classmethod
    def get(cls) -> _BulkTables:
        if cls._cache is None:
            cls._cache = cls()
        return cls._cache


def _uuid7_bytes(ms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 16) uint8 big-endian UUIDv7 bytes for unix-millisecond timestamps `ms`."""
    n = len(ms)
    out = np.empty((n, 16), dtype=np.uint8)
    out[:, :6] = ms.astype(">u8").view(np.uint8).reshape(n, 8)[:, 2:]
    out[:, 6:] = np.frombuffer(rng.bytes(n * 10), dtype=np.uint8).reshape(n, 10)
    out[:, 6] = (out[:, 6] & 0x0F) | 0x70
    out[:, 8] = (out[:, 8] & 0x3F) | 0x80
    return out


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Positions of the 32 hex digits within the 36-char canonical form.
_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _uuid_hex36(raw: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 -> (n,) 'S36' canonical lowercase UUID text."""
    n = len(raw)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _HEX_POS] = digits
    return text.view("S36").ravel()


def uuid_bytes_to_strings(values: np.ndarray) -> list[str]:
    """Canonical UUID strings from a bulk `uuid` column (numpy 'V16'); ~1.3 s per 5M."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1, 16)
    # One decode and cheap slices beat numpy's 'U36' (4 bytes per char) round trip.
    text = _uuid_hex36(raw).tobytes().decode("ascii")
    return [text[i : i + 36] for i in range(0, len(text), 36)]


def uuid_bytes_to_uuids(values: np.ndarray) -> list[uuid.UUID]:
    """uuid.UUID objects from a bulk `uuid` column (numpy 'V16'); slow for millions."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1, 16)
    return [uuid.UUID(bytes=row) for row in map(bytes, raw)]


def generate_bulk_events(
    *,
    n_events: int,
    day: date,
    seed: int = 11,
    teams: Sequence[int] = (1, 2, 3),
) -> dict[str, np.ndarray]:
    """Exactly `n_events` events with timestamps inside the UTC `day`, numpy-vectorised.

    Column types (all 1-D numpy arrays of length n_events):
    `uuid` dtype 'V16', the UUIDv7's 16 big-endian bytes (`bytes(a[i])`, or
    `uuid_bytes_to_strings` / `uuid_bytes_to_uuids` to convert). Convert before
    `clickhouse_connect` inserts: it does not know np.void and writes zero UUIDs;
    `event`/`properties`/`distinct_id`/`$session_id` object arrays of str;
    `timestamp`/`inserted_at` datetime64[us], meaning UTC; `team_id` int64.

    Rows are grouped by session, sessions ordered by start time; rows are NOT
    globally sorted by timestamp (sorting 5M Python strings costs seconds).
    inserted_at = timestamp + 0.5-10 s (may spill past midnight); no late rows.
    Sessions are short (geometric, ~14 events) and never cross midnight.
    `$ai_total_cost_usd` is written with exactly 9 decimals (e.g. 0.000197700).
    """
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if not teams:
        raise ValueError("teams must not be empty")
    rng = np.random.default_rng(seed)
    tables = _BulkTables.get()
    n = n_events
    day_start = (date(day.year, day.month, day.day) - date(1970, 1, 1)).days * _DAY

    # Session sizes: geometric (mean 14) so a few sessions are long, most short.
    n_guess = n // 14 + 64
    sizes = rng.geometric(1 / 14, n_guess).astype(np.int64)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, rng.geometric(1 / 14, n_guess)])
    ends = np.cumsum(sizes)
    n_sessions = int(np.searchsorted(ends, n)) + 1 if n else 0
    sizes = sizes[:n_sessions]
    if n_sessions:
        sizes[-1] -= ends[n_sessions - 1] - n
    first = np.cumsum(sizes) - sizes
    sess = np.repeat(np.arange(n_sessions, dtype=np.int32), sizes)
    is_first = np.zeros(n, dtype=bool)
    is_first[first] = True

    # Session attributes. Team weights differ a little, like real projects do.
    team_ids = np.asarray(teams, dtype=np.int64)
    team_w = rng.uniform(0.8, 1.2, len(team_ids))
    s_team = rng.choice(len(team_ids), n_sessions, p=team_w / team_w.sum())
    s_kind = rng.choice(3, n_sessions, p=[0.78, 0.10, 0.12])
    s_ua = rng.choice(
        len(_UA_PROFILES), n_sessions, p=np.array(_UA_WEIGHTS) / sum(_UA_WEIGHTS)
    )
    # Zipf-ish users: a heavy head of returning users within each team's pool.
    pool = max(5, int(n_sessions * 0.45 / len(team_ids)))
    s_user = np.minimum(rng.zipf(1.3, n_sessions), pool)
    s_user = np.where(s_user == pool, rng.integers(1, pool + 1, n_sessions), s_user)

    # Offsets within a session: cumulative lognormal gaps (median 15 s), < 30 min.
    gaps = np.clip(rng.lognormal(np.log(15.0), 1.1, n), 0.2, 1500.0)
    gaps = (gaps * _S).astype(np.int64)
    gaps[first] = 0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first], sizes)
    duration = offsets[first + sizes - 1] if n_sessions else np.zeros(0, dtype=np.int64)
    # Sorted starts keep rows roughly in time order at session granularity; only
    # the few sessions pulled back to end before midnight break the order.
    hour_p = np.array(_HOUR_WEIGHTS) / sum(_HOUR_WEIGHTS)
    s_start = np.sort(
        rng.choice(24, n_sessions, p=hour_p) * _HOUR
        + rng.integers(0, _HOUR, n_sessions)
    )
    # A random margin, so sessions pulled back do not all end on the last microsecond.
    latest_start = _DAY - 1 - duration - rng.integers(0, 10 * _MIN, n_sessions)
    s_start = np.clip(np.minimum(s_start, latest_start), 0, None)
    ts_us = day_start + np.minimum(s_start[sess] + offsets, _DAY - 1)
    del gaps, offsets

    # Event codes by session kind; every non-AI session opens with a pageview.
    codes = np.empty(n, dtype=np.int8)
    u = rng.random(n)
    ev_kind = s_kind[sess]
    for kind in range(3):
        mask = ev_kind == kind
        codes[mask] = np.searchsorted(_BULK_MIX[kind], u[mask], side="right")
    codes[is_first & (ev_kind != 1)] = _PV
    del u, ev_kind, is_first

    # Session-level JSON heads and ids.
    s_ms = (day_start + s_start) // 1000
    sid_list = uuid_bytes_to_strings(_uuid7_bytes(s_ms, rng))
    trace_list = uuid_bytes_to_strings(_uuid7_bytes(s_ms, rng))
    ua_heads = [
        f',"$lib":"web","$lib_version":"{_WEB_LIB_VERSION}","$browser":"{b}","$os":"{o}","$device_type":"{d}","$screen_width":{w}'
        for b, o, d, w in _UA_PROFILES
    ]
    py_mid = (
        f'","$lib":"posthog-python","$lib_version":"{_PY_LIB_VERSION}","$ai_trace_id":"'
    )
    web_head = np.array(
        [
            '{"$session_id":"' + s + '"' + ua_heads[k]
            for s, k in zip(sid_list, s_ua.tolist())
        ],
        dtype=object,
    )
    py_head = np.array(
        [
            '{"$session_id":"' + s + py_mid + t + '"'
            for s, t in zip(sid_list, trace_list)
        ],
        dtype=object,
    )
    teams_list = team_ids.tolist()
    user_text = np.array(
        [f"user-{teams_list[t]}-{k}" for t, k in zip(s_team.tolist(), s_user.tolist())],
        dtype=object,
    )
    sid_text = np.array(sid_list, dtype=object)
    del trace_list

    # Per-event JSON tails from the pre-rendered tables.
    path = rng.integers(0, len(_ALL_PATHS), n)
    tail = np.empty(n, dtype=object)
    for code, table, variants in (
        (_PV, tables.pageview, 1),
        (_PL, tables.pageleave, 1),
        (_RC, tables.rageclick, len(_CLICK_TARGETS)),
        (_EX, tables.exception, len(_EXCEPTIONS)),
    ):
        idx = np.flatnonzero(codes == code)
        tail[idx] = table[path[idx] * variants + rng.integers(0, variants, len(idx))]
    idx = np.flatnonzero(codes == _AC)
    variant = rng.choice(len(_AUTOCAPTURE_VARIANTS), len(idx), p=_AUTOCAPTURE_P)
    tail[idx] = tables.autocapture[path[idx] * len(_AUTOCAPTURE_VARIANTS) + variant]
    del path, idx, variant

    ai = np.flatnonzero(codes == _AI)
    model = rng.choice(
        len(_AI_MODELS), len(ai), p=np.array(_AI_MODEL_WEIGHTS) / sum(_AI_MODEL_WEIGHTS)
    )
    in_tok = np.clip(
        rng.lognormal(np.log(800), 1.0, len(ai)), 20, _MAX_INPUT_TOKENS
    ).astype(np.int64)
    out_tok = np.clip(
        rng.lognormal(np.log(250), 0.9, len(ai)), 1, _MAX_OUTPUT_TOKENS
    ).astype(np.int64)
    latency_ms = np.clip(
        300 + out_tok * rng.uniform(4, 20, len(ai)), 100, 100_000
    ).astype(np.int64)
    price_in = np.array([m[2] for m in _AI_MODELS])[model]
    price_out = np.array([m[3] for m in _AI_MODELS])[model]
    # Whole nano-dollars, rendered "0." + 5 digits + 4 digits from lookup tables
    # (costs stay far below $1: at most 16k input and 4k output tokens).
    nano = np.rint(in_tok * price_in * 1e9).astype(np.int64) + np.rint(
        out_tok * price_out * 1e9
    ).astype(np.int64)
    tail[ai] = (
        tables.ai_model[model]
        + tables.input_tokens[in_tok]
        + tables.output_tokens[out_tok]
        + tables.latency_ms[latency_ms]
        + tables.nano_hi[nano // 10_000]
        + tables.nano_lo[nano % 10_000]
    )

    head = web_head[sess]
    head[ai] = py_head[sess[ai]]
    properties = head + tail
    del head, tail, web_head, py_head

    return {
        "uuid": _uuid7_bytes(ts_us // 1000, rng).view("V16").ravel(),
        "event": _BULK_EVENTS[codes],
        "properties": properties,
        "timestamp": ts_us.astype("datetime64[us]"),
        "team_id": team_ids[s_team[sess]],
        "distinct_id": user_text[sess],
        "$session_id": sid_text[sess],
        "inserted_at": (ts_us + rng.integers(_S // 2, 10 * _S + 1, n)).astype(
            "datetime64[us]"
        ),
    }
