"""``evaluate`` end to end on the bundled preview: predictions made from the ground truth, then
perturbed in counted ways, read in all three input formats, judged by a real local server.

Expected values are counted here from the rows themselves (not from the code under test):
rows of the split equal the manifest's counts; every perturbation's effect on the counts is
known by construction.
"""

from __future__ import annotations

import csv
import json
import os

import pytest
from chat_server import ChatServer

from sarlang_data import evaluate, load_dataset
from sarlang_data.adapters.hf import preview_root
from sarlang_data.benchmark import format_table
from sarlang_data.benchmark.metrics import is_closed_answer, normalize_answer
from sarlang_data.benchmark.predictions import PredictionsError, text_rows
from sarlang_data.cli import main
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest

ROOT = preview_root()
COUNTS = read_manifest(ROOT)["configs"]


@pytest.fixture(scope="module")
def rows():
    return {"vqa": text_rows(ROOT, "test", "vqa"), "captions": text_rows(ROOT, "test", "captions")}


def _truth(rows):
    preds = {r["id"]: r["answer"] for r in rows["vqa"]}
    preds.update({r["id"]: r["caption"] for r in rows["captions"]})
    return preds


def _jsonl(path, preds):
    path.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n"
                            for k, v in preds.items()))
    return path


def test_ground_truth_rows_are_the_loaders_rows(rows):
    for config in ("vqa", "captions"):
        streamed = [{k: v for k, v in r.items() if k != "image"} for r in
                    load_dataset(ROOT, config, split="test", streaming=True, decode=False)]
        assert len(rows[config]) == COUNTS[config]["test"] == len(streamed)
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(rows[config], key=key) == sorted(streamed, key=key)
        assert len({r["id"] for r in rows[config]}) == len(rows[config])


def test_ground_truth_scores_perfect(rows):
    report = evaluate(_truth(rows), data=ROOT, split="test", meteor=False)
    v = report["vqa"]
    assert v["n"] == COUNTS["vqa"]["test"] == 390
    assert v["correct"] == 390 and v["accuracy"] == 1.0 and v["missing"] == 0
    assert v["bounds"] == {"lower": 1.0, "upper": 1.0}
    for task, g in v["per_task"].items():
        assert g["n"] == COUNTS[task]["test"] and g["accuracy"] == 1.0
    caps = report["captions"]
    for kind in ("concise", "detailed"):
        assert caps[kind]["n"] == COUNTS[f"captions_{kind}"]["test"]
        for metric in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
            assert caps[kind][metric] == pytest.approx(1.0, abs=1e-6)
        assert caps[kind]["CIDEr"] == pytest.approx(10.0)
    assert report["missing"] == report["unknown"] == 0
    assert report["protocol"]["unavailable"]["SPICE"].startswith("SPICE needs")


def _perturb(rows):
    """Return (predictions, expected counts) for a hand-counted mix of every verdict."""
    preds, expect = {}, {"correct": 0, "wrong": 0, "undecided": 0, "missing": 0}
    per_task: dict[str, int] = {}
    for i, r in enumerate(rows["vqa"]):
        gt = normalize_answer(r["answer"])
        mode = i % 4
        if mode == 0:  # the answer inside a longer one: correct by the rule
            preds[r["id"]], verdict = f"I think {r['answer']} here", "correct"
        elif mode == 1:  # a different answer
            if is_closed_answer(gt):
                other = {"yes": "no", "no": "yes"}.get(gt, str(int(gt) + 1) if gt.isdigit()
                                                       else "")
                preds[r["id"]], verdict = other, "wrong"
            else:
                preds[r["id"]], verdict = "zzz", "undecided"
        elif mode == 2:  # no prediction at all
            verdict = "missing"
        else:
            preds[r["id"]], verdict = r["answer"].upper(), "correct"
        expect[verdict] += 1
        per_task[r["task"]] = per_task.get(r["task"], 0) + (verdict == "correct")
    return preds, expect, per_task


def test_perturbed_predictions_are_counted(rows, tmp_path):
    preds, expect, per_task = _perturb(rows)
    preds.update({"nosuchimage-q0123456789": "yes", "other-c0000000000": "a caption"})
    out, md = tmp_path / "report.json", tmp_path / "table.md"
    report = evaluate(preds, data=ROOT, meteor=False, out=out, markdown=md)
    v, n = report["vqa"], 390
    assert (v["correct"], v["undecided"], v["missing"]) == (
        expect["correct"], expect["undecided"], expect["missing"])
    assert v["wrong"] == n - expect["correct"]
    assert v["accuracy"] == pytest.approx(expect["correct"] / n)
    assert v["bounds"]["upper"] == pytest.approx((expect["correct"] + expect["undecided"]) / n)
    assert {t: g["correct"] for t, g in v["per_task"].items()} == per_task
    assert sum(g["n"] for g in v["per_source"].values()) == n
    assert report["unknown"] == 2
    # no caption prediction at all: captions are not scored unless asked
    assert "captions" not in report and report["missing"] == expect["missing"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    table = md.read_text()
    assert f"| all | 390 | {expect['correct']} | {100 * expect['correct'] / n:.2f} |" in table
    asked = evaluate(preds, data=ROOT, meteor=False, sections=["vqa", "captions"])
    caps = asked["captions"]
    assert caps["concise"]["missing"] == 36 and caps["concise"]["CIDEr"] == 0.0
    assert asked["missing"] == expect["missing"] + 65


def test_judge_decides_undecided_pairs(rows, tmp_path):
    undecided = [r for r in rows["vqa"] if not is_closed_answer(normalize_answer(r["answer"]))]
    preds = {r["id"]: r["answer"] for r in rows["vqa"]}
    # half of the open answers get the server's synonym ("yes"), half a wrong word ("no")
    synonyms = {}
    for i, r in enumerate(undecided):
        if i % 2 == 0:
            preds[r["id"]] = f"synonym {i}"
            synonyms[r["answer"]] = synonyms.get(r["answer"], set()) | {f"synonym {i}"}
        else:
            preds[r["id"]] = f"wrong {i}"
    yes, no = (len(undecided) + 1) // 2, len(undecided) // 2
    cache = tmp_path / "verdicts.jsonl"
    with ChatServer(synonyms=synonyms) as srv:
        report = evaluate(preds, data=ROOT, judge="openai", judge_url=srv.url,
                          judge_model="test-judge", judge_cache=cache, meteor=False)
        v = report["vqa"]
        assert v["undecided"] == len(undecided) and srv.answered() == len(undecided)
        assert v["judge"]["verdicts"] == {"yes": yes, "no": no, "unparsed": 0}
        assert v["correct"] == 390 - no and v["correct_by_judge"] == yes
        assert v["bounds"] == {"lower": pytest.approx((390 - len(undecided)) / 390),
                               "upper": 1.0}
        assert v["judge"]["model"] == "test-judge" and v["judge"]["asked"] == len(undecided)
        again = evaluate(preds, data=ROOT, judge="openai", judge_url=srv.url,
                         judge_model="test-judge", judge_cache=cache, meteor=False)
        assert srv.answered() == len(undecided)  # nothing asked twice
        assert again["vqa"]["judge"]["cached"] == len(undecided)
        assert again["vqa"]["correct"] == v["correct"]
    assert "judge openai (test-judge)" in format_table(report)


def test_cli_with_judge_prints_table_never_the_key(rows, tmp_path, monkeypatch, capsys):
    secret = "sk-cli-SECRET-abcdef123456"
    monkeypatch.setenv("SARLANG_JUDGE_KEY", secret)
    preds = _truth(rows)
    first = next(r for r in rows["vqa"] if not is_closed_answer(normalize_answer(r["answer"])))
    preds[first["id"]] = "something else"
    path = _jsonl(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "report.json"
    with ChatServer(key=secret) as srv:
        code = main(["-v", "evaluate", str(path), "--data", ROOT, "--judge", "openai",
                     "--judge-url", srv.url, "--judge-key-env", "SARLANG_JUDGE_KEY",
                     "--judge-cache", str(tmp_path / "c.jsonl"), "--no-meteor", "-q",
                     "--out", str(out)])
        assert srv.requests[0]["auth"] == f"Bearer {secret}"
    printed = capsys.readouterr()
    assert code == 0
    assert "all                    390      389     99.74" in printed.out
    assert "concise   36        0  1.0000" in printed.out
    assert secret not in printed.out + printed.err + out.read_text()
    report = json.loads(out.read_text())
    assert report["vqa"]["judge"]["verdicts"] == {"yes": 0, "no": 1, "unparsed": 0}


def test_authors_csv_and_llamafactory_files(rows, tmp_path):
    import pyarrow.compute as pc

    from sarlang_data.format.manifest import read_index

    index = read_index(ROOT, ["key", "file_name", "split"])
    index = index.filter(pc.equal(index["split"], "test"))
    names = dict(zip(index["key"].to_pylist(), index["file_name"].to_pylist(), strict=True))
    preds, _, _ = _perturb(rows)
    # the authors' result CSV: image, prediction, question, ground truth (with a header)
    with open(tmp_path / "result.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "prediction", "question", "ground_truth"])
        for r in rows["vqa"]:
            if r["id"] in preds:
                w.writerow([names[r["key"]], preds[r["id"]], r["question"], r["answer"]])
    want = evaluate(preds, data=ROOT, meteor=False)["vqa"]
    got = evaluate(tmp_path / "result.csv", data=ROOT, meteor=False)
    assert got["vqa"] == want and got["unknown"] == 0
    # LLaMA-Factory's generated_predictions.jsonl over an export: line i is the export's row i
    export = tmp_path / "export"
    export.mkdir()
    order = [r for r in rows["captions"]][::-1]
    (export / "test.ids.txt").write_text("".join(r["id"] + "\n" for r in order))
    lines = [{"prompt": "user: <image>Describe ...", "predict": r["caption"],
              "label": r["caption"]} for r in order]
    lf = tmp_path / "generated_predictions.jsonl"
    lf.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = evaluate(lf, data=ROOT, export=export, meteor=False)
    assert report["captions"]["detailed"]["CIDEr"] == pytest.approx(10.0)
    assert report["predictions"]["files"][0]["format"] == "llamafactory"
    with pytest.raises(PredictionsError, match="--export DIR"):
        evaluate(lf, data=ROOT)
    (export / "test.ids.txt").write_text("only-one-id\n")
    with pytest.raises(PredictionsError, match="65 prediction lines, but the ids files hold"):
        evaluate(lf, data=ROOT, export=export)


def test_bad_predictions_are_clear_errors(rows, tmp_path):
    with pytest.raises(ConfigError, match="none of the 1 prediction ids is a vqa or caption row"):
        evaluate({"nope": "x"}, data=ROOT)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prediction": "x"}\nnot json\n')
    with pytest.raises(PredictionsError, match=r"bad.jsonl:2: not a JSON object"):
        evaluate(bad, data=ROOT)
    first = rows["vqa"][0]["id"]
    bad.write_text(json.dumps({"id": first, "prediction": "a"}) + "\n"
                   + json.dumps({"id": first, "prediction": "b"}) + "\n")
    with pytest.raises(PredictionsError, match=f"id '{first}' again with another prediction"):
        evaluate(bad, data=ROOT)
    bad.write_text(json.dumps({"id": first, "prediction": "a"}) + "\n" * 2
                   + json.dumps({"id": first, "prediction": "a"}) + "\n")
    assert evaluate(bad, data=ROOT)["duplicates"] == 1
    with pytest.raises(PredictionsError, match="no such file"):
        evaluate(tmp_path / "missing.jsonl", data=ROOT)
    assert not os.path.exists(tmp_path / "report.json")
