"""Ingest: the authors' release (and its synthetic stand-in) -> sample records and shards."""
