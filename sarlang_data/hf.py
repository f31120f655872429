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

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import datasets

from . import __version__, schema
from .configs import CONFIGS, DEFAULT_CONFIG, Config, get_config
from .errors import ConfigError, ManifestError, unknown_name
from .reader import ReadStats, check_on_error, iter_samples
from .views import CHAT_FORMATS, rows, sample_filter

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

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"shards": urls})
            for split, urls in self.shard_urls().items()
        ]

    def _get_examples_iterable_for_split(self, split_generator: datasets.SplitGenerator) -> Any:
        inner = super()._get_examples_iterable_for_split(split_generator)
        if _TypedRows is None:  # pragma: no cover - a datasets without typed iterables
            return inner
        # rows of image-centric configs own their sample's image; text configs share it
        shared = get_config(self.config.name).unit != "image"
        return _TypedRows(inner, self.info.features, self.config.decode, shared=shared)

    def _as_streaming_dataset_single(self, *args: Any, **kwargs: Any) -> datasets.IterableDataset:
        ds = super()._as_streaming_dataset_single(*args, **kwargs)
        if _TypedRows is not None and isinstance(ds._ex_iterable, _TypedRows):
            ds.__class__ = SarlangIterableDataset  # same state, casts that know our rows
        return ds

    def _generate_examples(self, shards: list[str]) -> Iterator[tuple[Any, dict[str, Any]]]:
        cfg = get_config(self.config.name)
        keep = sample_filter(cities=self.config.cities, tiers=self.config.tiers,
                             sources=self.config.sources)
        chat_format = self.config.chat_format
        options = _fs_options(self.storage_options, self._root)
        make_key = _key_maker()
        for shard_idx, url in enumerate(shards):
            n = 0
            for sample in iter_samples(url, on_error=self.config.on_error,
                                       storage_options=options, stats=self.read_stats):
                if keep is not None and not keep(sample["json"]):
                    continue
                for row in rows(cfg, sample, chat_format=chat_format):
                    yield make_key(shard_idx, n, sample["__key__"]), row
                    n += 1


try:
    from datasets.iterable_dataset import _BaseExamplesIterable
except ImportError:  # pragma: no cover - checked by tests on datasets 3.6 and 5.2
    _BaseExamplesIterable = None


if _BaseExamplesIterable is not None:

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
                yield from self.ex_iterable
                return
            image = datasets.Image(decode=True)
            last_bytes: Any = None
            last_image: Any = None

            def decoded(value: dict[str, Any]) -> Any:
                nonlocal last_bytes, last_image
                if not self._shared:
                    return image.decode_example(value)
                if value["bytes"] is not last_bytes:
                    last_bytes, last_image = value["bytes"], image.decode_example(value)
                return last_image.copy()

            for key, row in self.ex_iterable:
                if "image" in row:
                    row["image"] = decoded(row["image"])
                else:
                    row["images"] = [decoded(v) for v in row["images"]]
                yield key, row
    class SarlangIterableDataset(datasets.IterableDataset):
        """The streams of :func:`load_dataset`: an IterableDataset whose casts know our rows.

        Rows arrive already typed (see ``_TypedRows``), and ``datasets`` does not re-apply
        features to typed rows; so ``decode()`` switches our own image decoding, and ``cast``/
        ``cast_column`` hand rows to ``datasets`` in their encoded form to cast them itself.
        Other methods return plain ``IterableDataset`` objects, as ``datasets`` makes them: cast
        or change decoding first (or pass ``decode=`` to :func:`load_dataset`).
        """

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
    SarlangIterableDataset = None


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

    ``datasets`` keys storage options by protocol (``{"hf": {...}}``); users usually pass them
    flat. Both forms are accepted.
    """
    opts = dict(storage_options or {})
    protocol = root.split("://", 1)[0] if "://" in root else "file"
    nested = opts.get(protocol)
    if isinstance(nested, Mapping):
        return dict(nested)
    # drop other protocols' nested options that datasets may have added
    return {k: v for k, v in opts.items() if not isinstance(v, Mapping) or k == "headers"}


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
    **kwargs: Any,
) -> Any:
    """Load a config of SARLANG-1M, with the calling conventions of ``datasets.load_dataset``.

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
