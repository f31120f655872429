"""Statistics as pictures: the bar charts of ``sarlang-data stats ROOT --plot DIR``.

Each chart reads ``index.parquet`` only (no shard is opened) and is drawn with matplotlib's
default style on an Agg canvas; written with :func:`sarlang_data.viz.figures.save` the PNG bytes
depend on the root and the library versions only. ``overview.png`` is the chart the dataset
card shows (``assets/stats.png``, :func:`sarlang_data.format.pictures.overview_figure`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import schema
from ..format.manifest import read_index
from ..format.pictures import (
    SOURCE_NAMES,
    SPLIT_COLORS,
    bar_panel,
    default_style,
    overview_figure,
    png_bytes,
)
from ..format.stats import stats

#: file name -> what the chart shows (the order they are written in)
CHARTS = {
    "overview.png": "images per source and tier, QA pairs per task, captions per kind "
                    "(the card's chart)",
    "images_by_source.png": "images per source, train and test",
    "images_by_tier.png": "images per resolution tier, train and test",
    "images_by_city.png": "images per city, train and test",
    "qa_by_task.png": "QA pairs per VQA task, train and test",
    "caption_lengths.png": "words per caption, by caption kind",
}


def _per_split(cols: Mapping[str, list], dim: str) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {}
    for value, split in zip(cols[dim], cols["split"], strict=True):
        counts.setdefault(value, Counter())[split] += 1
    return {k: dict(v) for k, v in counts.items()}


def _bars(labels: list[str], series: dict[str, list[int]], title: str, unit: str):
    from matplotlib.figure import Figure

    with default_style():
        height = max(2.4, 0.9 + 0.3 * len(labels))
        fig = Figure(figsize=(8, height), dpi=100)
        ax = fig.add_subplot()
        longest = max((len(s) for s in labels), default=4)
        fig.subplots_adjust(left=min(0.45, 0.04 + 0.0125 * longest), right=0.97,
                            top=1 - 0.45 / height, bottom=0.6 / height)
        bar_panel(ax, labels, series, title, unit, SPLIT_COLORS)
    return fig


def stats_figures(root: str | Path, storage_options: dict | None = None) -> dict[str, Any]:
    """Draw every statistics chart of a root.

    Args:
        root: dataset root, a local path or an fsspec URL.
        storage_options: fsspec options for a remote root.

    Returns:
        ``{file name: matplotlib Figure}`` for the names of :data:`CHARTS`.

    Raises:
        ManifestError: the root has no index.

    """
    from matplotlib.figure import Figure

    st = stats(root, storage_options=storage_options)
    table = read_index(root, columns=["split", "tier", "city", "source", "captions"],
                       storage_options=storage_options)
    cols = table.select(["split", "tier", "city", "source"]).to_pydict()
    figs: dict[str, Any] = {"overview.png": overview_figure(st)}
    by_source = _per_split(cols, "source")
    sources = [s for s in schema.SOURCES if s in by_source]
    figs["images_by_source.png"] = _bars(
        [SOURCE_NAMES[s] for s in sources],
        {sp: [by_source[s].get(sp, 0) for s in sources] for sp in schema.SPLITS},
        "Images per source", "images")
    by_tier = _per_split(cols, "tier")
    tiers = [t for t in schema.TIERS if t in by_tier]
    figs["images_by_tier.png"] = _bars(
        [f"{t} ({schema.TIER_RANGES[t]})" for t in tiers],
        {sp: [by_tier[t].get(sp, 0) for t in tiers] for sp in schema.SPLITS},
        "Images per resolution tier", "images")
    by_city = _per_split(cols, "city")
    cities = sorted(by_city, key=lambda c: (-sum(by_city[c].values()), c))
    figs["images_by_city.png"] = _bars(
        cities, {sp: [by_city[c].get(sp, 0) for c in cities] for sp in schema.SPLITS},
        f"Images per city ({len(cities)} cities; `{schema.UNLOCATED}`: SARDet-100K chips)",
        "images")
    tasks = [t for t in schema.TASKS if t in st["tasks"]]
    figs["qa_by_task.png"] = _bars(
        tasks, {sp: [st["tasks"][t].get(sp, 0) for t in tasks] for sp in schema.SPLITS},
        "QA pairs per VQA task", "QA pairs")
    words: dict[str, list[int]] = {k: [] for k in schema.CAPTION_KINDS}
    for caps in table["captions"].to_pylist():
        for c in caps or ():
            words.setdefault(c["kind"], []).append(len(c["text"].split()))
    with default_style():
        fig = Figure(figsize=(8, 3.6), dpi=100)
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.09, right=0.97, top=0.87, bottom=0.15)
        longest = max((max(v) for v in words.values() if v), default=1)
        bins = list(range(0, longest + 2))
        kinds = [k for k, v in words.items() if v]
        if kinds:
            ax.hist([words[k] for k in kinds], bins=bins, label=[
                f"{k} ({len(words[k]):,}, median {sorted(words[k])[len(words[k]) // 2]} words)"
                for k in kinds], color=["#4c72b0", "#c44e52"][: len(kinds)])
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no captions", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Words per caption", fontsize=10, loc="left")
        ax.set_xlabel("words", fontsize=9)
        ax.set_ylabel("captions", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    figs["caption_lengths.png"] = fig
    return figs


def write_stats_plots(root: str | Path, out_dir: str | Path,
                      storage_options: dict | None = None) -> list[Path]:
    """Write every statistics chart of a root as PNG files into a folder.

    Args:
        root: dataset root, a local path or an fsspec URL.
        out_dir: the folder (created when missing); files of the same names are replaced.
        storage_options: fsspec options for a remote root.

    Returns:
        The paths written, in :data:`CHARTS` order.

    """
    from ..format.tar import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in stats_figures(root, storage_options).items():
        write_atomic(out / name, png_bytes(fig))
        paths.append(out / name)
    return paths
