"""Device selection, model identity and the CLIP embedder (torch + transformers)."""
