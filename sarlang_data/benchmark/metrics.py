"""The one metrics module: the paper's VQA rule and caption scores, nothing else decides a score.

VQA follows the authors' ``Evaluate_VQA.py``: both strings are lower-cased and stripped of
surrounding whitespace and of one trailing period; a ground truth found inside the prediction
is correct; otherwise a yes/no or integer 0-99 ground truth is wrong; every other pair is
*undecided* and goes to a judge (the authors ask GPT-4o-mini, which accepts synonyms). The rule
is a substring test, as the authors wrote it, so ``"no"`` inside ``"not sure"`` and ``"2"``
inside ``"12"`` count as correct; :func:`vqa_rule` documents every branch.

Captions follow ``Evaluate_caption.py``: pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr (and
METEOR when ``java`` is on PATH), each caption scored against its own single reference, every
value as pycocoevalcap returns it (CIDEr unscaled). Text goes through pycocoevalcap's PTB
tokenizer when Java is there, else through :func:`simple_tokenize` (said in the result).
SPICE needs Stanford CoreNLP models downloaded at run time, so it is never computed here.

This module imports only the standard library at import time (pycocoevalcap lazily), so the
lmms-eval task and any side environment can use it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

#: version of the VQA rule below; reports carry it
VQA_RULE_VERSION = "sarlang-vqa-rule-1"
#: verdicts of :func:`vqa_rule`
CORRECT, WRONG, UNDECIDED = "correct", "wrong", "undecided"
#: the caption metrics of the paper's table, in its column order (names as in the report)
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")
#: METEOR joins them when Java runs; SPICE never does (see :data:`UNAVAILABLE`)
METEOR = "METEOR"
SPICE_UNAVAILABLE = ("SPICE needs Stanford CoreNLP 3.6 models that pycocoevalcap downloads at run "
                     "time; this evaluation runs offline, so SPICE is not computed")
#: punctuation tokens pycocoevalcap's PTB tokenizer drops (its own list)
PUNCTUATION_TOKENS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?",
                                "!", ",", ":", "-", "--", "...", ";"])
_INTEGER_0_99 = re.compile(r"[0-9]{1,2}")
_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|\.\.\.|--|``|''|[^\w\s]")
_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
#: what the PTB tokenizer writes for brackets (lower-cased, as pycocoevalcap asks it to)
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}


def normalize_answer(text: str) -> str:
    """Return ``text`` as the VQA rule compares it.

    Lower-cased, surrounding whitespace stripped, then one trailing period removed (and the
    whitespace before it): ``" Yes. "`` -> ``"yes"``, ``"2.."`` -> ``"2."``.

    Args:
        text: a prediction or a ground truth.

    Returns:
        The normalised string.
    """
    s = str(text).lower().strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s


def is_closed_answer(ground_truth: str) -> bool:
    """Whether a (normalised) ground truth needs an exact match: yes/no or an integer 0-99.

    Args:
        ground_truth: the ground truth after :func:`normalize_answer`.

    Returns:
        True for ``yes``, ``no`` and one or two ASCII digits (``0`` .. ``99``, ``07`` too).
    """
    return ground_truth in ("yes", "no") or _INTEGER_0_99.fullmatch(ground_truth) is not None


def vqa_rule(prediction: str, ground_truth: str) -> str:
    """Score one VQA answer by the authors' rule, without a judge.

    The branches, in order, on the strings after :func:`normalize_answer`:

    1. the ground truth is a substring of the prediction -> ``correct`` (a substring, not a
       word: ``"no"`` in ``"not"`` and ``"2"`` in ``"12"`` are correct, as in the authors'
       script; an exact match is the case where both are equal);
    2. else, the ground truth is ``yes``/``no`` or an integer 0-99 -> ``wrong`` (these need
       an exact match, which 1 would have found);
    3. else -> ``undecided``: a judge decides whether the two mean the same.

    Args:
        prediction: the model's answer.
        ground_truth: the dataset's answer.

    Returns:
        :data:`CORRECT`, :data:`WRONG` or :data:`UNDECIDED`.
    """
    gt = normalize_answer(ground_truth)
    if gt in normalize_answer(prediction):
        return CORRECT
    if is_closed_answer(gt):
        return WRONG
    return UNDECIDED


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (pycocoevalcap's PTB tokenizer and METEOR)."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Tokenize like pycocoevalcap's PTB tokenizer, approximately, without Java.

    Lower-cases, splits words from punctuation (keeping ``-``, ``'`` and ``.`` inside a
    word), splits clitics as PTB does (``it's`` -> ``it 's``, ``don't`` -> ``do n't``),
    writes brackets as PTB's ``-lrb-`` ..., drops the PTB tokenizer's punctuation tokens and
    joins with single spaces. Abbreviations keep no final period (PTB keeps ``e.g.``).

    Args:
        text: a caption.

    Returns:
        The tokenized caption.
    """
    out = []
    for token in _TOKEN.findall(str(text).lower()):
        clitic = _CLITIC.match(token)
        parts = clitic.groups() if clitic else (token,)
        # PTB turns a double quote into `` or '', both dropped
        out += [_BRACKETS.get(p, p) for p in parts if p not in PUNCTUATION_TOKENS and p != '"']
    return " ".join(out)


def tokenize(captions: Mapping[Any, str], tokenizer: str = "auto") -> tuple[dict[Any, str], str]:
    """Tokenize captions for the scorers.

    Args:
        captions: id -> caption text.
        tokenizer: ``ptb`` (pycocoevalcap's PTBTokenizer, needs Java), ``simple``
            (:func:`simple_tokenize`) or ``auto`` (``ptb`` when Java is on PATH).

    Returns:
        ``(id -> tokenized caption, tokenizer used)``.

    Raises:
        ValueError: an unknown tokenizer, or ``ptb`` without Java, or a PTB run that lost lines.
    """
    if tokenizer not in ("auto", "ptb", "simple"):
        raise ValueError(f"tokenizer={tokenizer!r}: unknown; use auto, ptb or simple")
    if tokenizer == "auto":
        tokenizer = "ptb" if java_available() else "simple"
    # one line per caption: any line break inside one would shift every later caption
    flat = {k: _SPACE.sub(" ", str(v)).strip() for k, v in captions.items()}
    if tokenizer == "simple":
        return {k: simple_tokenize(v) for k, v in flat.items()}, "simple"
    if not java_available():
        raise ValueError("tokenizer='ptb' needs `java` on PATH (pycocoevalcap runs Stanford's "
                         "PTBTokenizer); install a JRE (apt-get install default-jre-headless) or "
                         "pass tokenizer='simple'")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # empty captions stay empty without a round trip (an empty last line can go missing)
    asked = {k: [{"caption": v}] for k, v in flat.items() if v}
    done = PTBTokenizer().tokenize(asked) if asked else {}
    if set(done) != set(asked):
        raise ValueError(f"PTB tokenizer returned {len(done)} of {len(asked)} captions; a caption "
                         "holds a character the tokenizer reads as a line break")
    return {k: done[k][0] if k in done else "" for k in flat}, "ptb"


def caption_scores(predictions: Mapping[Any, str], references: Mapping[Any, str], *,
                   tokenizer: str = "auto", meteor: bool | None = None) -> dict[str, Any]:
    """Score captions as ``Evaluate_caption.py`` does: one reference per prediction.

    Args:
        predictions: id -> predicted caption (use ``""`` for a missing one: it scores 0).
        references: id -> the reference caption; the same ids as ``predictions``.
        tokenizer: see :func:`tokenize`.
        meteor: compute METEOR (needs Java; about 20 s to start); None computes it when Java
            is on PATH.

    Returns:
        ``{"n", "BLEU-1" .. "BLEU-4", "ROUGE-L", "CIDEr"}`` (plus ``"METEOR"``), each the
        corpus value pycocoevalcap returns, and ``"tokenizer"``; metrics are None when n is 0.

    Raises:
        ValueError: ids of predictions and references differ, or a bad tokenizer.
    """
    return caption_scores_by_group({None: (predictions, references)}, tokenizer=tokenizer,
                                   meteor=meteor)[None]


def caption_scores_by_group(groups: Mapping[Any, tuple[Mapping[Any, str], Mapping[Any, str]]],
                            *, tokenizer: str = "auto", meteor: bool | None = None
                            ) -> dict[Any, dict[str, Any]]:
    """Score several caption sets apart (concise and detailed), sharing one METEOR process.

    Each group is scored on its own, as :func:`caption_scores` does (CIDEr's document
    frequencies come from that group's references only).

    Args:
        groups: name -> ``(predictions, references)``.
        tokenizer: see :func:`tokenize`.
        meteor: see :func:`caption_scores`.

    Returns:
        name -> the scores of :func:`caption_scores`.

    Raises:
        ValueError: a group whose prediction and reference ids differ, or a bad tokenizer.
    """
    if meteor is None:
        meteor = java_available()
    if meteor and not java_available():
        raise ValueError("meteor=True needs `java` on PATH; install a JRE or pass meteor=False")
    scorer = None
    try:
        out = {}
        for name, (predictions, references) in groups.items():
            if meteor and scorer is None and references:
                from pycocoevalcap.meteor.meteor import Meteor

                scorer = Meteor()
            out[name] = _score_group(predictions, references, tokenizer, scorer if meteor
                                     else None, meteor)
        return out
    finally:
        if scorer is not None:
            scorer.__del__()  # ends the JVM now, not at garbage collection
            scorer.__del__ = lambda: None


def _score_group(predictions: Mapping[Any, str], references: Mapping[Any, str], tokenizer: str,
                 scorer: Any, meteor: bool) -> dict[str, Any]:
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise ValueError(f"caption ids differ: without prediction {missing}, without reference "
                         f"{extra}; pass both for the same ids")
    names = (*CAPTION_METRICS, METEOR) if meteor else CAPTION_METRICS
    ids = sorted(references, key=str)
    out: dict[str, Any] = {"n": len(ids)}
    if not ids:
        out.update(dict.fromkeys(names))
        out["tokenizer"] = None
        return out
    res, used = tokenize({i: predictions[i] for i in ids}, tokenizer)
    gts, _ = tokenize({i: references[i] for i in ids}, used)
    res_l = {i: [res[i]] for i in ids}
    gts_l = {i: [gts[i]] for i in ids}
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts_l, res_l, verbose=0)
    out.update({f"BLEU-{k + 1}": float(v) for k, v in enumerate(bleu)})
    out["ROUGE-L"] = float(Rouge().compute_score(gts_l, res_l)[0])
    out["CIDEr"] = float(Cider().compute_score(gts_l, res_l)[0])
    if scorer is not None:
        out[METEOR] = float(scorer.compute_score(gts_l, res_l)[0])
    out["tokenizer"] = used
    return out


def vqa_counts(verdicts: Iterable[str]) -> dict[str, int]:
    """Count :func:`vqa_rule` verdicts.

    Args:
        verdicts: verdict strings.

    Returns:
        ``{"correct", "wrong", "undecided"}`` counts.
    """
    out = {CORRECT: 0, WRONG: 0, UNDECIDED: 0}
    for v in verdicts:
        out[v] += 1
    return out
