"""Hugging Face ``datasets`` integration: the builder, ``load_dataset``, Features, ``stream_rows``.

One builder class, :class:`SarlangBuilder`, serves every route: :func:`load_dataset` here (on
datasets 3.x to 5.x), ``loading_script.py`` at the repo root (datasets 3.x,
``trust_remote_code=True``), and through them TRL and LLaMA-Factory. It has one BuilderConfig
per entry of :data:`sarlang_data.configs.CONFIGS` and declares the Features of each.

Shards come from the root's manifest: filters (``cities``, ``tiers``, ``sources`` and the
config's own tier) choose shards before any is opened, then rows. Each split's shard URLs are
one ``gen_kwargs`` list, so ``datasets`` hands whole shards to DataLoader workers and to
``split_dataset_by_node`` (``IterableDataset.n_shards`` is the number of selected shards).

``datasets`` patches ``open``, ``os``, ``pathlib`` and a few more names in the module that
defines a builder (to stream remote files); this module therefore imports them inside the
functions that need them and does all I/O through :mod:`sarlang_data.reader` and
:mod:`sarlang_data.manifest`.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import itertools
import json
import logging
import operator
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import datasets

from . import __version__, schema
from .codec import EXT as _PIXEL_EXT
from .codec import decode_image
from .configs import CONFIGS, DEFAULT_CONFIG, Config, get_config
from .errors import ConfigError, ManifestError, unknown_name
from .reader import ReadStats, check_on_error, iter_samples
from .torch import (
    Part,
    SampleCursor,
    check_equalize,
    check_node,
    fresh_state,
    iter_plain_samples,
    iter_rows,
    node_from_env,
    node_part,
    permutation,
    split,
    stream_key,
    worker_info,
)
from .views import CHAT_FORMATS, rows, sample_filter

log = logging.getLogger(__name__)
#: the path suffix of rows whose image is a pixel member (see sarlang_data.codec)
PIXEL_SUFFIX = "." + _PIXEL_EXT

#: the dataset's name as users type it; resolves as DESIGN section 1 says
DATASET_ALIAS = "sarlang-1m"
#: the builder's name in the datasets cache
DATASET_NAME = "sarlang_1m"
#: environment variable naming the default dataset root
ENV_ROOT = "SARLANG_DATA"
#: version of the rows the builder makes; bump when a view changes, so caches are rebuilt
BUILDER_VERSION = "1.0.0"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DESCRIPTION = (
    "SARLANG-1M: SAR images with concise and detailed captions and question-answer pairs of six "
    "VQA applications, streamed from WebDataset-style tar shards."
)
_CITATION = """@article{wei2025sarlang,
  title={SARLANG-1M: A Benchmark for Vision-Language Modeling in SAR Image Understanding},
  author={Wei, Yimin and Xiao, Aoran and Ren, Yexian and Zhu, Yuting and Chen, Hongruixuan and
          Xia, Junshi and Yokoya, Naoto},
  journal={IEEE Transactions on Geoscience and Remote Sensing},
  year={2025}
}"""


# --------------------------------------------------------------------------- features


def _list(feature: Any, length: int = -1) -> Any:
    """Return a list feature for datasets 3.x (``Sequence``) and >= 4 (``List``)."""
    cls = getattr(datasets, "List", None)
    if cls is not None:
        return cls(feature, length=length)
    return datasets.Sequence(feature, length=length)


def features_for(config: Config | str, *, decode: bool = True,
                 chat_format: str = "llamafactory") -> datasets.Features:
    """Return the ``datasets.Features`` of a config's rows.

    Args:
        config: a config or its name.
        decode: whether ``datasets.Image`` decodes images to PIL (False keeps
            ``{"bytes", "path"}``).
        chat_format: layout of the ``chat`` config (``llamafactory`` or ``trl``).

    Returns:
        The features, columns in the order of :func:`sarlang_data.views.columns`.

    Raises:
        ConfigError: an unknown config or chat format.

    """
    cfg = config if isinstance(config, Config) else get_config(config)
    string = datasets.Value("string")
    image = datasets.Image(decode=decode)
    # float64 like the records and the index, so streamed and prepared rows are equal
    bbox = _list(datasets.Value("float64"), length=4)
    common = {"image": image, "key": string, "city": string, "tier": string,
              "gsd_m": datasets.Value("float64"), "source": string, "split": string}
    if cfg.layout == "chat":
        if chat_format not in CHAT_FORMATS:
            raise unknown_name("chat format", chat_format, CHAT_FORMATS, "chat_format")
        content: Any = string if chat_format == "llamafactory" else [
            {"type": string, "text": string}]
        del common["image"]
        return datasets.Features({"messages": [{"role": string, "content": content}],
                                  "images": [image], **common})
    if cfg.unit == "image":
        return datasets.Features({
            **common,
            "captions": [{"kind": string, "text": string, "kind_from": string}],
            "qa": [{"task": string, "question_type": string, "question": string,
                    "answer": string, "bbox": bbox, "task_from": string, "subset": string}],
        })
    if cfg.unit == "caption":
        extra = {"caption": string}
        if cfg.kind is None:
            extra["kind"] = string
        return datasets.Features({**common, **extra})
    extra = {"question": string, "answer": string}
    if cfg.task is None:
        extra["task"] = string
    extra.update({"question_type": string, "bbox": bbox})
    return datasets.Features({**common, **extra})


# --------------------------------------------------------------------------- roots


def preview_root() -> str:
    """Return the bundled preview root.

    The packaged copy (``sarlang_data/_preview``) when it exists, else ``shards/`` beside the
    package folder (a source checkout).

    Returns:
        A local path (it may not exist in a checkout without the preview).

    """
    from importlib import resources
    from pathlib import Path

    packaged = resources.files("sarlang_data") / "_preview"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "shards")


def resolve_root(path: str | None = DATASET_ALIAS, data_dir: str | None = None) -> str:
    """Turn the ``path``/``data_dir`` of :func:`load_dataset` into a dataset root.

    ``data_dir`` wins when given. ``"sarlang-1m"`` (or None) means ``$SARLANG_DATA`` when set,
    else the bundled preview (logged once at INFO). A URL (``scheme://...``) or an existing
    local folder is the root itself; ``"ORG/NAME"`` means ``hf://datasets/ORG/NAME``.

    Args:
        path: the dataset name, a root path or URL, or a Hub repo id.
        data_dir: an explicit root, overriding ``path``.

    Returns:
        The root: an absolute local path or an fsspec URL, without a trailing slash.

    Raises:
        ManifestError: if ``path`` is none of the above.

    """
    import os

    def norm(root: str) -> str:
        root = str(root)
        if "://" in root:
            return root.rstrip("/")
        return os.path.abspath(os.path.expanduser(root))

    if data_dir is not None:
        return norm(data_dir)
    if path is None or path == DATASET_ALIAS:
        env = os.environ.get(ENV_ROOT)
        if env:
            return norm(env)
        root = preview_root()
        log.info("%s: no data_dir and no $%s set, so using the bundled preview at %s "
                 "(set %s to a dataset root for the full data)", DATASET_ALIAS, ENV_ROOT, root,
                 ENV_ROOT)
        return root
    path = str(path)
    if "://" in path or os.path.isdir(os.path.expanduser(path)):
        return norm(path)
    if _HUB_NAME.match(path):
        return f"hf://datasets/{path}"
    raise ManifestError(
        f"path={path!r}: not a folder, a URL or a Hub repo id (ORG/NAME); pass "
        f"{DATASET_ALIAS!r} (uses ${ENV_ROOT} or the preview), a dataset root path or URL, or "
        "data_dir=ROOT"
    )


def _names(values: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return tuple(sorted({str(v) for v in values}))


def _norm_filters(cities, tiers, sources) -> dict[str, tuple[str, ...] | None]:
    """Normalise filter names as ``manifest.select_shards`` compares them."""
    out = {}
    for name, values, norm in (("cities", cities, schema.slug), ("tiers", tiers, str.lower),
                               ("sources", sources, str.lower)):
        names = _names(values)
        out[name] = None if names is None else tuple(sorted({norm(n.strip()) for n in names}))
    return out


# --------------------------------------------------------------------------- the builder


@dataclass
class SarlangConfig(datasets.BuilderConfig):
    """A catalogue config plus the filters and options of one load.

    Attributes:
        cities: keep these city slugs (None keeps all).
        tiers: keep these resolution tiers (None keeps all; a tier config adds its own).
        sources: keep these sources (None keeps all).
        decode: decode images to PIL in the consumer (False keeps ``{"bytes", "path"}``).
        on_error: ``raise`` or ``skip`` corrupt samples.
        chat_format: layout of the ``chat`` config's messages.

    """

    cities: tuple[str, ...] | None = None
    tiers: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    decode: bool = True
    on_error: str = "raise"
    chat_format: str = "llamafactory"


class SarlangBuilder(datasets.GeneratorBasedBuilder):
    """SARLANG-1M from a dataset root of tar shards; one BuilderConfig per catalogue config.

    Constructor keywords are those of ``datasets.DatasetBuilder`` plus the
    :class:`SarlangConfig` fields. ``data_dir`` is the dataset root (resolved by
    :func:`resolve_root` when None). The manifest is read once, here; its index hash, the root,
    the config and the filters make the cache key, so a rebuilt root never reuses a stale
    prepared dataset.
    """

    BUILDER_CONFIG_CLASS = SarlangConfig
    BUILDER_CONFIGS = [  # noqa: RUF012 - datasets reads this class attribute
        SarlangConfig(name=name, version=BUILDER_VERSION, description=cfg.description)
        for name, cfg in CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG
    # rows carry whole images: small Arrow batches keep memory flat while preparing
    DEFAULT_WRITER_BATCH_SIZE = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from .manifest import read_manifest

        # streaming-only options; not part of the config (they do not change the rows)
        self._dist_option = _check_distributed(kwargs.pop("distributed", None))
        self._equalize = check_equalize(kwargs.pop("equalize", None))
        name = kwargs.get("config_name")
        get_config(name)  # unknown names: ConfigError with the valid ones, closest first
        root = resolve_root(DATASET_ALIAS, kwargs.get("data_dir"))
        filters = _norm_filters(kwargs.get("cities"), kwargs.get("tiers"), kwargs.get("sources"))
        kwargs.update(filters)
        kwargs["data_dir"] = root
        kwargs.setdefault("dataset_name", DATASET_NAME)
        check_on_error(kwargs.get("on_error", "raise"))
        chat_format = kwargs.get("chat_format", "llamafactory")
        if chat_format not in CHAT_FORMATS:
            raise unknown_name("chat format", chat_format, CHAT_FORMATS, "chat_format")
        manifest = read_manifest(root, _fs_options(kwargs.get("storage_options"), root))
        key = {
            "root": root,
            "index_sha256": manifest["index"]["sha256"],
            "format_version": manifest["format_version"],
            "config": name or DEFAULT_CONFIG,
            **filters,
            "decode": kwargs.get("decode", True),
            "on_error": kwargs.get("on_error", "raise"),
            "chat_format": chat_format,
            "package": __version__,
            "outer": kwargs.get("hash"),  # e.g. the loading script's own hash
        }
        kwargs["hash"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self._root = root
        self._manifest = manifest
        #: counts of this process's reads (samples, skipped samples and why)
        self.read_stats = ReadStats()
        super().__init__(*args, **kwargs)

    @property
    def root(self) -> str:
        """The dataset root this builder reads."""
        return self._root

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION + " Config: " + (self.config.description or ""),
            features=features_for(self.config.name, decode=self.config.decode,
                                  chat_format=self.config.chat_format),
            homepage="https://github.com/Jimmyxichen/SARLANG-1M",
            citation=_CITATION,
        )

    def selected_shards(self) -> list[dict]:
        """Return the manifest entries of the shards this config and its filters read."""
        from .manifest import select_shards

        cfg = get_config(self.config.name)
        tiers = self.config.tiers
        if cfg.tier is not None:
            if tiers is not None and cfg.tier not in tiers:
                raise ConfigError(
                    f"tiers={list(tiers)!r}: config {cfg.name!r} holds only tier {cfg.tier!r}, "
                    f"so nothing is left; drop the tiers filter or use config 'images'"
                )
            tiers = (cfg.tier,)
        shards = select_shards(self._manifest, tiers=tiers, cities=self.config.cities,
                               sources=self.config.sources)
        if not shards:
            asked = {k: list(v) for k, v in (("cities", self.config.cities), ("tiers", tiers),
                                             ("sources", self.config.sources)) if v}
            raise ConfigError(
                f"{asked}: no shard of root {self._root!r} matches these filters together; "
                "loosen them (`sarlang-data stats ROOT` lists what the root holds)"
            )
        return shards

    def shard_urls(self) -> dict[str, list[str]]:
        """Return the URLs of the selected shards per split, splits in schema order."""
        from .manifest import join

        per_split: dict[str, list[str]] = {}
        for shard in self.selected_shards():
            per_split.setdefault(shard["split"], []).append(join(self._root, shard["path"]))
        return {s: per_split[s] for s in schema.SPLITS if s in per_split}

    def shard_rows(self, split: str) -> tuple[list[str], list[int], list[int]]:
        """Return the URLs, rows of this config and sizes in bytes of a split's shards.

        Rows come from the manifest's per-shard config counts; when the ``cities`` or
        ``sources`` filters keep only part of a shard, from ``index.parquet`` (read once).

        Args:
            split: a split of the selection.

        Returns:
            ``(urls, rows, sizes)``, in manifest order.

        """
        from .manifest import join

        shards = [s for s in self.selected_shards() if s["split"] == split]
        urls = [join(self._root, s["path"]) for s in shards]
        sizes = [int(s["bytes"]) for s in shards]
        cfg = get_config(self.config.name)
        cities, sources = self.config.cities, self.config.sources

        def inside(shard: Mapping[str, Any]) -> bool:
            return ((cities is None or set(shard["cities"]) <= set(cities))
                    and (sources is None or set(shard["sources"]) <= set(sources)))

        if all(inside(s) for s in shards):
            return urls, [int(s["configs"][cfg.name]) for s in shards], sizes
        return urls, self._index_rows(shards), sizes

    def _index_rows(self, shards: list[dict]) -> list[int]:
        """Rows of this config per shard, counted in ``index.parquet`` with the row filters."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .manifest import read_index

        cfg = get_config(self.config.name)
        if cfg.unit == "caption":
            kinds = schema.CAPTION_KINDS if cfg.kind is None else (cfg.kind,)
            counted = [f"n_{k}" for k in kinds]
        elif cfg.unit == "qa":
            counted = [f"n_{t}" for t in (schema.TASKS if cfg.task is None else (cfg.task,))]
        else:
            counted = []
        table = read_index(self._root, ["shard", "city", "source", "tier", *counted],
                           _fs_options(self.storage_options, self._root))
        mask = pc.is_in(table["shard"], value_set=pa.array([s["path"] for s in shards]))
        for column, values in (("city", self.config.cities), ("source", self.config.sources),
                               ("tier", self.config.tiers)):
            if values is not None:
                mask = pc.and_(mask, pc.is_in(table[column], value_set=pa.array(list(values))))
        table = table.filter(mask)
        if counted:
            n = pc.cast(table[counted[0]], pa.int64())
            for column in counted[1:]:
                n = pc.add(n, pc.cast(table[column], pa.int64()))
            values = n.to_pylist()
        else:  # image-centric: one row per sample
            values = [1] * len(table)
        per_shard: dict[str, int] = {}
        for shard, count in zip(table["shard"].to_pylist(), values, strict=True):
            per_shard[shard] = per_shard.get(shard, 0) + count
        return [per_shard.get(s["path"], 0) for s in shards]

    def _reader(self) -> _ShardReader:
        c = self.config
        return _ShardReader(c.name, c.cities, c.tiers, c.sources, c.chat_format, c.on_error,
                            _fs_options(self.storage_options, self._root), self.read_stats)

    def _node(self) -> tuple[int, int] | None:
        """Return this process's ``(rank, world_size)`` for streaming, or None."""
        if self._dist_option is False:
            return None
        if self._dist_option is None:
            return node_from_env()
        return self._dist_option if self._dist_option[1] > 1 else None

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": urls})
            for split, urls in self.shard_urls().items()
        ]

    def _get_examples_iterable_for_split(self, split_generator: datasets.SplitGenerator) -> Any:
        if _TypedRows is None:  # pragma: no cover - a datasets without typed iterables
            return super()._get_examples_iterable_for_split(split_generator)
        urls, counts, sizes = self.shard_rows(str(split_generator.name))
        node = self._node()
        inner = _SarlangRows(self._reader(), urls, counts, sizes, node=node,
                             equalize=self._equalize)
        if node is not None:
            part, eq = inner.plan()
            log.info("rank %d of %d reads %d of the %d shards with rows of split %r (%d of %d "
                     "rows%s); pass distributed=False to read the whole split on every rank",
                     node[0], node[1], len(part.shards), sum(1 for c in counts if c),
                     str(split_generator.name),
                     part.yields, sum(counts),
                     f", every {part.step}-th row of each" if part.fallback else "")
            if eq is not None:
                log.log(logging.WARNING if eq.dropped or eq.repeated else logging.INFO,
                        "split %r: %s", str(split_generator.name), eq.describe())
        # rows of image-centric configs own their sample's image; text configs share it
        shared = get_config(self.config.name).unit != "image"
        return _TypedRows(inner, self.info.features, self.config.decode, shared=shared)

    def _as_streaming_dataset_single(self, *args: Any, **kwargs: Any) -> datasets.IterableDataset:
        ds = super()._as_streaming_dataset_single(*args, **kwargs)
        if _TypedRows is not None and isinstance(ds._ex_iterable, _TypedRows):
            ds.__class__ = SarlangIterableDataset  # same state, casts that know our rows
        return ds

    def _generate_examples(self, shards: list[str]) -> Iterator[tuple[Any, dict[str, Any]]]:
        reader = self._reader()
        for shard_idx, url in enumerate(shards):
            for _, key, row in reader.rows(url, shard_idx):
                yield key, row


@dataclass
class _ShardReader:
    """Reads one config's rows of one shard; small and picklable (DataLoader workers copy it).

    Attributes:
        config: config name.
        cities: city filter (None keeps all).
        tiers: tier filter.
        sources: source filter.
        chat_format: layout of ``chat`` rows.
        on_error: ``raise`` or ``skip``.
        storage_options: fsspec options for the root.
        stats: read counters (each process updates its own copy).

    """

    config: str
    cities: tuple[str, ...] | None
    tiers: tuple[str, ...] | None
    sources: tuple[str, ...] | None
    chat_format: str
    on_error: str
    storage_options: dict[str, Any]
    stats: ReadStats

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
        chat_format = self.chat_format
        k = 0
        for sample in iter_samples(url, on_error=self.on_error,
                                   storage_options=self.storage_options, stats=self.stats,
                                   size=size):
            record = sample["json"]
            if keep is not None and not keep(record):
                continue
            if k < start:
                n = cfg.rows_in(record)
                if k + n <= start:
                    k += n
                    continue
                made = rows(cfg, sample, chat_format=chat_format)[start - k:]
                k = start
            else:
                made = rows(cfg, sample, chat_format=chat_format)
            if made:
                yield k, made, sample["__key__"]
                k += len(made)


try:
    from datasets.iterable_dataset import _BaseExamplesIterable
except ImportError:  # pragma: no cover - checked by tests on datasets 3.6 and 5.2
    _BaseExamplesIterable = None


if _BaseExamplesIterable is not None:

    class _SarlangRows(_BaseExamplesIterable):
        """The rows of one split: planned by rows per shard, split, shuffled, resumable.

        A pure description until iterated: the split's shard URLs, rows and sizes, this
        process's rank (``node``), ``equalize``, the shuffle seed and buffer size, an epoch
        token and the reader splits applied so far. :func:`sarlang_data.torch.node_part` and
        :func:`sarlang_data.torch.split` turn it into the :class:`~sarlang_data.torch.Part`
        this reader reads (see that module for the rules); :func:`~sarlang_data.torch.iter_rows`
        reads it. It speaks ``datasets``' examples-iterable protocol, so ``datasets``' own
        worker and node splitting (used by ``.map()``, ``split_dataset_by_node`` ...) get the
        balanced assignment too; there, as ``datasets`` decides, readers beyond the number
        of shards stop (it logs a warning), while :class:`SarlangIterableDataset` itself
        splits rows among them instead (:meth:`split_rows`).
        """

        def __init__(self, reader: _ShardReader, urls: list[str], counts: list[int],
                     sizes: list[int], *, node: tuple[int, int] | None = None,
                     equalize: str | None = None, seed: int | None = None,
                     buffer_size: int = 0, epoch_token: int = 0,
                     splits: tuple[tuple[int, int, bool], ...] = ()) -> None:
            super().__init__()
            self.reader = reader
            self.urls = list(urls)
            self.counts = list(counts)
            self.sizes = list(sizes)
            self.node = node
            self.equalize = equalize
            self.seed = seed
            self.buffer_size = buffer_size
            self.epoch_token = epoch_token
            self.splits = tuple(splits)
            self._plan: tuple[Part, Any] | None = None

        def copy(self, **changes: Any) -> _SarlangRows:
            """Return a copy with some attributes changed and no iteration state."""
            new = _copy.copy(self)
            new.__dict__.update(changes)
            new._plan = None
            new._state_dict = None
            return new

        def plan(self) -> tuple[Part, Any]:
            """Return ``(part, equalized)``: what this reader reads, and what equalize did."""
            if self._plan is None:
                order = None
                if self.seed is not None:
                    order = permutation(len(self.urls),
                                        stream_key("shards", self.seed, self.epoch_token))
                part, eq = node_part(self.counts, order, self.node, self.equalize)
                for n, i, rows_too in self.splits:
                    part = _split_part(part, self.counts, n, i, rows_too)
                self._plan = (part, eq)
            return self._plan

        def split_rows(self, n: int, i: int) -> _SarlangRows:
            """Return reader ``i`` of ``n``: shards balanced by rows, or every ``n``-th row.

            Unlike :meth:`shard_data_sources`, every reader gets rows when there are fewer
            shards than readers (each reads all shards and keeps every ``n``-th row).
            """
            return self.copy(splits=(*self.splits, (n, i, True)))

        @property
        def num_shards(self) -> int:
            return len(self.plan()[0].shards)

        def split_shard_indices_by_worker(self, num_shards: int, index: int,
                                          contiguous: bool = True) -> list[int]:
            # as datasets' default (readers beyond the number of shards get none and are
            # stopped by datasets), but which shards is decided by rows
            part = _split_part(self.plan()[0], self.counts, num_shards, index, False)
            return list(range(len(part.shards)))

        def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True
                               ) -> _SarlangRows:
            return self.copy(splits=(*self.splits, (num_shards, index, False)))

        def shuffle_data_sources(self, generator: Any) -> _SarlangRows:
            # datasets passes default_rng(epoch) each epoch: one draw makes the epoch token
            return self.copy(epoch_token=int(generator.integers(0, 2**62)))

        def reshard_data_sources(self) -> _SarlangRows:
            return self.copy()

        def _init_state_dict(self) -> dict:
            self._state_dict = fresh_state(self.plan()[0])
            return self._state_dict

        def load_state_dict(self, state_dict: dict | None) -> dict:
            self._init_state_dict()
            if state_dict is not None:
                self._state_dict = _copy_state(state_dict)
            return self._state_dict

        def state_dict(self) -> dict:
            if self._state_dict is None:
                raise RuntimeError("call _init_state_dict() first")
            return _copy_state(self._state_dict)

        def _read(self, shard: int, start: int) -> Iterator[tuple[int, Any, dict[str, Any]]]:
            return self.reader.rows(self.urls[shard], shard, start, self.sizes[shard] or None,
                                    plain_keys=True)

        def _read_samples(self, shard: int, start: int
                          ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
            return self.reader.samples(self.urls[shard], start, self.sizes[shard] or None)

        def plain_rows(self) -> tuple[SampleCursor, Iterator[dict[str, Any]]] | None:
            """Return ``(cursor, rows)`` read a sample at a time, or None when shuffled or split.

            For one unshuffled pass over whole shards: the rows of :meth:`__iter__` without
            keys, chained at C level from per-sample lists; ``cursor.position()`` is the
            state as of the last row taken (see :class:`~sarlang_data.torch.SampleCursor`).
            """
            part, _ = self.plan()
            if self.seed is not None or part.step != 1 or part.target is not None:
                return None
            state = self._state_dict if self._state_dict is not None else fresh_state(part)
            cursor = SampleCursor(state)
            return cursor, itertools.chain.from_iterable(
                iter_plain_samples(part, self._read_samples, cursor))

        def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            # returns the row iterator itself rather than delegating to it: a generator layer
            # per row less (the warning is logged at iter() instead of at the first row)
            part, _ = self.plan()
            state = self._state_dict if self._state_dict is not None else fresh_state(part)
            if part.fallback and self.splits and self.splits[-1][1:] == (0, True):
                n = self.splits[-1][0]
                log.warning(
                    "%d readers (DataLoader workers) for %d shards: each reads all of them and "
                    "keeps every %d-th row, so every row still comes once but shards are read "
                    "%d times; use at most %d workers, or a root with more shards",
                    n, len(part.shards), n, n, len(part.shards))
            key = None
            if self.seed is not None:
                key = stream_key("rows", self.seed, self.epoch_token, self.node, self.splits)
            return iter_rows(part, self._read, state, shuffle_key=key,
                             buffer_size=self.buffer_size, read_samples=self._read_samples)

    def _split_part(part: Part, counts: list[int], n: int, i: int, rows_too: bool) -> Part:
        """Return reader ``i`` of ``n``'s part (see :func:`sarlang_data.torch.split`).

        Without ``rows_too``, readers ``>= len(part.shards)`` get nothing and the others
        divide the part: ``datasets``' rule for its workers, which stops those readers.
        """
        if rows_too:
            return split(part, counts, n, i)
        k = min(n, len(part.shards))
        if i >= k:
            return Part((), 0, target=0 if part.target is not None else None)
        return split(part, counts, k, i)

    _row_of = operator.itemgetter(1)  # the row of a (key, row) pair

    def _copy_state(state: Mapping[str, Any]) -> dict:
        """Copy a stream state (flat values plus the buffer's ``[j, k]`` pairs)."""
        out = dict(state)
        out["buffer"] = [list(p) for p in state.get("buffer") or ()]
        return out

    class _TypedRows(_BaseExamplesIterable):
        """Streamed rows that already have their feature types.

        ``datasets`` otherwise runs ``Features.encode_example`` and ``decode_example`` on every
        streamed row: about 65 us per row of the ``vqa`` config, ten times the cost of reading
        and shaping the row. Our views make rows in exactly the encoded form of their Features
        (images as ``{"bytes", "path"}``, floats as float64), so the encode step is a no-op;
        the only decoding left is the images', done here with ``datasets.Image`` itself when
        ``decode=True``. One decode serves all rows of a sample (each row gets its own copy
        when a config makes several rows of one image).
        ``tests/test_hf.py`` checks that rows equal those of the generic path for every config.
        """

        def __init__(self, ex_iterable: Any, features: datasets.Features, decode: bool,
                     typed: bool = True, shared: bool = True) -> None:
            super().__init__()
            self.ex_iterable = ex_iterable
            self._features = features
            self._decode = decode
            # whether several rows may carry the same image (then each gets its own copy)
            self._shared = shared
            # untyped: rows stay encoded and datasets applies (cast) features itself
            self._typed = typed

        @property
        def is_typed(self) -> bool:
            return self._typed

        @property
        def features(self) -> datasets.Features:
            return self._features

        @property
        def num_shards(self) -> int:
            return self.ex_iterable.num_shards

        def _wrap(self, ex_iterable: Any) -> _TypedRows:
            return _TypedRows(ex_iterable, self._features, self._decode, self._typed,
                              self._shared)

        def _init_state_dict(self) -> dict:
            self._state_dict = self.ex_iterable._init_state_dict()
            return self._state_dict

        def load_state_dict(self, state_dict: dict) -> dict:
            # the inner iterable owns the state; datasets' generic merge would drop a buffer
            self._state_dict = self.ex_iterable.load_state_dict(state_dict)
            return self._state_dict

        def split_shard_indices_by_worker(self, num_shards: int, index: int,
                                          contiguous: bool = True) -> list[int]:
            return self.ex_iterable.split_shard_indices_by_worker(num_shards, index,
                                                                  contiguous=contiguous)

        def shuffle_data_sources(self, generator: Any) -> _TypedRows:
            return self._wrap(self.ex_iterable.shuffle_data_sources(generator))

        def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True
                               ) -> _TypedRows:
            return self._wrap(self.ex_iterable.shard_data_sources(num_shards, index,
                                                                  contiguous=contiguous))

        def reshard_data_sources(self) -> _TypedRows:
            return self._wrap(self.ex_iterable.reshard_data_sources())

        def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            if not (self._decode and self._typed):
                return iter(self.ex_iterable)  # nothing to do per row: no layer of our own
            return self._decoded()

        def _decoded(self) -> Iterator[tuple[Any, dict[str, Any]]]:
            image = datasets.Image(decode=True)
            last_bytes: Any = None
            last_image: Any = None

            def decode(value: dict[str, Any]) -> Any:
                # pixel members (npy.zst) straight to our codec; datasets.Image would reach the
                # same plugin through PIL.Image.open's format probing
                if (value["path"] or "").endswith(PIXEL_SUFFIX):
                    return decode_image(value["bytes"])
                return image.decode_example(value)

            def decoded(value: dict[str, Any]) -> Any:
                nonlocal last_bytes, last_image
                if not self._shared:
                    return decode(value)
                if value["bytes"] is not last_bytes:
                    last_bytes, last_image = value["bytes"], decode(value)
                return last_image.copy()

            for key, row in self.ex_iterable:
                if "image" in row:
                    row["image"] = decoded(row["image"])
                else:
                    row["images"] = [decoded(v) for v in row["images"]]
                yield key, row

    class SarlangIterableDataset(datasets.IterableDataset):
        """The streams of :func:`load_dataset`: rank-aware, balanced, exactly resumable.

        Iteration (``__iter__``) plans this reader's rows itself (rank, then DataLoader
        worker, balanced by the manifest's rows per shard; see :mod:`sarlang_data.torch`),
        so ``num_workers`` of 0, 1, 2, 4 ... each read every row of this rank once, and
        workers beyond the number of shards split rows instead of idling. ``shuffle`` and
        ``set_epoch`` shuffle shard order and a row buffer from ``(seed, epoch)``, the same
        on every rank; ``state_dict``/``load_state_dict`` (used by torchdata's
        ``StatefulDataLoader``, per worker) resume exactly, buffered rows included.

        Rows arrive already typed (see ``_TypedRows``), and ``datasets`` does not re-apply
        features to typed rows; so ``decode()`` switches our own image decoding, and ``cast``/
        ``cast_column`` hand rows to ``datasets`` in their encoded form to cast them itself.
        Other methods return plain ``IterableDataset`` objects, as ``datasets`` makes them:
        they keep this rank's part, the balanced worker split and the shuffle (all live in
        the examples iterable), under ``datasets``' own state handling. Shuffle, cast or
        change decoding first (or pass ``decode=`` to :func:`load_dataset`).
        """

        def _inner(self) -> _SarlangRows | None:
            ex = self._ex_iterable
            if (isinstance(ex, _TypedRows) and isinstance(ex.ex_iterable, _SarlangRows)
                    and not self._formatting and not getattr(self, "_distributed", None)):
                return ex.ex_iterable
            return None

        def _with_inner(self, inner: _SarlangRows) -> SarlangIterableDataset:
            ds = self.__class__.__new__(self.__class__)
            ds.__dict__.update(self.__dict__)
            ds.__dict__.pop("_sarlang_state", None)
            ds.__dict__.pop("_sarlang_resume", None)
            ds._epoch = _shared_epoch(int(self._epoch))  # its own epoch, as datasets' copies
            ds._ex_iterable = self._ex_iterable._wrap(inner)
            return ds

        def __iter__(self) -> Iterator[dict[str, Any]]:
            inner = self._inner()
            if inner is None:
                yield from super().__iter__()
                return
            import numpy as np

            epoch = self.epoch
            if epoch:
                inner = inner.shuffle_data_sources(np.random.default_rng(epoch))
            worker = worker_info()
            if worker is not None and worker[1] > 1:
                inner = inner.split_rows(worker[1], worker[0])
            else:
                inner = inner.copy()
            _, eq = inner.plan()
            if eq is not None and inner.seed is not None and (worker is None or worker[0] == 0):
                # shuffled plans change with the epoch, and so may the rows per rank
                log.log(logging.WARNING if eq.dropped or eq.repeated else logging.INFO,
                        "epoch %d: %s", epoch, eq.describe())
            inner._init_state_dict()
            resume = self.__dict__.pop("_sarlang_resume", None)
            if resume is not None and resume.get("rows") is not None:
                if resume.get("epoch") == epoch:
                    inner.load_state_dict(resume["rows"])
                else:
                    log.warning("load_state_dict(): the state is of epoch %s but the dataset "
                                "is at epoch %d, so epoch %d starts from its beginning; call "
                                "set_epoch(%s) first to resume", resume.get("epoch"), epoch,
                                epoch, resume.get("epoch"))
            self._sarlang_state = {"format": _STATE_FORMAT, "epoch": epoch,
                                   "rows": inner._state_dict}
            outer = self._ex_iterable
            if not (outer._decode and outer._typed):  # no per-row layer of our own
                plain = inner.plain_rows()
                if plain is not None:
                    # a sample at a time: state_dict() asks the cursor for the exact position
                    self._sarlang_state["cursor"], stream = plain
                    yield from stream
                    return
            # delegating to a C-level map is cheaper per row than unpacking in a loop here
            yield from map(_row_of, self._ex_iterable._wrap(inner))

        def shuffle(self, seed: int | None = None, generator: Any = None,
                    buffer_size: int = 1000, max_buffer_input_shards: int | None = None
                    ) -> datasets.IterableDataset:
            """Shuffle shard order and rows through a buffer, from ``(seed, epoch)``.

            Unlike ``datasets``' shuffle, the result resumes exactly from ``state_dict()``
            with any number of DataLoader workers, buffered rows included. Shard order is
            drawn from ``seed`` and the epoch (``set_epoch``), the same on every rank; each
            reader's rows then pass a buffer of ``buffer_size`` rows.

            Args:
                seed: the seed; needed when ranks are split (every rank must draw alike).
                    None draws one (single process only).
                generator: a numpy Generator to draw the seed from, when ``seed`` is None.
                buffer_size: rows held in the buffer (>= 1; 1 shuffles shards only).
                max_buffer_input_shards: accepted for ``datasets`` compatibility and ignored:
                    each reader reads its shards one after another.

            Returns:
                The shuffled stream.

            Raises:
                ConfigError: a bad ``buffer_size``, or no seed for a rank-split stream.

            """
            inner = self._inner()
            if inner is None:
                return super().shuffle(seed=seed, generator=generator, buffer_size=buffer_size)
            if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or (
                    buffer_size < 1):
                raise ConfigError(f"buffer_size={buffer_size!r}: must be an integer >= 1 "
                                  "(rows held for shuffling); pass e.g. buffer_size=1000")
            if seed is None and generator is not None:
                seed = int(generator.integers(0, 2**63))
            if seed is None:
                if inner.node is not None:
                    raise ConfigError(
                        f"shuffle(seed=None) on rank {inner.node[0]} of {inner.node[1]}: "
                        "every rank must shuffle alike or they read overlapping shards; pass "
                        "the same seed on every rank, e.g. shuffle(seed=42)"
                    )
                import secrets

                seed = secrets.randbits(63)
            return self._with_inner(inner.copy(seed=int(seed), buffer_size=buffer_size))

        def state_dict(self) -> dict:
            """Return the stream's position: epoch, read position and buffered rows.

            Taken between two rows, it resumes after the last one returned (see
            :mod:`sarlang_data.torch`). ``StatefulDataLoader`` calls it in each worker.
            """
            if self._inner() is None:
                return super().state_dict()
            state = self.__dict__.get("_sarlang_state")
            if state is None:
                return {"format": _STATE_FORMAT, "epoch": self.epoch, "rows": None}
            cursor = state.get("cursor")
            at = state["rows"] if cursor is None else cursor.position()
            return {"format": _STATE_FORMAT, "epoch": state["epoch"], "rows": _copy_state(at)}

        def load_state_dict(self, state_dict: dict) -> None:
            """Make the next iteration resume from ``state_dict`` (when its epoch matches).

            Raises:
                ConfigError: a state of another kind of stream, or (when iterating) of a
                    different plan (config, filters, seed, world size, worker count).

            """
            if self._inner() is None:
                return super().load_state_dict(state_dict)
            if not isinstance(state_dict, Mapping) or state_dict.get("format") != _STATE_FORMAT:
                raise ConfigError(
                    "load_state_dict(): not a state of a sarlang_data stream (no format "
                    f"{_STATE_FORMAT!r}); pass what state_dict() of the same stream returned"
                )
            self._sarlang_resume = dict(state_dict)
            return None

        def _retyped(self, features: datasets.Features, rows: datasets.Features, decode: bool,
                     typed: bool) -> SarlangIterableDataset:
            """Return a copy declaring ``features`` whose rows come typed as ``rows``."""
            # not copy.copy: datasets' __getstate__ hands over the very same __dict__
            ds = self.__class__.__new__(self.__class__)
            ds.__dict__.update(self.__dict__)
            ds._info = self._info.copy()
            ds._info.features = features
            ex = self._ex_iterable
            ds._ex_iterable = _TypedRows(ex.ex_iterable, rows, decode, typed, ex._shared)
            return ds

        def decode(self, enable: bool = True, num_threads: int | None = None
                   ) -> datasets.IterableDataset:
            """Turn image decoding on or off (see ``datasets.IterableDataset.decode``)."""
            if num_threads or not isinstance(self._ex_iterable, _TypedRows):
                return super().decode(enable, num_threads)
            features = datasets.Features(
                {k: _set_decode(v, enable) for k, v in self._info.features.items()})
            return self._retyped(features, features, enable, True)

        def cast_column(self, column: str, feature: Any) -> datasets.IterableDataset:
            """Cast one column (see ``datasets.IterableDataset.cast_column``)."""
            if not isinstance(self._ex_iterable, _TypedRows):
                return super().cast_column(column, feature)
            plain = self._retyped(self._info.features, _encoded(self._info.features), False,
                                  False)
            return datasets.IterableDataset.cast_column(plain, column, feature)

        def cast(self, features: datasets.Features) -> datasets.IterableDataset:
            """Cast to new features (see ``datasets.IterableDataset.cast``)."""
            if not isinstance(self._ex_iterable, _TypedRows):
                return super().cast(features)
            plain = self._retyped(self._info.features, _encoded(self._info.features), False,
                                  False)
            return datasets.IterableDataset.cast(plain, features)

else:  # pragma: no cover
    _TypedRows = None
    _SarlangRows = None
    SarlangIterableDataset = None

#: marks the states of our streams
_STATE_FORMAT = "sarlang-stream-1"


def _shared_epoch(epoch: int) -> Any:
    """Return an epoch counter as ``datasets`` keeps it (shared with persistent workers)."""
    try:
        from datasets.iterable_dataset import _maybe_share_with_torch_persistent_workers
    except ImportError:  # pragma: no cover - older datasets keep a plain int
        return epoch
    return _maybe_share_with_torch_persistent_workers(epoch)


def _check_distributed(value: Any) -> bool | tuple[int, int] | None:
    """Validate ``distributed``: None (auto), False (off), True (auto) or (rank, world)."""
    if value is None or value is True:
        return None
    if value is False:
        return False
    return check_node(value)


def _set_decode(feature: Any, enable: bool) -> Any:
    """Return ``feature`` with every ``datasets.Image`` in it set to decode or not."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(mode=feature.mode, decode=enable)
    if isinstance(feature, list):
        return [_set_decode(f, enable) for f in feature]
    if isinstance(feature, dict):
        return {k: _set_decode(v, enable) for k, v in feature.items()}
    inner = getattr(feature, "feature", None)
    if inner is not None and isinstance(inner, (datasets.Image, list, dict)):
        return _list(_set_decode(inner, enable), getattr(feature, "length", -1))
    return feature


def _encoded(features: datasets.Features) -> datasets.Features:
    """Features of rows in their encoded form (images not decoded)."""
    return datasets.Features({k: _set_decode(v, False) for k, v in features.items()})


def _key_maker():
    """Return ``f(shard_idx, n, sample_key)`` building example keys for this datasets version.

    datasets >= 4 takes ``Key(shard, n)`` (it records rows per original shard); 3.x takes
    unique strings and checks them for duplicates.
    """
    key_cls = getattr(datasets.builder, "Key", None)
    if key_cls is not None:
        return lambda shard_idx, n, sample_key: key_cls(shard_idx, n)
    return lambda shard_idx, n, sample_key: f"{shard_idx}:{n}:{sample_key}"


def _fs_options(storage_options: Mapping[str, Any] | None, root: str) -> dict[str, Any]:
    """Return the fsspec options for a root's protocol.

    ``datasets`` keys storage options by protocol (``{"hf": {...}}``), and adds its own
    ``{"hf": {"endpoint": ..., "token": ...}}`` to the dict it is given; users usually pass
    them flat. Both forms are accepted; flat options win over the nested ones of the root's
    protocol, and other protocols' nested options are dropped.
    """
    import fsspec

    opts = dict(storage_options or {})
    protocol = root.split("://", 1)[0] if "://" in root else "file"
    protocols = set(fsspec.available_protocols())
    nested = opts.get(protocol)
    # nested options of the filesystem itself (s3fs's client_kwargs, HTTP headers) stay
    flat = {k: v for k, v in opts.items() if not (isinstance(v, Mapping) and k in protocols)}
    return {**nested, **flat} if isinstance(nested, Mapping) else flat


# --------------------------------------------------------------------------- load_dataset

_PASSTHROUGH = ("download_mode", "verification_mode", "keep_in_memory", "num_proc", "token")


def load_dataset(
    path: str = DATASET_ALIAS,
    name: str | None = DEFAULT_CONFIG,
    *,
    split: str | None = None,
    streaming: bool = False,
    data_dir: str | None = None,
    cities: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
    decode: bool = True,
    on_error: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    equalize: bool | str = False,
    distributed: bool | tuple[int, int] | None = None,
    **kwargs: Any,
) -> Any:
    """Load a config of SARLANG-1M, with the calling conventions of ``datasets.load_dataset``.

    Streams are ready for ``torch.utils.data.DataLoader`` (any ``num_workers``) and for
    multi-node training: under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) or after
    ``torch.distributed.init_process_group``, each rank streams only its own shards, and
    ``equalize=True`` gives every rank the same number of rows. Ranks are split first, then
    each rank's DataLoader workers (see :mod:`sarlang_data.torch`). Frameworks that split a
    stream across ranks themselves (``datasets.distributed.split_dataset_by_node``,
    accelerate's ``IterableDatasetShard`` and ``dispatch_batches`` under
    ``transformers.Trainer``) must get the whole stream: pass ``distributed=False``.

    Args:
        path: ``"sarlang-1m"`` (``$SARLANG_DATA``, else the bundled preview), a dataset root
            (local path or fsspec URL: ``file://``, ``https://``, ``s3://``, ``hf://``,
            ``memory://``), or a Hub repo id ``"ORG/NAME"``.
        name: config name (see ``sarlang_data.configs.CONFIGS``); None means ``images``.
        split: ``"train"``, ``"test"`` (or any split expression ``datasets`` takes); None
            returns every split in a dict.
        streaming: return an ``IterableDataset`` that reads shards as it goes, instead of
            preparing an Arrow copy in the ``datasets`` cache (built once, then reused).
        data_dir: the dataset root, overriding ``path``.
        cities: keep these cities (slugs, e.g. ``["rotterdam"]``).
        tiers: keep these resolution tiers (``vhr``, ``hr``, ``mr``).
        sources: keep these sources (``sardet100k``, ``spacenet6``, ``dfc2023``, ``oem_sar``).
        decode: decode images to PIL when rows are read (False keeps ``{"bytes", "path"}``).
        on_error: ``"raise"`` on a corrupt shard, or ``"skip"`` corrupt samples (logged and
            counted).
        storage_options: fsspec options for the root (credentials, endpoint, ...).
        equalize: streaming across ranks: give every rank exactly the same number of rows
            (DDP hangs when one rank has a batch more): ``True``/``"auto"`` drops the rows
            above the smallest rank's count or repeats rows up to the largest, whichever
            touches fewer rows (logged with the counts); ``"drop"`` or ``"repeat"`` choose.
        distributed: streaming only: None (default) splits by rank when
            ``torch.distributed`` is initialised or ``RANK``/``WORLD_SIZE`` are set;
            ``False`` reads the whole selection on every rank; ``(rank, world_size)`` sets
            them explicitly.
        **kwargs: ``cache_dir``, ``chat_format`` (``llamafactory`` or ``trl``), and the
            ``datasets.load_dataset`` options ``download_mode``, ``verification_mode``,
            ``keep_in_memory``, ``num_proc``, ``token``.

    Returns:
        ``datasets.IterableDataset`` / ``IterableDatasetDict`` when streaming, else
        ``datasets.Dataset`` / ``DatasetDict``.

    Raises:
        ConfigError: an unknown config, city, tier, source or option value, or filters that
            match nothing.
        ManifestError: no dataset root at ``path`` (missing or newer-format manifest).
        ShardError: a corrupt shard while reading, with ``on_error="raise"``.
        TypeError: an unknown keyword argument.

    """
    cache_dir = kwargs.pop("cache_dir", None)
    chat_format = kwargs.pop("chat_format", "llamafactory")
    passthrough = {k: kwargs.pop(k) for k in _PASSTHROUGH if k in kwargs}
    if kwargs:
        raise TypeError(
            f"load_dataset() got unexpected keyword arguments {sorted(kwargs)}; it takes "
            f"cache_dir, chat_format and {', '.join(_PASSTHROUGH)} besides its named arguments"
        )
    get_config(name)
    if not streaming and (equalize or distributed is not None):
        raise ConfigError(
            f"equalize={equalize!r}, distributed={distributed!r}: these split streams by "
            "rank and need streaming=True; a prepared Dataset takes a "
            "torch.utils.data.DistributedSampler (drop_last=True equalizes) instead"
        )
    root = resolve_root(path, data_dir)
    builder = SarlangBuilder(
        cache_dir=cache_dir,
        config_name=name or DEFAULT_CONFIG,
        data_dir=root,
        storage_options=dict(storage_options) if storage_options else None,
        token=passthrough.pop("token", None),
        cities=cities,
        tiers=tiers,
        sources=sources,
        decode=decode,
        on_error=on_error,
        chat_format=chat_format,
        equalize=equalize,
        distributed=distributed,
    )
    _check_split(builder, split)
    if streaming:
        if "num_proc" in passthrough:
            raise TypeError("num_proc cannot be used with streaming=True; use a DataLoader "
                            "with num_workers instead")
        return builder.as_streaming_dataset(split=split)
    keep_in_memory = passthrough.pop("keep_in_memory", None)
    builder.download_and_prepare(**passthrough)
    return builder.as_dataset(split=split, in_memory=bool(keep_in_memory))


def _check_split(builder: SarlangBuilder, split: Any) -> None:
    """Turn a plain split name the selection does not hold into a ConfigError."""
    if split is None or not isinstance(split, str) or not re.fullmatch(r"\w+", split):
        return  # split expressions ("train+test", "train[:10%]") are checked by datasets
    available = list(builder.shard_urls())
    if split not in available:
        if split in schema.SPLITS:
            raise ConfigError(
                f"split={split!r}: no shard of this config and filters is in that split; "
                f"available: {', '.join(available)}; loosen the filters or pick another split"
            )
        raise unknown_name("split", split, schema.SPLITS, "split")


# --------------------------------------------------------------------------- stream_rows


def _short(text: Any, width: int = 60) -> str:
    s = str(text)
    return s if len(s) <= width else s[: width - 1] + "…"


def _show_image(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):  # decode=False
        data = value.get("bytes") or b""
        return f"{value.get('path', '?')} ({len(data)} bytes)"
    size = getattr(value, "size", None)
    if size:
        return f"{size[0]}x{size[1]} {getattr(value, 'mode', '?')}"
    return type(value).__name__


def format_row(row: Mapping[str, Any]) -> str:
    """Return one line describing a row: image as size and mode, long texts shortened."""
    parts = [f"key={row.get('key')}", f"{row.get('split')}/{row.get('tier')}/{row.get('city')}",
             f"src={row.get('source')}", f"gsd={row.get('gsd_m')}"]
    if "image" in row:
        parts.append("image=" + _show_image(row["image"]))
    if "images" in row:
        parts.append("images=[" + ", ".join(_show_image(i) for i in row["images"]) + "]")
    for col in ("kind", "task", "question_type"):
        if col in row:
            parts.append(f"{col}={row[col]}")
    for col in ("caption", "question", "answer"):
        if col in row:
            parts.append(f"{col}={_short(row[col])!r}")
    if row.get("bbox") is not None:
        parts.append("bbox=" + str([round(v, 1) for v in row["bbox"]]))
    if "captions" in row:
        parts.append(f"captions={len(row['captions'])} qa={len(row['qa'])}")
        if row["captions"]:
            parts.append(f"first={_short(row['captions'][0]['text'])!r}")
    if "messages" in row:
        parts.append(f"turns={len(row['messages'])}")
        first = row["messages"][0]["content"] if row["messages"] else ""
        if isinstance(first, list):
            first = " ".join(b.get("text") or "<image>" for b in first)
        parts.append(f"first={_short(first)!r}")
    return "  ".join(parts)


def stream_rows(
    config: str,
    *,
    data: str | None = None,
    limit: int | None = None,
    cities: Iterable[str] | None = None,
    tiers: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    split: str | None = None,
    decode: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Print the rows of a config as they stream, then a line with rows and rows/s.

    This is ``sarlang-data stream CONFIG``.

    Args:
        config: config name.
        data: dataset root, URL or Hub id; None means ``$SARLANG_DATA`` or the preview.
        limit: stop after this many rows (None: all).
        cities: keep these cities.
        tiers: keep these tiers.
        sources: keep these sources.
        split: one split (None: every split, in order).
        decode: decode images (shows their size and mode) or keep bytes.
        out: where to print.

    Returns:
        The exit status, 0.

    Raises:
        ConfigError: bad names or a negative limit.

    """
    if limit is not None and limit < 0:
        raise ConfigError(f"limit={limit}: must be >= 0; pass --limit 10 or leave it out")
    ds = load_dataset(data or DATASET_ALIAS, config, split=split, streaming=True, cities=cities,
                      tiers=tiers, sources=sources, decode=decode)
    parts = [ds] if split is not None else list(ds.values())
    n = 0
    start = time.perf_counter()
    for part in parts:
        if limit is not None and n >= limit:
            break
        for row in part:
            print(f"{n}: {format_row(row)}", file=out)
            n += 1
            if limit is not None and n >= limit:
                break
    dt = max(time.perf_counter() - start, 1e-9)
    print(f"{n} rows of {config!r} in {dt:.2f} s ({n / dt:,.0f} rows/s)", file=out)
    return 0
