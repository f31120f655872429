"""loading_script.py under datasets 3.6, in a venv of its own (LLaMA-Factory pins datasets 3.x).

The venv's python is ``SARLANG_DS3_PYTHON`` when set, else ``.venv-ds3/bin/python`` in the
repository, which ``scripts/setup.sh`` creates (datasets 3.6.0 + the project, no deps).
"""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import datasets
import pytest

from sarlang_data.adapters import hf
from sarlang_data.format.manifest import read_manifest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "loading_script.py"

_CHILD = textwrap.dedent("""
    import json, sys
    import datasets
    root, script = sys.argv[1], sys.argv[2]
    out = {"version": datasets.__version__, "counts": {}}
    for name in ("vqa", "images", "chat", "vhr", "captions_detailed"):
        ds = datasets.load_dataset(script, name, streaming=True, trust_remote_code=True,
                                   data_dir=root, decode=False)
        out["counts"][name] = {s: sum(1 for _ in d) for s, d in ds.items()}
        out.setdefault("n_shards", {})[name] = {s: d.n_shards for s, d in ds.items()}
    vqa = datasets.load_dataset(script, "vqa", split="test", streaming=True,
                                trust_remote_code=True, data_dir=root, decode=False)
    out["vqa_test"] = [[r["key"], r["question"], r["answer"], r["bbox"]] for r in vqa]
    chat = datasets.load_dataset(script, "chat", split="train", streaming=True,
                                 trust_remote_code=True, data_dir=root,
                                 chat_format="llamafactory")
    first = next(iter(chat))
    out["chat_first"] = first["messages"][0]["content"]
    out["chat_image"] = [list(first["images"][0].size), first["images"][0].mode]
    prepared = datasets.load_dataset(script, "captions_concise", split="train",
                                     trust_remote_code=True, data_dir=root,
                                     cities=["rotterdam"])
    out["prepared"] = [[r["key"], r["caption"], r["city"]] for r in prepared]
    print("RESULT " + json.dumps(out))
""")


def _ds3_python() -> str:
    py = os.environ.get("SARLANG_DS3_PYTHON") or str(REPO / ".venv-ds3" / "bin" / "python")
    if not Path(py).exists():
        pytest.fail(
            f"{py!r}: no python with datasets 3.6 there, so loading_script.py cannot be run "
            "under datasets 3.x; run scripts/setup.sh (it creates .venv-ds3) or point "
            "SARLANG_DS3_PYTHON at a python with datasets==3.6.0"
        )
    return py


@pytest.mark.slow
def test_loading_script_under_datasets_3(tiny_root, tmp_path):
    py = _ds3_python()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run([py, "-c", _CHILD, str(tiny_root), str(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert out["version"].startswith("3.")
    manifest = read_manifest(tiny_root)
    for name, counts in out["counts"].items():
        assert counts == {s: n for s, n in manifest["configs"][name].items() if n}, name
    shards = {s: sum(1 for x in manifest["shards"] if x["split"] == s) for s in ("train", "test")}
    assert out["n_shards"]["vqa"] == shards
    # the same rows as this package's own load_dataset on datasets 5.x
    ours = hf.load_dataset(str(tiny_root), "vqa", split="test", streaming=True, decode=False,
                           cache_dir=str(tmp_path / "c"))
    assert out["vqa_test"] == [[r["key"], r["question"], r["answer"], r["bbox"]] for r in ours]
    assert out["chat_first"].startswith("<image>")
    assert out["chat_image"][1] == "L"
    ours = hf.load_dataset(str(tiny_root), "captions_concise", split="train", decode=False,
                           cities=["rotterdam"], cache_dir=str(tmp_path / "c"))
    assert out["prepared"] == [[r["key"], r["caption"], r["city"]] for r in ours]
    assert out["prepared"] and {c for _, _, c in out["prepared"]} == {"rotterdam"}


def test_datasets_5_no_longer_runs_scripts(tiny_root, tmp_path):
    # why loading_script.py is for 3.x only, and sarlang_data.load_dataset exists
    if int(datasets.__version__.split(".")[0]) < 4:  # pragma: no cover
        pytest.fail(f"this test expects datasets >= 4 in the main venv, got {datasets.__version__}")
    with pytest.raises(RuntimeError, match="scripts are no longer supported"):
        datasets.load_dataset(str(SCRIPT), "vqa", streaming=True, data_dir=str(tiny_root),
                              cache_dir=str(tmp_path / "c"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("sarlang_loading_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert issubclass(mod.Sarlang1M, hf.SarlangBuilder)  # one implementation for both routes
    assert mod.Sarlang1M.BUILDER_CONFIGS is hf.SarlangBuilder.BUILDER_CONFIGS
