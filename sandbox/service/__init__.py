"""Use cases the CLI calls (layer L5)."""
