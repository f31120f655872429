"""The training stacks split a stream once: every row of the split seen once per epoch.

Two real processes (``torchrun``, gloo, CPU) per launch, on the preview's
``instance_counting`` train rows (199, odd), batch size 4 per rank: one launch runs
accelerate's ``prepare`` with ``dispatch_batches`` off and on, ``transformers.Trainer`` both
ways and TRL's ``SFTTrainer`` (which forces dispatch off) on the tiny LLaVA of
``tiny_llava.py``; a second runs LLaMA-Factory 0.9.5's ``run_exp`` (sft, ``streaming``,
through ``loading_script.py``) in its side venv (``.venv-llamafactory``, made by
``scripts/setup.sh``). The trainers stop at the end of the first epoch (a callback), and a
forward pre-hook records the rows each rank's model was given. About 90 s in all.

With dispatch off, each rank reads its own ``.shard()`` (rows split at row level: 100 and 99).
With dispatch on, rank 0 reads everything and hands out slices; accelerate pads the last
global batch with rows from the first one (``even_batches``), so the ranks see 200 rows:
every row of the split, one of them twice; ``gather_for_metrics`` drops that padding again.
"""

import collections
import json
import shutil
from pathlib import Path

import pytest
from two_ranks import WORLD, ident, torchrun

from sarlang_data.adapters.hf import load_dataset, preview_root

CONFIG = "instance_counting"
BATCH = 4
REPO = Path(__file__).resolve().parent.parent
LF_PYTHON = REPO / ".venv-llamafactory" / "bin" / "python"


@pytest.fixture(scope="module")
def rows():
    return list(load_dataset(preview_root(), CONFIG, split="train", streaming=True,
                             decode=False))


@pytest.fixture(scope="module")
def expected(rows):
    return collections.Counter(ident(r) for r in rows)


@pytest.fixture(scope="module")
def model(rows, tmp_path_factory):
    import tiny_llava

    words = [f"{r['question']} {r['answer']}" for r in rows]
    return tiny_llava.build(tmp_path_factory.mktemp("model") / "tiny-llava", words)


@pytest.fixture(scope="module")
def hf_ranks(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("stacks")
    return torchrun(out, ["accelerate", "accelerate-dispatch", "trainer", "trainer-dispatch",
                          "trl", "--root", preview_root(), "--config", CONFIG, "--model",
                          str(model), "--batch", str(BATCH)], timeout=400)


def _seen(ranks, stack):
    return collections.Counter(x for r in ranks for x in r[stack]["rows"])


@pytest.mark.parametrize("stack", ["accelerate", "trainer", "trl"])
def test_without_dispatch_each_rank_reads_its_shard_and_every_row_comes_once(
        stack, hf_ranks, expected):
    assert _seen(hf_ranks, stack) == expected
    assert [len(r[stack]["rows"]) for r in hf_ranks] == [100, 99]
    assert hf_ranks[0][stack]["steps"] == hf_ranks[1][stack]["steps"] == 25


def test_trl_turns_dispatch_off_for_streams(hf_ranks):
    assert all(r["trl"]["dispatch"] is False for r in hf_ranks)


@pytest.mark.parametrize("stack", ["accelerate-dispatch", "trainer-dispatch"])
def test_with_dispatch_rank_zero_hands_out_every_row(stack, hf_ranks, expected):
    seen = _seen(hf_ranks, stack)
    assert set(seen) == set(expected)  # no row lost
    padding = -expected.total() % (WORLD * BATCH)  # accelerate's even_batches: 1 row
    assert padding == 1 and (seen - expected).total() == padding
    assert [len(r[stack]["rows"]) for r in hf_ranks] == [100, 100]
    assert hf_ranks[0][stack]["steps"] == hf_ranks[1][stack]["steps"] == 25


def test_gather_for_metrics_gives_the_split_exactly(hf_ranks, expected):
    assert collections.Counter(hf_ranks[0]["accelerate-dispatch"]["gathered"]) == expected


# --------------------------------------------------------------------------- LLaMA-Factory


@pytest.fixture(scope="module")
def lf_setup(rows, tmp_path_factory):
    """A text-only tiny model, a LLaMA-Factory dataset folder naming the loading script."""
    import tiny_llava

    assert LF_PYTHON.exists(), "no .venv-llamafactory: run scripts/setup.sh"
    tmp = tmp_path_factory.mktemp("lf")
    model = tiny_llava.build_causal_lm(
        tmp / "lm", [f"{r['key']} {r['question']} {r['answer']}" for r in rows])
    data = tmp / "data"
    (data / "sarlang").mkdir(parents=True)
    shutil.copy(REPO / "loading_script.py", data / "sarlang" / "sarlang.py")
    # alpaca columns; the key as the system prompt makes every row's tokens distinct
    entry = {"script_url": "sarlang", "subset": CONFIG, "folder": preview_root(),
             "split": "train", "formatting": "alpaca",
             "columns": {"prompt": "question", "response": "answer", "system": "key"}}
    (data / "dataset_info.json").write_text(json.dumps({"sarlang": entry}))
    stubs = tmp / "stubs" / "torchaudio"  # llamafactory's mm_plugin imports torchaudio
    stubs.mkdir(parents=True)
    (stubs / "__init__.py").write_text("")
    env = {"HF_DATASETS_TRUST_REMOTE_CODE": "1", "PYTHONPATH": str(stubs.parent)}
    args = ["--root", preview_root(), "--config", CONFIG, "--model", str(model),
            "--lf-dir", str(data), "--batch", str(BATCH)]
    return tmp, env, args


def test_llamafactory_streaming_run_sees_every_row_once(lf_setup, expected):
    import subprocess

    from two_ranks import WORKER, child_env

    tmp, env, args = lf_setup
    # the rows as LLaMA-Factory's own loader tokenizes them, in one process
    proc = subprocess.run([str(LF_PYTHON), str(WORKER), "llamafactory-expected", "--out",
                           str(tmp / "one"), *args], env=child_env(env), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = json.loads((tmp / "one" / "rank0.json").read_text())["rows"]
    want = collections.Counter(map(tuple, one))
    assert len(want) == len(one) == expected.total()  # every row distinct by its tokens
    ranks = torchrun(tmp / "two", ["llamafactory", *args], python=str(LF_PYTHON), env=env,
                     timeout=400)
    seen = collections.Counter(tuple(x) for r in ranks for x in r["llamafactory"]["rows"])
    assert seen == want
    assert [len(r["llamafactory"]["rows"]) for r in ranks] == [100, 99]
    assert ranks[0]["llamafactory"]["steps"] == ranks[1]["llamafactory"]["steps"] == 25
