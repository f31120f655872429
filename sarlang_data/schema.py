"""Record types, names and grammar rules: the only owner of field names.

Everything that names a field of a sample record, a task, a tier, a source or a split
imports it from here, so the contract stays in one place and is versioned by
``FORMAT_VERSION``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Newest version of the on-disk format (shards, manifest, index) this package reads and writes.
#: Readers refuse newer ones. 1: the release's bytes and version-1 pixel members; 2: roots of
#: version-2 pixel members (``format/codec.py``); a root records the lowest version that reads it.
FORMAT_VERSION = 2
FORMAT_NAME = "sarlang-data"

SOURCES = ("sardet100k", "spacenet6", "dfc2023", "oem_sar")
SPLITS = ("train", "test")
TIERS = ("vhr", "hr", "mr")
TIER_RANGES = {"vhr": "GSD < 1 m", "hr": "1 m <= GSD < 5 m", "mr": "GSD >= 5 m"}
CAPTION_KINDS = ("concise", "detailed")
TASKS = (
    "object_identification",
    "object_classification",
    "instance_counting",
    "region_referring",
    "object_positioning",
    "others",
)
#: question_type values of the ``others`` task (fig36 of the paper).
OTHERS_TYPES = ("shape", "direction", "land_cover", "pattern", "reasoning")
SUBSETS = ("SARVQA1", "SARVQA2")
#: how a label was obtained: from a column of the release, or inferred by us.
LABEL_ORIGINS = ("label", "inferred")
GSD_ORIGINS = ("table", "source-default")

#: Nominal ground sampling distance per source, used when no --gsd-table is given.
#: SpaceNet6 0.5 m and OEM-SAR 0.15-0.5 m are documented; DFC2023 is 0.5-2 m (we take 1 m);
#: SARDet-100K spans 0.1-25 m over ten sub-datasets, so its default (3 m, the OGSOD and
#: typical Sentinel/GF-3 ship chips) is a placeholder a gsd table should override.
SOURCE_DEFAULT_GSD_M = {"sardet100k": 3.0, "spacenet6": 0.5, "dfc2023": 1.0, "oem_sar": 0.3}

#: Image member extensions a shard may carry, by what they hold.
IMAGE_EXTS = ("png", "jpg")
JSON_EXT = "json"
ORIGINAL_EXT = "tif.zst"

KEY_RE = re.compile(r"^[a-z0-9_-]+$")
SLUG_RE = re.compile(r"^[a-z0-9]+$")
MAX_KEY_LEN = 80  # USTAR names are <= 100 bytes; the longest extension is ".tif.zst".
UNLOCATED = "unlocated"


def tier_for_gsd(gsd_m: float) -> str:
    """Return the resolution tier of a ground sampling distance in metres.

    Args:
        gsd_m: ground sampling distance, metres per pixel (> 0).

    Returns:
        ``"vhr"`` below 1 m, ``"hr"`` from 1 m to below 5 m, ``"mr"`` from 5 m.

    Raises:
        ValueError: if ``gsd_m`` is not a positive finite number.
    """
    if not (gsd_m > 0 and gsd_m < float("inf")):
        raise ValueError(f"gsd_m={gsd_m!r}: not a positive number of metres; fix the GSD table")
    if gsd_m < 1.0:
        return "vhr"
    if gsd_m < 5.0:
        return "hr"
    return "mr"


def slug(text: str) -> str:
    """Turn a place name into a dot-free lowercase slug (``New York`` -> ``newyork``).

    Args:
        text: a city, region or country name as it appears in a file name.

    Returns:
        Lowercase ASCII letters and digits only; ``unlocated`` if nothing is left.
    """
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    out = re.sub(r"[^a-z0-9]", "", norm.lower())
    return out or UNLOCATED


def key_for_stem(stem: str) -> str:
    """Map an image file stem of the release to a sample key.

    Keys are lowercase, match ``[a-z0-9_-]+`` and contain no dot (WebDataset splits the key
    from the extension at the first dot). Dots become ``p`` (``-12.4278`` -> ``-12p4278``),
    any other character outside the grammar becomes ``-``.

    Args:
        stem: file name without its extension, e.g. ``SV_Darwin_-12.4278_130.8688``.

    Returns:
        The key, e.g. ``sv_darwin_-12p4278_130p8688``.

    Raises:
        ValueError: if the result is empty or longer than ``MAX_KEY_LEN``.
    """
    key = stem.lower().replace(".", "p")
    key = re.sub(r"[^a-z0-9_-]", "-", key)
    if not key or len(key) > MAX_KEY_LEN:
        raise ValueError(
            f"file stem {stem!r}: gives key {key!r}, which must be 1-{MAX_KEY_LEN} characters; "
            "rename the image"
        )
    return key


@dataclass(frozen=True)
class Caption:
    """One caption of an image."""

    kind: str  # one of CAPTION_KINDS
    text: str
    kind_from: str  # one of LABEL_ORIGINS


@dataclass(frozen=True)
class QA:
    """One question-answer pair of an image."""

    task: str  # one of TASKS
    question_type: str  # the task name, or an OTHERS_TYPES value for ``others``
    question: str
    answer: str
    bbox_xywh: tuple[float, float, float, float] | None
    task_from: str  # one of LABEL_ORIGINS
    subset: str  # one of SUBSETS


@dataclass(frozen=True)
class Sample:
    """One SAR image with all its texts: the content of ``{key}.json`` in a shard.

    Field order here is the order of keys in the JSON member (part of the format).
    """

    key: str
    file_name: str
    source: str
    split: str
    city: str
    country: str | None
    region: str | None
    lat: float | None
    lon: float | None
    gsd_m: float
    gsd_from: str
    tier: str
    width: int
    height: int
    image_sha256: str
    captions: tuple[Caption, ...] = field(default_factory=tuple)
    qa: tuple[QA, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain JSON-ready data (bbox as a list).

        Each caption and QA pair starts with its :data:`TEXT_ID_FIELD` (:func:`text_id`),
        so readers take it instead of hashing every text of every pass.
        """
        d = asdict(self)
        d["captions"] = [{TEXT_ID_FIELD: text_id(self.key, c), **c} for c in d["captions"]]
        d["qa"] = [
            {TEXT_ID_FIELD: text_id(self.key, q), **q,
             "bbox_xywh": list(q["bbox_xywh"]) if q["bbox_xywh"] is not None else None}
            for q in d["qa"]
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        """Rebuild a record from :meth:`to_dict` output (or a decoded ``{key}.json``).

        Stored text ids are derived data and are left out (records of roots built before
        text ids were stored have none).
        """
        caps = tuple(Caption(**{k: v for k, v in c.items() if k != TEXT_ID_FIELD})
                     for c in d.get("captions", ()))
        qas = tuple(
            QA(**{**{k: v for k, v in q.items() if k != TEXT_ID_FIELD},
                  "bbox_xywh": tuple(q["bbox_xywh"]) if q.get("bbox_xywh") else None})
            for q in d.get("qa", ())
        )
        fields = {k: d[k] for k in SAMPLE_FIELDS if k not in ("captions", "qa")}
        return cls(**fields, captions=caps, qa=qas)


SAMPLE_FIELDS = tuple(Sample.__dataclass_fields__)
CAPTION_FIELDS = tuple(Caption.__dataclass_fields__)
QA_FIELDS = tuple(QA.__dataclass_fields__)
#: Sample fields that describe the image (everything but its texts).
META_FIELDS = tuple(f for f in SAMPLE_FIELDS if f not in ("captions", "qa"))

#: hex digits of the content hash in a text id (40 bits: no clash among one image's texts)
TEXT_ID_HEX = 10
#: the key of a text's id in each caption and QA pair of a record (first in each; written by
#: builds since 2026-12-07, computed by :func:`text_id` for records without it)
TEXT_ID_FIELD = "id"


def text_id(key: str, text: Mapping[str, Any]) -> str:
    """Return the stable id of one text of a sample: a caption or a QA pair.

    The id is the sample key, ``c`` (caption) or ``q`` (QA pair) and a hash of the text's
    content (a caption's kind and text; a pair's question and answer, not its task, so a
    change of the task inference rules keeps ids), so it is the same in every build of the
    same release whatever the order of rows, and a prediction joined on it can only meet the
    text it was made for. The build rejects duplicate texts of an image, so ids are unique.

    Args:
        key: the sample key.
        text: one entry of the record's ``captions`` (``kind``, ``text``) or ``qa``
            (``question``, ``answer``).

    Returns:
        e.g. ``"0009787-q3f2a9c1b0d"``.

    """
    if "question" in text:
        tag, parts = "q", (text["question"], text["answer"])
    else:
        tag, parts = "c", (text["kind"], text["text"])
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:TEXT_ID_HEX]
    return f"{key}-{tag}{digest}"


def text_ids(key: str, texts: list[Mapping[str, Any]]) -> list[str]:
    """Return the ids of texts of one record: stored ones as they are, the others computed.

    Records written since text ids were stored carry each id under :data:`TEXT_ID_FIELD`
    (taking it costs ~0.05 us against ~1.5 us for hashing the text); records of older roots
    have none, and :func:`text_id` computes them. Either way the ids are the same.

    Args:
        key: the sample key.
        texts: entries of the record's ``captions`` and/or ``qa``.

    Returns:
        One id per text, in order.

    """
    ids = [t.get(TEXT_ID_FIELD) for t in texts]
    if None in ids:
        ids = [i if i is not None else text_id(key, t) for i, t in zip(ids, texts, strict=True)]
    return ids
