"""What the `session-assets` commands do: the embedded stack, ticks and status, loading events, the demo, backfills."""
