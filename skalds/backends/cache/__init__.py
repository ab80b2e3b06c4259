"""State caches: fast-changing state with TTLs (heartbeats, errors, inventories)."""
