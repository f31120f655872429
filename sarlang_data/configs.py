"""The config catalogue: one entry per named view of the dataset.

The loader, the dataset card, the manifest row counts and the CLI all read this table;
nothing else decides what a config is or how many rows a sample gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import unknown_name
from .schema import CAPTION_KINDS, TASKS, TIERS

#: what one row of a config stands for: an image, a caption, a QA pair, or any text of an
#: image (a caption or a QA pair: the ``chat`` config)
ROW_UNITS = ("image", "caption", "qa", "text")
#: units whose rows are texts (each carries a stable ``id``, and can be had as chat rows)
TEXT_UNITS = ("caption", "qa", "text")


@dataclass(frozen=True)
class Config:
    """A named view: which rows a sample yields and what columns they carry.

    Attributes:
        name: config name as users type it.
        unit: what one row is: ``image`` (image-centric), ``caption``, ``qa`` or ``text``
            (every caption and QA pair of an image, captions first).
        description: one line for the card and ``--help``.
        kind: for caption configs, the caption kind kept (None keeps both).
        task: for QA configs, the task kept (None keeps all).
        tier: for tier configs, the tier kept (None keeps all).
        layout: ``rows`` (columns per DESIGN section 4) or ``chat`` (messages + images: the
            default layout of this config's rows; every text config can give chat rows).
        no_code: whether the README YAML carries it for stock ``datasets``.
    """

    name: str
    unit: str
    description: str
    kind: str | None = None
    task: str | None = None
    tier: str | None = None
    layout: str = "rows"
    no_code: bool = False

    def rows_in(self, sample: Mapping[str, Any]) -> int:
        """Count the rows this config makes of one sample record (a ``{key}.json`` dict).

        Args:
            sample: the sample record as a dict (fields of :class:`schema.Sample`).

        Returns:
            The number of rows; 0 when the sample does not belong to this config.
        """
        if self.tier is not None and sample["tier"] != self.tier:
            return 0
        if self.unit == "image":
            return 1
        if self.unit == "caption":
            return sum(1 for c in sample["captions"] if self.kind is None or c["kind"] == self.kind)
        if self.unit == "text":
            return len(sample["captions"]) + len(sample["qa"])
        return sum(1 for q in sample["qa"] if self.task is None or q["task"] == self.task)

    @property
    def is_text(self) -> bool:
        """Whether rows are texts (captions, QA pairs or both), not whole images."""
        return self.unit in TEXT_UNITS

    def select_texts(self, sample: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Return the caption or QA dicts of ``sample`` that become rows (text configs only)."""
        if self.unit == "caption":
            return [c for c in sample["captions"] if self.kind is None or c["kind"] == self.kind]
        if self.unit == "qa":
            return [q for q in sample["qa"] if self.task is None or q["task"] == self.task]
        if self.unit == "text":
            return [*sample["captions"], *sample["qa"]]
        raise ValueError(f"config {self.name!r} is image-centric; it has no text rows")


def _catalogue() -> dict[str, Config]:
    cfgs = [
        Config("images", "image", "one row per SAR image with all its captions and QA pairs",
               no_code=True),
        Config("captions", "caption", "one row per caption, both kinds"),
    ]
    cfgs += [Config(f"captions_{k}", "caption", f"one row per {k} caption", kind=k)
             for k in CAPTION_KINDS]
    cfgs.append(Config("vqa", "qa", "one row per question-answer pair, all six VQA tasks"))
    cfgs += [Config(t, "qa", f"one row per question-answer pair of the {t} task", task=t)
             for t in TASKS]
    cfgs += [Config(t, "image", f"image-centric rows of the {t} resolution tier", tier=t,
                    no_code=True) for t in TIERS]
    cfgs.append(Config("chat", "text", "one conversation per caption or QA pair with the "
                       "paper's prompts: messages + images, as TRL (or LLaMA-Factory) takes them",
                       layout="chat"))
    return {c.name: c for c in cfgs}


CONFIGS: dict[str, Config] = _catalogue()
DEFAULT_CONFIG = "images"


def get_config(name: str | None) -> Config:
    """Look up a config by name.

    Args:
        name: a config name; None means the default (``images``).

    Returns:
        The config.

    Raises:
        ConfigError: if the name is unknown; the message lists the valid names, closest first.
    """
    name = DEFAULT_CONFIG if name is None else name
    try:
        return CONFIGS[name]
    except KeyError:
        raise unknown_name("config", name, CONFIGS, "name") from None


def rows_per_config(sample: Mapping[str, Any]) -> dict[str, int]:
    """Rows every config makes of one sample record, in catalogue order."""
    return {name: cfg.rows_in(sample) for name, cfg in CONFIGS.items()}
