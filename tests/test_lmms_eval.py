"""lmms-eval 0.7.3's own CLI runs ``sarlang_vqa`` and ``sarlang_caption`` with a tiny model.

lmms-eval lives in its own venv (``.venv-lmms``, made by scripts/setup.sh: its pins clash
with this one's). It can fail and still exit 0, so the test reads what it wrote: every row
of the task files was answered, the samples carry the rows' ids, and each metric lmms-eval
reports equals the package's metrics recomputed on the samples it logged. Costs about 60 s.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tiny_models import build_llava

from sarlang_data.adapters.hf import preview_root
from sarlang_data.benchmark import write_task
from sarlang_data.benchmark.metrics import CAPTION_METRICS, CORRECT, UNDECIDED, vqa_rule
from sarlang_data.benchmark.metrics import caption_scores_by_group as scores

REPO = Path(__file__).resolve().parent.parent
LMMS_PYTHON = REPO / ".venv-lmms" / "bin" / "python"
ROWS = 6


def test_lmms_eval_cli_runs_the_tasks(tmp_path):
    assert LMMS_PYTHON.exists(), "no .venv-lmms: run scripts/setup.sh"
    model = build_llava(tmp_path / "tiny-llava")
    tasks = write_task(preview_root(), tmp_path / "tasks", split="test", limit=ROWS,
                       max_new_tokens=6)
    assert {t: v["rows"] for t, v in tasks["tasks"].items()} == {"sarlang_vqa": ROWS,
                                                                 "sarlang_caption": ROWS}
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(LMMS_PYTHON), "-m", "lmms_eval", "--model", "llava_hf", "--model_args",
           f"pretrained={model},device=cpu,device_map=cpu,dtype=float32",
           "--tasks", "sarlang_vqa,sarlang_caption", "--include_path", str(tmp_path / "tasks"),
           "--batch_size", "1", "--output_path", str(tmp_path / "out"), "--log_samples"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400,
                         cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Error during evaluation" not in log, log[-3000:]
    results = glob.glob(str(tmp_path / "out" / "*" / "*_results.json"))
    assert len(results) == 1, log[-3000:]
    res = json.loads(Path(results[0]).read_text())
    assert res["n-samples"] == {"sarlang_vqa": {"original": ROWS, "effective": ROWS},
                                "sarlang_caption": {"original": ROWS, "effective": ROWS}}

    def samples(task):
        (path,) = glob.glob(str(tmp_path / "out" / "*" / f"*_samples_{task}.jsonl"))
        return [json.loads(x) for x in Path(path).read_text().splitlines()]

    # VQA: lmms-eval's numbers are the rule's, recomputed from the answers it logged
    vqa_file = tasks["tasks"]["sarlang_vqa"]["data_file"]
    truth = {r["id"]: r for r in pq.read_table(vqa_file).to_pylist()}
    vs = samples("sarlang_vqa")
    assert {s["sarlang_vqa_accuracy"]["id"] for s in vs} == set(truth)
    verdicts = [vqa_rule(s["filtered_resps"] if isinstance(s["filtered_resps"], str)
                         else s["filtered_resps"][0], truth[s["sarlang_vqa_accuracy"]["id"]]
                         ["answer"]) for s in vs]
    got = res["results"]["sarlang_vqa"]
    assert got["sarlang_vqa_accuracy,none"] == pytest.approx(
        sum(v == CORRECT for v in verdicts) / ROWS)
    assert got["sarlang_vqa_upper,none"] == pytest.approx(
        sum(v in (CORRECT, UNDECIDED) for v in verdicts) / ROWS)
    # captions: every metric of each kind, as pycocoevalcap scores the logged predictions
    cap_file = tasks["tasks"]["sarlang_caption"]["data_file"]
    refs = {r["id"]: r for r in pq.read_table(cap_file).to_pylist()}
    items = [s["concise_CIDEr"] for s in samples("sarlang_caption")]
    assert {i["id"] for i in items} == set(refs)
    groups = {k: ({i["id"]: i["prediction"] for i in items if refs[i["id"]]["kind"] == k},
                  {i["id"]: refs[i["id"]]["caption"] for i in items
                   if refs[i["id"]]["kind"] == k}) for k in ("concise", "detailed")}
    want = scores(groups, meteor=False)
    got = res["results"]["sarlang_caption"]
    for kind in ("concise", "detailed"):
        for metric in CAPTION_METRICS:
            value = want[kind][metric]
            name = f"{kind}_{metric}".replace("-", "_") + ",none"
            assert got[name] == pytest.approx(0.0 if value is None else value), name
    assert sys.executable != str(LMMS_PYTHON)  # the CLI ran in its own venv
