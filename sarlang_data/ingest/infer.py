"""Inference rules: the task and question type of a question, the kind of a caption, labels."""

from __future__ import annotations

import re
from functools import lru_cache

from .names import _norm

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
