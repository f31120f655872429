"""`sarlang-data export`: LLaMA-Factory folders (read by LLaMA-Factory 0.9.5's own loader in its
side venv) and parquet files (read by stock datasets), resumable, ids in row order.

Costs about 20 s, most of it LLaMA-Factory's import in the side venv.
"""

import hashlib
import json
import os
import subprocess
import textwrap
from pathlib import Path

import datasets
import pytest

from sarlang_data import cli
from sarlang_data.adapters import export as export_mod
from sarlang_data.adapters import hf
from sarlang_data.adapters.export import export
from sarlang_data.errors import BuildError, ConfigError
from sarlang_data.format.manifest import read_index, read_manifest

REPO = Path(__file__).resolve().parent.parent

# LLaMA-Factory's own loading of a dataset folder, without a model or template
_LF_CHILD = textwrap.dedent("""
    import json, os, sys
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments
    folder, names = sys.argv[1], sys.argv[2:]
    out = {}
    for name in names:
        ds = _get_merged_dataset(
            [name], ModelArguments(model_name_or_path="unused"),
            DataArguments(dataset_dir=folder, dataset=name, media_dir=folder),
            Seq2SeqTrainingArguments(output_dir=os.path.join(folder, "_lf_out")), stage="sft")
        out[name] = [{"prompt": r["_prompt"], "response": r["_response"],
                      "images": r["_images"]} for r in ds]
    print("RESULT " + json.dumps(out))
""")


def _lf_python() -> str:
    py = os.environ.get("SARLANG_LLAMAFACTORY_PYTHON") or str(
        REPO / ".venv-llamafactory" / "bin" / "python")
    if not Path(py).exists():
        pytest.fail(f"{py!r}: no python with LLaMA-Factory 0.9.5 there; run scripts/setup.sh "
                    "(it creates .venv-llamafactory) or set SARLANG_LLAMAFACTORY_PYTHON")
    return py


def _stream(root, config, split, **kw):
    return list(hf.load_dataset(str(root), config, split=split, streaming=True, decode=False,
                                distributed=False, **kw))


def _jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_llamafactory_export_loads_in_llamafactory(tiny_root, tmp_path):
    out = tmp_path / "lf"
    vqa = export("vqa", data=str(tiny_root), split="test", out=out, progress=False)
    grouped = export("chat", data=str(tiny_root), split="train", out=out, progress=False,
                     chat_group="image", max_turns=4, name="sarlang_chat_grouped")
    manifest = read_manifest(tiny_root)
    assert vqa.rows == manifest["configs"]["vqa"]["test"]
    # the data file: the stream's rows in order, with their ids; the ids file in row order
    rows = _jsonl(out / "sarlang_vqa_test.jsonl")
    ours = _stream(tiny_root, "vqa", "test", chat_format="llamafactory")
    assert [r["id"] for r in rows] == [r["id"] for r in ours]
    assert [r["messages"] for r in rows] == [r["messages"] for r in ours]
    assert (out / "sarlang_vqa_test.ids.txt").read_text().splitlines() == [r["id"] for r in rows]
    # every image named is the root's bytes (sha256 of the index)
    sha = {r["key"]: r["image_sha256"] for r in read_index(tiny_root).to_pylist()}
    for r, o in zip(rows, ours, strict=True):
        (rel,) = r["images"]
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha[o["key"]]
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"sarlang_vqa_test", "sarlang_chat_grouped"}
    assert info["sarlang_vqa_test"]["file_name"] == "sarlang_vqa_test.jsonl"
    g = _jsonl(out / "sarlang_chat_grouped.jsonl")
    assert grouped.rows == len(g) and max(len(r["ids"]) for r in g) == 4
    exports = json.loads((out / "sarlang_export.json").read_text())
    assert exports["sarlang_vqa_test"]["rows"] == vqa.rows
    assert exports["sarlang_vqa_test"]["ids_file"] == "sarlang_vqa_test.ids.txt"

    # LLaMA-Factory's own loader reads the folder as it is
    stub = tmp_path / "stub" / "torchaudio"  # mm_plugin imports torchaudio; none works on CPU
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(stub.parent), "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([_lf_python(), "-c", _LF_CHILD, str(out), "sarlang_vqa_test",
                           "sarlang_chat_grouped"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    got = json.loads(line[len("RESULT "):])
    lf = got["sarlang_vqa_test"]
    assert len(lf) == len(rows)  # none skipped as "abnormal"
    for r, o in zip(lf, ours, strict=True):
        user, assistant = o["messages"]
        assert r["prompt"] == [{"role": "user", "content": user["content"]}]
        assert r["response"] == [{"role": "assistant", "content": assistant["content"]}]
        assert [Path(p) for p in r["images"]] == [out / "images" / o["images"][0]["path"]]
    lg = got["sarlang_chat_grouped"]
    assert len(lg) == len(g)
    # a grouped row: all turns but the last are the prompt, the last answer the response
    assert [len(r["prompt"]) for r in lg] == [2 * len(x["ids"]) - 1 for x in g]


def test_parquet_export_reads_with_stock_datasets(tiny_root, tmp_path):
    out = tmp_path / "pq"
    rep = export("vqa", data=str(tiny_root), split="train", out=out, format="parquet",
                 progress=False, file_bytes=20_000)
    assert len(rep.files) > 1  # rolled into several parts
    ds = datasets.load_dataset("parquet", data_files=[str(out / f) for f in rep.files],
                               split="train", cache_dir=str(tmp_path / "c"))
    ours = _stream(tiny_root, "vqa", "train")
    assert len(ds) == len(ours) == rep.rows
    assert isinstance(ds.features["image"], datasets.Image)
    for a, b in zip(ds, ours, strict=True):
        assert {k: v for k, v in a.items() if k != "image"} == {
            k: v for k, v in b.items() if k != "image"}
        assert a["image"].size == (b["width"], b["height"])  # decoded, PNG or JPEG
    assert {r["image"]["path"].rsplit(".", 1)[1] for r in ours} == {"png", "jpg"}
    assert (out / rep.ids_file).read_text().splitlines() == [r["id"] for r in ours]
    # chat rows in TRL's layout as parquet
    chat = export("chat", data=str(tiny_root), split="test", out=out, format="parquet",
                  progress=False)
    cds = datasets.load_dataset("parquet", data_files=[str(out / f) for f in chat.files],
                                split="train", cache_dir=str(tmp_path / "c"))
    assert cds[0]["messages"][0]["content"][0] == {"type": "image", "text": None}
    assert [r["id"] for r in cds] == [r["id"] for r in _stream(tiny_root, "chat", "test")]


@pytest.mark.parametrize("fmt", ["llamafactory", "parquet"])
def test_an_interrupted_export_resumes_to_the_same_files(tiny_root, tmp_path, monkeypatch, fmt):
    whole = export("vqa", data=str(tiny_root), split="train", out=tmp_path / "whole",
                   format=fmt, progress=False, checkpoint_rows=7, file_bytes=20_000)
    real = export_mod._portable
    calls = {"n": 0}

    def dying(image):
        calls["n"] += 1
        if calls["n"] > 40:
            raise KeyboardInterrupt("interrupted")
        return real(image)

    monkeypatch.setattr(export_mod, "_portable", dying)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        export("vqa", data=str(tiny_root), split="train", out=out, format=fmt,
               progress=False, checkpoint_rows=7, file_bytes=20_000)
    state = json.loads((out / ".sarlang-export" / "sarlang_vqa_train.json").read_text())
    assert 0 < state["rows"] < whole.rows
    monkeypatch.setattr(export_mod, "_portable", real)
    again = export("vqa", data=str(tiny_root), split="train", out=out, format=fmt,
                   progress=False, checkpoint_rows=7, file_bytes=20_000)
    assert again.resumed_rows == state["rows"] and again.rows == whole.rows
    assert again.files == whole.files
    for name in [*whole.files, whole.ids_file]:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (out / ".sarlang-export").exists()


def test_export_refusals(tiny_root, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "sarlang_vqa_test.jsonl").write_text("mine\n")
    with pytest.raises(BuildError, match="was not written by an export"):
        export("vqa", data=str(tiny_root), split="test", out=out, progress=False)
    assert (out / "sarlang_vqa_test.jsonl").read_text() == "mine\n"
    with pytest.raises(ConfigError, match="image-centric"):
        export("images", data=str(tiny_root), split="test", out=tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="chat_format='trl'.*llamafactory"):
        export("vqa", data=str(tiny_root), split="test", out=tmp_path / "x",
               chat_format="trl", progress=False)
    with pytest.raises(ConfigError, match="format='csv'"):
        export("vqa", data=str(tiny_root), split="test", out=tmp_path / "x", format="csv")


def test_export_command(tiny_root, tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["export", "captions_concise", "--data", str(tiny_root), "--split", "test",
                     "--format", "llamafactory", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "dataset: sarlang_captions_concise_test" in printed
    rows = _jsonl(out / "sarlang_captions_concise_test.jsonl")
    assert len(rows) == read_manifest(tiny_root)["configs"]["captions_concise"]["test"]
    assert rows[0]["messages"][0]["content"] == (
        "<image>Describe the content of this image in one sentence.")
