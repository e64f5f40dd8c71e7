"""session_assets: a Dagster code location that scans product-analytics sessions."""
