"""The code location: assets, checks and resources."""

from __future__ import annotations

import dagster as dg

from session_assets.assets import events, session_counter_rollups
from session_assets.checks import rollup_counters_match_events
from session_assets.resources import build_resources


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[events, session_counter_rollups],
        asset_checks=[rollup_counters_match_events],
        resources=build_resources(),
        # One process per run: the default multiprocess executor costs seconds per step,
        # and chDB allows one process per data path anyway.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
