"""The bytes of a dataset root: tar shards, manifest + index, verify, stats, pixel codec, card."""
