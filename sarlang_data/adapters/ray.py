"""Ray Data over a dataset root: ``read(root, config)`` gives the rows ``load_dataset`` gives.

:class:`SarlangDatasource` plans its read tasks from the manifest, never by listing storage:
the selected shards (config, split and filters, as :func:`sarlang_data.load_dataset` selects
them) are dealt to at most ``parallelism`` tasks balanced by their rows, each task's row count
known in advance. A task streams its shards through the package's own reader and views, so a
root on local disk, HTTP(S), S3 or the Hub reads the same, and yields Arrow blocks with the
config's ``datasets`` schema (images as ``{"bytes", "path"}`` structs, undecoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..stream.partition import balanced_bins
from .hf import DATASET_ALIAS, SarlangBuilder, features_for, resolve_root

#: rows per Arrow block a read task yields (blocks of one task share nothing)
ROWS_PER_BLOCK = 256


def _datasource_base() -> type:
    try:
        from ray.data.datasource import Datasource
    except ImportError:  # pragma: no cover - exercised where ray is absent
        raise ImportError("sarlang_data.ray needs Ray Data: pip install 'ray[data]'") from None
    return Datasource


def _read_shards(reader: Any, shards: list[tuple[str, int, int]], schema: Any,
                 rows_per_block: int) -> Iterator[Any]:
    import pyarrow as pa

    buf: list[dict[str, Any]] = []
    for idx, (url, _, size) in enumerate(shards):
        for _, _, row in reader.rows(url, idx, 0, size or None, plain_keys=True):
            buf.append(row)
            if len(buf) >= rows_per_block:
                yield pa.Table.from_pylist(buf, schema=schema)
                buf = []
    if buf:
        yield pa.Table.from_pylist(buf, schema=schema)


def make_datasource(root: str | None = DATASET_ALIAS, config: str = "images", *,
                    split: str | Iterable[str] | None = None, cities: Any = None,
                    tiers: Any = None, sources: Any = None, on_error: str = "raise",
                    storage_options: Mapping[str, Any] | None = None,
                    rows_per_block: int = ROWS_PER_BLOCK) -> Any:
    """Return a ``ray.data.Datasource`` of a config's rows (see :func:`read`)."""
    base = _datasource_base()

    class SarlangDatasource(base):
        """The rows of one config of a dataset root, read tasks planned from its manifest."""

        def __init__(self) -> None:
            super().__init__()
            builder = SarlangBuilder(
                config_name=config, data_dir=resolve_root(root), cities=cities, tiers=tiers,
                sources=sources, decode=False, on_error=on_error, distributed=False,
                storage_options=dict(storage_options) if storage_options else None)
            available = list(builder.shard_urls())
            wanted = available if split is None else (
                [split] if isinstance(split, str) else list(split))
            from ..errors import ConfigError

            for s in wanted:
                if s not in available:
                    raise ConfigError(f"split={s!r}: no shard of config {config!r} with these "
                                      f"filters is in that split; available: "
                                      f"{', '.join(available)}")
            self.shards: list[tuple[str, int, int]] = []
            for s in wanted:
                urls, counts, sizes = builder.shard_rows(s)
                self.shards += [(u, c, z) for u, c, z in zip(urls, counts, sizes, strict=True)
                                if c]
            self.reader = builder.shard_reader()
            self.schema = features_for(config, decode=False).arrow_schema
            self.rows_per_block = rows_per_block

        def get_name(self) -> str:
            return f"Sarlang({config})"

        def estimate_inmemory_data_size(self) -> int:
            return sum(z for _, _, z in self.shards)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            from ray.data.block import BlockMetadata
            from ray.data.datasource import ReadTask

            n = max(1, min(parallelism, len(self.shards)))
            tasks = []
            for members in balanced_bins([c for _, c, _ in self.shards], n):
                if not members:
                    continue
                group = [self.shards[i] for i in members]
                meta = BlockMetadata(num_rows=sum(c for _, c, _ in group),
                                     size_bytes=sum(z for _, _, z in group), exec_stats=None,
                                     input_files=[u for u, _, _ in group])
                reader, schema, per = self.reader, self.schema, self.rows_per_block

                def read_fn(group=group, reader=reader, schema=schema, per=per):
                    return _read_shards(reader, group, schema, per)

                tasks.append(ReadTask(read_fn, meta, schema=schema,
                                      per_task_row_limit=per_task_row_limit))
            return tasks

    return SarlangDatasource()


def read(root: str | None = DATASET_ALIAS, config: str = "images", *,
         split: str | Iterable[str] | None = None, cities: Any = None, tiers: Any = None,
         sources: Any = None, on_error: str = "raise",
         storage_options: Mapping[str, Any] | None = None, override_num_blocks: int | None = None,
         **ray_kwargs: Any) -> Any:
    """Read a config of a dataset root as a ``ray.data.Dataset``.

    The rows are those of ``sarlang_data.load_dataset(root, config, split=...,
    decode=False)`` (order aside: Ray runs read tasks in parallel), from a local path,
    ``https://``, ``s3://`` or ``hf://`` root.

    Args:
        root: dataset root, URL or Hub id (``"sarlang-1m"``: ``$SARLANG_DATA`` or the preview).
        config: config name.
        split: a split, a list of splits, or None for every split (rows carry ``split``).
        cities: keep these cities.
        tiers: keep these tiers.
        sources: keep these sources.
        on_error: ``raise`` or ``skip`` corrupt samples.
        storage_options: fsspec options for the root.
        override_num_blocks: read tasks to plan (default: Ray's choice, at most one per shard).
        **ray_kwargs: passed to ``ray.data.read_datasource`` (``concurrency``, ``num_cpus``...).

    Returns:
        A ``ray.data.Dataset`` with the config's columns; images are ``{"bytes", "path"}``.

    Raises:
        ConfigError: an unknown config, split or filter value.
        ManifestError: no dataset root there.
        ImportError: Ray Data is not installed.
    """
    import ray.data

    source = make_datasource(root, config, split=split, cities=cities, tiers=tiers,
                             sources=sources, on_error=on_error, storage_options=storage_options)
    return ray.data.read_datasource(source, override_num_blocks=override_num_blocks,
                                    **ray_kwargs)
