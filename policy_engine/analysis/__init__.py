"""Scoring and coverage: pure computation over embeddings and timestamps (numpy only)."""
