"""``plot(row_or_sample)``: one SAR image with its boxes, questions, answers and captions.

Takes whatever the package hands out for one image: a sample of the shard reader (or of
:func:`sarlang_data.stream.lookup.sample_by_key`), a row of any config from
``load_dataset`` (decoded or not, ``images``, a caption config, a QA config, ``chat``), or an
item of :class:`sarlang_data.adapters.torchgeo.SARLANG1M` (image tensors, resized or not).

Boxes follow the release's convention, which the records keep (``bbox_xywh``, ``bbox`` in
rows): COCO ``[x, y, w, h]`` in pixels of the stored image, origin at its top-left corner, x
to the right, y down (docs/format.md; the authors' example ``[56.0, 191.0, 112.0, 122.0]`` has
``h < y``, so it is no ``[x1, y1, x2, y2]``). The image is drawn with ``extent=(0, W, H, 0)``
so axis units are those pixel edges, and a box is the rectangle from ``(x, y)`` to
``(x + w, y + h)``; when the image shown is not the stored size (a transform resized it) boxes
are scaled by the ratio of the sizes. Object-positioning answers (``Top left``, ``center``,
``bottom`` ...) have no box: the part of the image they name (a third of it, or a ninth) is
shaded and dashed instead.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..format.pictures import default_style, image_pixels, png_bytes, stretch
from ..schema import UNLOCATED

#: box colours, one per marked QA pair in turn (tab10 without its grey)
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2",
           "#8c564b", "#bcbd22")
BOX_TASK = "region_referring"
POSITION_TASK = "object_positioning"
_ROWS = {"top": 0, "upper": 0, "bottom": 2, "lower": 2}
_COLS = {"left": 0, "right": 2}
_CENTRE = ("center", "centre", "middle", "central")

_FONT = 9  # points
_LINE = _FONT * 1.45 / 72  # inches per text line
_FIG_W = 12.0
_IMG_SIDE = 5.4
_MARGIN = 0.25
_QA_CHARS = 84
_CAPTION_CHARS = 170


def position_cell(answer: str) -> tuple[int | None, int | None] | None:
    """Return the part of the image a positioning answer names, as (column, row) thirds.

    ``0``/``1``/``2`` are the left/middle/right column (top/middle/bottom row); None is the
    whole width (height): ``"Top left"`` -> ``(0, 0)``, ``"bottom"`` -> ``(None, 2)``,
    ``"center"`` -> ``(1, 1)``, ``"Top center"`` -> ``(1, 0)``.

    Args:
        answer: the answer text.

    Returns:
        ``(column, row)``, or None when the answer names no part of the image.

    """
    words = re.findall(r"[a-z]+", answer.lower())
    row = next((_ROWS[w] for w in words if w in _ROWS), None)
    col = next((_COLS[w] for w in words if w in _COLS), None)
    centre = any(w in _CENTRE for w in words)
    if row is None and col is None:
        return (1, 1) if centre else None
    mid = 1 if centre else None
    return (col if col is not None else mid, row if row is not None else mid)


# --------------------------------------------------------------------------- input forms


def _pixels_of(value: Any) -> np.ndarray:
    """Pixels of an image in any form rows and samples carry, as ``H x W (x C)``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return image_pixels(bytes(value))
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return image_pixels(value["bytes"])
        if value.get("path"):
            with open(value["path"], "rb") as f:
                return image_pixels(f.read())
        raise TypeError("plot: an image dict needs 'bytes' or 'path'")
    if hasattr(value, "detach"):  # a torch tensor: C x H x W (or H x W)
        value = value.detach().cpu().numpy()
        if value.ndim == 3 and value.shape[0] in (1, 2, 3, 4):
            value = value.transpose(1, 2, 0)
    elif hasattr(value, "getbands"):  # a PIL image
        if value.mode in ("P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
            value = value.convert("L")
        value = np.asarray(value)
    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise TypeError(f"plot: cannot show an image of shape {arr.shape}; pass H x W, "
                        "H x W x C, or a C x H x W tensor")
    return arr


def _qa(q: Mapping[str, Any]) -> dict[str, Any]:
    bbox = q.get("bbox_xywh", q.get("bbox"))
    if bbox is not None and hasattr(bbox, "tolist"):
        bbox = bbox.tolist()
    return {"task": q.get("task") or q.get("question_type"),
            "question_type": q.get("question_type") or q.get("task"),
            "question": str(q.get("question", "")), "answer": str(q.get("answer", "")),
            "bbox": [float(v) for v in bbox] if bbox is not None and len(bbox) == 4 else None}


def _chat_texts(messages: list[Mapping[str, Any]], kind: str | None = None,
                task: str | None = None) -> tuple[list, list]:
    """(captions, qa) of a chat row's turns: the paper's caption prompt makes a caption.

    A one-text chat row names its caption ``kind`` or QA ``task``; an image-grouped row does
    not, so each question's task is inferred from its wording (as the build does for an
    unlabelled release), which finds boxes and positioning answers.
    """
    import re

    from ..ingest.infer import infer_task, parse_bbox
    from ..stream.views import CAPTION_PROMPT, IMAGE_PLACEHOLDER, VQA_PROMPT

    head, _, tail = VQA_PROMPT.partition("{question}")
    wrapped = re.compile("^" + re.escape(head) + "(.*)" + re.escape(tail) + "$", re.S)

    def text(content: Any) -> str:
        if isinstance(content, list):
            content = " ".join(b.get("text") or "" for b in content if b.get("type") == "text")
        return str(content).replace(IMAGE_PLACEHOLDER, "").strip()

    captions, qa = [], []
    for user, reply in zip(messages[::2], messages[1::2], strict=False):
        question, answer = text(user["content"]), text(reply["content"])
        if question == CAPTION_PROMPT:
            captions.append((kind or "caption", answer))
            continue
        m = wrapped.match(question)
        question = m.group(1) if m else question
        bbox = parse_bbox(question)
        guess, qtype = infer_task(question, answer)
        qa.append({"task": task or (BOX_TASK if bbox else guess), "question_type": qtype,
                   "question": question, "answer": answer,
                   "bbox": list(bbox) if bbox else None})
    return captions, qa


def normalise(item: Mapping[str, Any], image: Any = None) -> dict[str, Any]:
    """Turn a sample, a row of any config or a torchgeo-style item into what :func:`plot` draws.

    Args:
        item: the sample, row or item.
        image: an image to draw instead of the item's own.

    Returns:
        ``{"meta": {key, source, city, tier, gsd_m, split}, "captions": [(kind, text)],
        "qa": [{task, question_type, question, answer, bbox}], "pixels": array,
        "size": (width, height) of the stored image (boxes' pixel space)}``.

    Raises:
        TypeError: the item holds no image and none is given.

    """
    if "json" in item and isinstance(item["json"], Mapping):  # a reader sample
        rec = item["json"]
        meta = {k: rec.get(k) for k in ("key", "source", "city", "tier", "gsd_m", "split")}
        captions = [(c["kind"], c["text"]) for c in rec.get("captions", ())]
        qa = [_qa(q) for q in rec.get("qa", ())]
        pixels = _pixels_of(image if image is not None else item["image"])
        size = (rec.get("width"), rec.get("height"))
    else:
        meta = {k: item.get(k) for k in ("key", "source", "city", "tier", "gsd_m", "split")}
        captions, qa = [], []
        if "messages" in item:
            captions, qa = _chat_texts(list(item["messages"]), item.get("kind"),
                                       item.get("task"))
        if "captions" in item:
            captions = [(c["kind"], c["text"]) for c in item["captions"]]
        if "caption" in item:
            captions = [(item.get("kind") or "caption", item["caption"])]
        if "qa" in item:
            qa = [_qa(q) for q in item["qa"]]
        if "question" in item:
            qa = [_qa(item)]
        if image is None:
            image = item.get("image")
            if image is None and item.get("images"):
                image = item["images"][0]
        if image is None:
            raise TypeError("plot: the item holds no 'image' (or 'images'); pass image=...")
        pixels = _pixels_of(image)
        size = (item.get("width"), item.get("height"))
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        size = (pixels.shape[1], pixels.shape[0])
    return {"meta": meta, "captions": captions, "qa": qa, "pixels": pixels,
            "size": (int(size[0]), int(size[1]))}


# --------------------------------------------------------------------------- the figure


def _subtitle(meta: Mapping[str, Any], size: tuple[int, int]) -> str:
    parts = [str(meta["source"]) if meta.get("source") else None]
    city = meta.get("city")
    if city:
        parts.append("no city" if city == UNLOCATED else str(city))
    if meta.get("tier"):
        parts.append(str(meta["tier"]))
    if meta.get("gsd_m") is not None:
        parts.append(f"GSD {float(meta['gsd_m']):g} m")
    parts.append(f"{size[0]}x{size[1]} px")
    if meta.get("split"):
        parts.append(str(meta["split"]))
    return " · ".join(p for p in parts if p)


def plot(item: Mapping[str, Any], *, image: Any = None, max_qa: int = 40,
         show_titles: bool = True, suptitle: str | None = None):
    """Draw one image with its region boxes, positioning answers, questions and captions.

    Region-referring boxes are drawn in colour, numbered, with their question and answer in
    the same colour on the right; object-positioning answers shade the part of the image they
    name (dashed); the other QA pairs follow in grey, captions below the image.

    Args:
        item: a reader sample (``{"json", "image", ...}``), a row of any config (``image`` or
            ``images``; ``captions``/``qa``, ``caption``, ``question``/``answer``/``bbox``, or
            ``messages``), or a :class:`~sarlang_data.adapters.torchgeo.SARLANG1M` item.
        image: draw this image instead of the item's (a PIL image, array, tensor or bytes).
        max_qa: list at most this many QA pairs (boxes and positions always come first).
        show_titles: write the key and the image's metadata above it.
        suptitle: a title line to use instead of the key.

    Returns:
        A ``matplotlib.figure.Figure`` (Agg canvas, not registered with pyplot: display it in
        a notebook, or ``fig.savefig(path)``; :func:`save` writes stable bytes).

    Raises:
        TypeError: no image in the item and none given, or an image of an unusable shape.

    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    d = normalise(item, image)
    gray = stretch(d["pixels"])
    H, W = gray.shape
    sx, sy = W / d["size"][0], H / d["size"][1]
    boxes = [q for q in d["qa"] if q["bbox"] is not None]
    places = [q for q in d["qa"] if q["bbox"] is None and q["task"] == POSITION_TASK
              and position_cell(q["answer"]) is not None]
    marked = boxes + places
    rest = [q for q in d["qa"] if q not in marked]
    lines: list[tuple[str, str, str]] = []  # text, colour, style
    for n, q in enumerate(marked, 1):
        color = PALETTE[(n - 1) % len(PALETTE)]
        for i, part in enumerate(textwrap.wrap(f"[{n}] {q['question']}", _QA_CHARS) or [""]):
            lines.append((part if i == 0 else "     " + part, color, "bold"))
        lines.append((f"     → {q['answer']}", "black", "normal"))
    shown = rest[: max(0, max_qa - len(marked))]
    for q in shown:
        for i, part in enumerate(textwrap.wrap(q["question"], _QA_CHARS) or [""]):
            lines.append((part if i == 0 else "  " + part, "#444444", "normal"))
        tag = f"    [{q['question_type']}]" if q["question_type"] else ""
        lines.append((f"     → {q['answer']}{tag}", "black", "normal"))
    if len(rest) > len(shown):
        lines.append((f"... and {len(rest) - len(shown)} more QA pairs", "#444444", "italic"))
    if not d["qa"]:
        lines.append(("(no QA pairs)", "#444444", "italic"))
    captions = []
    for kind, text in d["captions"]:
        for i, part in enumerate(textwrap.wrap(f"{kind}: {text}", _CAPTION_CHARS) or [""]):
            captions.append(part if i == 0 else "    " + part)
    captions = captions or ["(no captions)"]

    img_w = _IMG_SIDE if W >= H else _IMG_SIDE * W / H
    img_h = _IMG_SIDE * H / W if W >= H else _IMG_SIDE
    title_h = 0.6 if show_titles else 0.2
    top_h = max(img_h, len(lines) * _LINE + 0.1)
    fig_h = title_h + top_h + 0.25 + (len(captions) + 1) * _LINE + 0.1 + _MARGIN
    with default_style():
        fig = Figure(figsize=(_FIG_W, fig_h), dpi=100)

        def fx(inches: float) -> float:
            return inches / _FIG_W

        def fy(from_top: float) -> float:
            return 1 - from_top / fig_h

        ax = fig.add_axes((fx(_MARGIN), fy(title_h + img_h), fx(img_w), img_h / fig_h))
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="nearest",
                  extent=(0, W, H, 0))
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        tag = {"fontsize": 8, "color": "white", "fontweight": "bold", "clip_on": True}
        drawn: dict[tuple, list[int]] = {}
        regions: dict[tuple, list[int]] = {}
        for n, q in enumerate(marked, 1):
            if q["bbox"] is not None:
                x, y, w, h = q["bbox"]
                drawn.setdefault((x * sx, y * sy, w * sx, h * sy), []).append(n)
            else:
                regions.setdefault(position_cell(q["answer"]), []).append(n)
        for (x, y, w, h), ns in drawn.items():
            color = PALETTE[(ns[0] - 1) % len(PALETTE)]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.6))
            above = y > H * 0.06
            ax.text(x, y if above else y + h, ", ".join(map(str, ns)),
                    va="bottom" if above else "top", ha="left",
                    bbox={"facecolor": color, "edgecolor": "none", "pad": 1}, **tag)
        for (col, row), ns in regions.items():
            color = PALETTE[(ns[0] - 1) % len(PALETTE)]
            x0, x1 = (0, W) if col is None else (col * W / 3, (col + 1) * W / 3)
            y0, y1 = (0, H) if row is None else (row * H / 3, (row + 1) * H / 3)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=color, alpha=0.15,
                                   edgecolor="none"))
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                                   linewidth=1.2, linestyle="--"))
            ax.text(x0 + W * 0.01, y0 + H * 0.01, ", ".join(map(str, ns)), va="top",
                    ha="left", bbox={"facecolor": color, "edgecolor": "none", "pad": 1}, **tag)
        left = _MARGIN + img_w + 0.3
        for i, (text, color, style) in enumerate(lines):
            fig.text(fx(left), fy(title_h + i * _LINE), text, color=color, fontsize=_FONT,
                     va="top", fontweight="bold" if style == "bold" else "normal",
                     fontstyle="italic" if style == "italic" else "normal")
        base = title_h + top_h + 0.25
        fig.text(fx(_MARGIN), fy(base), "Captions", fontsize=_FONT, fontweight="bold", va="top")
        for i, text in enumerate(captions):
            fig.text(fx(_MARGIN), fy(base + (i + 1) * _LINE), text, fontsize=_FONT, va="top")
        if show_titles:
            head = suptitle if suptitle is not None else str(d["meta"].get("key") or "")
            fig.text(fx(_MARGIN), fy(0.2), head, fontsize=12, fontweight="bold", va="center")
            fig.text(fx(_MARGIN), fy(0.44), _subtitle(d["meta"], d["size"]) + "   —   boxes: "
                     "[x, y, w, h] in pixels from the top-left corner; dashed: the part of the "
                     "image a positioning answer names", fontsize=8.5, color="#444444",
                     va="center")
    return fig


def save(fig, path) -> None:
    """Write a figure as PNG with stable bytes (no ``Software`` tag), atomically.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        path: where to write; its folder must exist.

    """
    from ..format.tar import write_atomic

    write_atomic(path, png_bytes(fig))


def show_sample(key: str, *, data: str | None = None, out: str | Path,
                storage_options: Mapping[str, Any] | None = None) -> Path:
    """Render one sample of a root, found by its key, to a PNG file (``sarlang-data show``).

    The sample is read at the index's offsets (one range read; see
    :mod:`sarlang_data.stream.lookup`), drawn by :func:`plot` and written by :func:`save`.

    Args:
        key: the sample key.
        data: dataset root, URL or Hub id; None means ``$SARLANG_DATA`` or the bundled preview.
        out: the PNG file to write.
        storage_options: fsspec options for a remote root.

    Returns:
        The path written.

    Raises:
        ConfigError: no sample has that key (the message lists the closest keys).
        ManifestError: no dataset root there.

    """
    from ..adapters.hf.builder import resolve_root
    from ..stream.lookup import sample_by_key

    root = resolve_root(data) if data is not None else resolve_root()
    sample = sample_by_key(root, key, storage_options=storage_options)
    path = Path(out)
    save(plot(sample), path)
    return path
