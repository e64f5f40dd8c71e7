"""The code location: assets, checks and resources."""

import dagster as dg

from session_assets.assets import events, scanner_observations, session_counter_rollups
from session_assets.batches import scanner_batch_job
from session_assets.checks import (
    no_session_behind_watermark_unobserved,
    observations_behind_watermark,
    rollup_counters_match_events,
    team_quota_not_exceeded,
    watermark_never_moves_backwards,
)
from session_assets.resources import build_resources
from session_assets.sensors import rollups_job, scanner_partition_job, sweep_sensor


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The code location; `resources` replaces the ones read from the environment (tests)."""
    return dg.Definitions(
        assets=[events, session_counter_rollups, scanner_observations],
        asset_checks=[
            rollup_counters_match_events,
            no_session_behind_watermark_unobserved,
            observations_behind_watermark,
            team_quota_not_exceeded,
            watermark_never_moves_backwards,
        ],
        jobs=[rollups_job, scanner_partition_job, scanner_batch_job],
        sensors=[sweep_sensor],
        resources=build_resources() if resources is None else resources,
        # One process per run: the default multiprocess executor costs seconds per step,
        # and chDB allows one process per data path anyway.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
