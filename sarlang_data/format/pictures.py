"""The card's pictures: a contact sheet of the root's images and the main statistics chart.

Both are pure functions of the root, so the same root always gives the same bytes:

- ``assets/contact_sheet.jpg`` (:func:`contact_sheet`): a grid of samples chosen from
  ``index.parquet`` alone (round robin over sources, then tiers, then cities, each group in
  the order of the sha256 of the keys), read at the index's offsets, rendered as grayscale with
  a 2-98 percentile stretch (:func:`stretch`) and labelled with source, city, tier and GSD.
  Pillow only; JPEG keeps a grid of speckled SAR at a few hundred KB, where PNG takes ~3x.
- ``assets/stats.png`` (:func:`overview_chart`): images per source and per tier, QA pairs per
  task and captions per kind (train and test), from :func:`sarlang_data.format.stats.stats`.
  matplotlib's Agg canvas with its default style (whatever the user's matplotlibrc says) and
  no ``Software`` tag, so the PNG bytes depend on the numbers and the library versions only.

They live in ``format/`` because the card writer (and so the build, layer 2) writes them next
to ``README.md``; :mod:`sarlang_data.viz` builds the interactive plots on the same helpers.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema
from .access import read_spans

ASSETS_DIR = "assets"
CONTACT_SHEET = f"{ASSETS_DIR}/contact_sheet.jpg"
STATS_CHART = f"{ASSETS_DIR}/stats.png"
#: what the card's picture links say
ALT_TEXT = {CONTACT_SHEET: "contact sheet: samples by source and resolution tier",
            STATS_CHART: "statistics: images per source and tier, QA pairs per task, captions "
                         "per kind"}

#: display names of the sources (the card's source table uses the same)
SOURCE_NAMES = {"sardet100k": "SARDet-100K", "spacenet6": "SpaceNet 6", "dfc2023": "DFC2023",
                "oem_sar": "OpenEarthMap-SAR"}
#: one colour per source (Okabe-Ito, readable by colour-blind viewers)
SOURCE_COLORS = {"sardet100k": (230, 159, 0), "spacenet6": (86, 180, 233),
                 "dfc2023": (0, 158, 115), "oem_sar": (204, 121, 167)}
SPLIT_COLORS = {"train": "#4c72b0", "test": "#dd8452"}

SHEET_COLUMNS = 6
SHEET_TILES = 24
TILE = 144
_PAD, _LABEL_H, _HEAD = 6, 30, 34
_JPEG_QUALITY = 88
_SHEET_COLUMNS = ("key", "shard", "image_offset", "image_size", "image_ext", "source", "tier",
                  "city", "gsd_m")


# --------------------------------------------------------------------------- pixels


def stretch(pixels: Any, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map an image's pixels to 8-bit grayscale with a percentile stretch.

    SAR intensities are heavy-tailed: a min-max scale would spend the grey levels on a few
    bright scatterers. Values between the ``low`` and ``high`` percentiles are spread over
    0-255 and the rest clipped; an image with (almost) one value keeps its own levels.

    Args:
        pixels: ``H x W`` (or ``H x W x C``, averaged to one band) array-like of any dtype.
        low: lower percentile.
        high: upper percentile.

    Returns:
        ``H x W`` uint8 array.

    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(finite, (low, high))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:  # one value everywhere: show it as it is (clipped to 8 bits)
        return np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    out = (np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5)
    return out.astype(np.uint8)


def image_pixels(data: bytes) -> np.ndarray:
    """Decode an image member (PNG, JPEG or a ``.npy.zst`` pixel member) to a numpy array."""
    from PIL import Image

    from . import codec

    if codec.is_member(data):
        return codec.decode_array(data)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("L")
        return np.asarray(im)


# --------------------------------------------------------------------------- contact sheet


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _round_robin(groups: Sequence[Sequence[Any]]) -> Iterator[Any]:
    """Items of each group in turn: the first of every group, then the second, ..."""
    depth = 0
    while True:
        took = False
        for g in groups:
            if depth < len(g):
                took = True
                yield g[depth]
        if not took:
            return
        depth += 1


def sheet_rows(rows: Sequence[Mapping[str, Any]], n: int = SHEET_TILES) -> list[dict]:
    """Choose the samples of the contact sheet from index rows, deterministically.

    Sources take turns, in :data:`schema.SOURCES` order; within a source, its tiers take turns;
    within a tier, its cities; within a city, samples go in the order of the sha256 of their
    keys (so the choice depends on the index alone, and a subset shows its own samples).

    Args:
        rows: index rows with at least ``key``, ``source``, ``tier`` and ``city``.
        n: how many to choose.

    Returns:
        Up to ``n`` rows, sorted by source then tier then choice order (the sheet's order).

    """
    tree: dict[str, dict[str, dict[str, list]]] = {}
    for r in sorted(rows, key=lambda r: _hashed(r["key"])):
        tree.setdefault(r["source"], {}).setdefault(r["tier"], {}).setdefault(
            r["city"], []).append(r)
    sources = [s for s in schema.SOURCES if s in tree] + sorted(set(tree) - set(schema.SOURCES))
    per_source = []
    for s in sources:
        tiers = [t for t in schema.TIERS if t in tree[s]] + sorted(set(tree[s]) - set(
            schema.TIERS))
        per_tier = [list(_round_robin([tree[s][t][c] for c in sorted(tree[s][t])]))
                    for t in tiers]
        per_source.append(list(_round_robin(per_tier)))
    chosen = []
    for r in _round_robin(per_source):
        if len(chosen) == n:
            break
        chosen.append(dict(r))
    rank = {id(r): i for i, r in enumerate(chosen)}
    order = {s: i for i, s in enumerate(sources)}
    tier_order = {t: i for i, t in enumerate(schema.TIERS)}
    return sorted(chosen, key=lambda r: (order[r["source"]], tier_order.get(r["tier"], 9),
                                         rank[id(r)]))


def tile_label(row: Mapping[str, Any]) -> tuple[str, str]:
    """Return the two lines under a tile: the source's name, then city, tier and GSD."""
    city = row["city"] if row["city"] != schema.UNLOCATED else "no city"
    return (SOURCE_NAMES.get(row["source"], row["source"]),
            f"{city} · {row['tier']} · {row['gsd_m']:g} m")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1: one bitmap size only
        return ImageFont.load_default()


def contact_sheet(root: str | Path, *, index=None, n: int = SHEET_TILES,
                  columns: int = SHEET_COLUMNS, tile: int = TILE,
                  storage_options: Mapping[str, Any] | None = None) -> bytes | None:
    """Render the contact sheet of a root as JPEG bytes.

    Args:
        root: dataset root, a local path or an fsspec URL.
        index: the root's index as a pyarrow Table (read from the root when None).
        n: tiles at most.
        columns: tiles per row.
        tile: side of a tile's image area, in pixels (images are fitted in, aspect kept).
        storage_options: fsspec options for a remote root.

    Returns:
        The JPEG bytes (same root, same bytes), or None for a root without samples.

    """
    from PIL import Image, ImageDraw

    if index is None:
        from .manifest import read_index

        index = read_index(root, columns=list(_SHEET_COLUMNS), storage_options=storage_options)
    rows = index.select(list(_SHEET_COLUMNS)).to_pylist()
    chosen = sheet_rows(rows, n)
    if not chosen:
        return None
    datas = read_spans(root, [(r["shard"], r["image_offset"], r["image_size"]) for r in chosen],
                       storage_options)
    n_rows = (len(chosen) + columns - 1) // columns
    width = columns * (tile + _PAD) + _PAD
    height = _HEAD + n_rows * (tile + _LABEL_H + _PAD) + _PAD
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    small, big = _font(11), _font(15)
    sources = sorted({r["source"] for r in rows},
                     key=lambda s: (schema.SOURCES.index(s) if s in schema.SOURCES else 9, s))
    draw.text((_PAD, 9), f"SARLANG-1M: {len(chosen)} of {len(rows):,} images, "
              f"{len(sources)} source{'s' if len(sources) != 1 else ''}, by source and "
              "resolution tier (grayscale, 2-98 percentile stretch)", fill=(235, 235, 235),
              font=big)
    for i, (r, data) in enumerate(zip(chosen, datas, strict=True)):
        x = _PAD + (i % columns) * (tile + _PAD)
        y = _HEAD + (i // columns) * (tile + _LABEL_H + _PAD)
        gray = Image.fromarray(stretch(image_pixels(data)), "L")
        scale = tile / max(gray.size)
        size = (max(1, round(gray.size[0] * scale)), max(1, round(gray.size[1] * scale)))
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        gray = gray.resize(size, resample)
        draw.rectangle((x, y, x + tile - 1, y + tile - 1), fill=(0, 0, 0))
        canvas.paste(gray.convert("RGB"), (x + (tile - size[0]) // 2, y + (tile - size[1]) // 2))
        color = SOURCE_COLORS.get(r["source"], (200, 200, 200))
        draw.rectangle((x, y + tile, x + tile - 1, y + tile + _LABEL_H - 1), fill=(40, 40, 46))
        draw.rectangle((x, y + tile, x + 3, y + tile + _LABEL_H - 1), fill=color)
        first, second = tile_label(r)
        draw.text((x + 7, y + tile + 2), first, fill=color, font=small)
        draw.text((x + 7, y + tile + 15), second, fill=(220, 220, 220), font=small)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=_JPEG_QUALITY, optimize=True)
    return buf.getvalue()


# --------------------------------------------------------------------------- charts


@contextmanager
def default_style() -> Iterator[None]:
    """Use matplotlib's default rc settings inside the block, whatever the user's rc file."""
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        yield


def png_bytes(fig) -> bytes:
    """Render a matplotlib Figure as PNG bytes through the Agg canvas, without a Software tag.

    Args:
        fig: a ``matplotlib.figure.Figure``.

    Returns:
        The PNG bytes; the same figure gives the same bytes on the same library versions.

    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with default_style():
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def bar_panel(ax, labels: Sequence[str], series: Mapping[str, Sequence[int]], title: str,
              unit: str, colors: Mapping[str, str] | None = None) -> None:
    """Draw horizontal bars, stacked when ``series`` has several entries, totals at the ends.

    Args:
        ax: a matplotlib Axes.
        labels: one label per bar, top to bottom.
        series: name -> one value per label (e.g. ``{"train": [...], "test": [...]}``).
        title: the panel's title.
        unit: the x-axis label.
        colors: colour per series name (default: matplotlib's cycle).

    """
    ys = list(range(len(labels)))
    left = [0] * len(labels)
    for name, values in series.items():
        kw = {"color": colors[name]} if colors and name in colors else {}
        ax.barh(ys, list(values), left=left, label=name, height=0.7, **kw)
        left = [a + b for a, b in zip(left, values, strict=True)]
    top = max(left) if left and max(left) > 0 else 1
    for y, total in zip(ys, left, strict=True):
        ax.text(total + top * 0.01, y, f"{total:,}", va="center", fontsize=8)
    ax.set_yticks(ys, list(labels))
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.2)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(unit, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False, loc="lower right")


def split_series(per: Mapping[str, Mapping[str, int]], names: Sequence[str]
                 ) -> dict[str, list[int]]:
    """``{name: {split: n}}`` -> ``{split: [n per name]}`` in :data:`schema.SPLITS` order."""
    return {s: [int(per[n].get(s, 0)) for n in names] for s in schema.SPLITS}


def overview_figure(st: Mapping[str, Any]):
    """Draw the main statistics chart: four bar panels from the root's statistics.

    Args:
        st: the statistics of a root.

    Returns:
        A ``matplotlib.figure.Figure`` (Agg, not registered with pyplot).

    """
    from matplotlib.figure import Figure

    with default_style():
        fig = Figure(figsize=(10, 6.2), dpi=100)
        axs = fig.subplots(2, 2)
        fig.subplots_adjust(left=0.17, right=0.98, top=0.9, bottom=0.08, wspace=0.55,
                            hspace=0.45)
        src = [s for s in schema.SOURCES if s in st["by_source"]]
        bar_panel(axs[0, 0], [SOURCE_NAMES[s] for s in src],
                  {"images": [st["by_source"][s]["samples"] for s in src]}, "Images per source",
                  "images", {"images": "#4c72b0"})
        tiers = [t for t in schema.TIERS if t in st["by_tier"]]
        bar_panel(axs[0, 1], [f"{t} ({schema.TIER_RANGES[t]})" for t in tiers],
                  {"images": [st["by_tier"][t]["samples"] for t in tiers]},
                  "Images per resolution tier", "images", {"images": "#55a868"})
        tasks = [t for t in schema.TASKS if t in st["tasks"]]
        bar_panel(axs[1, 0], tasks, split_series(st["tasks"], tasks), "QA pairs per task",
                  "QA pairs", SPLIT_COLORS)
        kinds = [k for k in schema.CAPTION_KINDS if k in st["caption_kinds"]]
        bar_panel(axs[1, 1], kinds, split_series(st["caption_kinds"], kinds),
                  "Captions per kind", "captions", SPLIT_COLORS)
        fig.suptitle(f"{st['samples']:,} images, {st['captions']:,} captions, "
                     f"{st['qa']:,} QA pairs", fontsize=12)
    return fig


#: PNG bytes of recent overview charts by their statistics (a pure function: builds of one
#: release, the card, publish and transcode all draw the same chart; drawing costs ~0.5 s)
_CHARTS: dict[str, bytes] = {}


def overview_chart(st: Mapping[str, Any]) -> bytes:
    """Return the main statistics chart as PNG bytes (see :func:`overview_figure`)."""
    import json

    key = json.dumps(st, sort_keys=True)
    data = _CHARTS.get(key)
    if data is None:
        data = png_bytes(overview_figure(st))
        if len(_CHARTS) >= 16:
            _CHARTS.pop(next(iter(_CHARTS)))
        _CHARTS[key] = data
    return data


# --------------------------------------------------------------------------- the card's set


def card_pictures(root: str | Path, st: Mapping[str, Any] | None, *, index=None,
                  storage_options: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Render the pictures the card shows: ``{path relative to the root: bytes}``.

    Args:
        root: dataset root.
        st: the root's statistics (None: the root has no index, so no pictures).
        index: the root's index (read when None).
        storage_options: fsspec options for a remote root.

    Returns:
        :data:`CONTACT_SHEET` and :data:`STATS_CHART` for a root with samples, else nothing.

    """
    if not st or not st.get("samples"):
        return {}
    out: dict[str, bytes] = {}
    sheet = contact_sheet(root, index=index, storage_options=storage_options)
    if sheet is not None:
        out[CONTACT_SHEET] = sheet
    out[STATS_CHART] = overview_chart(st)
    return out
