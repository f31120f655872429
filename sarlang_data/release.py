"""The authors' release layout -> sample records and a rejects report.

The release is a folder holding ``SARimages/`` (one image per sample, PNG or JPEG) and
``Text/caption/`` plus ``Text/VQA/`` (CSV and/or JSON files). :func:`parse_release` joins texts to
images by file name and returns one :class:`schema.Sample` per image that has at least one usable
text, plus a :class:`Reject` for every text row or file it could not use.

How the unknowns of the release are handled (see DESIGN section 5 and the facts file):

* Column names are not published: columns are found by header synonyms, case, space, hyphen
  and underscore insensitive. A ``label`` or ``category`` column is a task label when its values
  are task names, else the answer. An explicit ``columns`` mapping overrides detection; a mapping
  value of ``none`` (or empty) declares that a role has no column, e.g. ``task=none`` forces
  task inference. When the columns cannot be decided, :class:`ColumnError` lists the headers.
* Text files may be ``.csv``, ``.json`` (a list of flat objects, a wrapper object holding that
  list, an object keyed by image name, JSON Lines, or the LLaMA-Factory ``messages``/``images``
  or ShareGPT ``conversations`` layout) or both. Files are identified by what their names say
  (captions or VQA, subset, split, caption kind); when a CSV and a JSON say the same thing only
  the CSVs are read, so twins never double the texts.
* Split comes from the file name (``train``/``training`` -> train; ``test``, ``test1``, ``val``
  -> test). Subset from ``SARVQA1``/``SARVQA2`` in the name, else from the image's source
  (SARDet-100K images are SARVQA1). Caption kind: a kind column when present, else the file
  (``Caption_test`` detailed, ``Caption_test1`` concise, or a name saying concise/detailed),
  else :func:`infer_caption_kind`. Task: a task column when present, else :func:`infer_task`.
* ``.tif`` files in ``SARimages/`` are originals, not samples: with ``originals=True`` they (and
  those in ``SARimages_original/`` inside or beside the release) are matched to samples by key;
  otherwise they are skipped and counted in :attr:`ParsedRelease.notes`.
* Image files are scanned once (``os.scandir``, recursive) and their first bytes checked once;
  no file system call happens per text row. PNG and JPEG bytes are accepted under either
  extension (decoders sniff the content).

Reject reasons, one :class:`Reject` per text row (``line`` > 0) or per file (``line`` 0):
``missing_image``, ``duplicate_row``, ``empty_text``, ``unknown_file_name``, ``not_an_image``,
``unparseable_row``, ``split_conflict``, ``unused_image``. An image whose every text row was
rejected is also reported as ``unused_image`` (it ends up in no shard).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import schema
from .errors import ColumnError, ReleaseError

log = logging.getLogger(__name__)

REJECT_REASONS = (
    "missing_image",
    "duplicate_row",
    "empty_text",
    "unknown_file_name",
    "not_an_image",
    "unparseable_row",
    "split_conflict",
    "unused_image",
)
#: Roles a text column can play, as accepted by the ``columns`` mapping.
ROLES = ("image", "question", "answer", "caption", "task", "kind")

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_ORIGINAL_EXTS = (".tif", ".tiff")
_REF_EXTS = _IMAGE_EXTS + _ORIGINAL_EXTS
_TEXT_EXTS = (".csv", ".json", ".jsonl")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
#: A CSV record spanning more physical lines than this is an unbalanced quote, not a field
#: with line breaks (no caption or question of the release runs over ten lines).
_MAX_RECORD_LINES = 10
#: Rows looked at to decide a column by content.
_SNIFF_ROWS = 500


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class Reject:
    """A text row or file of the release that could not be used.

    Attributes:
        file: path relative to the release root, e.g. ``Text/VQA/SARVQA2_train.csv``.
        line: CSV: physical line where the record starts (the header is line 1); JSON: 1-based
            item index (JSON Lines: physical line); 0 for a whole file (an image).
        reason: one of :data:`REJECT_REASONS`.
        detail: what was wrong, in words.

    """

    file: str
    line: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Place:
    """Where an image comes from, as told by its file name."""

    source: str
    city: str
    country: str | None
    region: str | None
    lat: float | None
    lon: float | None


@dataclass
class ParsedRelease:
    """Everything :func:`parse_release` learnt from a release.

    Attributes:
        samples: one record per usable image, ``width``/``height`` 0 and ``image_sha256`` empty
            (the build fills them), sorted by (split, tier, city, key).
        image_paths: sample key -> image file.
        original_paths: sample key -> original ``.tif`` (only with ``originals=True``).
        rejects: sorted by (file, line, reason, detail).
        text_rows: text rows read, usable plus rejected (the reject-rate denominator; file-level
            rejects such as ``unused_image`` are not rows).
        files: rows read per text file (relative path).
        notes: things worth telling the user that are not rejects (skipped JSON twins, ignored
            ``.tif`` files, task or kind labels that were not understood and were inferred).

    """

    samples: list[schema.Sample]
    image_paths: dict[str, Path]
    original_paths: dict[str, Path]
    rejects: list[Reject]
    text_rows: int
    files: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def reject_counts(self) -> dict[str, int]:
        """Return the number of rejects per reason (reasons with none are left out)."""
        return dict(sorted(Counter(r.reason for r in self.rejects).items()))


# --------------------------------------------------------------------------- file names

_DFC_RE = re.compile(r"^(SV|GF2)_(.+)_(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)$", re.IGNORECASE)
_SARDET_RE = re.compile(r"^\d{7}$")
_SN6_RE = re.compile(r"^SN6(_|$)", re.IGNORECASE)
_OEM_TOKEN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
#: City slug -> known places of that name: (country slug, lat, lon). DFC2023 names carry
#: coordinates, so a name shared by several cities (Portsmouth) resolves to the nearest one.
#: Cities not listed get country None. Sources: the DFC2023 names seen in the wild (Berlin,
#: Brasilia, Copenhagen, Darwin, NewDelhi, NewYork, Portsmouth, Rio) and other large cities.
CITY_COUNTRIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "addisababa": (("ethiopia", 9.01, 38.76),),
    "amsterdam": (("netherlands", 52.37, 4.90),),
    "atlanta": (("usa", 33.75, -84.39),),
    "bangkok": (("thailand", 13.76, 100.50),),
    "barcelona": (("spain", 41.39, 2.17),),
    "beijing": (("china", 39.90, 116.41),),
    "berlin": (("germany", 52.52, 13.40),),
    "boston": (("usa", 42.36, -71.06),),
    "brasilia": (("brazil", -15.79, -47.88),),
    "buenosaires": (("argentina", -34.60, -58.38),),
    "cairo": (("egypt", 30.04, 31.24),),
    "capetown": (("southafrica", -33.92, 18.42),),
    "chicago": (("usa", 41.88, -87.63),),
    "copenhagen": (("denmark", 55.68, 12.57),),
    "darwin": (("australia", -12.46, 130.85),),
    "delhi": (("india", 28.61, 77.21),),
    "denver": (("usa", 39.74, -104.99),),
    "dubai": (("uae", 25.20, 55.27),),
    "guangzhou": (("china", 23.13, 113.26),),
    "hamburg": (("germany", 53.55, 9.99),),
    "hongkong": (("china", 22.32, 114.17),),
    "houston": (("usa", 29.76, -95.37),),
    "istanbul": (("turkey", 41.01, 28.98),),
    "jakarta": (("indonesia", -6.21, 106.85),),
    "lagos": (("nigeria", 6.52, 3.38),),
    "lima": (("peru", -12.05, -77.04),),
    "london": (("unitedkingdom", 51.51, -0.13),),
    "losangeles": (("usa", 34.05, -118.24),),
    "madrid": (("spain", 40.42, -3.70),),
    "melbourne": (("australia", -37.81, 144.96),),
    "mexicocity": (("mexico", 19.43, -99.13),),
    "miami": (("usa", 25.76, -80.19),),
    "moscow": (("russia", 55.76, 37.62),),
    "mumbai": (("india", 19.08, 72.88),),
    "munich": (("germany", 48.14, 11.58),),
    "nairobi": (("kenya", -1.29, 36.82),),
    "newdelhi": (("india", 28.61, 77.21),),
    "neworleans": (("usa", 29.95, -90.07),),
    "newyork": (("usa", 40.71, -74.01),),
    "osaka": (("japan", 34.69, 135.50),),
    "paris": (("france", 48.86, 2.35),),
    "perth": (("australia", -31.95, 115.86), ("unitedkingdom", 56.40, -3.44)),
    "portland": (("usa", 45.52, -122.68), ("usa", 43.66, -70.26)),
    "portsmouth": (("unitedkingdom", 50.82, -1.09), ("usa", 36.84, -76.30),
                   ("usa", 43.07, -70.76)),
    "rio": (("brazil", -22.91, -43.17),),
    "riodejaneiro": (("brazil", -22.91, -43.17),),
    "rome": (("italy", 41.90, 12.50),),
    "rotterdam": (("netherlands", 51.92, 4.48),),
    "santiago": (("chile", -33.45, -70.67),),
    "saopaulo": (("brazil", -23.55, -46.63),),
    "seattle": (("usa", 47.61, -122.33),),
    "seoul": (("southkorea", 37.57, 126.98),),
    "shanghai": (("china", 31.23, 121.47),),
    "shenzhen": (("china", 22.54, 114.06),),
    "singapore": (("singapore", 1.35, 103.82),),
    "sydney": (("australia", -33.87, 151.21),),
    "tokyo": (("japan", 35.68, 139.69),),
    "toronto": (("canada", 43.65, -79.38),),
    "vancouver": (("canada", 49.28, -123.12),),
    "washington": (("usa", 38.91, -77.04),),
    "wuhan": (("china", 30.59, 114.31),),
}
#: A place of the table farther than this (degrees, either axis) is another city of that name.
_CITY_MAX_DEG = 3.0


def _country_of(city: str, lat: float, lon: float) -> str | None:
    """Return the country slug of a city near (lat, lon), or None when not in the table."""
    best = None
    for country, clat, clon in CITY_COUNTRIES.get(city, ()):
        d = max(abs(clat - lat), abs((clon - lon + 180) % 360 - 180))
        if d <= _CITY_MAX_DEG and (best is None or d < best[0]):
            best = (d, country)
    return best[1] if best else None


def _strip_ext(name: str) -> str:
    """Return the stem of an image reference: directories and a known image extension removed.

    Stems may contain dots (``SV_Darwin_-12.4278_130.8688``), so only the extensions of
    :data:`_REF_EXTS` count as extensions.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    low = base.lower()
    for ext in _REF_EXTS:
        if low.endswith(ext):
            return base[: -len(ext)]
    return base


def parse_file_name(name: str) -> Place:
    """Tell the source and place of an image from its file name.

    Patterns: ``{SV|GF2}_{City}_{lat}_{lon}`` (DFC2023; CamelCase city, WGS84 degrees),
    ``SN6_...`` (SpaceNet6, Rotterdam), seven digits (SARDet-100K, no place: ``unlocated``),
    ``{Country}_{Region...}_{City}_{n}`` (OpenEarthMap-SAR: country first, integer tile index
    last, city just before it, region the tokens between; hyphens allowed inside tokens).

    Args:
        name: file name, with or without directories and extension.

    Returns:
        The :class:`Place`; city, country and region are slugs (:func:`schema.slug`).

    Raises:
        ReleaseError: if the name follows none of the patterns.

    """
    stem = _strip_ext(name)
    if _SARDET_RE.match(stem):
        return Place("sardet100k", schema.UNLOCATED, None, None, None, None)
    if _SN6_RE.match(stem):
        return Place("spacenet6", "rotterdam", "netherlands", None, None, None)
    m = _DFC_RE.match(stem)
    if m:
        lat, lon = float(m.group(3)), float(m.group(4))
        city = schema.slug(m.group(2))
        if -90 <= lat <= 90 and -180 <= lon <= 180 and city != schema.UNLOCATED:
            return Place("dfc2023", city, _country_of(city, lat, lon), None, lat, lon)
    tokens = stem.split("_")
    if (
        len(tokens) >= 4
        and tokens[-1].isdigit()
        and all(_OEM_TOKEN_RE.match(t) for t in tokens[:-1])
        and tokens[0][0].isupper()
    ):
        region = "_".join(tokens[1:-2])
        return Place(
            "oem_sar", schema.slug(tokens[-2]), schema.slug(tokens[0]), schema.slug(region),
            None, None,
        )
    raise ReleaseError(
        f"image file name {name!r}: matches no known pattern ({{SV|GF2}}_{{City}}_{{lat}}_{{lon}} "
        "for DFC2023, {Country}_{Region}_{City}_{n} for OpenEarthMap-SAR, SN6_... for "
        "SpaceNet6, a 7-digit number for SARDet-100K); rename the image to its source's pattern"
    )


# --------------------------------------------------------------------------- text inference

_NUM = r"(-?\d+(?:\.\d+)?)"
_BOX_RE = re.compile(rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\]")
_IMAGE_TOKEN_RE = re.compile(r"\s*<image>\s*", re.IGNORECASE)
_QUESTION_LABEL_RE = re.compile(r"^\s*question\s*:\s*", re.IGNORECASE)
_INSTRUCTION_RE = re.compile(
    r"(?:^|(?<=[?.!])|\s)\s*(?:please\s+)?(?:answer\s+(?:the\s+question|with|using|in)\b[^?]*"
    r"|respond\s+with\b[^?]*)$",
    re.IGNORECASE,
)
#: The class-list prefix the authors suggest for SARVQA1 questions (README).
_CLASSES_PREFIX_RE = re.compile(r"^\s*the classes are\s*:[^.?]*[.]\s*", re.IGNORECASE)


def parse_bbox(question: str) -> tuple[float, float, float, float] | None:
    """Return the first box ``[x, y, w, h]`` written in a question, or None.

    Args:
        question: the question text, e.g. ``What is in the area [56.0, 191.0, 112.0, 122.0]?``.

    Returns:
        ``(x, y, w, h)`` as floats (COCO convention, pixels), or None when there is no box.

    """
    m = _BOX_RE.search(question)
    if m is None:
        return None
    x, y, w, h = (float(g) for g in m.groups())
    return (x, y, w, h)


def _clean_question(text: str) -> str:
    """Strip chat scaffolding from a question: ``<image>``, a ``Question:`` label, the prompt.

    The authors' VQA prompt is ``Question: {q}. Answer the question concisely.``; we keep ``q``.
    """
    t = text.strip()
    if not t:
        return t
    if "<" in t:
        t = _IMAGE_TOKEN_RE.sub(" ", t).strip()
    # Fast path: most questions carry no label and no instruction.
    if t[:8].lower() == "question" or "nswer" in t or "NSWER" in t:
        t = _QUESTION_LABEL_RE.sub("", t)
        t = _INSTRUCTION_RE.sub("", t).strip()
        if t.endswith("?.") or t.endswith("?,"):
            t = t[:-1]
    return t.strip()


def _clean_text(text: str) -> str:
    """Strip surrounding space and any ``<image>`` token from an answer or caption."""
    t = text.strip()
    if "<" in t:
        t = _IMAGE_TOKEN_RE.sub(" ", t).strip()
    return t


_YES_NO = frozenset({"yes", "no", "true", "false", "y", "n"})
_POSITION_WORDS = frozenset(
    "top bottom left right center centre middle upper lower side corner edge near "
    "centered top-left top-right bottom-left bottom-right".split()
)


_WORD_SPLIT_RE = re.compile(r"[\s,/]+")


@lru_cache(maxsize=1 << 16)
def _answer_class(answer: str | None) -> str | None:
    """Reduce an answer to what it says about the task: yesno, int, position or other."""
    if answer is None:
        return None
    a = answer.strip().lower().rstrip(".!")
    if not a:
        return None
    if a in _YES_NO:
        return "yesno"
    if a.isdigit():
        return "int"
    words = _WORD_SPLIT_RE.split(a)
    if words and all(w in _POSITION_WORDS or w in ("the", "of", "and", "image", "in")
                     for w in words):
        return "position"
    return "other"


_RX = re.compile  # shorthand for the rule table below
_COUNT_RE = _RX(r"\bhow many\b|\bnumber of\b|\bcount (?:the|of|all)\b|\bwhat is the count\b")
_YESNO_START_RE = _RX(
    r"^(?:is|are|does|do|did|can|could|has|have|was|were|will|would|should|any|isn't|aren't)\b"
)
_PRESENCE_START_RE = _RX(
    r"^(?:is|are) there\b|^(?:does|do|did) (?:the|this|that) (?:image|scene|picture|photo|view"
    r"|area|sar image)\b.*\b(?:contain|show|include|have|depict|feature|display|capture)"
    r"|^(?:can|could) (?:you|we|one) (?:see|spot|find|identify|detect)\b|^do you see\b"
    r"|^(?:is|are|can|could|was|were) (?:an?|any|some|there any)\b"
    r"|^(?:can|could) .*\bbe (?:found|seen|spotted|detected|observed|identified|noticed"
    r"|made out|located)\b"
)
_PRESENCE_WORDS_RE = _RX(
    r"\b(?:present|visible|exists?|seen|observed|observable|detected|detectable|discernible"
    r"|spotted|identifiable|shown|depicted|noticeable|in (?:the|this) (?:image|scene|picture"
    r"|photo|area))\b"
)
_REASONING_RE = _RX(
    r"under construction|under ?way|\bconstruction work\b|being (?:built|constructed|developed"
    r"|used)|\bsigns? of\b|\bevidence\b"
    r"|\bsuggests?\b|\bindicat|\blikely\b|\bbecause\b|\bwhy\b|\bpurpose\b|\bused (?:for|as)\b"
    r"|\bactive(?:ly)?\b|\bdamaged?\b|\boperational\b|\bin use\b|\boccupied\b|\bflooded\b"
    r"|\bfunctional\b|\bmoving\b|\bdocked\b|\bparked\b|\bbusy\b|\babandoned\b|\bempty\b"
    r"|\bcrowded\b|\bconnected\b|\bsurrounded\b|\bnext to\b|\bclose to\b|\bnear(?:by)?\b"
    r"|\bmore\b|\bless\b|\bfewer\b|\blarger\b|\bsmaller\b|\bbigger\b|\bdense(?:ly)?\b"
    r"|\bpossible\b|\bappears? to\b|\bseems?\b|\bcould\b|\bmight\b|\bwould\b"
)
_SHAPE_RE = _RX(r"\bshapes?\b|\bshaped\b|\bgeometry\b|\bgeometric\b|\boutline of\b"
                r"|\bform of\b|\bcontour\b")
#: Open questions asking for an explanation rather than a category: others/reasoning.
_WH_REASONING_RE = _RX(
    r"\blikely\b|\bpurpose\b|\bused (?:for|as)\b|\bactivit(?:y|ies)\b|\bsuggests?\b"
    r"|\bindicat|\bwhy\b|\bfunction of\b|\bserves?\b|\bprobabl[ey]\b|\bcause\b"
    r"|\breason\b|\binfer\b|\bimply\b"
)
_DIRECTION_RE = _RX(
    r"\bdirections?\b|\borientation\b|\boriented\b|\borient\b|\bheading\b|\bfacing\b"
    r"|\baligned\b|\balignment\b|\brun(?:s|ning)? (?:in )?(?:which|what)\b"
)
_LAND_COVER_RE = _RX(r"\bland[\s-]?(?:cover|use)\b|\blandcover\b")
_PATTERN_RE = _RX(
    r"\bhow (?:are|is)\b.*\b(?:arranged|organi[sz]ed|distributed|laid out|spaced|placed"
    r"|grouped|clustered|structured)\b|\bpatterns?\b|\barrangement\b|\blayout\b"
)
_POSITION_RE = _RX(
    r"^where\b|\bwhere (?:is|are|in|on|do|does|can)\b|\b(?:positioned|located|situated)\b"
    r"|\b(?:which|what) (?:part|side|corner|region|area|portion|section|half|quadrant|location"
    r"|position)s? (?:of|in|within) (?:the|this) (?:image|scene|picture|photo)\b"
    r"|\bwhat (?:is the )?(?:position|location)\b|\bin which (?:part|side|corner|region|area"
    r"|portion|section|half|quadrant)\b"
)
_WH_RE = _RX(r"^(?:what|which)\b|^(?:identify|name|classify)\b")
_OTHER_OPEN_RE = _RX(r"^(?:why|how|describe|explain)\b")


def _core_question(clean: str) -> str:
    """Lower-case a cleaned question for inference, without the class-list prefix."""
    q = clean.lower()
    if q.startswith("the classes"):
        q = _CLASSES_PREFIX_RE.sub("", q)
    if "  " in q or "\n" in q or "\t" in q:
        q = " ".join(q.split())
    return q


@lru_cache(maxsize=1 << 18)
def _infer(q: str, aclass: str | None) -> tuple[str, str]:
    """Infer (task, question_type) from a normalised question and an answer class."""
    if _BOX_RE.search(q):
        return ("region_referring", "region_referring")
    if _COUNT_RE.search(q):
        return ("instance_counting", "instance_counting")
    if _YESNO_START_RE.match(q):
        presence = bool(_PRESENCE_START_RE.match(q)) or (
            q.startswith("any ") and bool(_PRESENCE_WORDS_RE.search(q))
        ) or (bool(_PRESENCE_WORDS_RE.search(q)) and q.split(" ", 1)[0] in ("is", "are"))
        if presence and not _REASONING_RE.search(q):
            return ("object_identification", "object_identification")
        return ("others", "reasoning")
    if _LAND_COVER_RE.search(q):
        return ("others", "land_cover")
    if _SHAPE_RE.search(q):
        return ("others", "shape")
    if _DIRECTION_RE.search(q):
        return ("others", "direction")
    if _PATTERN_RE.search(q):
        return ("others", "pattern")
    if _POSITION_RE.search(q):
        return ("object_positioning", "object_positioning")
    if _WH_RE.match(q):
        if _WH_REASONING_RE.search(q):
            return ("others", "reasoning")
        if aclass == "int":
            return ("instance_counting", "instance_counting")
        return ("object_classification", "object_classification")
    if _OTHER_OPEN_RE.match(q):
        return ("others", "reasoning")
    # Wording gave nothing away: let the answer decide.
    if aclass == "yesno":
        if _PRESENCE_WORDS_RE.search(q) and not _REASONING_RE.search(q):
            return ("object_identification", "object_identification")
        return ("others", "reasoning")
    if aclass == "int":
        return ("instance_counting", "instance_counting")
    if aclass == "position":
        return ("object_positioning", "object_positioning")
    return ("object_classification", "object_classification")


def infer_task(question: str, answer: str | None = None) -> tuple[str, str]:
    """Infer the VQA application of a question from its wording (and optionally its answer).

    The rules follow the authors' templates and examples (facts file section 2): a box
    ``[x, y, w, h]`` -> region referring; "How many ..." -> counting; a yes/no question about
    the presence of a category ("Is there ...", "Are there any ...") -> identification, other
    yes/no questions ("Any buildings under construction?") -> others/reasoning; shape,
    direction, land cover and arrangement wording -> the matching ``others`` type; "Where ...",
    "positioned/located" -> positioning; other "What/Which ..." -> classification. The answer is
    only used when the wording gives nothing away (yes/no, an integer, a position word).

    Args:
        question: the question as written in the release (chat scaffolding is ignored).
        answer: the answer, if known.

    Returns:
        ``(task, question_type)``: a :data:`schema.TASKS` name, and the task name again or, for
        ``others``, one of :data:`schema.OTHERS_TYPES`.

    """
    return _infer(_core_question(_clean_question(question)), _answer_class(answer))


_CONCISE_START_RE = _RX(r"^(?:an?\s+)?(?:aerial|satellite|overhead|top[- ]down|sar)\s+"
                        r"(?:view|image|photo|shot)\b")
_DETAILED_START_RE = _RX(
    r"^(?:the|this)\s+(?:sar\s+|aerial\s+|satellite\s+)?(?:image|scene|picture|photo|view)\s+"
    r"(?:shows|depicts|features|captures|presents|displays|contains|reveals|illustrates"
    r"|highlights|is)\b|^in (?:the|this) (?:image|scene)\b"
)
_CLAUSE_RE = _RX(r",|;|\b(?:which|while|where|whereas|with|and|including|surrounded|featuring"
                 r"|along|alongside|that)\b")


_SENTENCE_RE = _RX(r"[.!?]+(?:\s|$)")


def infer_caption_kind(text: str) -> str:
    """Tell a concise caption from a detailed one by length and style.

    Concise captions (BLIP/CLIP style) are one short sentence, often "Aerial view of ...";
    detailed ones (GPT-4o style) are longer and multi-clause, often "The image shows ...".

    Args:
        text: the caption.

    Returns:
        ``"concise"`` or ``"detailed"``.

    """
    t = " ".join(text.lower().split())
    words = len(t.split())
    sentences = len([s for s in _SENTENCE_RE.split(t) if s.strip()])
    if sentences > 1 or words >= 24:
        return "detailed"
    if words <= 8:
        return "concise"
    clauses = len(_CLAUSE_RE.findall(t))
    score = (words - 14) / 4 + clauses * 0.75
    if _CONCISE_START_RE.match(t):
        score -= 2.5
    if _DETAILED_START_RE.match(t):
        score += 2.5
    return "detailed" if score > 1.0 else "concise"


# --------------------------------------------------------------------------- labels


def _norm(text: str) -> str:
    """Normalise a header or label: lower case, only letters and digits."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


#: Task label spellings (normalised with :func:`_norm`) -> (task, others type or None).
_TASK_LABELS: dict[str, tuple[str, str | None]] = {}
for _task, _spellings in {
    "object_identification": (
        "object identification", "identification", "identify", "object presence", "presence",
        "object existence", "existence", "object detection yes no", "yes/no question"),
    "object_classification": (
        "object classification", "classification", "classify", "object category",
        "scene classification", "object recognition", "recognition", "category classification"),
    "instance_counting": (
        "instance counting", "counting", "object counting", "instance count", "count question"),
    "region_referring": (
        "region referring", "referring", "region reference", "referring expression",
        "region classification", "visual grounding", "grounding", "region recognition"),
    "object_positioning": (
        "object positioning", "positioning", "object location", "localization",
        "localisation", "object localization", "object position", "location question"),
    "others": ("others", "other", "misc", "miscellaneous"),
}.items():
    for _s in (_task, *_spellings):
        _TASK_LABELS[_norm(_s)] = (_task, None)
for _qtype, _spellings in {
    "shape": ("shape", "object shape", "shapes"),
    "direction": ("direction", "object direction", "orientation", "object orientation"),
    "land_cover": ("land cover", "landcover", "land use", "land cover classification"),
    "pattern": ("pattern", "arrangement", "layout", "spatial pattern", "object pattern"),
    "reasoning": ("reasoning", "reason", "complex reasoning", "logical reasoning"),
}.items():
    for _s in (_qtype, *_spellings):
        for _prefix in ("", "others ", "other "):
            _TASK_LABELS[_norm(_prefix + _s)] = ("others", _qtype)

#: Caption kind spellings (normalised) -> caption kind.
_KIND_LABELS: dict[str, str] = {}
for _kind, _spellings in {
    "concise": ("concise", "short", "brief", "simple", "concise caption", "short caption"),
    "detailed": ("detailed", "detail", "complex", "long", "detailed caption",
                 "complex caption", "long caption"),
}.items():
    for _s in _spellings:
        _KIND_LABELS[_norm(_s)] = _kind


def _task_label(value: str) -> tuple[str, str | None] | None:
    """Map a task label spelling to (task, others type or None); None when unknown."""
    return _TASK_LABELS.get(_norm(value))


def _kind_label(value: str) -> str | None:
    """Map a caption-kind label spelling to a caption kind; None when unknown."""
    return _KIND_LABELS.get(_norm(value))


# --------------------------------------------------------------------------- GSD table

_GSD_NAME_SYNONYMS = ("filename", "file", "image", "imagename", "img", "imgname", "name",
                      "stem", "key", "path", "imagepath", "imageid", "imgpath", "images")
_GSD_VALUE_SYNONYMS = ("gsdm", "gsd", "gsdmeters", "gsdmetres", "resolution", "resolutionm",
                       "res", "resm", "pixelsize", "pixelsizem", "pixelspacing", "spacing",
                       "meterspixel", "meterperpixel", "metersperpixel", "mpp")


def _decode(data: bytes, where: str) -> str:
    """Decode a text file as UTF-8 (a byte-order mark is allowed) or explain how to fix it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.start + 4]
        raise ReleaseError(
            f"{where}: byte {e.start} (line {line}) is {bad!r}, which is not UTF-8; the file "
            "seems to use another encoding; re-save it as UTF-8 (e.g. `iconv -f cp1252 -t "
            "utf-8 FILE > FILE.utf8` and replace the file)"
        ) from None


def read_gsd_table(path: str | Path) -> dict[str, float]:
    """Read a CSV of ground sampling distances per image.

    The file has a header with a file-name column (``file_name``, ``image``, ``name``, ...)
    and a GSD column in metres (``gsd_m``, ``gsd``, ``resolution``, ...).

    Args:
        path: the CSV file.

    Returns:
        file name or stem, as written -> GSD in metres.

    Raises:
        ReleaseError: if the file is missing or unreadable, a GSD is not a positive number, a
            name is empty, or a name is given two different values.
        ColumnError: if the name or GSD column cannot be identified.

    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ReleaseError(
            f"gsd table {str(p)!r}: cannot be read ({e.strerror}); pass the path of a CSV with "
            "columns file_name,gsd_m"
        ) from None
    rows = list(csv.reader(io.StringIO(_decode(data, f"gsd table {str(p)!r}"), newline="")))
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise ReleaseError(f"gsd table {str(p)!r}: is empty; write a header file_name,gsd_m "
                           "and one row per image")
    header = rows[header_at]
    norms = [_norm(h) for h in header]

    def pick(synonyms: tuple[str, ...], what: str) -> int:
        found = [i for i, n in enumerate(norms) if n in synonyms]
        if len(found) != 1:
            why = "no" if not found else "more than one"
            raise ColumnError(
                f"gsd table {str(p)!r}: {why} {what} column among headers {header}; name the "
                "columns file_name and gsd_m"
            )
        return found[0]

    ni = pick(_GSD_NAME_SYNONYMS, "file-name")
    gi = pick(_GSD_VALUE_SYNONYMS, "GSD")
    out: dict[str, float] = {}
    for lineno, row in enumerate(rows[header_at + 1 :], start=header_at + 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(ni, gi):
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno} has {len(row)} fields, the header "
                f"{len(header)}; fix that line"
            )
        name, raw = row[ni].strip(), row[gi].strip()
        if not name:
            raise ReleaseError(f"gsd table {str(p)!r}: line {lineno} has an empty file name; "
                               "fill it in or delete the line")
        try:
            gsd = float(raw)
        except ValueError:
            gsd = float("nan")
        if not (0 < gsd < float("inf")):
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno}: GSD {raw!r} for {name!r} is not a "
                "positive number of metres; fix that cell (e.g. 0.5)"
            )
        if name in out and out[name] != gsd:
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno}: {name!r} is given GSD {gsd} here and "
                f"{out[name]} earlier; keep one line per image"
            )
        out[name] = gsd
    return out


# --------------------------------------------------------------------------- images


@dataclass
class _Image:
    """One file found under SARimages/ (or an originals folder)."""

    path: Path
    rel: str
    key: str | None
    problem: str | None = None  # a reject reason when the file cannot be a sample
    detail: str = ""
    place: Place | None = None
    referenced: int = 0  # text rows naming it


def _magic_ok(path: str) -> bool:
    """Return whether a file starts with PNG or JPEG magic bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC)


def _walk(root: Path) -> Iterator[os.DirEntry]:
    """Yield the files below ``root`` in sorted order, one ``os.scandir`` per folder."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_dir(follow_symlinks=True):
            yield from _walk(Path(e.path))
        elif e.is_file(follow_symlinks=True):
            yield e


def _ref_key(ref: str) -> str | None:
    """Map an image reference (path, name or stem) to a sample key, None if it cannot be one."""
    try:
        return schema.key_for_stem(_strip_ext(ref))
    except ValueError:
        return None


def _scan_images(release: Path, originals: bool) -> tuple[dict[str, _Image], list[_Image],
                                                          list[Path], list[str]]:
    """Scan SARimages/ once; return usable-or-not images by key, bad files, originals, notes."""
    img_dir = release / "SARimages"
    by_key: dict[str, _Image] = {}
    bad: list[_Image] = []
    tifs: list[Path] = []
    notes: list[str] = []
    # _walk's paths all start with str(img_dir); cutting that prefix is much cheaper than
    # Path.relative_to on 118K files.
    cut = len(str(img_dir)) + 1
    for e in _walk(img_dir):
        p = Path(e.path)
        rel = "SARimages/" + e.path[cut:].replace(os.sep, "/")
        low = e.name.lower()
        ext = next((x for x in _REF_EXTS if low.endswith(x)), None)
        if ext in _ORIGINAL_EXTS:
            tifs.append(p)
            continue
        # A file with another extension keeps it in its key ("x.bmp" -> "xpbmp"), the same key
        # a text row naming "x.bmp" resolves to, so such rows are rejected as not_an_image.
        key = _ref_key(e.name)
        img = _Image(p, rel, key)
        if ext is None:
            img.problem, img.detail = "not_an_image", (
                f"{e.name!r} is not a .png/.jpg/.jpeg image; move it out of SARimages/")
        elif not _magic_ok(e.path):
            img.problem, img.detail = "not_an_image", (
                f"{e.name!r} does not start with PNG or JPEG bytes (damaged or mislabelled); "
                "replace it with the release's file")
        else:
            try:
                img.place = parse_file_name(e.name)
            except ReleaseError:
                img.problem, img.detail = "unknown_file_name", (
                    f"{e.name!r} matches none of the known source patterns; rename it")
            if img.problem is None and key is None:
                img.problem, img.detail = "unknown_file_name", (
                    f"{e.name!r} is too long to be a sample key (max {schema.MAX_KEY_LEN}); "
                    "rename it")
        if key is None:
            bad.append(img)
            continue
        old = by_key.get(key)
        if old is None:
            by_key[key] = img
        elif old.problem is None and img.problem is None:
            raise ReleaseError(
                f"images {old.rel!r} and {img.rel!r} both map to sample key {key!r} (names "
                "differ only in case, punctuation or extension); keep one of them"
            )
        elif old.problem is not None and img.problem is None:
            by_key[key] = img
            bad.append(old)
        else:
            bad.append(img)
    if tifs and not originals:
        notes.append(
            f"skipped {len(tifs)} .tif file(s) in SARimages/: they are originals, not sample "
            "images; pass originals=True (--originals) to add them to the shards"
        )
    return by_key, bad, tifs, notes


def _find_originals(release: Path, tifs_in_images: list[Path], keys: Iterable[str]
                    ) -> tuple[dict[str, Path], list[str]]:
    """Match original .tif files to sample keys (SARimages_original/ first, then SARimages/)."""
    found: dict[str, Path] = {}
    for p in tifs_in_images:
        k = _ref_key(p.name)
        if k is not None:
            found.setdefault(k, p)
    for folder in (release / "SARimages_original", release.parent / "SARimages_original"):
        if folder.is_dir():
            for e in _walk(folder):
                if e.name.lower().endswith(_ORIGINAL_EXTS):
                    k = _ref_key(e.name)
                    if k is not None:
                        found[k] = Path(e.path)
            break
    keys = set(keys)
    out = {k: p for k, p in found.items() if k in keys}
    notes = []
    if len(out) < len(keys):
        notes.append(f"{len(keys) - len(out)} of {len(keys)} samples have no original .tif")
    if len(found) > len(out):
        notes.append(f"{len(found) - len(out)} original .tif file(s) match no sample; skipped")
    return out, notes


# --------------------------------------------------------------------------- text files


@dataclass
class _TextFile:
    """A text file of the release and what its name says."""

    path: Path
    rel: str
    category: str  # "caption" | "vqa"
    split: str
    subset: str | None
    kind: str | None  # caption kind the file implies, None for mixed files


def _split_of(stem: str, rel: str) -> str:
    low = stem.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low))
    train = "train" in low or "trn" in tokens
    test = "test" in low or bool(tokens & {"val", "valid", "validation", "eval"})
    if train == test:
        raise ReleaseError(
            f"text file {rel!r}: cannot tell its split from the name (expected 'train', "
            "'training', 'test' or 'test1' in it); rename the file, e.g. SARVQA2_train.csv"
        )
    return "train" if train else "test"


def _file_kind(stem: str, split: str) -> str | None:
    low = stem.lower()
    if re.search(r"concise|short|brief", low):
        return "concise"
    if re.search(r"detail|complex|long", low):
        return "detailed"
    if split == "test":
        m = re.search(r"test(\d*)", low)
        if m and m.group(1) == "1":
            return "concise"
        if m and m.group(1) == "":
            return "detailed"
    return None


def _find_text_files(release: Path) -> tuple[list[_TextFile], list[str]]:
    """List the text files to read (CSV preferred over a JSON that says the same thing)."""
    text_dir = release / "Text"
    groups: dict[tuple, list[_TextFile]] = defaultdict(list)
    notes: list[str] = []
    ignored: list[str] = []
    for e in _walk(text_dir):
        p = Path(e.path)
        rel = p.relative_to(release).as_posix()
        low = e.name.lower()
        ext = next((x for x in _TEXT_EXTS if low.endswith(x)), None)
        if ext is None or e.name.startswith("."):
            ignored.append(rel)
            continue
        stem = e.name[: -len(ext)]
        where = rel.lower()
        name_low = stem.lower()
        if "vqa" in name_low:
            category = "vqa"
        elif "caption" in name_low or "cap" in re.split(r"[^a-z]+", name_low):
            category = "caption"
        elif "/vqa/" in where:
            category = "vqa"
        elif "/caption" in where:
            category = "caption"
        else:
            raise ReleaseError(
                f"text file {rel!r}: neither its name nor its folder says whether it holds "
                "captions or VQA; move it to Text/caption/ or Text/VQA/ (or out of Text/)"
            )
        split = _split_of(stem, rel)
        m = re.search(r"sar\s*[-_]?\s*vqa\s*[-_]?\s*([12])", name_low)
        subset = f"SARVQA{m.group(1)}" if (m and category == "vqa") else None
        kind = _file_kind(stem, split) if category == "caption" else None
        tf = _TextFile(p, rel, category, split, subset, kind)
        groups[(category, split, subset, kind)].append(tf)
    chosen: list[_TextFile] = []
    for files in groups.values():
        csvs = [f for f in files if f.rel.lower().endswith(".csv")]
        if csvs:
            skipped = [f.rel for f in files if f not in csvs]
            if skipped:
                notes.append(
                    f"read {', '.join(f.rel for f in csvs)}; skipped its JSON twin(s) "
                    f"{', '.join(skipped)} (same subset, split and kind)"
                )
            chosen += csvs
        else:
            chosen += files
    if ignored:
        notes.append(f"ignored {len(ignored)} non-text file(s) under Text/: "
                     f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
    chosen.sort(key=lambda f: f.rel)
    return chosen, notes


# A row as read: (line, values, problem). ``problem`` is a detail string when the record
# cannot be parsed (its values are then meaningless).
_Row = tuple[int, list[str], str | None]


def _read_csv(text: str, rel: str) -> tuple[list[str], Iterator[_Row]]:
    """Return the header and an iterator over the data records of a CSV text."""
    reader = csv.reader(io.StringIO(text, newline=""))
    state = {"prev": 0}

    def records() -> Iterator[tuple[int, int, list[str]]]:
        try:
            for row in reader:
                start = state["prev"] + 1
                end = reader.line_num
                state["prev"] = end
                yield start, end, row
        except csv.Error as e:
            start = state["prev"] + 1
            raise ReleaseError(
                f"text file {rel!r}: line {start}: the CSV cannot be read past this record "
                f"({e}); most likely a quote opened on line {start} is never closed, so the "
                f"rest of the file reads as one field; fix or remove the stray '\"' on line "
                f"{start} (fields holding quotes must be quoted, with inner quotes doubled)"
            ) from None

    it = records()
    header: list[str] | None = None
    for _start, _end, row in it:
        if row and any(c.strip() for c in row):
            header = row
            break
    if header is None:
        return [], iter(())
    n = len(header)

    def rows() -> Iterator[_Row]:
        for start, end, row in it:
            if not row:
                continue
            if end - start >= _MAX_RECORD_LINES:
                raise ReleaseError(
                    f"text file {rel!r}: line {start}: one record runs over lines {start}-{end}; "
                    f"a quote opened on line {start} is not closed where it should be, which "
                    f"swallows the following records; fix or remove the stray '\"' on line "
                    f"{start}"
                )
            if len(row) != n:
                if len(row) > n and not any(c.strip() for c in row[n:]):
                    row = row[:n]
                elif len(row) == 1 and not row[0].strip():
                    continue
                else:
                    span = f"lines {start}-{end}" if end > start else f"line {start}"
                    yield start, row, (
                        f"{len(row)} fields where the header has {n} ({span}; an unquoted comma "
                        "or an unbalanced quote?)"
                    )
                    continue
            yield start, row, None

    return header, rows()


def _scalar(value: object) -> tuple[str, str | None]:
    """Turn a JSON value into a cell: (text, problem)."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        if len(value) == 0:
            return "", None
        if len(value) == 1:
            return _scalar(value[0])
        return "", f"a list of {len(value)} values where one was expected"
    if isinstance(value, dict):
        return "", "an object where a text was expected"
    return str(value), None


_CHAT_KEYS = ("messages", "conversations")
_USER_ROLES = frozenset({"user", "human"})
_ASSISTANT_ROLES = frozenset({"assistant", "gpt", "bot", "model"})


def _json_items(text: str, rel: str, resolvable) -> list[tuple[int, dict]]:
    """Parse a JSON (or JSON Lines) text into (line, object) items.

    ``line`` is the 1-based item index (JSON Lines: the physical line). Items that are not
    objects come back as ``{"__bad__": value}`` so they can be rejected in place.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise ReleaseError(
                f"text file {rel!r}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg});"
                " fix the file there (or delete it and keep its CSV twin)"
            ) from None
        items = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    o = json.loads(line)
                except json.JSONDecodeError as e2:
                    raise ReleaseError(
                        f"text file {rel!r}: line {i}: not valid JSON Lines ({e2.msg}); fix "
                        "that line"
                    ) from None
                items.append((i, o if isinstance(o, dict) else {"__bad__": o}))
        return items
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if data and all(resolvable(k) for k in list(data)[:_SNIFF_ROWS]):
            # {image: [items]} or {image: item}: put the image into each item.
            flat = []
            for k, v in data.items():
                for o in v if isinstance(v, list) else [v]:
                    flat.append({"image": k, **o} if isinstance(o, dict) else {"__bad__": o})
            data = flat
        elif len(data) == 1 and lists:
            data = data[lists[0]]
        else:
            raise ReleaseError(
                f"text file {rel!r}: a JSON object with keys {list(data)[:8]}; expected a list "
                "of rows (objects), an object holding one such list, or an object keyed by "
                "image name; convert the file to one of those"
            )
    if not isinstance(data, list):
        raise ReleaseError(f"text file {rel!r}: JSON top level is {type(data).__name__}; "
                           "expected a list of rows")
    return [(i, o if isinstance(o, dict) else {"__bad__": o})
            for i, o in enumerate(data, start=1)]


def _text_of(value: object) -> tuple[str, str | None]:
    """Like :func:`_scalar`, with a fast path for the common plain string."""
    if type(value) is str:
        return value, None
    return _scalar(value)


def _chat_rows(obj: dict, category: str
               ) -> tuple[list[tuple[str, ...]], dict[str, str], str | None]:
    """Expand one LLaMA-Factory / ShareGPT item into rows (one per turn pair).

    Returns:
        The rows as (image, question, answer) or (image, caption) tuples, the item's other
        scalar fields (e.g. a ``type`` label), and a problem when the item is unusable.

    """
    turns = obj.get("messages")
    if turns is None:
        turns = obj.get("conversations")
    imgs = obj.get("images", obj.get("image", ""))
    if type(imgs) is list and len(imgs) == 1 and type(imgs[0]) is str:
        image = imgs[0]
    else:
        image, problem = _scalar(imgs)
        if problem:
            return [], {}, f"images: {problem}"
    extras: dict[str, str] = {}
    if len(obj) > 2:
        for k, v in obj.items():
            if k not in _CHAT_KEYS and k not in ("images", "image"):
                sv, p = _scalar(v)
                if p is None:
                    extras[k] = sv
    if type(turns) is not list:
        return [], {}, "messages is not a list"
    vqa = category == "vqa"
    rows: list[tuple[str, ...]] = []
    pending: str | None = None
    for t in turns:
        if type(t) is not dict:
            return [], {}, "a message that is not an object"
        role = t.get("role")
        if role is None:
            role = t.get("from", "")
        content = t.get("content")
        if content is None:
            content = t.get("value", "")
        content, p = _text_of(content)
        if p:
            return [], {}, f"message content: {p}"
        role = str(role).lower()
        if role in _USER_ROLES:
            if pending is not None and vqa:
                return [], {}, "two user turns in a row"
            pending = content
        elif role in _ASSISTANT_ROLES:
            if vqa:
                if pending is None:
                    return [], {}, "an assistant turn without a question before it"
                rows.append((image, pending, content))
            else:
                rows.append((image, content))
            pending = None
        # system and tool turns carry no data of ours
    if pending is not None and vqa:
        return [], {}, "a user turn without an answer"
    if not rows:
        return [], {}, "no user/assistant turns"
    return rows, extras, None


def _read_json(text: str, rel: str, category: str, resolvable
               ) -> tuple[list[str], Iterator[_Row], dict[str, int]]:
    """Return headers, rows and fixed roles (chat layout) of a JSON text file."""
    items = _json_items(text, rel, resolvable)
    del text
    chat = any(("messages" in o or "conversations" in o) for _, o in items[:_SNIFF_ROWS])
    out: list[_Row] = []
    index: dict[str, int] = {}
    fixed: dict[str, int] = {}
    if chat:
        roles = ("image", "question", "answer") if category == "vqa" else ("image", "caption")
        index = {r: i for i, r in enumerate(roles)}
        fixed = dict(index)
        width = len(roles)
    for line, obj in items:
        if "__bad__" in obj:
            out.append((line, [], "an item that is not an object"))
            continue
        if chat:
            if "messages" not in obj and "conversations" not in obj:
                out.append((line, [], "an item without messages in a chat-layout file"))
                continue
            rows, extras, problem = _chat_rows(obj, category)
            if problem:
                out.append((line, [], problem))
                continue
            for r in rows:
                vals = list(r)
                for k, v in extras.items():
                    i = index.setdefault(k, len(index))
                    if i >= len(vals):
                        vals.extend([""] * (i + 1 - len(vals)))
                    vals[i] = v
                out.append((line, vals, None))
        else:
            vals = []
            problem = None
            for k, v in obj.items():
                sv, p = _text_of(v)
                if p and problem is None:
                    problem = f"field {k!r}: {p}"
                i = index.setdefault(k, len(index))
                if i >= len(vals):
                    vals.extend([""] * (i + 1 - len(vals)))
                vals[i] = sv
            out.append((line, vals, problem))
    del items
    names = list(index)
    n = len(names)

    def rows_iter() -> Iterator[_Row]:
        for line, vals, problem in out:
            if problem is None and len(vals) < n:
                vals.extend([""] * (n - len(vals)))
            yield line, vals, problem

    if chat and n == width:
        return names, iter(out), fixed
    return names, rows_iter(), fixed


# --------------------------------------------------------------------------- columns

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "image": ("image", "img", "imagename", "imagepath", "filename", "file", "path", "images",
              "imageid", "imgid", "imgname", "imgpath", "imagefile", "imgfile", "imagefilename",
              "sarimage", "sarimagename", "picture", "pic"),
    "question": ("question", "q", "query", "prompt", "instruction", "ques", "questions",
                 "questiontext", "input"),
    "answer": ("answer", "a", "gt", "groundtruth", "label", "answers", "ans", "output",
               "response", "target", "reply", "gtanswer", "answertext"),
    "caption": ("caption", "text", "description", "sentence", "captions", "desc", "captiontext",
                "sentences", "output", "response", "target", "label"),
    "task": ("task", "type", "questiontype", "category", "application", "qtype", "tasktype",
             "tasklabel", "applicationtype", "subtype", "questioncategory", "tasks", "tasktag",
             "label", "othertype", "taskname", "app"),
    "kind": ("kind", "captiontype", "type", "style", "length", "captionkind", "captionstyle",
             "captionlength", "label", "category"),
}
_ROLES_FOR = {"vqa": ("image", "question", "answer", "task"), "caption": ("image", "caption",
                                                                         "kind")}
_REQUIRED_FOR = {"vqa": ("image", "question", "answer"), "caption": ("image", "caption")}
_NONE_VALUES = ("", "none", "-", "null")


def _columns_hint(category: str) -> str:
    if category == "vqa":
        return "--columns image=HEADER,question=HEADER,answer=HEADER (columns={...} in Python)"
    return "--columns image=HEADER,caption=HEADER (columns={...} in Python)"


def _detect_columns(
    headers: list[str],
    sample: list[list[str]],
    category: str,
    rel: str,
    mapping: Mapping[str, str],
    fixed: Mapping[str, int],
    resolvable,
    used_mapping: set[str],
) -> tuple[dict[str, int], list[int], list[str]]:
    """Decide which column plays which role.

    Returns:
        role -> column index, the extra task-label columns (used for others types), notes.

    """
    norms = [_norm(h) for h in headers]
    roles = _ROLES_FOR[category]
    chosen: dict[str, int] = dict(fixed)
    disabled: set[str] = set()
    notes: list[str] = []
    for role, header in mapping.items():
        if role not in roles:
            continue
        if _norm(header) in ("none", "null") or header.strip() in _NONE_VALUES:
            disabled.add(role)
            used_mapping.add(role)
            chosen.pop(role, None)
            continue
        idx = [i for i, h in enumerate(headers) if h == header]
        if not idx:
            idx = [i for i, n in enumerate(norms) if n == _norm(header)]
        if len(idx) == 1:
            chosen[role] = idx[0]
            used_mapping.add(role)
        elif len(idx) > 1:
            raise ColumnError(
                f"text file {rel!r}: columns={{{role!r}: {header!r}}} matches {len(idx)} headers "
                f"of {headers}; rename the duplicate headers"
            )
    taken = set(chosen.values())

    def column(i: int) -> list[str]:
        return [r[i] for r in sample if i < len(r) and r[i].strip()]

    def share(i: int, test) -> float:
        vals = column(i)
        return sum(1 for v in vals if test(v)) / len(vals) if vals else 0.0

    def candidates(role: str) -> list[int]:
        syn = _SYNONYMS[role]
        found = [i for i, n in enumerate(norms) if n in syn and i not in taken]
        return sorted(found, key=lambda i: syn.index(norms[i]))

    extra_task: list[int] = []
    # Label roles first: they are decided by content, and what they take is no answer/caption.
    if category == "vqa" and "task" not in chosen and "task" not in disabled:
        tl = [i for i in candidates("task") if share(i, lambda v: _task_label(v) is not None)
              >= 0.5]
        if tl:
            chosen["task"] = tl[0]
            extra_task = tl[1:]
            taken.update(tl)
        for i in candidates("task"):
            if norms[i] not in _SYNONYMS["answer"] and norms[i] not in _SYNONYMS["question"] \
                    and i not in tl and norms[i] not in _SYNONYMS["image"]:
                notes.append(f"{rel}: column {headers[i]!r} does not hold task names; tasks are "
                             "inferred from the questions")
    if category == "caption" and "kind" not in chosen and "kind" not in disabled:
        kl = [i for i in candidates("kind") if share(i, lambda v: _kind_label(v) is not None)
              >= 0.5]
        if kl:
            chosen["kind"] = kl[0]
            taken.add(kl[0])
    for role in ("image", "question", "answer", "caption"):
        if role not in roles or role in chosen or role in disabled:
            continue
        cands = candidates(role)
        if role == "caption" and not cands:
            cands = [i for i in candidates("answer")]
        if len(cands) > 1 and role == "image":
            scores = [share(i, resolvable) for i in cands]
            best = max(scores)
            if best > 0 and scores.count(best) == 1:
                cands = [cands[scores.index(best)]]
        if len(cands) == 1:
            chosen[role] = cands[0]
            taken.add(cands[0])
        elif len(cands) > 1:
            raise ColumnError(
                f"text file {rel!r}: cannot decide the {role} column: "
                f"{[headers[i] for i in cands]} all look like one; headers found: {headers}; "
                f"pass an explicit mapping, e.g. {_columns_hint(category)}"
            )
    missing = [r for r in _REQUIRED_FOR[category] if r not in chosen]
    if missing:
        first = sample[0] if sample else []
        looks_like_data = any(resolvable(h) for h in headers) or (
            headers and any(h.lower().endswith(_IMAGE_EXTS) for h in headers))
        extra = (" The first line looks like data, not a header: add a header line."
                 if looks_like_data else "")
        for r in missing:
            if r in mapping:
                extra += (f" The columns mapping {r}={mapping[r]!r} matches no header of this "
                          "file.")
        raise ColumnError(
            f"text file {rel!r}: cannot identify the {', '.join(missing)} column(s); headers "
            f"found: {headers}{'; first row: ' + str(first[:6]) if first else ''}.{extra} "
            f"Pass an explicit mapping, e.g. {_columns_hint(category)}"
        )
    return chosen, extra_task, notes


# --------------------------------------------------------------------------- parse


@dataclass
class _Item:
    """A usable text row waiting for its image's other rows (dedup, split check)."""

    split: str
    file: str
    line: int
    text: schema.Caption | schema.QA


def _check_layout(release: Path) -> None:
    missing = [d for d in ("SARimages", "Text") if not (release / d).is_dir()]
    if not missing:
        return
    hint = ""
    for child in ("SARLANG_1M", "SARLANG-1M"):
        if (release / child / "Text").is_dir():
            hint = f" ({str(release / child)!r} looks like the release: pass that)"
    raise ReleaseError(
        f"release {str(release)!r}: no {' and no '.join(d + '/' for d in missing)} folder"
        f"{hint}; expected the authors' layout RELEASE/SARimages/*.png|jpg and "
        "RELEASE/Text/caption/*.csv|json, RELEASE/Text/VQA/*.csv|json (unzip the release's "
        "archives into one folder)"
    )


def parse_release(
    release: str | Path,
    *,
    columns: dict[str, str] | None = None,
    gsd_table: str | Path | None = None,
    originals: bool = False,
) -> ParsedRelease:
    """Parse the authors' release folder into sample records and a rejects report.

    Args:
        release: folder holding ``SARimages/`` and ``Text/`` (``caption/`` and ``VQA/``).
        columns: explicit role -> header mapping for the text files, e.g.
            ``{"image": "img_path", "question": "q"}``; roles are ``image``, ``question``,
            ``answer``, ``caption``, ``task`` and ``kind``; a value ``none`` means the role has
            no column. Applies to every file that has the header; unmapped roles are detected.
        gsd_table: optional CSV of per-image GSD (see :func:`read_gsd_table`).
        originals: also match original ``.tif`` files to samples (``original_paths``).

    Returns:
        The :class:`ParsedRelease`.

    Raises:
        ReleaseError: the layout is wrong, a text file cannot be read (encoding, broken
            quoting, bad JSON), its name tells no split, or two images map to one key.
        ColumnError: the columns of a text file cannot be identified, or the ``columns``
            mapping names an unknown role or a header no file has.

    """
    # The parse allocates millions of small objects that all live until it returns; the
    # cyclic collector would re-scan them again and again for nothing (it doubled the run
    # time on the full release). Garbage made here is freed by reference counting.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_release(Path(release), columns, gsd_table, originals)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse_release(release: Path, columns: dict[str, str] | None,
                   gsd_table: str | Path | None, originals: bool) -> ParsedRelease:
    """Do the work of :func:`parse_release` (with the cyclic garbage collector paused)."""
    _check_layout(release)
    mapping = dict(columns or {})
    bad_roles = [r for r in mapping if r not in ROLES]
    if bad_roles:
        raise ColumnError(
            f"columns={mapping!r}: unknown role(s) {bad_roles}; valid roles are {list(ROLES)}, "
            "e.g. --columns image=img_path,question=q,answer=a"
        )
    notes: list[str] = []
    gsd_by_key: dict[str, float] = {}
    if gsd_table is not None:
        for name, gsd in read_gsd_table(gsd_table).items():
            k = _ref_key(name)
            if k is None:
                continue
            if k in gsd_by_key and gsd_by_key[k] != gsd:
                raise ReleaseError(
                    f"gsd table {str(gsd_table)!r}: {name!r} and another entry name the same "
                    f"image with GSDs {gsd} and {gsd_by_key[k]}; keep one line per image"
                )
            gsd_by_key[k] = gsd

    images, bad_files, tifs, img_notes = _scan_images(release, originals)
    notes += img_notes
    text_files, text_notes = _find_text_files(release)
    notes += text_notes
    if not text_files:
        raise ReleaseError(
            f"release {str(release)!r}: Text/ holds no .csv or .json text files; expected "
            "Text/caption/Caption-training.csv ... and Text/VQA/SARVQA1_train.csv ..."
        )

    rejects: list[Reject] = []
    groups: dict[str, list[_Item]] = defaultdict(list)
    files_read: dict[str, int] = {}
    used_mapping: set[str] = set()
    ref_cache: dict[str, str | None] = {}
    known_exts = _REF_EXTS

    def resolve(ref: str) -> str | None:
        k = ref_cache.get(ref)
        if k is None and ref not in ref_cache:
            k = _ref_key(ref) if ref.strip() else None
            ref_cache[ref] = k
        return k

    def resolvable(ref: str) -> bool:
        k = resolve(ref)
        return (k is not None and k in images) or ref.lower().endswith(known_exts)

    for tf in text_files:
        data = tf.path.read_bytes()
        text = _decode(data, f"text file {tf.rel!r}")
        del data
        fixed: dict[str, int] = {}
        if tf.rel.lower().endswith(".csv"):
            headers, rows = _read_csv(text, tf.rel)
        else:
            headers, rows, fixed = _read_json(text, tf.rel, tf.category, resolvable)
        # Decide columns on the first rows, then stream the rest.
        head: list[_Row] = []
        for r in rows:
            head.append(r)
            if len(head) >= _SNIFF_ROWS:
                break
        if not head and not headers:
            files_read[tf.rel] = 0
            notes.append(f"{tf.rel}: empty file")
            continue
        sample = [v for _, v, p in head if p is None]
        cols, extra_task, col_notes = _detect_columns(
            headers, sample, tf.category, tf.rel, mapping, fixed, resolvable, used_mapping)
        notes += col_notes
        n_rows = _parse_rows(
            tf, _chain(head, rows), cols, extra_task, images, resolve, groups, rejects, notes)
        files_read[tf.rel] = n_rows
        del text

    unused_roles = [r for r in mapping if r not in used_mapping]
    if unused_roles:
        raise ColumnError(
            "columns mapping " + ", ".join(f"{r}={mapping[r]!r}" for r in unused_roles)
            + " matches no header of any text file; check the spelling (headers are listed by "
            "the error you get without the mapping, or open the CSVs)"
        )

    samples, image_paths = _assemble(images, groups, gsd_by_key, rejects)
    for img in bad_files + [i for i in images.values() if i.problem is not None]:
        rejects.append(Reject(img.rel, 0, img.problem or "not_an_image", img.detail))
    original_paths: dict[str, Path] = {}
    if originals:
        original_paths, onotes = _find_originals(release, tifs, image_paths)
        notes += onotes
    rejects.sort(key=lambda r: (r.file, r.line, r.reason, r.detail))
    text_rows = sum(files_read.values())
    for n in notes:
        log.info("%s", n)
    return ParsedRelease(samples, image_paths, original_paths, rejects, text_rows, files_read,
                         notes)


def _chain(head: list[_Row], rest: Iterator[_Row]) -> Iterator[_Row]:
    yield from head
    yield from rest


def _parse_rows(
    tf: _TextFile,
    rows: Iterator[_Row],
    cols: dict[str, int],
    extra_task: list[int],
    images: dict[str, _Image],
    resolve,
    groups: dict[str, list[_Item]],
    rejects: list[Reject],
    notes: list[str],
) -> int:
    """Turn the rows of one text file into items (grouped by key) and rejects; return rows."""
    rel, split = tf.rel, tf.split
    ii = cols["image"]
    unknown_labels: Counter[str] = Counter()
    n = 0
    add_reject = rejects.append
    caption = tf.category == "caption"
    if caption:
        ci = cols["caption"]
        ki = cols.get("kind")
        need = max(ii, ci, -1 if ki is None else ki)
    else:
        qi, ai = cols["question"], cols["answer"]
        ti = cols.get("task")
        need = max(ii, qi, ai, -1 if ti is None else ti, *extra_task)
    label_cache: dict[str, str | tuple[str, str | None] | None] = {}
    intern: dict[str, str] = {}
    for line, vals, problem in rows:
        n += 1
        if problem is None and len(vals) <= need:
            problem = f"{len(vals)} fields, too few for the columns in use"
        if problem is not None:
            add_reject(Reject(rel, line, "unparseable_row", problem))
            continue
        ref = vals[ii].strip()
        key = resolve(ref)
        img = images.get(key) if key is not None else None
        if img is not None:
            img.referenced += 1
        if caption:
            text = _clean_text(vals[ci])
            if not text:
                add_reject(Reject(rel, line, "empty_text", "empty caption"))
                continue
        else:
            q = _clean_question(vals[qi])
            a = _clean_text(vals[ai])
            if not q or not a:
                what = "question and answer" if not q and not a else (
                    "question" if not q else "answer")
                add_reject(Reject(rel, line, "empty_text", f"empty {what}"))
                continue
        if img is None:
            add_reject(Reject(rel, line, "missing_image", (
                f"image {ref!r} is not in SARimages/" if ref else "empty image reference")))
            continue
        if img.problem is not None:
            add_reject(Reject(rel, line, img.problem, f"image {ref!r}: {img.detail}"))
            continue
        if caption:
            kind = kind_from = None
            if ki is not None:
                raw = vals[ki]
                kind = _kind_label(raw)
                if kind is not None:
                    kind_from = "label"
                elif raw.strip():
                    unknown_labels[raw.strip()] += 1
            if kind is None and tf.kind is not None:
                kind, kind_from = tf.kind, "label"
            if kind is None:
                kind, kind_from = infer_caption_kind(text), "inferred"
            item: schema.Caption | schema.QA = schema.Caption(kind, text, kind_from)
        else:
            task = qtype = None
            task_from = "label"
            if ti is not None:
                labels = [vals[ti]] + [vals[i] for i in extra_task]
                for raw in labels:
                    hit = label_cache.get(raw, False)
                    if hit is False:
                        hit = _task_label(raw)
                        label_cache[raw] = hit
                    if hit is None:
                        continue
                    if task is None or (hit[0] == task and hit[1] and not qtype):
                        task, qtype = hit
                    elif task == "others" and hit[0] == "others" and hit[1]:
                        qtype = hit[1]
                if task is None and vals[ti].strip():
                    unknown_labels[vals[ti].strip()] += 1
            if task is None:
                task, qtype = _infer(_core_question(q), _answer_class(a))
                task_from = "inferred"
            elif task == "others" and qtype is None:
                t2, q2 = _infer(_core_question(q), _answer_class(a))
                qtype = q2 if t2 == "others" else "reasoning"
            elif task != "others":
                qtype = task
            bbox = parse_bbox(q) if task == "region_referring" else None
            subset = tf.subset or ("SARVQA1" if img.place.source == "sardet100k" else "SARVQA2")
            a = intern.setdefault(a, a) if len(a) < 24 else a
            item = schema.QA(task, qtype, q, a, bbox, task_from, subset)
        groups[key].append(_Item(split, rel, line, item))
    if unknown_labels:
        shown = ", ".join(f"{k!r} x{v}" for k, v in unknown_labels.most_common(8))
        what = "caption kind" if caption else "task"
        notes.append(f"{rel}: {sum(unknown_labels.values())} row(s) with an unknown {what} "
                     f"label ({shown}); their {what} was inferred from the text")
    return n


def _assemble(
    images: dict[str, _Image],
    groups: dict[str, list[_Item]],
    gsd_by_key: dict[str, float],
    rejects: list[Reject],
) -> tuple[list[schema.Sample], dict[str, Path]]:
    """Deduplicate rows, settle split conflicts and build one Sample per image."""
    samples: list[schema.Sample] = []
    paths: dict[str, Path] = {}
    for key, img in images.items():
        if img.problem is not None:
            continue
        items = groups.get(key, [])
        kept: list[_Item] = []
        seen: set[tuple] = set()
        for it in items:
            t = it.text
            ident = (("c", t.kind, t.text) if isinstance(t, schema.Caption)
                     else ("q", t.subset, t.question, t.answer))
            if ident in seen:
                rejects.append(Reject(it.file, it.line, "duplicate_row",
                                      f"same text as an earlier row for image {img.rel!r}"))
                continue
            seen.add(ident)
            kept.append(it)
        splits = Counter(it.split for it in kept)
        if len(splits) > 1:
            # Keep the split most rows agree on; on a tie keep test, so no test image leaks
            # into training.
            split = max(splits, key=lambda s: (splits[s], s == "test"))
            other = [it for it in kept if it.split != split]
            for it in other:
                rejects.append(Reject(
                    it.file, it.line, "split_conflict",
                    f"image {img.rel!r} has {splits[split]} row(s) in {split} and "
                    f"{len(other)} in the other split; kept {split}"))
            kept = [it for it in kept if it.split == split]
        if not kept:
            why = ("no text names it" if not img.referenced else
                   f"all {img.referenced} text row(s) naming it were rejected")
            rejects.append(Reject(img.rel, 0, "unused_image", f"{why}; it is in no shard"))
            continue
        place = img.place
        if key in gsd_by_key:
            gsd, gsd_from = gsd_by_key[key], "table"
        else:
            gsd, gsd_from = schema.SOURCE_DEFAULT_GSD_M[place.source], "source-default"
        samples.append(schema.Sample(
            key=key, file_name=img.path.name, source=place.source, split=kept[0].split,
            city=place.city, country=place.country, region=place.region or None, lat=place.lat,
            lon=place.lon, gsd_m=gsd, gsd_from=gsd_from, tier=schema.tier_for_gsd(gsd),
            width=0, height=0, image_sha256="",
            captions=tuple(it.text for it in kept if isinstance(it.text, schema.Caption)),
            qa=tuple(it.text for it in kept if isinstance(it.text, schema.QA)),
        ))
        paths[key] = img.path
    samples.sort(key=lambda s: (s.split, s.tier, s.city, s.key))
    return samples, paths
