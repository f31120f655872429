"""One config's rows of one shard (the reader and the views together): small and picklable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets

from ...configs import get_config
from ...errors import ManifestError
from ...remote import join
from ...stream.partition import sample_starts
from ...stream.reader import ReadStats, is_zstd_archive, iter_samples
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
        root: the dataset root, whose ``index.parquet`` gives the byte offset of the sample
            a row starts in (None: shards are read from their start).
        index_sha256: the index's hash in the manifest (the key of the per-process cache).
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
    root: str | None = None
    index_sha256: str | None = None
    check_hashes: bool | None = None
    shard_samples: dict[str, int] | None = None

    def rows(self, url: str, shard_idx: int, start: int = 0, size: int | None = None, *,
             plain_keys: bool = False, end: int | None = None
             ) -> Iterator[tuple[int, Any, dict[str, Any]]]:
        """Yield ``(k, key, row)`` for rows ``start <= k < end`` of one shard (``k`` from 0).

        With ``start > 0`` reading begins at the sample that row is in (its byte offset from
        ``index.parquet``; ``.tar.zst`` archives are read from their start and the samples
        before it skipped without making rows); reading stops after row ``end - 1``.
        ``plain_keys`` makes keys ``(shard_idx, k)`` tuples, which streams take; building
        ``datasets``' own ``Key`` for every row costs more than the rest of a row's
        bookkeeping, and only preparing a Dataset needs it.
        """
        make_key = None if plain_keys else _key_maker()
        for k, made, sample_key in self._sample_rows(url, start, size, end):
            if make_key is None:  # the streaming path
                for row in made:
                    yield k, (shard_idx, k), row
                    k += 1
                continue
            for row in made:
                yield k, make_key(shard_idx, k, sample_key), row
                k += 1

    def samples(self, url: str, start: int = 0, size: int | None = None, *,
                end: int | None = None) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(k, rows)`` per sample: its rows ``start <= k < end`` of the shard.

        The rows of :meth:`rows`, a sample's list at a time (streams key them
        ``(shard_idx, k)`` themselves): a generator step and a tuple per sample instead of
        per row. Samples that give no row are not yielded.
        """
        for k, made, _ in self._sample_rows(url, start, size, end):
            yield k, made

    def _sample_rows(self, url: str, start: int, size: int | None, end: int | None = None
                     ) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
        """Yield ``(k, rows, sample key)`` per sample with rows ``start <= k < end``."""
        cfg = get_config(self.config)
        keep = sample_filter(cities=self.cities, tiers=self.tiers, sources=self.sources)
        layout = self.layout
        k, offset, expect = 0, 0, None
        if start > 0 and self.root is not None and not is_zstd_archive(url):
            at = self._seek(url, start)
            if at is not None:
                k, offset, expect = at
        if end is not None and start >= end:
            return
        samples = iter_samples(url, on_error=self.on_error,
                               storage_options=self.storage_options, stats=self.stats,
                               size=size, offset=offset, check_hashes=self.check_hashes,
                               samples=(self.shard_samples or {}).get(url))
        try:
            for sample in samples:
                if expect is not None:
                    if sample["__key__"] != expect:
                        raise ManifestError(
                            f"shard {sample['__url__']!r}: index.parquet puts sample {expect!r} "
                            f"at byte {offset}, but sample {sample['__key__']!r} is there; the "
                            "index does not match the shards: run `sarlang-data verify ROOT` "
                            "and rebuild or download the root again")
                    expect = None
                record = sample["json"]
                if keep is not None and not keep(record):
                    continue
                if k < start:
                    n = self._rows_in(record)
                    if k + n <= start:
                        k += n
                        continue
                    made = rows(cfg, sample, layout=layout)[start - k:]
                    k = start
                else:
                    made = rows(cfg, sample, layout=layout)
                if end is not None and k + len(made) >= end:
                    if end > k:
                        yield k, made[:end - k], sample["__key__"]
                    return
                if made:
                    yield k, made, sample["__key__"]
                    k += len(made)
        finally:
            samples.close()

    def _rows_in(self, record: dict[str, Any]) -> int:
        """Rows one sample record gives: what skipping counts, and the index's seeks too."""
        return row_count(self.config, record, self.layout)

    def _seek(self, url: str, start: int) -> tuple[int, int, str] | None:
        """Return ``(k, byte offset, key)`` of the sample row ``start`` of a shard is in."""
        import bisect

        prefix = join(self.root, "")
        if not url.startswith(prefix):
            return None
        starts = sample_starts(self.root, self.storage_options, self.index_sha256,
                               self.config, self.cities, self.tiers, self.sources,
                               count=self._rows_in, count_key=self.layout)
        firsts, offsets, keys = starts.get(url[len(prefix):], ((), (), ()))
        i = bisect.bisect_right(firsts, start) - 1
        if i < 0:
            return None
        return firsts[i], offsets[i], keys[i]


def _key_maker():
    """Return ``f(shard_idx, n, sample_key)`` building example keys for this datasets version.

    datasets >= 4 takes ``Key(shard, n)`` (it records rows per original shard); 3.x takes
    unique strings and checks them for duplicates.
    """
    key_cls = getattr(datasets.builder, "Key", None)
    if key_cls is not None:
        return lambda shard_idx, n, sample_key: key_cls(shard_idx, n)
    return lambda shard_idx, n, sample_key: f"{shard_idx}:{n}:{sample_key}"
