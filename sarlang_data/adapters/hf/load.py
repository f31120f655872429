"""``load_dataset``: the call users type, over the builder, with our filters and stream options."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ... import schema
from ...configs import DEFAULT_CONFIG, get_config
from ...errors import ArgumentError, ConfigError, unknown_name
from .builder import DATASET_ALIAS, SarlangBuilder, resolve_root

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- load_dataset

_PASSTHROUGH = ("download_mode", "verification_mode", "keep_in_memory", "num_proc", "token")
#: keywords of ``datasets.load_dataset`` this function refuses, and why
_REFUSED = {
    "data_files": "a dataset root lists its shards in manifest.json; pass the root as path or "
                  "data_dir=, and pick shards with cities=, tiers=, sources=",
    "download_config": "pass its parts directly: token= for the Hub, storage_options= for "
                       "any other filesystem",
    "save_infos": "there is nothing to save: manifest.json holds every count",
}
#: keywords of ``datasets.load_dataset`` accepted with no effect, and why
_IGNORED = {
    "trust_remote_code": "no code from the dataset runs: the builder is this package's own",
}


def load_dataset(
    path: str = DATASET_ALIAS,
    name: str | None = DEFAULT_CONFIG,
    split: str | None = None,
    *,
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
    chat_format: str | None = None,
    chat_group: str | None = None,
    max_turns: int | None = None,
    revision: str | None = None,
    features: Any = None,
    **kwargs: Any,
) -> Any:
    """Load a config of SARLANG-1M, with the calling conventions of ``datasets.load_dataset``.

    Streams are ready for ``torch.utils.data.DataLoader`` (any ``num_workers``) and for
    multi-node training. As in ``datasets``, a stream is split across ranks only when asked,
    so frameworks that split it themselves (accelerate's ``prepare`` with or without
    ``dispatch_batches``, hence ``transformers.Trainer``, TRL and LLaMA-Factory) get the whole
    stream and split it once. Without such a framework (plain DDP), ask:
    ``distributed=True`` (this process's rank from ``torch.distributed`` or ``RANK``/
    ``WORLD_SIZE``, with ``equalize=True`` for the same rows on every rank),
    ``datasets.distributed.split_dataset_by_node`` or ``.shard(world_size, rank)``. Every
    split is at row level: ranks, then each rank's DataLoader workers, get contiguous row
    ranges whose sizes differ by at most one row (see :mod:`sarlang_data.stream.partition`).

    Args:
        path: ``"sarlang-1m"`` (``$SARLANG_DATA``, else the bundled preview), a dataset root
            (local path or fsspec URL: ``file://``, ``https://``, ``s3://``, ``hf://``,
            ``memory://``), or a Hub repo id ``"ORG/NAME"``.
        name: config name (see ``sarlang_data.configs.CONFIGS``); None means ``images``.
        split: ``"train"``, ``"test"`` (or any split expression ``datasets`` takes); None
            returns every split in a dict. Unlike ``datasets.load_dataset``, whose third
            positional argument is ``data_dir``, the third positional argument here is the
            split (``load_dataset("sarlang-1m", "vqa", "train")``).
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
        equalize: with ``distributed``: give every rank exactly the same number of rows
            (DDP hangs when one rank has a batch more): ``True``/``"auto"`` drops the row
            above the smallest rank's count or repeats one up to the largest, whichever
            touches fewer rows (fewer than the number of ranks; logged with the counts);
            ``"drop"`` or ``"repeat"`` choose.
        distributed: streaming only: None or ``False`` (default) reads the whole selection
            on every rank; ``True`` streams only this rank's rows (rank and world size from
            ``torch.distributed`` when initialised, else ``RANK``/``WORLD_SIZE``);
            ``(rank, world_size)`` sets them explicitly. Do not combine with a framework
            that splits the stream itself (accelerate, Trainer): rows would be split twice.
        chat_format: chat rows of a text config: ``"trl"`` (``messages`` with typed content
            parts + ``images``, what TRL's ``SFTTrainer`` takes) or ``"llamafactory"`` (string
            content with ``<image>``); None: the config's default (``trl`` for ``chat``,
            plain rows for the other text configs).
        chat_group: ``"text"`` (one conversation per caption or QA pair with the paper's
            prompts, the default) or ``"image"`` (one multi-turn conversation per image).
        max_turns: with ``chat_group="image"``, the most turns in one row (an image with
            more texts gives several rows).
        revision: a Hub branch, tag or commit, for Hub roots (``ORG/NAME`` or ``hf://``).
        features: ``datasets.Features`` to cast the rows to (as ``datasets`` does).
        **kwargs: ``cache_dir``, and the ``datasets.load_dataset`` options
            ``download_mode``, ``verification_mode``, ``keep_in_memory``, ``num_proc``,
            ``token``; ``check_hashes`` (check image members against their sha256 while
            streaming; None, the default, checks remote roots only: it costs ~5% of a read
            that decodes); ``trust_remote_code`` is accepted and has no effect; ``data_files``,
            ``download_config`` and ``save_infos`` are refused with the reason.

    Returns:
        ``datasets.IterableDataset`` / ``IterableDatasetDict`` when streaming, else
        ``datasets.Dataset`` / ``DatasetDict``.

    Raises:
        ConfigError: an unknown config, city, tier, source or option value, or filters that
            match nothing.
        ManifestError: no dataset root at ``path`` (missing or newer-format manifest).
        ShardError: a corrupt shard while reading, with ``on_error="raise"``.
        ArgumentError: an unknown keyword argument (a ``TypeError``); the message names the
            closest valid one.

    """
    cache_dir = kwargs.pop("cache_dir", None)
    check_hashes = kwargs.pop("check_hashes", None)
    passthrough = {k: kwargs.pop(k) for k in _PASSTHROUGH if k in kwargs}
    for key in [k for k in kwargs if k in _IGNORED]:
        log.debug("load_dataset(%s=%r): ignored: %s", key, kwargs.pop(key), _IGNORED[key])
    for key in kwargs:
        if key in _REFUSED:
            raise ConfigError(f"load_dataset({key}=...): not taken here: {_REFUSED[key]}")
    if kwargs:
        raise _unknown_keywords(kwargs)
    get_config(name)
    if not streaming and (equalize or distributed not in (None, False)):
        raise ConfigError(
            f"equalize={equalize!r}, distributed={distributed!r}: these split streams by "
            "rank and need streaming=True; a prepared Dataset takes a "
            "torch.utils.data.DistributedSampler (drop_last=True equalizes) instead"
        )
    root = _with_revision(resolve_root(path, data_dir), revision)
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
        chat_group=chat_group,
        max_turns=max_turns,
        check_hashes=check_hashes,
        equalize=equalize,
        distributed=distributed,
    )
    _check_split(builder, split)
    if streaming:
        if "num_proc" in passthrough:
            raise TypeError("num_proc cannot be used with streaming=True; use a DataLoader "
                            "with num_workers instead")
        return _cast(builder.as_streaming_dataset(split=split), features)
    keep_in_memory = passthrough.pop("keep_in_memory", None)
    builder.download_and_prepare(**passthrough)
    return _cast(builder.as_dataset(split=split, in_memory=bool(keep_in_memory)), features)


def _cast(ds: Any, features: Any) -> Any:
    """Cast a dataset (or a dict of them) to ``features``, as ``datasets`` does when asked."""
    if features is None:
        return ds
    import datasets

    features = datasets.Features(features)
    parts = ds.values() if isinstance(ds, dict) else [ds]
    if all(p.features == features for p in parts):
        return ds
    try:
        return ds.cast(features)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"features={features}: the rows cannot be cast to them ({e}); pass features with "
            "the same columns (sarlang_data.hf.features_for(config) gives the rows' own)"
        ) from None


def _with_revision(root: str, revision: str | None) -> str:
    """Pin a Hub root to ``revision`` (``hf://datasets/ORG/NAME@REV``)."""
    if revision is None:
        return root
    from urllib.parse import quote

    if not root.startswith("hf://"):
        raise ConfigError(
            f"revision={revision!r}: revisions are of Hub repos, and root {root!r} is not on "
            "the Hub; pass a Hub repo id (ORG/NAME or hf://datasets/ORG/NAME), or leave "
            "revision out")
    head, _, tail = root[len("hf://"):].partition("/")
    repo = "/".join(tail.split("/")[:2])
    if "@" in repo:
        raise ConfigError(
            f"revision={revision!r}: root {root!r} already names a revision; pass one of them")
    rest = tail[len(repo):]
    return f"hf://{head}/{repo}@{quote(str(revision), safe='')}{rest}"


def _unknown_keywords(kwargs: Mapping[str, Any]) -> ArgumentError:
    """Build the error for keywords ``load_dataset`` does not take, naming the closest ones."""
    import difflib
    import inspect

    valid = [p for p in inspect.signature(load_dataset).parameters
             if p not in ("path", "name", "kwargs")]
    valid += ["cache_dir", "check_hashes", *_PASSTHROUGH, *_IGNORED]
    parts = []
    for k in sorted(kwargs):
        near = difflib.get_close_matches(k, valid, n=1, cutoff=0.5)
        parts.append(f"{k}={kwargs[k]!r}: unknown keyword"
                     + (f"; did you mean {near[0]}=?" if near else ""))
    return ArgumentError(f"load_dataset() got unexpected keyword arguments {sorted(kwargs)}: "
                         f"{'; '.join(parts)}; it takes {', '.join(valid)}")


def _check_split(builder: SarlangBuilder, split: Any) -> None:
    """Turn a plain split name the selection does not hold into a ConfigError."""
    if isinstance(split, str) and ("/" in split or "\\" in split):
        raise ConfigError(
            f"split={split!r}: not a split but a path; the third positional argument of "
            "sarlang_data.load_dataset is the split (datasets' is data_dir): pass the root as "
            "path or data_dir=")
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
