"""The assets of the code location, in lineage order."""

from session_assets.assets.events import events
from session_assets.assets.rollups import session_counter_rollups

__all__ = ["events", "session_counter_rollups"]
