"""One config's rows of one shard (the reader and the views together): small and picklable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets

from ...configs import get_config
from ...stream.reader import ReadStats, iter_samples
from ...stream.views import Layout, row_count, rows, sample_filter


@dataclass
class _ShardReader:
    """Reads one config's rows of one shard; small and picklable (DataLoader workers copy it).

    Attributes:
        config: config name.
        cities: city filter (None keeps all).
        tiers: tier filter.
        sources: source filter.
        layout: the shape of the rows (plain or chat rows).
        on_error: ``raise`` or ``skip``.
        storage_options: fsspec options for the root.
        stats: read counters (each process updates its own copy).
        check_hashes: check image members against their records' sha256 (None: remote only).
        shard_samples: samples per shard URL (the manifest's): skipped shards count them.

    """

    config: str
    cities: tuple[str, ...] | None
    tiers: tuple[str, ...] | None
    sources: tuple[str, ...] | None
    layout: Layout
    on_error: str
    storage_options: dict[str, Any]
    stats: ReadStats
    check_hashes: bool | None = None
    shard_samples: dict[str, int] | None = None

    def rows(self, url: str, shard_idx: int, start: int = 0, size: int | None = None, *,
             plain_keys: bool = False) -> Iterator[tuple[int, Any, dict[str, Any]]]:
        """Yield ``(k, key, row)`` for rows ``k >= start`` of one shard (``k`` counts from 0).

        Samples whose rows all come before ``start`` are skipped without making rows.
        ``plain_keys`` makes keys ``(shard_idx, k)`` tuples, which streams take; building
        ``datasets``' own ``Key`` for every row costs more than the rest of a row's
        bookkeeping, and only preparing a Dataset needs it.
        """
        make_key = None if plain_keys else _key_maker()
        for k, made, sample_key in self._sample_rows(url, start, size):
            if make_key is None:  # the streaming path
                for row in made:
                    yield k, (shard_idx, k), row
                    k += 1
                continue
            for row in made:
                yield k, make_key(shard_idx, k, sample_key), row
                k += 1

    def samples(self, url: str, start: int = 0, size: int | None = None
                ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(k, rows)`` per sample: its rows from row ``k >= start`` of the shard on.

        The rows of :meth:`rows`, a sample's list at a time (streams key them
        ``(shard_idx, k)`` themselves): a generator step and a tuple per sample instead of
        per row. Samples that give no row are not yielded.
        """
        for k, made, _ in self._sample_rows(url, start, size):
            yield k, made

    def _sample_rows(self, url: str, start: int, size: int | None
                     ) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
        """Yield ``(k, rows, sample key)`` per sample with rows ``k >= start`` (none empty)."""
        cfg = get_config(self.config)
        keep = sample_filter(cities=self.cities, tiers=self.tiers, sources=self.sources)
        layout = self.layout
        k = 0
        for sample in iter_samples(url, on_error=self.on_error,
                                   storage_options=self.storage_options, stats=self.stats,
                                   size=size, check_hashes=self.check_hashes,
                                   samples=(self.shard_samples or {}).get(url)):
            record = sample["json"]
            if keep is not None and not keep(record):
                continue
            if k < start:
                n = row_count(cfg, record, layout)
                if k + n <= start:
                    k += n
                    continue
                made = rows(cfg, sample, layout=layout)[start - k:]
                k = start
            else:
                made = rows(cfg, sample, layout=layout)
            if made:
                yield k, made, sample["__key__"]
                k += len(made)


def _key_maker():
    """Return ``f(shard_idx, n, sample_key)`` building example keys for this datasets version.

    datasets >= 4 takes ``Key(shard, n)`` (it records rows per original shard); 3.x takes
    unique strings and checks them for duplicates.
    """
    key_cls = getattr(datasets.builder, "Key", None)
    if key_cls is not None:
        return lambda shard_idx, n, sample_key: key_cls(shard_idx, n)
    return lambda shard_idx, n, sample_key: f"{shard_idx}:{n}:{sample_key}"
