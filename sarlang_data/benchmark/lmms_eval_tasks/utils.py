"""The functions lmms-eval's task YAMLs name (``!function utils.NAME``).

Prompts are the paper's (:mod:`sarlang_data.stream.views`); every score comes
from :mod:`sarlang_data.benchmark.metrics`: ``vqa_rule`` for VQA (undecided pairs count as
wrong in ``sarlang_vqa_accuracy``, as right in ``sarlang_vqa_upper``; lmms-eval has no judge
step), pycocoevalcap for captions, concise and detailed apart.
"""

from __future__ import annotations

from typing import Any

from ...stream.views import CAPTION_PROMPT, VQA_PROMPT
from ..metrics import CAPTION_METRICS, CORRECT, UNDECIDED, caption_scores_by_group, vqa_rule

KINDS = ("concise", "detailed")


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    """Return the row's image as the one visual, RGB."""
    return [doc["image"].convert("RGB")]


def vqa_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: Any = None) -> str:
    """Return the paper's VQA prompt for the row."""
    return VQA_PROMPT.format(question=doc["question"])


def caption_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: Any = None) -> str:
    """Return the paper's caption prompt."""
    return CAPTION_PROMPT


def vqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Score one answer by the VQA rule; both metrics get the verdict."""
    pred = results[0] if results else ""
    item = {"id": doc["id"], "task": doc["task"], "verdict": vqa_rule(pred, doc["answer"]),
            "prediction": pred}
    return {"sarlang_vqa_accuracy": item, "sarlang_vqa_upper": item}


def vqa_accuracy(items: list[dict[str, Any]]) -> float:
    """Correct / rows, undecided pairs counted wrong (the no-judge lower bound)."""
    return sum(i["verdict"] == CORRECT for i in items) / len(items) if items else 0.0


def vqa_upper(items: list[dict[str, Any]]) -> float:
    """(Correct + undecided) / rows: the accuracy if a judge accepted every undecided pair."""
    return (sum(i["verdict"] in (CORRECT, UNDECIDED) for i in items) / len(items)
            if items else 0.0)


def _metric_name(kind: str, metric: str) -> str:
    return f"{kind}_{metric}".replace("-", "_")


def caption_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Hand the prediction and its single reference to every caption metric."""
    item = {"id": doc["id"], "kind": doc["kind"], "prediction": results[0] if results else "",
            "reference": doc["caption"]}
    return {_metric_name(k, m): item for k in KINDS for m in CAPTION_METRICS}


_LAST: dict[str, Any] = {"ids": None, "scores": None}


def _caption_scores(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = tuple(i["id"] for i in items)
    if _LAST["ids"] != ids:  # every metric aggregates the same items: score them once
        groups = {k: ({i["id"]: i["prediction"] for i in items if i["kind"] == k},
                      {i["id"]: i["reference"] for i in items if i["kind"] == k}) for k in KINDS}
        _LAST["scores"] = caption_scores_by_group(groups, meteor=False)
        _LAST["ids"] = ids
    return _LAST["scores"]


def _aggregation(kind: str, metric: str):
    def aggregate(items: list[dict[str, Any]]) -> float:
        value = _caption_scores(items)[kind][metric]
        return 0.0 if value is None else value  # no caption of that kind among the rows

    aggregate.__name__ = f"aggregate_{_metric_name(kind, metric)}"
    aggregate.__doc__ = f"pycocoevalcap {metric} of the {kind} captions (one reference each)."
    return aggregate


for _kind in KINDS:
    for _metric in CAPTION_METRICS:
        globals()[f"aggregate_{_metric_name(_kind, _metric)}"] = _aggregation(_kind, _metric)
