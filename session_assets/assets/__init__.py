"""The assets of the code location, in lineage order."""

from session_assets.assets.events import events
from session_assets.assets.rollups import session_counter_rollups
from session_assets.assets.scanning import scanner_observations

__all__ = ["events", "scanner_observations", "session_counter_rollups"]
