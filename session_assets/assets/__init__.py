"""The assets of the code location, in lineage order."""

from session_assets.assets.events import events
from session_assets.assets.rollups import session_counter_rollups
from session_assets.assets.scanning import scanner_sweep

__all__ = ["events", "scanner_sweep", "session_counter_rollups"]
