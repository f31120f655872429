"""``predict`` with both engines and ``sarlang_data.ray.read`` (local, HTTP and S3 roots) on a
local 2-CPU Ray cluster.

A tiny randomly initialised LLaVA-style model (built offline, tests/tiny_models.py) predicts
the preview's test split: one line per row, the ids of the split's rows exactly, the same
predictions from the local engine and from Ray's ``map_batches`` (greedy decoding), resumable.
Costs about 40 s (Ray's start-up is most of it).
"""

from __future__ import annotations

import json

import pytest
from tiny_models import build_llava

from sarlang_data import load_dataset
from sarlang_data.adapters.hf import preview_root
from sarlang_data.benchmark import predict
from sarlang_data.benchmark.inference import PredictError, prompt_for
from sarlang_data.cli import main
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest

ROOT = preview_root()
COUNTS = read_manifest(ROOT)["configs"]


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    return str(build_llava(tmp_path_factory.mktemp("models") / "tiny-llava"))


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


def _ids(config, **filters):
    return [r["id"] for r in load_dataset(ROOT, config, split="test", streaming=True,
                                          decode=False, **filters)]


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_local_engine_one_line_per_row_and_resumes(tiny_llava, tmp_path):
    out = tmp_path / "preds.jsonl"
    first = predict(tiny_llava, config="vqa", split="test", data=ROOT, out=out, limit=100,
                    batch_size=16, max_new_tokens=4, progress=False)
    assert first["written"] == 100 and first["rows"] == COUNTS["vqa"]["test"] == 390
    with open(out, "a") as f:
        f.write('{"id": "torn')  # an interrupted write
    rest = predict(tiny_llava, config="vqa", split="test", data=ROOT, out=out,
                   batch_size=16, max_new_tokens=4, progress=False)
    assert rest["done_before"] == 100 and rest["written"] == 290
    lines = _lines(out)
    ids = [x["id"] for x in lines]
    assert len(ids) == len(set(ids)) == 390 and set(ids) == set(_ids("vqa"))
    assert all(isinstance(x["prediction"], str) for x in lines)
    again = predict(tiny_llava, config="vqa", split="test", data=ROOT, out=out, progress=False)
    assert again["written"] == 0 and len(_lines(out)) == 390


def test_ray_read_gives_the_loaders_rows(ray_cluster):
    from sarlang_data.ray import read

    def norm(r):
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()}

    for config, filters in (("vqa", {}), ("captions", {"cities": ["rotterdam"]})):
        ds = read(ROOT, config, split="test", **filters)
        got = sorted((norm(r) for r in ds.take_all()), key=lambda r: r["id"])
        want = sorted(load_dataset(ROOT, config, split="test", streaming=True, decode=False,
                                   **filters), key=lambda r: r["id"])
        assert got == want and len(got) > 0
    assert read(ROOT, "vqa", split="test").count() == COUNTS["vqa"]["test"]
    both = read(ROOT, "captions_concise")
    assert both.count() == sum(COUNTS["captions_concise"].values())
    with pytest.raises(ConfigError, match="split='validation': no shard"):
        read(ROOT, "vqa", split="validation")


@pytest.mark.parametrize("where", ["http", "s3"])
def test_ray_read_streams_remote_roots(where, request, ray_cluster, tiny_root):
    from sarlang_data.ray import read

    if where == "http":
        root, options = request.getfixturevalue("http_server").url + "tiny", None
    else:
        root = request.getfixturevalue("s3_tiny_root")
        options = request.getfixturevalue("s3_server").storage_options
    got = read(root, "vqa", split="test", storage_options=options).take_all()
    want = load_dataset(str(tiny_root), "vqa", split="test", streaming=True, decode=False)
    assert sorted((r["id"], r["answer"], r["image"]["bytes"]) for r in got) == sorted(
        (r["id"], r["answer"], r["image"]["bytes"]) for r in want)
    assert len(got) == read_manifest(tiny_root)["configs"]["vqa"]["test"]


def test_ray_engine_same_ids_and_predictions_as_local(tiny_llava, ray_cluster, tmp_path):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    for engine, out in (("local", local), ("ray", remote)):
        result = predict(tiny_llava, config="vqa", split="test", data=ROOT, out=out,
                         batch_size=8, max_new_tokens=4, engine=engine, progress=False)
        assert result["written"] == 390 and result["engine"] == engine
    a = {x["id"]: x["prediction"] for x in _lines(local)}
    b = {x["id"]: x["prediction"] for x in _lines(remote)}
    assert len(_lines(remote)) == 390 and set(a) == set(b) == set(_ids("vqa"))
    assert a == b  # greedy decoding of the same rows by the same model
    resumed = predict(tiny_llava, config="vqa", split="test", data=ROOT, out=remote,
                      engine="ray", progress=False)
    assert resumed["written"] == 0


def test_cli_predict_and_errors(tiny_llava, tmp_path, capsys):
    out = tmp_path / "caps.jsonl"
    assert main(["predict", "--model", tiny_llava, "--config", "captions_concise", "--data",
                 ROOT, "--out", str(out), "--max-new-tokens", "3", "--threads", "1", "-q"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["written"] == COUNTS["captions_concise"]["test"] == 36
    assert {x["id"] for x in _lines(out)} == set(_ids("captions_concise"))
    assert prompt_for({"question": "How many ships?"}) == (
        "Question: How many ships?. Answer the question concisely.")
    assert prompt_for({"caption": "x"}) == "Describe the content of this image in one sentence."
    with pytest.raises(ConfigError, match="config='chat': its rows are chat conversations"):
        predict(tiny_llava, config="chat", data=ROOT, out=out)
    with pytest.raises(ConfigError, match="threads=0: need at least 1"):
        predict(tiny_llava, data=ROOT, out=out, threads=0)
    with pytest.raises(ConfigError, match="engine='spark': unknown"):
        predict(tiny_llava, data=ROOT, out=out, engine="spark")
    with pytest.raises(PredictError, match="cannot load it as an image-text-to-text model"):
        predict(str(tmp_path / "nomodel"), data=ROOT, out=tmp_path / "x.jsonl")
    (tmp_path / "other.jsonl").write_text("hello\nworld\n")
    with pytest.raises(PredictError, match="other.jsonl:1: not a prediction line"):
        predict(tiny_llava, data=ROOT, out=tmp_path / "other.jsonl")
