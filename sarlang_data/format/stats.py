"""Statistics of a root from its index: samples, texts, bytes per split, tier, city, source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import schema
from ..errors import ManifestError
from .manifest import read_index, read_manifest

# --------------------------------------------------------------------------- stats

_DIMENSIONS = ("split", "tier", "city", "source")


def stats(root: str | Path, storage_options: dict | None = None) -> dict:
    """Count samples, captions and QA pairs by split, tier, city, source, task and caption kind.

    Reads ``index.parquet`` only; no shard is opened.

    Args:
        root: dataset root, a local path or an fsspec URL.
        storage_options: passed to fsspec.

    Returns:
        ``{"samples", "captions", "qa", "by_split", "by_tier", "by_city", "by_source",
        "tasks", "caption_kinds"}``: each ``by_*`` maps a value to
        ``{"samples", "captions", "qa"}``; ``tasks`` and ``caption_kinds`` map a name to
        ``{split: count}``.

    """
    kinds = [f"n_{k}" for k in schema.CAPTION_KINDS]
    tasks = [f"n_{t}" for t in schema.TASKS]
    try:  # a root with a manifest: its index must be the one the manifest names
        expect = read_manifest(root, storage_options)["index"]["sha256"]
    except ManifestError:
        expect = None
    table = read_index(root, columns=[*_DIMENSIONS, *kinds, *tasks], expect_sha256=expect,
                       storage_options=storage_options)
    cols = table.to_pydict()
    n = table.num_rows
    caps = [sum(cols[k][i] for k in kinds) for i in range(n)]
    qas = [sum(cols[t][i] for t in tasks) for i in range(n)]
    out: dict[str, Any] = {"samples": n, "captions": sum(caps), "qa": sum(qas)}
    for dim in _DIMENSIONS:
        groups: dict[str, dict[str, int]] = {}
        for i, value in enumerate(cols[dim]):
            g = groups.setdefault(value, {"samples": 0, "captions": 0, "qa": 0})
            g["samples"] += 1
            g["captions"] += caps[i]
            g["qa"] += qas[i]
        out[f"by_{dim}"] = dict(sorted(groups.items()))
    for name, fields, labels in (
        ("tasks", tasks, schema.TASKS),
        ("caption_kinds", kinds, schema.CAPTION_KINDS),
    ):
        per: dict[str, dict[str, int]] = {}
        for field, label in zip(fields, labels, strict=True):
            per[label] = {split: 0 for split in schema.SPLITS}
            for i, split in enumerate(cols["split"]):
                per[label][split] = per[label].get(split, 0) + cols[field][i]
        out[name] = per
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)] + [
        [f"{v:,}" if isinstance(v, int) else str(v) for v in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join("  " + line for line in lines)


def format_stats(st: Mapping[str, Any]) -> str:
    """Render :func:`stats` output as readable text tables.

    Args:
        st: the dict :func:`stats` returned.

    Returns:
        Multi-line text, one table per dimension.

    """
    parts = [f"{st['samples']:,} samples, {st['captions']:,} captions, {st['qa']:,} QA pairs"]
    for dim in _DIMENSIONS:
        groups = st[f"by_{dim}"]
        rows = [(k, v["samples"], v["captions"], v["qa"]) for k, v in groups.items()]
        parts.append(f"by {dim}\n" + _table((dim, "samples", "captions", "qa"), rows))
    for name, label in (("tasks", "task"), ("caption_kinds", "caption kind")):
        per = st[name]
        splits = list(schema.SPLITS)
        rows = [(k, *(v.get(s, 0) for s in splits), sum(v.values())) for k, v in per.items()]
        parts.append(f"by {label}\n" + _table((label, *splits, "total"), rows))
    return "\n\n".join(parts) + "\n"
