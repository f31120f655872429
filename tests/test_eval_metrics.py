"""The metrics themselves on known inputs: every branch of the VQA rule, hand-worked caption scores.

Hand-worked caption corpus (two captions, single references):

    A: reference "a b c d", prediction "a b x d"     B: reference "e f g h", prediction "e f g h"

BLEU (corpus, "closest" reference length; prediction and reference lengths 8 = 8, no brevity
penalty): matched n-grams 7/8, 4/6, 2/4, 1/2, so BLEU-1 = 7/8, BLEU-2 = (7/8 * 4/6)^(1/2),
BLEU-3 = (7/8 * 4/6 * 2/4)^(1/3), BLEU-4 = (7/8 * 4/6 * 2/4 * 1/2)^(1/4).
ROUGE-L (beta 1.2): A has LCS 3 of 4 words each way -> 0.75; B -> 1; mean 0.875.
CIDEr-D: 2 documents, every reference n-gram in one of them, so every idf is log 2 (an n-gram
no reference has gets df = max(1, 0) = 1 too); A: n=1 cosine 3/4, n=2 1/3, n=3 and 4 share no
n-gram -> 0; equal lengths -> no penalty; 10 * mean(3/4, 1/3, 0, 0) = 2.708333; B: 10;
corpus mean 6.354167.
"""

from __future__ import annotations

import math

import pytest

from sarlang_data.benchmark import metrics as m

JAVA = m.java_available()


# --------------------------------------------------------------------------- VQA rule


@pytest.mark.parametrize(("prediction", "truth", "verdict"), [
    # branch 1: ground truth inside the prediction (after lower-case, strip, one period)
    ("Yes.", "yes", m.CORRECT),
    ("  CENTER ", "Center.", m.CORRECT),
    ("The object is a harbor", "harbor", m.CORRECT),
    ("rectangular", "Rectangular.", m.CORRECT),
    ("top left", "top", m.CORRECT),
    # a substring, not a word: "no" inside "not" and "2" inside "12" are correct
    ("not sure", "no", m.CORRECT),
    ("there are 12 ships", "2", m.CORRECT),
    ("102", "10", m.CORRECT),
    ("nothing", "no", m.CORRECT),
    # branch 2: yes/no and integers 0-99 need the exact answer
    ("no", "yes", m.WRONG),
    ("yes", "No.", m.WRONG),
    ("", "yes", m.WRONG),
    ("3", "2", m.WRONG),
    ("two", "2", m.WRONG),       # a number word is not the digit
    ("1", "13", m.WRONG),        # the prediction inside the truth does not count
    ("7", "07", m.WRONG),        # "07" is a two-digit integer ground truth
    ("99 ships", "99", m.CORRECT),
    # branch 3: open answers the rule cannot decide go to a judge
    ("playground", "ground track field", m.UNDECIDED),
    ("rooftop", "building", m.UNDECIDED),
    ("99", "100", m.UNDECIDED),  # 100 is beyond 0-99: an open answer
    ("", "harbor", m.UNDECIDED),
    ("yes", "yes, two", m.UNDECIDED),
])
def test_vqa_rule_branches(prediction, truth, verdict):
    assert m.vqa_rule(prediction, truth) == verdict


def test_normalize_strips_one_trailing_period_only():
    assert m.normalize_answer(" Yes. ") == "yes"
    assert m.normalize_answer("2..") == "2."
    assert m.normalize_answer("e.g. .") == "e.g."
    assert m.is_closed_answer("0") and m.is_closed_answer("99") and m.is_closed_answer("no")
    assert not m.is_closed_answer("100") and not m.is_closed_answer("-1")
    assert not m.is_closed_answer("²")  # only ASCII digits
    assert m.vqa_counts(["correct", "wrong", "undecided", "correct"]) == {
        "correct": 2, "wrong": 1, "undecided": 1}


# --------------------------------------------------------------------------- captions

PRED = {"A": "a b x d", "B": "e f g h"}
REF = {"A": "a b c d", "B": "e f g h"}
HAND = {
    "BLEU-1": 7 / 8,
    "BLEU-2": (7 / 8 * 4 / 6) ** (1 / 2),
    "BLEU-3": (7 / 8 * 4 / 6 * 2 / 4) ** (1 / 3),
    "BLEU-4": (7 / 8 * 4 / 6 * 2 / 4 * 1 / 2) ** (1 / 4),
    "ROUGE-L": (0.75 + 1.0) / 2,
    "CIDEr": (10 * (3 / 4 + 1 / 3) / 4 + 10.0) / 2,
}


@pytest.mark.parametrize("tokenizer", ["simple", pytest.param("ptb", marks=pytest.mark.skipif(
    not JAVA, reason="the PTB tokenizer runs on Java"))])
def test_caption_scores_hand_worked(tokenizer):
    s = m.caption_scores(PRED, REF, tokenizer=tokenizer, meteor=False)
    assert s["n"] == 2 and s["tokenizer"] == tokenizer
    for name, value in HAND.items():
        # pycocoevalcap adds 1e-15 / 1e-9 to BLEU's counts to avoid zero divisions
        assert s[name] == pytest.approx(value, rel=1e-8), name
    assert HAND["CIDEr"] == pytest.approx(6.3541667, abs=1e-7)
    assert "METEOR" not in s


def test_caption_scores_more_hand_worked_cases():
    # brevity penalty: 2 of 4 words, all matching: BP = exp(1 - 4/2)
    s = m.caption_scores({"x": "a b"}, {"x": "a b c d"}, tokenizer="simple", meteor=False)
    assert s["BLEU-1"] == pytest.approx(math.exp(-1), rel=1e-8)
    assert s["BLEU-2"] == pytest.approx(math.exp(-1), rel=1e-8)
    assert s["ROUGE-L"] == pytest.approx((1 + 1.2 ** 2) * 1 * 0.5 / (0.5 + 1.2 ** 2 * 1))
    # CIDEr of one document is 0: every idf is log(1/1)
    assert s["CIDEr"] == 0.0
    # two identical 2-word captions on disjoint words: n = 1, 2 give cosine 1, n = 3, 4 have no
    # n-gram, so 10 * mean(1, 1, 0, 0) = 5
    s = m.caption_scores({"x": "a b", "y": "c d"}, {"x": "a b", "y": "c d"},
                         tokenizer="simple", meteor=False)
    assert s["CIDEr"] == pytest.approx(5.0)
    # a missing prediction scores as empty: 0 on every metric for that caption
    s = m.caption_scores({"A": "", "B": "e f g h"}, REF, tokenizer="simple", meteor=False)
    assert s["ROUGE-L"] == pytest.approx(0.5)
    assert s["CIDEr"] == pytest.approx(5.0)
    assert s["BLEU-1"] == pytest.approx(1.0 * math.exp(1 - 8 / 4), rel=1e-8)
    # nothing to score
    s = m.caption_scores({}, {}, meteor=False)
    assert s["n"] == 0 and s["CIDEr"] is None and s["BLEU-4"] is None


def test_caption_groups_are_scored_apart():
    # CIDEr's idf comes from each group's own references: B alone is one document -> 0
    both = m.caption_scores_by_group({"ab": (PRED, REF), "b": ({"B": "e f g h"},
                                                                {"B": "e f g h"})},
                                     tokenizer="simple", meteor=False)
    assert both["ab"]["CIDEr"] == pytest.approx(HAND["CIDEr"])
    assert both["b"]["CIDEr"] == 0.0 and both["b"]["BLEU-1"] == pytest.approx(1.0)


def test_caption_errors():
    with pytest.raises(ValueError, match="caption ids differ.*without prediction \\['B'\\]"):
        m.caption_scores({"A": "x"}, REF, meteor=False)
    with pytest.raises(ValueError, match="tokenizer='bogus': unknown"):
        m.caption_scores(PRED, REF, tokenizer="bogus", meteor=False)


def test_simple_tokenizer_follows_ptb_rules():
    cases = {
        "Aerial view of a Large industrial-area, with tanks.": "aerial view of a large "
                                                               "industrial-area with tanks",
        "It's a harbor (with ships); don't miss it!": "it 's a harbor -lrb- with ships -rrb- "
                                                      "do n't miss it",
        'Two "storage" tanks: top-left...': "two storage tanks top-left",
    }
    for text, want in cases.items():
        assert m.simple_tokenize(text) == want


@pytest.mark.skipif(not JAVA, reason="the PTB tokenizer and METEOR run on Java")
def test_ptb_tokenizer_and_meteor_with_java():
    texts = {1: "Aerial view of a Large industrial-area, with tanks.",
             2: "It's a harbor (with ships); don't miss it!",
             3: "",
             4: "A line\nbreak inside"}
    done, used = m.tokenize(texts, "ptb")
    assert used == "ptb"
    assert done[1] == m.simple_tokenize(texts[1]) == "aerial view of a large industrial-area " \
                                                     "with tanks"
    assert done[2] == m.simple_tokenize(texts[2])
    assert done[3] == "" and done[4] == "a line break inside"
    # METEOR 1.5 (pycocoevalcap's jar): identical -> 1, disjoint -> 0, the hand corpus as the
    # jar computes it (its corpus value comes from pooled statistics, not a mean of segments)
    s = m.caption_scores_by_group({
        "same": ({"x": "the cat sat on the mat"}, {"x": "the cat sat on the mat"}),
        "none": ({"x": "blue sky"}, {"x": "the cat sat on the mat"}),
        "hand": (PRED, REF)}, tokenizer="ptb", meteor=True)
    assert s["same"]["METEOR"] == pytest.approx(1.0)
    assert s["none"]["METEOR"] == 0.0
    assert s["hand"]["METEOR"] == pytest.approx(0.4602989, abs=1e-6)
