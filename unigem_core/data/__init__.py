"""QM9 data: reading, splitting, caching, batching, normalising."""
