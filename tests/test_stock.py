"""Stock `datasets` and the Hub viewer: the stock/ parquet mirror and the card that declares it.

Every config the card declares loads with stock ``datasets.load_dataset(root, config)`` and gives
the rows of ``sarlang_data.load_dataset(root, "images")`` (tier-filtered for a tier config), in
the same order, one decoded ``image`` column for PNG and JPEG images alike. About 10 s.
"""

import hashlib
import shutil

import datasets
import pytest
import yaml

from sarlang_data import cli
from sarlang_data.adapters import hf
from sarlang_data.adapters.stock import write_stock
from sarlang_data.configs import CONFIGS
from sarlang_data.errors import ConfigError, VerifyError
from sarlang_data.format.manifest import read_index, read_manifest
from sarlang_data.format.verify import verify


def _header(root):
    text = (root / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.fixture(scope="module")
def stock_root(tiny_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("stock") / "root"
    shutil.copytree(tiny_root, root)
    write_stock(root)
    return root


def test_every_declared_config_loads_with_stock_datasets(stock_root, tmp_path):
    header = _header(stock_root)
    declared = [c["config_name"] for c in header["configs"]]
    assert declared == ["images", "vhr", "hr", "mr"]
    infos = {i["config_name"]: i for i in header["dataset_info"]}
    sha = {r["key"]: r["image_sha256"] for r in read_index(stock_root).to_pylist()}
    formats = set()
    for name in declared:
        for split in ("train", "test"):
            ours = list(hf.load_dataset(str(stock_root), name, split=split, streaming=True,
                                        decode=False))
            if not ours:
                continue
            stock = datasets.load_dataset(str(stock_root), name, split=split,
                                          cache_dir=str(tmp_path / "c"))
            assert isinstance(stock.features["image"], datasets.Image)
            assert len(stock) == len(ours)
            # the card's splits: num_examples as stock datasets reports them
            (want,) = [s for s in infos[name]["splits"] if s["name"] == split]
            assert want["num_examples"] == len(ours)
            raw = stock.cast_column("image", datasets.Image(decode=False))
            for a, b, r in zip(raw, ours, stock, strict=True):
                assert {k: v for k, v in a.items() if k != "image"} == {
                    k: v for k, v in b.items() if k != "image"}
                # the release's bytes, not re-encoded
                assert a["image"]["bytes"] == b["image"]["bytes"]
                assert hashlib.sha256(a["image"]["bytes"]).hexdigest() == sha[b["key"]]
                assert r["image"].size == (b["width"], b["height"])
                formats.add(r["image"].format)
    assert formats == {"PNG", "JPEG"}


def test_streaming_stock_datasets_knows_the_split_sizes(stock_root):
    ds = datasets.load_dataset(str(stock_root), "vhr", streaming=True)
    manifest = read_manifest(stock_root)
    want = {s: n for s, n in manifest["configs"]["vhr"].items() if n}
    assert {s: ds[s].info.splits[s].num_examples for s in want} == want
    assert sum(1 for _ in ds["train"]) == want["train"]


def test_the_card_says_which_configs_need_the_package(stock_root):
    text = (stock_root / "README.md").read_text()
    for name, cfg in CONFIGS.items():
        if cfg.no_code:
            assert f'`datasets.load_dataset("ORG/NAME", "{name}")`' in text
        else:
            assert f'`sarlang_data.load_dataset("ORG/NAME", "{name}")`' in text, name


def test_without_a_mirror_the_card_reads_the_tar_shards(tiny_root):
    header = _header(tiny_root)
    assert read_manifest(tiny_root).get("stock") is None
    assert header["configs"][0]["data_files"][0]["path"].endswith(".tar")
    names = {f["name"] for f in header["dataset_info"][0]["features"]}
    assert {"json", "png", "jpg"} <= names
    assert "sarlang-data stock ROOT" in (tiny_root / "README.md").read_text()


def test_verify_checks_the_mirror(stock_root, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(stock_root, root)
    assert verify(root)["samples"] == read_manifest(root)["counts"]["samples"]
    f = read_manifest(root)["stock"]["files"][0]["path"]
    data = bytearray((root / f).read_bytes())
    data[100] ^= 0xFF
    (root / f).write_bytes(bytes(data))
    with pytest.raises(VerifyError, match=f"{f}: sha256 expected"):
        verify(root)


def test_a_rewritten_mirror_is_the_same_bytes_and_cli(stock_root, tmp_path, capsys):
    root = tmp_path / "r"
    shutil.copytree(stock_root, root)
    before = {f["path"]: f["sha256"] for f in read_manifest(root)["stock"]["files"]}
    assert cli.main(["stock", str(root), "-q"]) == 0
    assert "stock parquet files" in capsys.readouterr().out
    after = {f["path"]: f["sha256"] for f in read_manifest(root)["stock"]["files"]}
    assert after == before
    assert {p.relative_to(root).as_posix() for p in (root / "stock").rglob("*.parquet")} == set(
        before)


def test_pixel_roots_have_no_mirror(tiny_root, tmp_path):
    from sarlang_data.ingest.transcode import transcode_root

    out = tmp_path / "px"
    transcode_root(tiny_root, out, image_codec="zstd", workers=1, progress=False)
    with pytest.raises(ConfigError, match="pixel members"):
        write_stock(out)


def test_the_bundled_preview_has_its_mirror():
    root = hf.preview_root()
    manifest = read_manifest(root)
    rows = sum(f["rows"] for f in manifest["stock"]["files"])
    assert rows == manifest["counts"]["samples"]


_HUB_CHILD = """
import json, sys
import datasets
repo = sys.argv[1]
out = {}
for name in ("images", "mr"):
    ds = datasets.load_dataset(repo, name, split="test")
    out[name] = [[r["key"], r["image"].format, r["width"]] for r in ds]
print("RESULT " + json.dumps(out))
"""


def test_stock_datasets_and_ours_from_a_hub_repo(stock_root, tmp_path):
    """A Hub repo (olah, a local read-only mirror) with the mirror: stock datasets loads it by
    repo id, and sarlang_data.load_dataset takes revision= for it."""
    import json
    import os
    import subprocess
    import sys

    import servers

    (tmp_path / "olah").mkdir()
    with servers.start_olah(tmp_path / "olah", stock_root, "sarlang", "stock") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("HF_TOKEN", None)
        proc = subprocess.run([sys.executable, "-c", _HUB_CHILD, hub.repo_id], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        got = json.loads(line[len("RESULT "):])
        for name in ("images", "mr"):
            ours = list(hf.load_dataset(str(stock_root), name, split="test", streaming=True,
                                        decode=False))
            assert [[k, w] for k, _, w in got[name]] == [[r["key"], r["width"]] for r in ours]
        assert {f for _, f, _ in got["images"]} == {"PNG", "JPEG"}
        pinned = hf.load_dataset(hub.repo_id, "vqa", split="test", streaming=True,
                                 decode=False, revision=hub.commit,
                                 storage_options=hub.storage_options)
        local = hf.load_dataset(str(stock_root), "vqa", split="test", streaming=True,
                                decode=False)
        assert [r["id"] for r in pinned] == [r["id"] for r in local]
