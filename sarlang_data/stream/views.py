"""Samples -> rows of a config: pure functions shared by every loader.

A *sample* is what :func:`sarlang_data.stream.reader.iter_samples` yields (the decoded
``{key}.json`` record under ``"json"``, the image bytes under ``"image"`` and their extension under
``"image_ext"``). A *row* is one example of a config, with the columns of DESIGN section 4:
``image, key, city, tier, gsd_m, source, split, lat, lon, width, height`` plus the config's own
columns; every row of a text config (a caption or a QA pair) starts with its stable ``id``
(:func:`sarlang_data.schema.text_id`; records built since 2026-12-07 store it). Which texts
of a sample become rows is decided by :class:`sarlang_data.configs.Config` (``select_texts`` and
``rows_in``); this module only shapes them, so the ``datasets`` builder, the webdataset pipeline
and the torch adapters all produce the same rows.

Text configs can also give *chat rows* (:class:`Layout`): one conversation per text with the
paper's prompts (:data:`CAPTION_PROMPT`, :data:`VQA_PROMPT`), in TRL's layout (``messages`` whose
``content`` is a list of typed parts, an image part first, plus ``images``) or LLaMA-Factory's
(string ``content``, ``<image>`` opening the user turn); or, on request, one multi-turn
conversation per image (``group="image"``), cut after ``max_turns`` turns into further rows so
no text is left out. The ``chat`` config gives chat rows of every text, in TRL's layout unless
asked otherwise.

Images stay encoded: ``{"bytes": ..., "path": "{key}.{ext}"}``, the form ``datasets.Image()``
decodes lazily in whichever worker reads the row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..configs import Config, get_config
from ..errors import ConfigError, unknown_name
from ..schema import text_ids

#: columns every row starts with (after ``id`` on text rows), in this order
COMMON_COLUMNS = ("image", "key", "city", "tier", "gsd_m", "source", "split", "lat", "lon",
                  "width", "height")
#: the placeholder LLaMA-Factory (and LLaVA-style templates) replace with the image tokens
IMAGE_PLACEHOLDER = "<image>"
#: layouts of chat rows: ``trl`` makes ``content`` a list of ``{"type": "image"|"text", "text"}``
#: parts (an image part first in the user turn), the layout TRL's vision trainers take;
#: ``llamafactory`` keeps ``content`` a string with ``<image>`` at the start of the first user
#: turn (LLaMA-Factory's sharegpt/OpenAI layout)
CHAT_FORMATS = ("trl", "llamafactory")
#: what one chat row holds: one text (``text``, the paper's setup) or an image's texts
CHAT_GROUPS = ("text", "image")
#: the paper's prompts (section 4 of arXiv 2504.03254): the user turn of a caption, of a QA pair
CAPTION_PROMPT = "Describe the content of this image in one sentence."
VQA_PROMPT = "Question: {question}. Answer the question concisely."
#: the columns chat rows carry besides ``messages``/``images`` and the common ones
_CHAT_TEXT_COLUMNS = ("kind", "task")


@dataclass(frozen=True)
class Layout:
    """How a config's rows are shaped: plain columns, or chat rows.

    Attributes:
        chat_format: None for plain rows, else ``trl`` or ``llamafactory``.
        group: ``text`` (one conversation per caption or QA pair) or ``image`` (one multi-turn
            conversation per image).
        max_turns: with ``group="image"``, at most this many turns (question + answer) per
            row; an image with more texts gives several rows. None: no limit.

    """

    chat_format: str | None = None
    group: str = "text"
    max_turns: int | None = None

    @property
    def chat(self) -> bool:
        """Whether rows are chat rows."""
        return self.chat_format is not None


PLAIN = Layout()


def layout_for(config: Config | str, chat_format: str | None = None,
               chat_group: str | None = None, max_turns: int | None = None) -> Layout:
    """Return the row layout of a config for the loader's chat options, checked.

    Args:
        config: a config or its name.
        chat_format: ``trl`` or ``llamafactory`` for chat rows; None takes the config's
            default (``trl`` for ``chat``, plain rows for the other text configs).
        chat_group: ``text`` (default) or ``image`` (image-grouped multi-turn rows).
        max_turns: with ``chat_group="image"``, the most turns in one row (>= 1).

    Returns:
        The layout.

    Raises:
        ConfigError: an unknown format or group, chat options for an image-centric config,
            grouping options without chat rows, or a bad ``max_turns``.

    """
    cfg = _config(config)
    if chat_format is not None and chat_format not in CHAT_FORMATS:
        raise unknown_name("chat format", chat_format, CHAT_FORMATS, "chat_format")
    if chat_group is not None and chat_group not in CHAT_GROUPS:
        raise unknown_name("chat group", chat_group, CHAT_GROUPS, "chat_group")
    if max_turns is not None and (not isinstance(max_turns, int) or isinstance(max_turns, bool)
                                  or max_turns < 1):
        raise ConfigError(f"max_turns={max_turns!r}: must be an integer >= 1 (turns per "
                          "conversation); pass e.g. max_turns=8, or leave it out for no limit")
    if not cfg.is_text:
        if chat_format is not None or chat_group is not None or max_turns is not None:
            raise ConfigError(
                f"config {cfg.name!r} is image-centric, so it has no chat rows; chat options "
                "(chat_format, chat_group, max_turns) apply to text configs: chat, captions, "
                "captions_concise, captions_detailed, vqa and each VQA task")
        return PLAIN
    if chat_format is None and cfg.layout == "chat":
        chat_format = "trl"
    if chat_format is None:
        if chat_group is not None or max_turns is not None:
            raise ConfigError(
                f"chat_group={chat_group!r}, max_turns={max_turns!r}: these shape chat rows, "
                f"and config {cfg.name!r} gives plain rows unless asked; pass "
                "chat_format='trl' (or 'llamafactory') too")
        return PLAIN
    group = chat_group or "text"
    if max_turns is not None and group != "image":
        raise ConfigError(
            f"max_turns={max_turns}: limits image-grouped conversations; pass "
            "chat_group='image' too (one text per conversation has a single turn)")
    return Layout(chat_format, group, max_turns)


def _layout(config: Config, layout: Layout | None) -> Layout:
    if layout is None:
        return layout_for(config)
    return layout


def row_count(config: Config | str, record: Mapping[str, Any], layout: Layout | None = None
              ) -> int:
    """Count the rows a config makes of one sample record in a layout.

    :meth:`Config.rows_in` for every layout but image-grouped chat rows, where an image gives
    one row per ``max_turns`` texts (rounded up).

    Args:
        config: a config or its name.
        record: a sample record (the decoded ``{key}.json``).
        layout: the row layout (None: the config's default).

    Returns:
        The number of rows; always ``len(rows(config, sample, layout=layout))``.

    """
    cfg = _config(config)
    n = cfg.rows_in(record)
    lay = _layout(cfg, layout)
    if lay.group != "image" or n == 0:
        return n
    return 1 if lay.max_turns is None else -(-n // lay.max_turns)


def columns(config: Config | str, layout: Layout | None = None) -> tuple[str, ...]:
    """Return the column names of a config's rows, in order.

    Args:
        config: a config or its name.
        layout: the row layout (None: the config's default).

    Returns:
        The column names.

    Raises:
        ConfigError: for an unknown config name.

    """
    cfg = _config(config)
    lay = _layout(cfg, layout)
    if lay.chat:
        head = ("ids",) if lay.group == "image" else ("id",)
        tail = () if lay.group == "image" else _CHAT_TEXT_COLUMNS
        return (*head, "messages", "images", *COMMON_COLUMNS[1:], *tail)
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
        "lat": rec["lat"],
        "lon": rec["lon"],
        "width": rec["width"],
        "height": rec["height"],
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


def _template(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Return a row holding ``id`` first, then the common columns (ids are set per text)."""
    return {"id": None, **_common(sample)}


def _caption_rows(cfg: Config, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
    rec = sample["json"]
    texts = rec["captions"] if cfg.kind is None else cfg.select_texts(rec)
    if not texts:
        return []
    key = rec["key"]
    template = _template(sample)
    template["caption"] = None
    out = []
    ids = text_ids(key, texts)
    if cfg.kind is None:
        template["kind"] = None
        for i, c in zip(ids, texts, strict=True):
            row = template.copy()
            row["id"] = i
            row["caption"] = c["text"]
            row["kind"] = c["kind"]
            out.append(row)
        return out
    for i, c in zip(ids, texts, strict=True):
        row = template.copy()
        row["id"] = i
        row["caption"] = c["text"]
        out.append(row)
    return out


def _qa_rows(cfg: Config, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
    rec = sample["json"]
    texts = rec["qa"] if cfg.task is None else cfg.select_texts(rec)
    if not texts:
        return []
    key = rec["key"]
    template = _template(sample)
    template["question"] = template["answer"] = None
    out = []
    ids = text_ids(key, texts)
    if cfg.task is None:
        template["task"] = None
        template["question_type"] = template["bbox"] = None
        for i, q in zip(ids, texts, strict=True):
            row = template.copy()
            row["id"] = i
            row["question"] = q["question"]
            row["answer"] = q["answer"]
            row["task"] = q["task"]
            row["question_type"] = q["question_type"]
            row["bbox"] = q["bbox_xywh"]
            out.append(row)
        return out
    template["question_type"] = template["bbox"] = None
    for i, q in zip(ids, texts, strict=True):
        row = template.copy()
        row["id"] = i
        row["question"] = q["question"]
        row["answer"] = q["answer"]
        row["question_type"] = q["question_type"]
        row["bbox"] = q["bbox_xywh"]
        out.append(row)
    return out


def prompt(text: Mapping[str, Any]) -> str:
    """Return the paper's user prompt for one text: a caption's, or a QA pair's question.

    Args:
        text: an entry of a record's ``captions`` or ``qa``.

    Returns:
        :data:`CAPTION_PROMPT` for a caption, :data:`VQA_PROMPT` filled with the question for
        a QA pair.

    """
    if "question" in text:
        return VQA_PROMPT.format(question=text["question"])
    return CAPTION_PROMPT


def target(text: Mapping[str, Any]) -> str:
    """Return the assistant's answer for one text: the caption, or the QA pair's answer."""
    return text["answer"] if "question" in text else text["text"]


def conversation(texts: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Return the (user, assistant) turns of texts, in order, with the paper's prompts.

    Args:
        texts: entries of a record's ``captions`` and/or ``qa``.

    Returns:
        A list of (prompt, answer) pairs.

    """
    return [(prompt(t), target(t)) for t in texts]


def chat_messages(turns: list[tuple[str, str]], chat_format: str = "trl"
                  ) -> list[dict[str, Any]]:
    """Return the ``messages`` of one conversation about one image.

    Args:
        turns: (user, assistant) pairs, as :func:`conversation` makes them.
        chat_format: ``trl`` (content as ``{"type", "text"}`` parts, an image part opening the
            first user turn) or ``llamafactory`` (string content, ``<image>`` opening it).

    Returns:
        Alternating user/assistant messages; the image is referred to once.

    Raises:
        ConfigError: an unknown ``chat_format``.

    """
    if chat_format not in CHAT_FORMATS:
        raise unknown_name("chat format", chat_format, CHAT_FORMATS, "chat_format")
    messages: list[dict[str, Any]] = []
    for i, (question, answer) in enumerate(turns):
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


def _chat_rows(cfg: Config, sample: Mapping[str, Any], layout: Layout
               ) -> list[dict[str, Any]]:
    rec = sample["json"]
    texts = cfg.select_texts(rec)
    if not texts:
        return []
    key = rec["key"]
    common = _common(sample)
    images = [common.pop("image")]
    fmt = layout.chat_format
    ids = text_ids(key, texts)
    if layout.group == "image":
        step = layout.max_turns or len(texts)
        return [{"ids": ids[i:i + step],
                 "messages": chat_messages(conversation(texts[i:i + step]), fmt),
                 "images": images, **common}
                for i in range(0, len(texts), step)]
    out = []
    for i, t in zip(ids, texts, strict=True):
        is_qa = "question" in t
        out.append({"id": i,
                    "messages": chat_messages([(prompt(t), target(t))], fmt),
                    "images": images, **common,
                    "kind": None if is_qa else t["kind"],
                    "task": t["task"] if is_qa else None})
    return out


def rows(config: Config | str, sample: Mapping[str, Any], *,
         layout: Layout | None = None) -> list[dict[str, Any]]:
    """Return the rows a config makes of one sample.

    The number of rows always equals :func:`row_count` of the sample's record.

    Args:
        config: a config or its name.
        sample: a sample dict from the reader.
        layout: the row layout (:func:`layout_for`; None: the config's default: chat rows in
            TRL's layout for ``chat``, plain rows for the others).

    Returns:
        The rows, each a dict with the keys of :func:`columns`, in record order.

    Raises:
        ConfigError: an unknown config name.

    """
    cfg = _config(config)
    lay = _layout(cfg, layout)
    if lay.chat:
        return _chat_rows(cfg, sample, lay)
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
