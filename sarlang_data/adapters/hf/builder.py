"""The ``datasets`` builder: a BuilderConfig per config of the catalogue, shards from the manifest.

One builder class, :class:`SarlangBuilder`, serves every route: :func:`load_dataset` here (on
datasets 3.x to 5.x), ``loading_script.py`` at the repo root (datasets 3.x,
``trust_remote_code=True``), and through them TRL and LLaMA-Factory. It has one BuilderConfig
per entry of :data:`sarlang_data.configs.CONFIGS` and declares the Features of each.

Shards come from the root's manifest: filters (``cities``, ``tiers``, ``sources`` and the
config's own tier) choose shards before any is opened, then rows. ``IterableDataset.n_shards``
is the number of selected shards with rows; streams are split across ranks only when asked
(``distributed=True``, ``datasets.distributed.split_dataset_by_node``, ``.shard()``), and
then at row level (see :mod:`sarlang_data.stream.partition`).

``datasets`` patches ``open``, ``os``, ``pathlib`` and a few more names in the module that
defines a builder (to stream remote files); this module therefore imports them inside the
functions that need them and does all I/O through :mod:`sarlang_data.stream.reader` and
:mod:`sarlang_data.format.manifest`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasets

from ... import schema
from ..._version import __version__
from ...configs import CONFIGS, DEFAULT_CONFIG, get_config
from ...errors import ConfigError, ManifestError
from ...stream.partition import (
    check_equalize,
    check_node,
    node_from_env,
)
from ...stream.reader import ReadStats, check_on_error
from ...stream.views import Layout, layout_for
from .features import features_for
from .iterable import SarlangIterableDataset, _SarlangRows, _TypedRows
from .rows import _ShardReader

log = logging.getLogger(__name__)

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
    return str(Path(__file__).resolve().parents[3] / "shards")


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
        chat_format: chat rows of a text config: ``trl`` (typed content parts) or
            ``llamafactory`` (string content with ``<image>``); None: the config's default
            (``trl`` for ``chat``, plain rows for the others).
        chat_group: ``text`` (one conversation per caption or QA pair, the default) or
            ``image`` (one multi-turn conversation per image).
        max_turns: with ``chat_group="image"``, the most turns in one row.
        check_hashes: check image members against their records' sha256 while reading (None:
            for remote roots only).

    """

    cities: tuple[str, ...] | None = None
    tiers: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    decode: bool = True
    on_error: str = "raise"
    chat_format: str | None = None
    chat_group: str | None = None
    max_turns: int | None = None
    check_hashes: bool | None = None


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
        from ...format.manifest import read_manifest

        # streaming-only options; not part of the config (they do not change the rows)
        distributed = kwargs.pop("distributed", None)
        self._dist_option = _check_distributed(distributed)
        equalize = kwargs.pop("equalize", None)
        self._equalize = check_equalize(equalize)
        if self._equalize and self._dist_option is None:
            raise ConfigError(
                f"equalize={equalize!r} with distributed={distributed!r}: equalize balances "
                "this package's own split by rank, which happens only with distributed=True "
                "(or (rank, world_size)); pass distributed=True too, or drop equalize when a "
                "framework (accelerate, Trainer) splits the stream"
            )
        name = kwargs.get("config_name")
        get_config(name)  # unknown names: ConfigError with the valid ones, closest first
        root = resolve_root(DATASET_ALIAS, kwargs.get("data_dir"))
        filters = _norm_filters(kwargs.get("cities"), kwargs.get("tiers"), kwargs.get("sources"))
        kwargs.update(filters)
        kwargs["data_dir"] = root
        kwargs.setdefault("dataset_name", DATASET_NAME)
        check_on_error(kwargs.get("on_error", "raise"))
        layout = layout_for(name or DEFAULT_CONFIG, kwargs.get("chat_format"),
                            kwargs.get("chat_group"), kwargs.get("max_turns"))
        manifest = read_manifest(root, _fs_options(kwargs.get("storage_options"), root))
        key = {
            "root": root,
            "index_sha256": manifest["index"]["sha256"],
            "format_version": manifest["format_version"],
            "config": name or DEFAULT_CONFIG,
            **filters,
            "decode": kwargs.get("decode", True),
            "on_error": kwargs.get("on_error", "raise"),
            "layout": [layout.chat_format, layout.group, layout.max_turns],
            "check_hashes": kwargs.get("check_hashes"),
            "package": __version__,
            "outer": kwargs.get("hash"),  # e.g. the loading script's own hash
        }
        kwargs["hash"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self._root = root
        self._manifest = manifest
        self._layout = layout
        #: counts of this process's reads (samples, skipped samples and why)
        self.read_stats = ReadStats()
        super().__init__(*args, **kwargs)

    @property
    def root(self) -> str:
        """The dataset root this builder reads."""
        return self._root

    @property
    def layout(self) -> Layout:
        """The shape of this load's rows (plain, or chat rows and how)."""
        return self._layout

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION + " Config: " + (self.config.description or ""),
            features=features_for(self.config.name, decode=self.config.decode,
                                  layout=self._layout),
            homepage="https://github.com/Jimmyxichen/SARLANG-1M",
            citation=_CITATION,
            splits=self._split_infos(),
        )

    def _split_infos(self) -> datasets.SplitDict | None:
        """Rows per split of this config and its filters, from the manifest (or the index).

        ``datasets`` checks a prepared split against these counts; with ``on_error="skip"``
        samples may be left out, so no counts are declared then.
        """
        if self.config.on_error != "raise":
            return None
        try:
            splits = list(self.shard_urls())
        except ConfigError:
            return None  # filters that match nothing: load_dataset says so itself
        infos = datasets.SplitDict(dataset_name=DATASET_NAME)
        for split in splits:
            _, counts, sizes = self.shard_rows(split)
            infos.add(datasets.SplitInfo(name=split, num_examples=sum(counts),
                                         dataset_name=DATASET_NAME))
        return infos

    def selected_shards(self) -> list[dict]:
        """Return the manifest entries of the shards this config and its filters read."""
        from ...format.manifest import select_shards

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
        from ...remote import join

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
        cached = self.__dict__.setdefault("_shard_rows", {}).get(split)
        if cached is None:  # the selection is fixed at init: count once (info.splits, streams)
            cached = self._shard_rows[split] = self._count_shard_rows(split)
        urls, counts, sizes = cached
        return list(urls), list(counts), list(sizes)

    def _count_shard_rows(self, split: str) -> tuple[list[str], list[int], list[int]]:
        from ...remote import join

        shards = [s for s in self.selected_shards() if s["split"] == split]
        urls = [join(self._root, s["path"]) for s in shards]
        sizes = [int(s["bytes"]) for s in shards]
        cfg = get_config(self.config.name)
        cities, sources = self.config.cities, self.config.sources

        def inside(shard: Mapping[str, Any]) -> bool:
            return ((cities is None or set(shard["cities"]) <= set(cities))
                    and (sources is None or set(shard["sources"]) <= set(sources)))

        if all(inside(s) for s in shards) and self._layout.group != "image":
            return urls, [int(s["configs"][cfg.name]) for s in shards], sizes
        return urls, self._index_rows(shards), sizes

    def _index_rows(self, shards: list[dict]) -> list[int]:
        """Rows of this config per shard, counted in ``index.parquet`` with the row filters."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from ...format.manifest import read_index

        cfg = get_config(self.config.name)
        if cfg.unit == "caption":
            kinds = schema.CAPTION_KINDS if cfg.kind is None else (cfg.kind,)
            counted = [f"n_{k}" for k in kinds]
        elif cfg.unit == "qa":
            counted = [f"n_{t}" for t in (schema.TASKS if cfg.task is None else (cfg.task,))]
        elif cfg.unit == "text":
            counted = [*(f"n_{k}" for k in schema.CAPTION_KINDS),
                       *(f"n_{t}" for t in schema.TASKS)]
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
            if self._layout.group == "image":  # a row per max_turns texts of an image
                step = self._layout.max_turns
                values = [min(v, 1) if step is None else -(-v // step) for v in values]
        else:  # image-centric: one row per sample
            values = [1] * len(table)
        per_shard: dict[str, int] = {}
        for shard, count in zip(table["shard"].to_pylist(), values, strict=True):
            per_shard[shard] = per_shard.get(shard, 0) + count
        return [per_shard.get(s["path"], 0) for s in shards]

    def shard_reader(self) -> _ShardReader:
        """Return the picklable reader of this config's rows of one shard (``.rows(url, i)``).

        Other engines that plan their own reads from :meth:`shard_rows` (Ray Data's
        datasource in :mod:`sarlang_data.adapters.ray`) read shards through it, so their rows
        are exactly this builder's.
        """
        return self._reader()

    def _reader(self) -> _ShardReader:
        from ...remote import join

        c = self.config
        return _ShardReader(c.name, c.cities, c.tiers, c.sources, self._layout, c.on_error,
                            _fs_options(self.storage_options, self._root), self.read_stats,
                            self._root, self._manifest["index"]["sha256"],
                            c.check_hashes,
                            {join(self._root, s["path"]): int(s["samples"])
                             for s in self._manifest["shards"]})

    def _node(self) -> tuple[int, int] | None:
        """Return this process's ``(rank, world_size)`` for streaming, or None (no split)."""
        if self._dist_option is None:
            return None
        if self._dist_option is True:
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
        here = node_from_env() if node is None and self._dist_option is None else None
        if here is not None:
            log.info("rank %d of %d: the stream of split %r is not split across ranks (every "
                     "rank gets the whole split, as in datasets): accelerate, "
                     "transformers.Trainer, TRL and LLaMA-Factory split it themselves; "
                     "without them pass distributed=True or use "
                     "datasets.distributed.split_dataset_by_node", here[0], here[1],
                     str(split_generator.name))
        if node is not None:
            part, eq = inner.plan()
            log.info("rank %d of %d reads %d of the %d rows of split %r (from %d of the %d "
                     "shards with rows)", node[0], node[1], part.rows, sum(counts),
                     str(split_generator.name), len(part.segments),
                     sum(1 for c in counts if c))
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


def _check_distributed(value: Any) -> bool | tuple[int, int] | None:
    """Validate ``distributed``: None/False (no split), True (this process's rank), a pair."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    return check_node(value)


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
