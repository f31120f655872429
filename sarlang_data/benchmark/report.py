"""``evaluate``: predictions + a dataset root -> the paper's table, as a dict and as text.

The report (also written as JSON by ``sarlang-data evaluate --out``)::

    {"vqa": {"n", "answered", "missing", "correct", "wrong", "undecided", "accuracy",
             "bounds": {"lower", "upper"}, "correct_by_rule", "correct_by_judge",
             "per_task" | "per_source" | "per_tier" | "per_question_type":
                 {name: {"n", "correct", "accuracy", "undecided", "missing"}},
             "judge": {...}},
     "captions": {"concise": {"n", "missing", "BLEU-1" .. "BLEU-4", "ROUGE-L", "CIDEr",
                              ["METEOR"]}, "detailed": {...}},
     "missing": int, "unknown": int, "duplicates": int,
     "protocol": {...}, "data": {...}, "predictions": [...]}

``accuracy`` is correct / rows of the split; a row without a prediction counts as wrong and
is counted in ``missing``. ``undecided`` counts the pairs the rule left to a judge; without a
judge they count as wrong, and ``bounds`` gives the accuracy with all of them wrong (lower)
and all of them right (upper). ``unknown`` counts predictions whose id is no row of the split.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ConfigError
from ..schema import TASKS
from .judge import DEFAULT_KEY_ENV, VERDICTS, Pair, describe_prompt, make_judge
from .metrics import (
    CAPTION_METRICS,
    CORRECT,
    METEOR,
    SPICE_UNAVAILABLE,
    UNDECIDED,
    VQA_RULE_VERSION,
    caption_scores_by_group,
    java_available,
    vqa_rule,
)
from .predictions import CAPTION_CONFIG, VQA_CONFIG, Predictions, read_predictions, text_rows

log = logging.getLogger(__name__)

SECTIONS = ("vqa", "captions")
#: the grouping columns of the VQA breakdowns
VQA_GROUPS = {"per_task": "task", "per_source": "source", "per_tier": "tier",
              "per_question_type": "question_type"}
RULE_TEXT = (
    "lower-case, strip surrounding whitespace and one trailing period; ground truth inside the "
    "prediction (substring) -> correct; else yes/no or integer 0-99 ground truth -> wrong; "
    "else undecided (judge)")


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _vqa_section(rows: Sequence[Mapping[str, Any]], preds: Mapping[str, str | None],
                 judge: Any, progress: bool) -> dict[str, Any]:
    verdicts: dict[str, str] = {}
    missing: set[str] = set()
    undecided: dict[str, Pair] = {}
    for row in rows:
        pred = preds.get(row["id"])
        if pred is None:
            missing.add(row["id"])
            verdicts[row["id"]] = "wrong"
            continue
        v = vqa_rule(pred, row["answer"])
        verdicts[row["id"]] = v
        if v == UNDECIDED:
            undecided[row["id"]] = Pair(row["question"].strip(), row["answer"].strip(),
                                        pred.strip())
    judged: dict[str, str] = {}
    judge_info: dict[str, Any] = {"kind": "none"}
    if judge is not None and undecided:
        answers = judge.verdicts(undecided.values(), progress=progress)
        judged = {i: answers[p] for i, p in undecided.items()}
    if judge is not None:
        judge_info = judge.describe()
        judge_info["verdicts"] = {v: sum(1 for x in judged.values() if x == v) for v in VERDICTS}

    def correct(i: str) -> bool:
        return verdicts[i] == CORRECT or judged.get(i) == "yes"

    n = len(rows)
    by_rule = sum(1 for v in verdicts.values() if v == CORRECT)
    n_undecided = len(undecided)
    out: dict[str, Any] = {
        "n": n, "answered": n - len(missing), "missing": len(missing),
        "correct": sum(1 for r in rows if correct(r["id"])),
        "correct_by_rule": by_rule,
        "correct_by_judge": sum(1 for v in judged.values() if v == "yes"),
        "undecided": n_undecided,
    }
    out["wrong"] = n - out["correct"]
    out["accuracy"] = _ratio(out["correct"], n)
    out["bounds"] = {"lower": _ratio(by_rule, n), "upper": _ratio(by_rule + n_undecided, n)}
    for name, column in VQA_GROUPS.items():
        groups: dict[str, dict[str, Any]] = {}
        for row in rows:
            g = groups.setdefault(str(row[column]), {"n": 0, "correct": 0, "undecided": 0,
                                                     "missing": 0})
            g["n"] += 1
            g["correct"] += correct(row["id"])
            g["undecided"] += row["id"] in undecided
            g["missing"] += row["id"] in missing
        for g in groups.values():
            g["accuracy"] = _ratio(g["correct"], g["n"])
        # tasks in the paper's order, other groups by name
        order = {t: i for i, t in enumerate(TASKS)} if column == "task" else {}
        out[name] = dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)),
                                                                 kv[0])))
    out["judge"] = judge_info
    return out


def _caption_section(rows: Sequence[Mapping[str, Any]], preds: Mapping[str, str | None],
                     tokenizer: str, meteor: bool | None) -> tuple[dict[str, Any], str | None]:
    groups: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    missing: dict[str, int] = {}
    for kind in ("concise", "detailed"):
        groups[kind] = ({}, {})
        missing[kind] = 0
    for row in rows:
        p, r = groups.setdefault(row["kind"], ({}, {}))
        pred = preds.get(row["id"])
        if pred is None:
            missing[row["kind"]] = missing.get(row["kind"], 0) + 1
        p[row["id"]] = pred or ""
        r[row["id"]] = row["caption"]
    scores = caption_scores_by_group(groups, tokenizer=tokenizer, meteor=meteor)
    used = None
    out = {}
    for kind, s in scores.items():
        used = used or s.pop("tokenizer")
        s.pop("tokenizer", None)
        out[kind] = {"n": s.pop("n"), "missing": missing.get(kind, 0), **s}
    return out, used


def evaluate(predictions: str | os.PathLike | Iterable[str | os.PathLike] | Mapping[str, str],
             *, data: str | None = None, split: str = "test", judge: Any = "none",
             judge_url: str | None = None, judge_model: str | None = None,
             judge_key_env: str = DEFAULT_KEY_ENV, judge_cache: str | os.PathLike | None = None,
             judge_concurrency: int = 8, judge_retries: int = 5, judge_timeout: float = 60.0,
             export: str | os.PathLike | None = None, sections: Iterable[str] | None = None,
             tokenizer: str = "auto", meteor: bool | None = None,
             out: str | os.PathLike | None = None, markdown: str | os.PathLike | None = None,
             storage_options: Mapping[str, Any] | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Score predictions on a split as the paper does; return (and optionally write) the report.

    This is ``sarlang-data evaluate``.

    Args:
        predictions: prediction file(s) (``{"id", "prediction"}`` JSON lines, LLaMA-Factory's
            ``generated_predictions.jsonl`` with ``export``, or the authors' result CSV), or a
            mapping id -> prediction.
        data: dataset root, URL or Hub id (None: ``$SARLANG_DATA`` or the preview).
        split: the split the predictions are for.
        judge: ``none``, ``openai``, ``local``, or a judge object (see
            :mod:`sarlang_data.benchmark.judge`) for the undecided VQA pairs.
        judge_url: endpoint of the ``openai`` judge.
        judge_model: model name (``openai``) or folder (``local``).
        judge_key_env: environment variable holding the ``openai`` judge's key.
        judge_cache: verdict cache file (default ``~/.cache/sarlang-data/judge-verdicts.jsonl``).
        judge_concurrency: requests in flight (``openai``) or prompts per batch (``local``).
        judge_retries: retries per request (``openai``).
        judge_timeout: seconds per request (``openai``).
        export: the ``sarlang-data export`` folder LLaMA-Factory predicted on.
        sections: ``vqa`` and/or ``captions`` (None: those any prediction answers).
        tokenizer: caption tokenizer: ``auto`` (PTB when Java is on PATH), ``ptb``, ``simple``.
        meteor: compute METEOR (None: when Java is on PATH).
        out: write the report as JSON here.
        markdown: write the paper-style table as Markdown here.
        storage_options: fsspec options for the root.
        progress: progress bar while judging.

    Returns:
        The report (see the module docstring).

    Raises:
        ConfigError: an unknown section, or predictions that match no row of the split.
        PredictionsError: an unreadable predictions file.
        JudgeError: the judge fails (verdicts given so far stay cached).
    """
    from ..adapters.hf import resolve_root
    from ..format.manifest import read_manifest

    root = resolve_root(data or "sarlang-1m")
    manifest = read_manifest(root, dict(storage_options) if storage_options else None)
    if isinstance(predictions, Mapping):
        preds = Predictions()
        for k, v in predictions.items():
            preds.add(str(k), v, "predictions mapping")
        paths: list[str] = []
    else:
        paths = [str(predictions)] if isinstance(predictions, (str, os.PathLike)) else [
            str(p) for p in predictions]
        preds = read_predictions(paths, export=export)
    vqa_rows = text_rows(root, split, VQA_CONFIG, storage_options)
    cap_rows = text_rows(root, split, CAPTION_CONFIG, storage_options)
    unknown = preds.join_texts(vqa_rows)
    ids = {"vqa": {r["id"] for r in vqa_rows}, "captions": {r["id"] for r in cap_rows}}
    if sections is None:
        wanted = [s for s in SECTIONS if ids[s] & preds.by_id.keys()]
        if not wanted:
            raise ConfigError(
                f"none of the {len(preds.by_id)} prediction ids is a vqa or caption row of split "
                f"{split!r} of {root!r}; check --data and --split (ids look like "
                f"{next(iter(ids['vqa'] or ids['captions']), '?')!r})")
    else:
        wanted = list(sections)
        for s in wanted:
            if s not in SECTIONS:
                raise ConfigError(f"sections={wanted!r}: unknown section {s!r}; use vqa, captions")
    unknown += sum(1 for i in preds.by_id if i not in ids["vqa"] and i not in ids["captions"])
    report: dict[str, Any] = {}
    if "vqa" in wanted:
        the_judge = judge if not isinstance(judge, str) else make_judge(
            judge, url=judge_url, model=judge_model, key_env=judge_key_env, cache=judge_cache,
            concurrency=judge_concurrency, retries=judge_retries, timeout=judge_timeout)
        report["vqa"] = _vqa_section(vqa_rows, preds.by_id, the_judge, progress)
    used_tokenizer = None
    if "captions" in wanted:
        report["captions"], used_tokenizer = _caption_section(cap_rows, preds.by_id, tokenizer,
                                                              meteor)
    report["missing"] = (report.get("vqa", {}).get("missing", 0)
                         + sum(k["missing"] for k in report.get("captions", {}).values()))
    report["unknown"] = unknown
    report["duplicates"] = preds.duplicates
    meteor_done = any(METEOR in k for k in report.get("captions", {}).values())
    report["protocol"] = {
        "vqa_rule": {"version": VQA_RULE_VERSION, "rule": RULE_TEXT},
        "judge_prompt": describe_prompt(),
        "caption_metrics": list(CAPTION_METRICS) + ([METEOR] if meteor_done else []),
        "caption_tokenizer": used_tokenizer,
        "unavailable": {"SPICE": SPICE_UNAVAILABLE, **({} if meteor_done or "captions" not in
                        wanted else {METEOR: "not computed: " + (
                            "meteor=False" if java_available() else "no `java` on PATH")})},
    }
    report["data"] = {"root": root, "split": split, "index_sha256": manifest["index"]["sha256"],
                      "vqa_rows": len(vqa_rows), "caption_rows": len(cap_rows)}
    report["predictions"] = {"files": preds.files, "lines": preds.lines}
    report["package"] = {"name": "sarlang-data", "version": __version__}
    if out is not None:
        _write_atomic(Path(out), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    if markdown is not None:
        _write_atomic(Path(markdown), format_table(report, markdown=True))
    return report


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows]


def format_table(report: Mapping[str, Any], *, markdown: bool = False) -> str:
    """Return the paper-style table of a report: VQA accuracy per task, caption metrics per kind.

    Args:
        report: what :func:`evaluate` returned.
        markdown: Markdown tables instead of aligned text.

    Returns:
        The table text (ends with a newline).
    """
    lines: list[str] = []
    head = "## " if markdown else ""
    data = report.get("data", {})
    if "vqa" in report:
        v = report["vqa"]
        judge = v.get("judge", {})
        lines.append(f"{head}VQA accuracy (%), split {data.get('split')}, judge "
                     f"{judge.get('kind', 'none')}"
                     + (f" ({judge['model']})" if judge.get("model") else ""))
        lines.append("")
        rows = [[t, str(g["n"]), str(g["correct"]), _pct(g["accuracy"])]
                for t, g in v["per_task"].items()]
        rows.append(["all", str(v["n"]), str(v["correct"]), _pct(v["accuracy"])])
        lines += _grid(["task", "n", "correct", "accuracy"], rows, markdown)
        lines.append("")
        lines.append(f"missing {v['missing']}, undecided by the rule {v['undecided']}"
                     + (f" (judge: {judge.get('verdicts')})" if judge.get("kind") != "none"
                        else f" (counted wrong; upper bound {_pct(v['bounds']['upper'])})"))
        lines.append("")
    if "captions" in report:
        caps = report["captions"]
        metrics = list(report.get("protocol", {}).get("caption_metrics", CAPTION_METRICS))
        lines.append(f"{head}Captions, split {data.get('split')} (pycocoevalcap, tokenizer "
                     f"{report.get('protocol', {}).get('caption_tokenizer')}; CIDEr unscaled)")
        lines.append("")
        rows = [[kind, str(c["n"]), str(c["missing"]), *(_num(c.get(m)) for m in metrics)]
                for kind, c in caps.items()]
        lines += _grid(["kind", "n", "missing", *metrics], rows, markdown)
        lines.append("")
    lines.append(f"missing {report.get('missing', 0)}, unknown ids {report.get('unknown', 0)}")
    return "\n".join(lines) + "\n"
