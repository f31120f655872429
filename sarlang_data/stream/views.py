"""Samples -> rows of a config: pure functions shared by every loader.

A *sample* is what :func:`sarlang_data.stream.reader.iter_samples` yields (the decoded
``{key}.json`` record under ``"json"``, the image bytes under ``"image"`` and their extension under
``"image_ext"``). A *row* is one example of a config, with the columns of DESIGN section 4:
``image, key, city, tier, gsd_m, source, split`` plus the config's own columns. Which texts of a
sample become rows is decided by :class:`sarlang_data.configs.Config` (``select_texts`` and
``rows_in``); this module only shapes them, so the ``datasets`` builder, the webdataset pipeline
and the torch adapters all produce the same rows.

Images stay encoded: ``{"bytes": ..., "path": "{key}.{ext}"}``, the form ``datasets.Image()``
decodes lazily in whichever worker reads the row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..configs import Config, get_config
from ..errors import unknown_name
from ..schema import text_id

#: columns every row starts with, in this order
COMMON_COLUMNS = ("image", "key", "city", "tier", "gsd_m", "source", "split")
#: the placeholder LLaMA-Factory (and LLaVA-style templates) replace with the image tokens
IMAGE_PLACEHOLDER = "<image>"
#: layouts of the ``chat`` config: ``llamafactory`` keeps each turn's content a string with
#: ``<image>`` at the start of the first user turn (LLaMA-Factory's sharegpt/openai layout);
#: ``trl`` makes content a list of ``{"type": "image"|"text", "text"}`` blocks, the layout
#: TRL documents for vision datasets
CHAT_FORMATS = ("llamafactory", "trl")
#: the user turn that asks for a caption of each kind
#: the paper's prompts (section 4 of arXiv 2504.03254): the user turn of a caption, of a QA pair
CAPTION_PROMPT = "Describe the content of this image in one sentence."
VQA_PROMPT = "Question: {question}. Answer the question concisely."
CAPTION_PROMPTS = {
    "concise": "Describe this SAR image in one sentence.",
    "detailed": "Describe this SAR image in detail.",
}


def columns(config: Config | str) -> tuple[str, ...]:
    """Return the column names of a config's rows, in order.

    Args:
        config: a config or its name.

    Returns:
        The column names.

    Raises:
        ConfigError: for an unknown config name.

    """
    cfg = _config(config)
    if cfg.layout == "chat":
        return ("messages", "images", *COMMON_COLUMNS[1:])
    if cfg.unit == "image":
        return (*COMMON_COLUMNS, "captions", "qa")
    if cfg.unit == "caption":
        return ("id", *COMMON_COLUMNS, "caption") + (("kind",) if cfg.kind is None else ())
    return ("id", *COMMON_COLUMNS, "question", "answer") + (
        ("task",) if cfg.task is None else ()) + ("question_type", "bbox")


def image_value(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Return the image of a sample as ``{"bytes", "path"}`` (what ``datasets.Image`` takes)."""
    return {"bytes": sample["image"], "path": f"{sample['__key__']}.{sample['image_ext']}"}


def _common(sample: Mapping[str, Any]) -> dict[str, Any]:
    rec = sample["json"]
    return {
        "image": image_value(sample),
        "key": rec["key"],
        "city": rec["city"],
        "tier": rec["tier"],
        "gsd_m": rec["gsd_m"],
        "source": rec["source"],
        "split": rec["split"],
    }


# The text-config row makers copy one template dict per sample that already holds every column
# (the common ones filled in), then overwrite the row's own: copying a dict of the final size
# is a single C-level clone, about 20% cheaper per row than a 12-key literal and 45% cheaper
# than ``{**common, ...}`` (measured in bench/bench_read.py's hot path). Rows of one sample
# share its image dict.


def _image_rows(cfg: Config, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
    rec = sample["json"]
    if cfg.tier is not None and rec["tier"] != cfg.tier:
        return []
    row = _common(sample)
    row["captions"] = [{"kind": c["kind"], "text": c["text"], "kind_from": c["kind_from"]}
                       for c in rec["captions"]]
    row["qa"] = [{"task": q["task"], "question_type": q["question_type"],
                  "question": q["question"], "answer": q["answer"], "bbox": q["bbox_xywh"],
                  "task_from": q["task_from"], "subset": q["subset"]} for q in rec["qa"]]
    return [row]


def _caption_rows(cfg: Config, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
    rec = sample["json"]
    texts = rec["captions"] if cfg.kind is None else cfg.select_texts(rec)
    if not texts:
        return []
    template = {"id": None, **_common(sample)}
    template["caption"] = None
    out = []
    if cfg.kind is None:
        template["kind"] = None
        for c in texts:
            row = template.copy()
            row["id"] = text_id(rec["key"], c)
            row["caption"] = c["text"]
            row["kind"] = c["kind"]
            out.append(row)
        return out
    for c in texts:
        row = template.copy()
        row["id"] = text_id(rec["key"], c)
        row["caption"] = c["text"]
        out.append(row)
    return out


def _qa_rows(cfg: Config, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
    rec = sample["json"]
    texts = rec["qa"] if cfg.task is None else cfg.select_texts(rec)
    if not texts:
        return []
    template = {"id": None, **_common(sample)}
    template["question"] = template["answer"] = None
    out = []
    if cfg.task is None:
        template["task"] = None
        template["question_type"] = template["bbox"] = None
        for q in texts:
            row = template.copy()
            row["id"] = text_id(rec["key"], q)
            row["question"] = q["question"]
            row["answer"] = q["answer"]
            row["task"] = q["task"]
            row["question_type"] = q["question_type"]
            row["bbox"] = q["bbox_xywh"]
            out.append(row)
        return out
    template["question_type"] = template["bbox"] = None
    for q in texts:
        row = template.copy()
        row["id"] = text_id(rec["key"], q)
        row["question"] = q["question"]
        row["answer"] = q["answer"]
        row["question_type"] = q["question_type"]
        row["bbox"] = q["bbox_xywh"]
        out.append(row)
    return out


def conversation(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the (user, assistant) turns of one image's conversation, in order.

    Captions come first (their prompt is :data:`CAPTION_PROMPTS` of their kind), then every QA
    pair, each in the order of the record.

    Args:
        record: a sample record (the decoded ``{key}.json``).

    Returns:
        A list of (question, answer) pairs; empty when the image has no texts.

    """
    turns = [(CAPTION_PROMPTS[c["kind"]], c["text"]) for c in record["captions"]]
    turns += [(q["question"], q["answer"]) for q in record["qa"]]
    return turns


def chat_messages(record: Mapping[str, Any], chat_format: str = "llamafactory"
                  ) -> list[dict[str, Any]]:
    """Return the ``messages`` of the chat row of one image.

    Args:
        record: a sample record.
        chat_format: ``llamafactory`` (string content, ``<image>`` opening the first user
            turn) or ``trl`` (content as ``{"type", "text"}`` blocks, an image block first).

    Returns:
        Alternating user/assistant messages.

    Raises:
        ConfigError: an unknown ``chat_format``.

    """
    if chat_format not in CHAT_FORMATS:
        raise unknown_name("chat format", chat_format, CHAT_FORMATS, "chat_format")
    messages: list[dict[str, Any]] = []
    for i, (question, answer) in enumerate(conversation(record)):
        if chat_format == "trl":
            user: Any = [{"type": "text", "text": question}]
            if i == 0:
                user.insert(0, {"type": "image", "text": None})
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant",
                             "content": [{"type": "text", "text": answer}]})
        else:
            messages.append({"role": "user",
                             "content": (IMAGE_PLACEHOLDER + question) if i == 0 else question})
            messages.append({"role": "assistant", "content": answer})
    return messages


def _chat_rows(cfg: Config, sample: Mapping[str, Any], chat_format: str
               ) -> list[dict[str, Any]]:
    if not cfg.rows_in(sample["json"]):
        return []
    row = _common(sample)
    del row["image"]
    return [{"messages": chat_messages(sample["json"], chat_format),
             "images": [image_value(sample)], **row}]


def rows(config: Config | str, sample: Mapping[str, Any], *,
         chat_format: str = "llamafactory") -> list[dict[str, Any]]:
    """Return the rows a config makes of one sample.

    The number of rows always equals ``config.rows_in(sample["json"])``.

    Args:
        config: a config or its name.
        sample: a sample dict from the reader.
        chat_format: layout of the ``chat`` config's messages (see :data:`CHAT_FORMATS`).

    Returns:
        The rows, each a dict with the keys of :func:`columns`, in record order.

    Raises:
        ConfigError: an unknown config name or chat format.

    """
    cfg = _config(config)
    if cfg.layout == "chat":
        return _chat_rows(cfg, sample, chat_format)
    return _ROWS[cfg.unit](cfg, sample)


_ROWS: dict[str, Callable[[Config, Mapping[str, Any]], list[dict[str, Any]]]] = {
    "image": _image_rows,
    "caption": _caption_rows,
    "qa": _qa_rows,
}


def sample_filter(
    *,
    cities: Collection[str] | None = None,
    tiers: Collection[str] | None = None,
    sources: Collection[str] | None = None,
    splits: Collection[str] | None = None,
) -> Callable[[Mapping[str, Any]], bool] | None:
    """Return a predicate on sample records for the given filters, or None if none is set.

    Args:
        cities: keep records of these city slugs.
        tiers: keep records of these resolution tiers.
        sources: keep records of these sources.
        splits: keep records of these splits.

    Returns:
        ``pred(record) -> bool``, or None when every filter is None (keep everything).

    """
    checks = [(field, frozenset(values)) for field, values in
              (("city", cities), ("tier", tiers), ("source", sources), ("split", splits))
              if values is not None]
    if not checks:
        return None

    def keep(record: Mapping[str, Any]) -> bool:
        return all(record[field] in values for field, values in checks)

    return keep


def _config(config: Config | str) -> Config:
    return config if isinstance(config, Config) else get_config(config)
