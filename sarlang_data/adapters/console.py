"""Rows as text for the terminal: ``sarlang-data stream`` prints through :func:`stream_rows`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from ..errors import ConfigError
from .hf.builder import DATASET_ALIAS
from .hf.load import load_dataset

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
