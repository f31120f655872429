"""``SARLANG1M``: a map-style (random-access) dataset in torchgeo's style.

``SARLANG1M(root, split=..., config=..., transforms=...)`` has ``__len__`` (the rows of the
config in that split, the manifest's count) and ``__getitem__(i)``: row ``i`` in the order the
streaming path yields them (shard order, then tar order, then the texts of a sample in record
order), read at the offsets ``index.parquet`` gives (one local seek, or one HTTP/S3/Hub range
request, per sample; consecutive rows of one sample share the read). An item is the config's
row (the columns of :func:`sarlang_data.stream.views.columns`) with torchgeo's conventions:

- ``image``: a float32 ``C x H x W`` tensor of the stored pixels (no scaling; the ``chat``
  config has ``images``, a list of one such tensor);
- ``bbox`` (QA configs): a float32 tensor ``[x, y, w, h]`` in pixels of the stored image,
  NaN when the question has no box (so a batch stacks);
- ``width``, ``height``: the stored image's size, which boxes refer to (``plot`` scales boxes
  when a transform has resized the image).

``transforms`` is called with the item and returns it (torchgeo's ``transforms``). Whole-archive
``.tar.zst`` shards cannot be entered at an offset: such roots are refused with the fix.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .. import schema
from ..configs import get_config
from ..errors import ConfigError, unknown_name
from ..format.access import is_compressed
from ..format.manifest import read_index, read_manifest, select_samples
from ..remote import redact
from ..stream.lookup import samples_at
from ..stream.views import Layout, columns, layout_for, row_count, rows
from .hf.builder import resolve_root
from .torch import image_tensor

_INDEX_COLUMNS = ("key", "shard", "offset", "size", "split", "tier", "city", "source",
                  *(f"n_{k}" for k in schema.CAPTION_KINDS), *(f"n_{t}" for t in schema.TASKS))


def _rows_of(cfg, r: Mapping[str, Any], layout: Layout) -> int:
    """Rows a config makes of a sample, from the index's counts (= ``views.row_count``)."""
    light = {"tier": r["tier"],
             "captions": [{"kind": k} for k in schema.CAPTION_KINDS for _ in range(r[f"n_{k}"])],
             "qa": [{"task": t} for t in schema.TASKS for _ in range(r[f"n_{t}"])]}
    return row_count(cfg, light, layout)


class SARLANG1M(Dataset):
    """SARLANG-1M as a map-style ``torch.utils.data.Dataset`` (torchgeo's conventions).

    Args:
        root: ``"sarlang-1m"`` (``$SARLANG_DATA``, else the bundled preview), a dataset root
            (local path or fsspec URL: ``https://``, ``s3://``, ``hf://``), or ``ORG/NAME``.
        split: ``"train"`` or ``"test"``.
        config: a config name (``images``, ``vqa``, ``region_referring``, ``captions``, ...).
        transforms: called with each item (a dict) and returning it, e.g. a resize.
        cities: keep these city slugs.
        tiers: keep these resolution tiers.
        sources: keep these sources.
        storage_options: fsspec options for a remote root (credentials, headers, endpoint).
        chat_format: chat rows of a text config (``trl`` or ``llamafactory``; None: the
            config's default, ``trl`` for ``chat``), as in :func:`sarlang_data.load_dataset`.
        cache_samples: samples kept in memory, so the rows of one sample cost one read.

    Raises:
        ConfigError: an unknown config, split, city, tier or source, or a root with
            ``.tar.zst`` shards.
        ManifestError: no dataset root at ``root``.

    """

    def __init__(self, root: str = "sarlang-1m", split: str = "train", config: str = "images",
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None, *,
                 cities: str | Iterable[str] | None = None,
                 tiers: str | Iterable[str] | None = None,
                 sources: str | Iterable[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None,
                 chat_format: str | None = None, cache_samples: int = 8) -> None:
        self.config = get_config(config)
        self.layout = layout_for(self.config, chat_format)
        if split not in schema.SPLITS:
            raise unknown_name("split", str(split), schema.SPLITS, "split")
        self.root = resolve_root(str(root))
        self.split = split
        self.transforms = transforms
        self.storage_options = dict(storage_options) if storage_options else None
        self.chat_format = chat_format
        self.cache_samples = max(1, int(cache_samples))
        manifest = read_manifest(self.root, self.storage_options)
        index = read_index(self.root, columns=list(_INDEX_COLUMNS),
                           storage_options=self.storage_options)
        picked = select_samples(manifest, index, splits=[split], cities=cities, tiers=tiers,
                                sources=sources).to_pylist()
        self._rows: list[dict[str, Any]] = []
        self._starts: list[int] = []
        total = 0
        for r in picked:
            n = _rows_of(self.config, r, self.layout)
            if n:
                self._rows.append({k: r[k] for k in ("key", "shard", "offset", "size")})
                self._starts.append(total)
                total += n
        self._len = total
        zst = sorted({r["shard"] for r in self._rows if is_compressed(r["shard"])})
        if zst:
            raise ConfigError(
                f"root={redact(self.root)!r}: {len(zst)} shard(s) are whole-archive zstd "
                f"({zst[0]}, ...), which cannot be read at an offset; use the streaming path "
                "(sarlang_data.load_dataset(..., streaming=True)) or a root built with "
                "--compress none (`sarlang-data transcode` or a rebuild)")
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()

    # -- torch protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        """Rows of the config in the split (the manifest's count for an unfiltered root)."""
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return row ``index`` as a torchgeo-style item (see the module docstring).

        Raises:
            IndexError: ``index`` is outside ``-len(self) .. len(self) - 1``.

        """
        i = int(index)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"index {index} is out of range for {self._len} rows")
        j = bisect.bisect_right(self._starts, i) - 1
        sample = self._sample(j)
        row = rows(self.config, sample, layout=self.layout)[i - self._starts[j]]
        item = self._item(row, sample)
        return self.transforms(item) if self.transforms is not None else item

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # workers read their own samples
        return state

    def __repr__(self) -> str:
        return (f"SARLANG1M(root={redact(self.root)!r}, split={self.split!r}, "
                f"config={self.config.name!r}): {self._len} rows of {len(self._rows)} images")

    # -- reading -------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """The keys of the samples this dataset reads, in order."""
        return [r["key"] for r in self._rows]

    def _sample(self, j: int) -> dict[str, Any]:
        cached = self._cache.get(j)
        if cached is not None:
            self._cache.move_to_end(j)
            return cached
        sample = samples_at(self.root, [self._rows[j]], self.storage_options)[0]
        self._cache[j] = sample
        if len(self._cache) > self.cache_samples:
            self._cache.popitem(last=False)
        return sample

    @staticmethod
    def _item(row: Mapping[str, Any], sample: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(row)
        if "image" in item:
            item["image"] = image_tensor(item["image"]).float()
        if "images" in item:
            item["images"] = [image_tensor(v).float() for v in item["images"]]
        if "bbox" in item:
            box = item["bbox"]
            item["bbox"] = torch.tensor(box if box is not None else [float("nan")] * 4,
                                        dtype=torch.float32)
        item["width"] = int(sample["json"]["width"])
        item["height"] = int(sample["json"]["height"])
        return item

    # -- torchgeo extras -----------------------------------------------------------------------
    def plot(self, sample: Mapping[str, Any], show_titles: bool = True,
             suptitle: str | None = None):
        """Draw an item: the image, its boxes and positioning answers, its texts.

        Args:
            sample: an item of this dataset (transformed or not).
            show_titles: write the key and metadata above the image.
            suptitle: a title to use instead of the key.

        Returns:
            A ``matplotlib.figure.Figure``.

        """
        from ..viz.figures import plot

        return plot(_untensored(sample), show_titles=show_titles, suptitle=suptitle)

    @property
    def columns(self) -> tuple[str, ...]:
        """The row columns of the config (items add ``width`` and ``height``)."""
        return columns(self.config, self.layout)


def _untensored(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return an item with a NaN ``bbox`` tensor turned back into None (plot draws lists)."""
    out = dict(item)
    box = out.get("bbox")
    if isinstance(box, torch.Tensor):
        out["bbox"] = None if bool(torch.isnan(box).any()) else box.tolist()
    return out


def stack_items(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate items into a batch dict: tensors of equal shape stacked, everything else listed.

    torchgeo's ``stack_samples`` convention: a ``DataLoader(ds, collate_fn=stack_items)``
    batch has ``image`` as a ``B x C x H x W`` tensor when the images have one size (a list of
    tensors otherwise), ``bbox`` as ``B x 4``, and lists for texts, captions and QA lists.

    Args:
        batch: items of :class:`SARLANG1M`.

    Returns:
        ``{column: stacked tensor or list}``.

    """
    out: dict[str, Any] = {}
    for name in batch[0]:
        values = [b[name] for b in batch]
        if all(isinstance(v, torch.Tensor) for v in values) and len(
                {tuple(v.shape) for v in values}) == 1:
            out[name] = torch.stack(values)
        else:
            out[name] = values
    return out
