"""Entry point of the code location (`dagster dev`, `dagster asset materialize -m definitions`)."""

from session_assets.definitions import defs

__all__ = ["defs"]
