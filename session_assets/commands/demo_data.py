"""Seeded, reproducible PostHog-shaped demo events for the ClickHouse `events` table.

`generate_events` simulates sessions one by one (web, AI, mixed, >24 h tabs,
sessions crossing midnight, late-arriving rows) for tests and demos (the bulk,
numpy-vectorised generator of the benchmarks is `benchmarks/bulk_events.py`).

It returns a column-oriented dict whose keys are `EVENT_COLUMNS`, in the order of
`events(uuid, event, properties, timestamp, team_id, distinct_id, "$session_id",
inserted_at)`.

AI costs are written into the JSON as fixed-point numbers (never `1.2e-05`), since
the rollup SQL parses them with `toDecimal128OrNull(JSONExtractRaw(...))`.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from session_assets.stores.events_io import EVENT_COLUMNS

__all__ = [
    "EVENT_COLUMNS",
    "SESSION_INACTIVITY",
    "generate_events",
]


# PostHog rotates the session id after 30 minutes without events.
SESSION_INACTIVITY = timedelta(minutes=30)

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_S = 1_000_000  # microseconds
_MIN = 60 * _S
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR

_HOST = "shop.example.com"
_WEB_LIB_VERSION = "1.181.0"
_PY_LIB_VERSION = "3.7.4"
_N_PRODUCTS = 500
_STATIC_PATHS: tuple[str, ...] = (
    "/",
    "/pricing",
    "/products",
    "/cart",
    "/checkout",
    "/checkout/success",
    "/login",
    "/signup",
    "/account",
    "/dashboard",
    "/blog",
    "/docs",
    "/search",
    "/assistant",
)
# Every path either generator emits: static pages then /products/1.._N_PRODUCTS.
_ALL_PATHS: tuple[str, ...] = _STATIC_PATHS + tuple(f"/products/{n}" for n in range(1, _N_PRODUCTS + 1))

# (browser, os, device type, screen width)
_UA_PROFILES: tuple[tuple[str, str, str, int], ...] = (
    ("Chrome", "Mac OS X", "Desktop", 1512),
    ("Chrome", "Windows", "Desktop", 1920),
    ("Safari", "Mac OS X", "Desktop", 1440),
    ("Firefox", "Windows", "Desktop", 1366),
    ("Edge", "Windows", "Desktop", 1536),
    ("Mobile Safari", "iOS", "Mobile", 390),
    ("Chrome", "Android", "Mobile", 412),
    ("Chrome", "Linux", "Desktop", 2560),
)
_UA_WEIGHTS = (0.30, 0.22, 0.12, 0.06, 0.06, 0.14, 0.08, 0.02)
_REFERRERS: tuple[str, ...] = ("$direct", "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/")

_CLICK_TARGETS: tuple[tuple[str, str], ...] = (
    ("Add to cart", "button.btn.btn-primary"),
    ("Checkout", "a.btn.checkout-link"),
    ("Sign up", "button.signup"),
    ("Read more", "a.post-link"),
    ("Next", "button.pager-next"),
)
_CHANGE_TARGETS: tuple[tuple[str, str], ...] = (("", "input.search-box"), ("", "select.quantity"))
_SUBMIT_TARGETS: tuple[tuple[str, str], ...] = (("", "form.checkout-form"), ("", "form.login-form"))
_EXCEPTIONS: tuple[tuple[str, str], ...] = (
    ("TypeError", "Cannot read properties of undefined (reading 'price')"),
    ("ReferenceError", "analytics is not defined"),
    ("Error", "Network request failed"),
    ("ChunkLoadError", "Loading chunk 742 failed."),
    ("SyntaxError", "Unexpected token '<', \"<!DOCTYPE \" is not valid JSON"),
)

# (model, provider, USD per input token, USD per output token)
_AI_MODELS: tuple[tuple[str, str, float, float], ...] = (
    ("gpt-4o-mini", "openai", 0.15e-6, 0.60e-6),
    ("gpt-4o", "openai", 2.50e-6, 10.0e-6),
    ("claude-3-5-sonnet-20241022", "anthropic", 3.00e-6, 15.0e-6),
    ("claude-3-5-haiku-20241022", "anthropic", 0.80e-6, 4.00e-6),
    ("gemini-1.5-flash", "google", 0.075e-6, 0.30e-6),
)
_AI_MODEL_WEIGHTS = (0.40, 0.20, 0.15, 0.15, 0.10)
_MAX_INPUT_TOKENS = 16_000
_MAX_OUTPUT_TOKENS = 4_000

# Relative session starts per UTC hour: quiet nights, busy working hours.
_HOUR_WEIGHTS = (
    0.30, 0.25, 0.20, 0.20, 0.25, 0.35, 0.50, 0.70, 0.90, 1.00, 1.00, 1.00,
    0.95, 0.95, 1.00, 1.00, 1.00, 0.95, 0.90, 0.85, 0.75, 0.60, 0.50, 0.40,
)  # fmt: skip

_JSON_SEP = (",", ":")


def _fmt_usd(value: float) -> str:
    """Fixed-point JSON number with at most 9 decimals (no exponent)."""
    text = f"{value:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _dumps(props: dict[str, Any], raw: dict[str, str] | None = None) -> str:
    """Compact JSON; `raw` values are spliced in verbatim (pre-formatted numbers)."""
    text = json.dumps(props, separators=_JSON_SEP)
    if not raw:
        return text
    extra = ",".join(f"{json.dumps(k)}:{v}" for k, v in raw.items())
    return text[:-1] + ("," if len(text) > 2 else "") + extra + "}"


def _to_us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _S + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _uuid7_int(ms: int, rand74: int) -> int:
    """UUIDv7 layout: 48-bit unix ms, version 7, 12+62 random bits, RFC 4122 variant."""
    rand_a = rand74 >> 62
    rand_b = rand74 & ((1 << 62) - 1)
    return (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b


# ---------------------------------------------------------------------------
# generate_events: session-by-session simulation
# ---------------------------------------------------------------------------

_RawEvent = tuple[int, str, str, dict[str, Any], "dict[str, str] | None", int, str, str]
# (timestamp_us, event, lib, props, raw_props, team_id, distinct_id, session_id)


class _Simulator:
    def __init__(self, *, seed: int, now_us: int, start_us: int) -> None:
        self.r = random.Random(seed)
        self.now_us = now_us
        self.start_us = start_us
        self.events: list[_RawEvent] = []

    # -- small draws -------------------------------------------------------

    def _lognormal_us(self, median_s: float, sigma: float, lo_s: float, hi_s: float) -> int:
        seconds = self.r.lognormvariate(math.log(median_s), sigma)
        return int(min(max(seconds, lo_s), hi_s) * _S)

    def _interaction_gap(self) -> int:
        return self._lognormal_us(8.0, 0.8, 0.3, 180.0)

    # Every gap inside a session stays <= 25 min, below SESSION_INACTIVITY, so a
    # session id never spans an idle period (PostHog would have rotated it).

    def _page_gap(self) -> int:
        # Mostly reading time, sometimes the user wanders off for a while.
        if self.r.random() < 0.08:
            return self.r.randint(5 * _MIN, 25 * _MIN)
        return self._lognormal_us(40.0, 0.9, 2.0, 600.0)

    def _session_start(self) -> int:
        """A start in [start_us, now_us) following the daily traffic curve."""
        span = self.now_us - self.start_us
        while True:
            t = self.start_us + int(self.r.random() * span)
            if self.r.random() < _HOUR_WEIGHTS[(t // _HOUR) % 24]:
                return t

    def _session_id(self, start_us: int) -> str:
        return str(uuid.UUID(int=_uuid7_int(start_us // 1000, self.r.getrandbits(74))))

    def _ua_props(self) -> dict[str, Any]:
        browser, os_name, device, width = self.r.choices(_UA_PROFILES, weights=_UA_WEIGHTS)[0]
        return {"$browser": browser, "$os": os_name, "$device_type": device, "$screen_width": width}

    def _next_path(self, path: str) -> str:
        r = self.r
        if path in ("/", "/blog", "/search", "/products"):
            return r.choice(("/products", f"/products/{r.randint(1, _N_PRODUCTS)}", "/pricing", "/search", "/blog"))
        if path.startswith("/products/"):
            return r.choice(("/cart", f"/products/{r.randint(1, _N_PRODUCTS)}", "/products", "/"))
        if path == "/cart":
            return r.choice(("/checkout", "/checkout", "/products"))
        if path == "/checkout":
            return r.choice(("/checkout/success", "/checkout/success", "/cart"))
        if path in ("/pricing", "/signup", "/login"):
            return r.choice(("/signup", "/login", "/dashboard", "/docs"))
        return r.choice(("/dashboard", "/account", "/docs", "/assistant", "/"))

    def _landing_path(self) -> str:
        r = self.r
        return r.choices(
            ("/", "/pricing", f"/products/{r.randint(1, _N_PRODUCTS)}", "/blog", "/docs", "/login"),
            weights=(0.35, 0.10, 0.30, 0.10, 0.10, 0.05),
        )[0]

    # -- emission ----------------------------------------------------------

    def _emit(
        self,
        ts: int,
        event: str,
        lib: str,
        props: dict[str, Any],
        ctx: tuple[int, str, str],
        raw: dict[str, str] | None = None,
    ) -> None:
        # Events "from the future" do not exist yet; the session is cut at now.
        if ts <= self.now_us:
            team, distinct_id, session_id = ctx
            self.events.append((ts, event, lib, props, raw, team, distinct_id, session_id))

    @staticmethod
    def _page(path: str) -> dict[str, Any]:
        return {"$current_url": f"https://{_HOST}{path}", "$host": _HOST, "$pathname": path}

    def _ai_generation(self, ts: int, ctx: tuple[int, str, str], trace_id: str) -> None:
        r = self.r
        model, provider, p_in, p_out = r.choices(_AI_MODELS, weights=_AI_MODEL_WEIGHTS)[0]
        input_tokens = int(min(max(r.lognormvariate(math.log(800), 1.0), 20), _MAX_INPUT_TOKENS))
        output_tokens = int(min(max(r.lognormvariate(math.log(250), 0.9), 1), _MAX_OUTPUT_TOKENS))
        input_cost = round(input_tokens * p_in, 9)
        output_cost = round(output_tokens * p_out, 9)
        props = {
            "$ai_model": model,
            "$ai_provider": provider,
            "$ai_input_tokens": input_tokens,
            "$ai_output_tokens": output_tokens,
            "$ai_latency": round(0.3 + output_tokens * r.uniform(0.004, 0.02), 3),
            "$ai_trace_id": trace_id,
            "$ai_http_status": 200,
        }
        raw = {
            "$ai_input_cost_usd": _fmt_usd(input_cost),
            "$ai_output_cost_usd": _fmt_usd(output_cost),
            "$ai_total_cost_usd": _fmt_usd(round(input_cost + output_cost, 9)),
        }
        self._emit(ts, "$ai_generation", "posthog-python", props, ctx, raw)

    # -- sessions ----------------------------------------------------------

    def web_session(self, ctx: tuple[int, str, str], start: int, *, with_ai: bool, min_duration: int = 0) -> int:
        """Pageviews with clicks, the odd rage click / exception, optional backend AI calls."""
        r = self.r
        ua = self._ua_props()
        n_pages = min(1 + int(r.expovariate(1 / 3.5)), 15)
        path = self._landing_path()
        referrer = r.choices(_REFERRERS, weights=(0.5, 0.3, 0.1, 0.1))[0]
        trace_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
        t = start
        page_no = 0
        while t <= self.now_us:
            props = {**ua, **self._page(path)}
            if page_no == 0:
                props["$referrer"] = referrer
                props["$referring_domain"] = "$direct" if referrer == "$direct" else referrer.split("/")[2]
            self._emit(t, "$pageview", "web", props, ctx)
            for _ in range(r.choices((0, 1, 2, 3, 4), weights=(0.25, 0.30, 0.22, 0.13, 0.10))[0]):
                t += self._interaction_gap()
                kind = r.choices(("click", "change", "submit"), weights=(0.75, 0.15, 0.10))[0]
                targets = {"click": _CLICK_TARGETS, "change": _CHANGE_TARGETS, "submit": _SUBMIT_TARGETS}[kind]
                text, selector = r.choice(targets)
                self._emit(
                    t,
                    "$autocapture",
                    "web",
                    {**ua, **self._page(path), "$event_type": kind, "$el_text": text, "$elements_chain": selector},
                    ctx,
                )
            if r.random() < 0.07:
                t += self._interaction_gap()
                text, selector = r.choice(_CLICK_TARGETS)
                self._emit(
                    t, "$rageclick", "web", {**ua, **self._page(path), "$el_text": text, "$elements_chain": selector}, ctx
                )
            if r.random() < 0.05:
                t += r.randint(50_000, 3 * _S)
                exc_type, message = r.choice(_EXCEPTIONS)
                self._emit(
                    t,
                    "$exception",
                    "web",
                    {**ua, **self._page(path), "$exception_type": exc_type, "$exception_message": message},
                    ctx,
                )
            if with_ai and r.random() < 0.6:
                # The user asks the assistant; the backend (posthog-python) records each LLM call.
                t += self._interaction_gap()
                self._emit(
                    t,
                    "$autocapture",
                    "web",
                    {**ua, **self._page(path), "$event_type": "submit", "$el_text": "", "$elements_chain": "form.chat"},
                    ctx,
                )
                for _ in range(r.randint(1, 3)):
                    t += self._lognormal_us(3.0, 0.7, 0.4, 60.0)
                    self._ai_generation(t, ctx, trace_id)
            page_no += 1
            if page_no >= n_pages and t - start >= min_duration:
                if r.random() < 0.6:
                    t += self._interaction_gap()
                    self._emit(t, "$pageleave", "web", {**ua, **self._page(path)}, ctx)
                break
            if r.random() < 0.3:
                t += self._interaction_gap()
                self._emit(t, "$pageleave", "web", {**ua, **self._page(path)}, ctx)
            t += self._page_gap()
            path = self._next_path(path)
        return t

    def ai_session(self, ctx: tuple[int, str, str], start: int) -> int:
        """Backend-only LLM calls (posthog-python): a few conversations, each a trace."""
        r = self.r
        t = start
        trace_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
        for i in range(min(1 + int(r.expovariate(1 / 4.0)), 20)):
            if i:
                if r.random() < 0.25:
                    trace_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
                t += r.randint(5 * _MIN, 20 * _MIN) if r.random() < 0.1 else self._lognormal_us(20.0, 1.0, 1.0, 300.0)
            if t > self.now_us:
                break
            self._ai_generation(t, ctx, trace_id)
        return t

    def long_session(self, ctx: tuple[int, str, str], start: int, duration: int) -> int:
        """A tab left open on a dashboard, pinging every ~20 min (always < 30 min apart)."""
        r = self.r
        ua = self._ua_props()
        page = self._page("/dashboard")
        t = start
        self._emit(t, "$pageview", "web", {**ua, **page, "$referrer": "$direct", "$referring_domain": "$direct"}, ctx)
        while t < start + duration:
            t += r.randint(12 * _MIN, 25 * _MIN)
            if r.random() < 0.4:
                self._emit(t, "$pageview", "web", {**ua, **page}, ctx)
            else:
                self._emit(
                    t,
                    "$autocapture",
                    "web",
                    {**ua, **page, "$event_type": "change", "$el_text": "", "$elements_chain": "select.date-range"},
                    ctx,
                )
        return t

    def run_session(self, team: int, distinct_id: str, kind: str, start: int, min_duration: int = 0) -> int:
        ctx = (team, distinct_id, self._session_id(start))
        if kind == "ai":
            return self.ai_session(ctx, start)
        return self.web_session(ctx, start, with_ai=kind == "mixed", min_duration=min_duration)

    def run_team(self, team: int, *, days: int, sessions_per_day: int) -> None:
        r = self.r
        n_sessions = round(sessions_per_day * days * r.uniform(0.8, 1.2))
        n_users = max(5, int(n_sessions * 0.45))
        # Zipf-like: a few heavy users, a long tail of one-off visitors.
        user_weights = [1.0 / (k + 1) ** 0.8 for k in range(n_users)]
        cum_weights = list(itertools.accumulate(user_weights))

        def pick_user() -> str:
            return f"user-{team}-{r.choices(range(n_users), cum_weights=cum_weights)[0] + 1}"

        def pick_kind() -> str:
            return r.choices(("web", "ai", "mixed"), weights=(0.72, 0.14, 0.14))[0]

        starts = sorted(self._session_start() for _ in range(n_sessions))
        for i, start in enumerate(starts):
            user = pick_user()
            end = self.run_session(team, user, pick_kind(), start)
            # Same user comes back after > 30 min idle: PostHog starts a new session id.
            # The first session of each team always does, so every team shows the split.
            follow = i == 0 or r.random() < 0.25
            for _ in range(3):
                if not follow:
                    break
                start2 = end + r.randint(31 * _MIN, 5 * _HOUR)
                if start2 > self.now_us:
                    break
                end = self.run_session(team, user, pick_kind(), start2)
                follow = r.random() < 0.3

        # One session per team that starts shortly before a UTC midnight and runs past it.
        first_midnight = (self.start_us // _DAY + 1) * _DAY
        midnights = [
            m for m in range(first_midnight, self.now_us, _DAY) if m - 30 * _MIN >= self.start_us and m + _HOUR <= self.now_us
        ]
        if midnights:
            midnight = r.choice(midnights)
            start = midnight - r.randint(2 * _MIN, 15 * _MIN)
            self.run_session(team, pick_user(), "web", start, min_duration=30 * _MIN)

        # Tabs left open for more than a day; they need a window of > 24 h to fit.
        n_long = 0 if days < 2 else 1 + int(days >= 5 and r.random() < 0.5)
        for _ in range(n_long):
            duration = r.randint(25 * _HOUR, 34 * _HOUR)
            latest = self.now_us - duration - 30 * _MIN
            if latest <= self.start_us:
                continue
            start = r.randint(self.start_us, latest)
            ctx = (team, pick_user(), self._session_id(start))
            self.long_session(ctx, start, duration)


def generate_events(
    *,
    days: int,
    now: datetime,
    seed: int = 7,
    teams: Sequence[int] = (1, 2, 3),
    sessions_per_team_per_day: int = 40,
) -> dict[str, list[Any]]:
    """Simulate `days` of PostHog events for `teams`, ending at `now`.

    Returns plain lists keyed by `EVENT_COLUMNS`: `uuid` uuid.UUID (v7, seeded),
    `event`/`properties`/`distinct_id`/`$session_id` str, `timestamp`/`inserted_at`
    tz-aware UTC datetimes, `team_id` int. Rows are sorted by (timestamp, uuid).
    All timestamps lie in [now - days, now]; inserted_at is in [timestamp, now].
    About 2% of rows arrive late (inserted 1-30 h after their timestamp, capped
    at now); the rest 0.5-10 s after. A naive `now` is taken to be UTC.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if sessions_per_team_per_day < 0:
        raise ValueError(f"sessions_per_team_per_day must be >= 0, got {sessions_per_team_per_day}")
    now_us = _to_us(now)
    sim = _Simulator(seed=seed, now_us=now_us, start_us=now_us - days * _DAY)
    for team in teams:
        sim.run_team(int(team), days=days, sessions_per_day=sessions_per_team_per_day)

    r = sim.r
    rows = [(ev[0], uuid.UUID(int=_uuid7_int(ev[0] // 1000, r.getrandbits(74))), ev) for ev in sim.events]
    rows.sort(key=lambda row: (row[0], row[1].int))

    n = len(rows)
    # Late rows must be at least an hour old so that "late" stays meaningful after capping at now.
    eligible = [i for i, row in enumerate(rows) if row[0] <= now_us - _HOUR]
    n_late = min(len(eligible), max(1, round(0.02 * n))) if n else 0
    late = set(r.sample(eligible, n_late))

    columns: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    for i, (ts, event_uuid, (_, event, lib, props, raw, team, distinct_id, session_id)) in enumerate(rows):
        delay = r.randint(_HOUR, 30 * _HOUR) if i in late else r.randint(_S // 2, 10 * _S)
        full_props = {"$session_id": session_id, "$lib": lib}
        full_props["$lib_version"] = _WEB_LIB_VERSION if lib == "web" else _PY_LIB_VERSION
        full_props.update(props)
        columns["uuid"].append(event_uuid)
        columns["event"].append(event)
        columns["properties"].append(_dumps(full_props, raw))
        columns["timestamp"].append(_from_us(ts))
        columns["team_id"].append(team)
        columns["distinct_id"].append(distinct_id)
        columns["$session_id"].append(session_id)
        columns["inserted_at"].append(_from_us(min(ts + delay, now_us)))
    return columns
