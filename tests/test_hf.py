import collections
import csv
import hashlib
import io
import json
import logging
import shutil

import datasets
import fsspec
import pytest

from sarlang_data import schema
from sarlang_data.adapters import console, hf
from sarlang_data.configs import CONFIGS, get_config
from sarlang_data.errors import ConfigError, ManifestError, ShardError
from sarlang_data.format.manifest import read_index, read_manifest
from sarlang_data.schema import text_id
from sarlang_data.stream import reader, views


def _load(root, name, tmp_path, **kw):
    return hf.load_dataset(str(root), name, cache_dir=str(tmp_path / "cache"), **kw)


def _rows(ds):
    """Rows of a streamed dataset (or dict of them), images as their bytes."""
    parts = ds.values() if isinstance(ds, dict) else [ds]
    return [r for part in parts for r in part]


@pytest.fixture(scope="module")
def index(tiny_root):
    return read_index(tiny_root).to_pylist()


def _expected(name, index, keep=lambda r: True):
    """Rows a config must give, from index.parquet, as comparable tuples, in index order."""
    cfg = get_config(name)
    out = {"train": [], "test": []}
    for r in index:
        if not keep(r) or (cfg.tier and r["tier"] != cfg.tier):
            continue
        rec = {"captions": r["captions"], "qa": r["qa"], "tier": r["tier"]}
        if cfg.unit == "image":
            out[r["split"]].append((r["key"], len(r["captions"]), len(r["qa"])))
        else:
            for t in cfg.select_texts(rec):
                out[r["split"]].append((r["key"], text_id(r["key"], t), views.target(t)))
    return out


def _as_tuples(name, rows):
    cfg = get_config(name)
    if cfg.layout == "chat":  # TRL's layout: the answer is the assistant's text part
        return [(r["key"], r["id"], r["messages"][1]["content"][0]["text"]) for r in rows]
    if cfg.unit == "image":
        return [(r["key"], len(r["captions"]), len(r["qa"])) for r in rows]
    return [(r["key"], r["id"], r.get("caption") or r.get("answer")) for r in rows]


# --------------------------------------------------------------------------- every config


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_streams_the_manifest_rows_with_index_texts(name, tiny_root, index,
                                                                 tmp_path):
    manifest = read_manifest(tiny_root)
    ds = _load(tiny_root, name, tmp_path, streaming=True, decode=False)
    assert isinstance(ds, datasets.IterableDatasetDict)
    assert ds["train"].features == hf.features_for(name, decode=False)
    got = {split: list(part) for split, part in ds.items()}
    assert {s: len(r) for s, r in got.items()} == {
        s: n for s, n in manifest["configs"][name].items() if n}
    expected = _expected(name, index)
    for split, rows in got.items():
        assert _as_tuples(name, rows) == expected[split]
        for r in rows:
            assert tuple(r) == tuple(ds[split].features)


def _release_texts(synth):
    """(file_name, text...) multisets of the release's usable rows, read with csv."""
    rel = synth / "SARLANG_1M"
    truth = list(csv.DictReader((synth / "truth" / "texts.csv").open(encoding="utf-8")))
    files = {}
    qa, caps = collections.Counter(), collections.Counter()
    for t in truth:
        if t["defect"]:
            continue
        if t["file"] not in files:
            files[t["file"]] = list(csv.reader((rel / t["file"]).open(encoding="utf-8")))
        row = files[t["file"]][int(t["row"])]
        if "/VQA/" in t["file"]:
            qa[(t["image"], row[1].strip(), row[2].strip(), t["task"])] += 1
        else:
            caps[(t["image"], t["kind"], row[1].strip())] += 1
    return qa, caps


def test_texts_equal_the_release(tiny_root, synth_tiny, index, tmp_path):
    qa, caps = _release_texts(synth_tiny)
    file_name = {r["key"]: r["file_name"] for r in index}
    vqa = _rows(_load(tiny_root, "vqa", tmp_path, streaming=True, decode=False))
    assert collections.Counter(
        (file_name[r["key"]], r["question"], r["answer"], r["task"]) for r in vqa) == qa
    c = _rows(_load(tiny_root, "captions", tmp_path, streaming=True, decode=False))
    assert collections.Counter((file_name[r["key"]], r["kind"], r["caption"]) for r in c) == caps
    images = _rows(_load(tiny_root, "images", tmp_path, streaming=True, decode=False))
    assert collections.Counter(
        (file_name[r["key"]], q["question"], q["answer"], q["task"])
        for r in images for q in r["qa"]) == qa
    assert collections.Counter(
        (file_name[r["key"]], x["kind"], x["text"]) for r in images for x in r["captions"]) == caps


def test_images_rows_carry_all_texts_and_the_image_bytes(tiny_root, index, tmp_path):
    by_key = {r["key"]: r for r in index}
    rows = _rows(_load(tiny_root, "images", tmp_path, streaming=True, decode=False))
    assert len(rows) == len(index)
    for row in rows:
        r = by_key[row["key"]]
        assert row["captions"] == r["captions"]
        assert [(q["question"], q["answer"], q["bbox"]) for q in row["qa"]] == [
            (q["question"], q["answer"], q["bbox_xywh"]) for q in r["qa"]]
        assert hashlib.sha256(row["image"]["bytes"]).hexdigest() == r["image_sha256"]
        assert row["image"]["path"] == f"{r['key']}.{r['image_ext']}"
        assert (row["city"], row["tier"], row["source"], row["gsd_m"]) == (
            r["city"], r["tier"], r["source"], r["gsd_m"])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_path_rows_equal_the_generic_feature_path(name, tiny_root, tmp_path):
    # our streamed rows skip datasets' per-row encode/decode; they must equal what it gives
    for decode in (False, True):
        b = hf.SarlangBuilder(cache_dir=str(tmp_path / "c"), config_name=name,
                              data_dir=str(tiny_root), decode=decode)
        feats = b.info.features
        urls = b.shard_urls()["test"]
        generic = [feats.decode_example(feats.encode_example(row))
                   for _, row in b._generate_examples(urls)]
        fast = list(b.as_streaming_dataset(split="test"))
        assert len(fast) == len(generic) > 0
        if not decode:
            assert fast == generic
            continue
        for f, g in zip(fast, generic, strict=True):
            imgs_f = f.pop("images", None) or [f.pop("image")]
            imgs_g = g.pop("images", None) or [g.pop("image")]
            assert f == g
            assert [(i.size, i.mode, i.tobytes()) for i in imgs_f] == [
                (i.size, i.mode, i.tobytes()) for i in imgs_g]


def test_decode_gives_pil_images_one_copy_per_row(tiny_root, tmp_path):
    rows = list(_load(tiny_root, "vqa", tmp_path, streaming=True, split="test"))
    assert all(r["image"].size == (r["image"].width, r["image"].height) for r in rows)
    same = [r for r in rows if r["key"] == rows[0]["key"]]
    assert len(same) > 1 and same[0]["image"] is not same[1]["image"]
    same[0]["image"].paste(0, (0, 0, 5, 5))  # a consumer editing its image ...
    assert same[1]["image"].tobytes() != same[0]["image"].tobytes()  # ... edits only its own


def test_chat_formats(tiny_root, tmp_path):
    trl = _rows(_load(tiny_root, "chat", tmp_path, streaming=True, decode=False))
    assert all(r["messages"][0]["content"][0] == {"type": "image", "text": None} for r in trl)
    lf = _rows(_load(tiny_root, "chat", tmp_path, streaming=True, decode=False,
                     chat_format="llamafactory"))
    assert all(r["messages"][0]["content"].startswith("<image>") for r in lf)
    assert [r["id"] for r in trl] == [r["id"] for r in lf]
    assert datasets.Features(hf.features_for("chat"))["messages"] != (
        hf.features_for("chat", layout=views.layout_for("chat", "llamafactory"))["messages"])
    with pytest.raises(ConfigError, match="chat_format='openai'"):
        _load(tiny_root, "chat", tmp_path, streaming=True, chat_format="openai")


@pytest.mark.parametrize("streaming", [True, False])
def test_text_configs_as_chat_rows_and_grouped(tiny_root, tmp_path, streaming):
    """vqa as chat rows, and image-grouped rows with a turn limit, counted right."""
    vqa = _rows(_load(tiny_root, "vqa", tmp_path, streaming=True, decode=False))
    chat = _load(tiny_root, "vqa", tmp_path, streaming=streaming, decode=False,
                 chat_format="trl")
    got = _rows(chat)
    assert [(r["id"], r["messages"][1]["content"][0]["text"]) for r in got] == [
        (r["id"], r["answer"]) for r in vqa]
    lay = views.layout_for("chat", "trl", "image", 3)
    grouped = _load(tiny_root, "chat", tmp_path, streaming=streaming, decode=False,
                    chat_group="image", max_turns=3)
    rows = _rows(grouped)
    index = read_index(tiny_root).to_pylist()
    want = {s: sum(views.row_count("chat", r, lay) for r in index if r["split"] == s)
            for s in ("train", "test")}
    assert {s: sum(1 for r in rows if r["split"] == s) for s in want} == want
    assert {s: grouped[s].info.splits[s].num_examples for s in want} == want
    assert sorted(i for r in rows for i in r["ids"]) == sorted(
        r["id"] for r in _rows(_load(tiny_root, "chat", tmp_path, streaming=True,
                                     decode=False)))
    assert max(len(r["ids"]) for r in rows) == 3


# --------------------------------------------------------------------------- prepared datasets


def test_prepared_dataset_equals_the_stream_and_is_reused(tiny_root, tmp_path, monkeypatch):
    streamed = _rows(_load(tiny_root, "captions_concise", tmp_path, streaming=True, split="test",
                           decode=False))
    ds = _load(tiny_root, "captions_concise", tmp_path, split="test", decode=False)
    assert isinstance(ds, datasets.Dataset)
    assert ds.to_list() == streamed
    cache_files = {f["filename"] for f in ds.cache_files}
    assert all(str(tmp_path / "cache") in f for f in cache_files)

    def boom(self, **kw):
        raise AssertionError("a prepared dataset must be reused, not generated again")

    monkeypatch.setattr(hf.SarlangBuilder, "_generate_examples", boom)
    again = _load(tiny_root, "captions_concise", tmp_path, decode=False)
    assert isinstance(again, datasets.DatasetDict) and set(again) == {"train", "test"}
    assert again["test"].to_list() == streamed
    monkeypatch.undo()  # decode=True is another prepared dataset
    decoded = _load(tiny_root, "captions_concise", tmp_path, split="test")
    assert decoded[0]["image"].size == (decoded[0]["image"].width, decoded[0]["image"].height)


def test_cache_key_follows_root_config_filters_and_index(tiny_root, copy_root, tmp_path):
    def key(root, name="vqa", **kw):
        return hf.SarlangBuilder(cache_dir=str(tmp_path / "c"), config_name=name,
                                 data_dir=str(root), **kw).cache_dir

    base = key(tiny_root)
    assert key(tiny_root) == base
    assert key(tiny_root, "captions") != base
    assert key(tiny_root, cities=["rotterdam"]) != base
    assert key(tiny_root, decode=False) != base
    other = copy_root()
    assert key(other) != base  # another root
    m = json.loads((other / "manifest.json").read_text())
    before = key(other)
    m["index"]["sha256"] = "0" * 64  # a rebuilt root has a new index
    (other / "manifest.json").write_text(json.dumps(m))
    assert key(other) != before


# --------------------------------------------------------------------------- filters


def test_city_filter_opens_only_matching_shards(tiny_root, index, tmp_path, monkeypatch):
    manifest = read_manifest(tiny_root)
    city = "rotterdam"
    wanted = {str(tiny_root / s["path"]) for s in manifest["shards"] if city in s["cities"]}
    assert 0 < len(wanted) < len(manifest["shards"])
    opened = []
    real_open = reader.open_url

    def spy(url, storage_options=None, **kw):
        opened.append(url)
        return real_open(url, storage_options, **kw)

    monkeypatch.setattr(reader, "open_url", spy)
    ds = _load(tiny_root, "vqa", tmp_path, streaming=True, decode=False, cities=[city])
    assert sum(p.n_shards for p in ds.values()) == len(wanted)
    rows = _rows(ds)
    assert set(opened) == wanted and len(opened) == len(wanted)
    assert {r["city"] for r in rows} == {city}
    exp = _expected("vqa", index, keep=lambda r: r["city"] == city)
    assert _as_tuples("vqa", rows) == exp["train"] + exp["test"]


def test_filters_work_with_the_other_shards_gone(copy_root, tmp_path):
    root = copy_root()
    manifest = read_manifest(root)
    keep = [s for s in manifest["shards"] if s["tier"] == "mr"]
    for s in manifest["shards"]:
        if s not in keep:
            (root / s["path"]).unlink()  # opening any of these would fail
    rows = _rows(_load(root, "images", tmp_path, streaming=True, decode=False, tiers="mr"))
    assert len(rows) == sum(s["samples"] for s in keep) > 0
    assert len(_rows(_load(root, "mr", tmp_path, streaming=True, decode=False))) == len(rows)


def test_source_filter_selects_rows_within_shards(tiny_root, index, tmp_path):
    for source in ("oem_sar", "sardet100k"):
        rows = _rows(_load(tiny_root, "captions", tmp_path, streaming=True, decode=False,
                           sources=[source]))
        exp = _expected("captions", index, keep=lambda r, s=source: r["source"] == s)
        assert _as_tuples("captions", rows) == exp["train"] + exp["test"]
        assert {r["source"] for r in rows} <= {source}


def test_n_shards_and_dataloader_workers_read_every_row_once(tiny_root, index, tmp_path):
    import torch
    ds = _load(tiny_root, "vqa", tmp_path, streaming=True, split="train", decode=False)
    selected = [s for s in read_manifest(tiny_root)["shards"] if s["split"] == "train"]
    assert ds.n_shards == len(selected) >= 2
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = collections.Counter((r["key"], r["id"], r["answer"]) for r in loader)
    exp = collections.Counter(_expected("vqa", index)["train"])
    assert got == exp and sum(got.values()) == len(_expected("vqa", index)["train"])


@pytest.mark.parametrize("world", [2, 3])
def test_split_dataset_by_node_and_shard_split_rows_exactly(world, tiny_root, index, tmp_path):
    from datasets.distributed import split_dataset_by_node

    ds = _load(tiny_root, "captions", tmp_path, streaming=True, split="train", decode=False)
    want = sorted(_expected("captions", index)["train"])
    assert ds.n_shards % 2 == 1  # odd: datasets' "auto" keeps every 2nd row itself then
    assert ds.reshard().n_shards == len(want)  # reshard(): every row can be a reader's start
    ways = {
        "shard": lambda r: ds.shard(world, r),
        "shards": lambda r: split_dataset_by_node(ds, rank=r, world_size=world,
                                                  strategy="shards"),
        "auto": lambda r: split_dataset_by_node(ds, rank=r, world_size=world),
        "resharded": lambda r: split_dataset_by_node(ds.reshard(), rank=r, world_size=world),
    }
    for name, make in ways.items():
        parts = [list(make(r)) for r in range(world)]
        assert sorted(_as_tuples("captions", [x for p in parts for x in p])) == want, name
        assert max(map(len, parts)) - min(map(len, parts)) <= 1, name
    # our row ranges are contiguous in stream order: rank 0 has the first rows
    first = list(ds.shard(world, 0))
    assert _as_tuples("captions", first) == _as_tuples("captions", list(ds))[:len(first)]


def test_memory_url_root(tiny_root, tmp_path):
    fs = fsspec.filesystem("memory")
    for p in tiny_root.rglob("*"):
        if p.is_file():
            fs.pipe(f"/hf-test-root/{p.relative_to(tiny_root).as_posix()}", p.read_bytes())
    try:
        ds = hf.load_dataset("memory://hf-test-root", "vqa", streaming=True, decode=False,
                             cache_dir=str(tmp_path / "c"))
        n = {s: sum(1 for _ in part) for s, part in ds.items()}
    finally:
        fs.rm("/hf-test-root", recursive=True)
    assert n == read_manifest(tiny_root)["configs"]["vqa"]
    ds = hf.load_dataset(tiny_root.as_uri(), "vqa", streaming=True, decode=False,
                         cache_dir=str(tmp_path / "c"))
    assert {s: sum(1 for _ in part) for s, part in ds.items()} == n


# --------------------------------------------------------------------------- bad input


def test_unknown_names_list_the_valid_ones(tiny_root, tmp_path):
    with pytest.raises(ConfigError, match=r"name='captionz': unknown config.*\): captions, "):
        _load(tiny_root, "captionz", tmp_path, streaming=True)
    with pytest.raises(ConfigError, match=r"cities='roterdam': unknown city.*\): rotterdam"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, cities="roterdam")
    with pytest.raises(ConfigError, match=r"tiers='xhr': unknown tier.*\): hr, vhr, mr"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, tiers=["xhr"])
    with pytest.raises(ConfigError, match=r"sources='oem': unknown source.*\): oem_sar"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, sources=["oem"])
    with pytest.raises(ConfigError, match=r"config 'vhr' holds only tier 'vhr'"):
        _load(tiny_root, "vhr", tmp_path, streaming=True, tiers=["hr"])
    with pytest.raises(ConfigError, match=r"split='valid': unknown split.*train"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, split="valid")
    with pytest.raises(ConfigError, match=r"on_error='warn'"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, on_error="warn")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['shuffle'\]"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, shuffle=True)


def test_filters_matching_nothing(tiny_root, tmp_path):
    manifest = read_manifest(tiny_root)
    city = next(c for s in manifest["shards"] if s["tier"] == "vhr" for c in s["cities"])
    others = [s for s in manifest["shards"] if city in s["cities"] and s["tier"] == "mr"]
    assert not others
    with pytest.raises(ConfigError, match=r"no shard of root .* matches these filters"):
        _load(tiny_root, "vqa", tmp_path, streaming=True, cities=[city], tiers=["mr"])


def test_root_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"no manifest.json.*sarlang-data build"):
        hf.load_dataset(str(tmp_path / "empty"), "vqa", streaming=True,
                        cache_dir=str(tmp_path / "c"))
    with pytest.raises(ManifestError, match=r"path='no/such/thing/here'"):
        hf.load_dataset("no/such/thing/here", "vqa", streaming=True)


def test_manifest_of_a_newer_format(copy_root, tmp_path):
    root = copy_root()
    m = json.loads((root / "manifest.json").read_text())
    m["format_version"] = schema.FORMAT_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=rf"format_version={schema.FORMAT_VERSION + 1} is "
                                            r"newer.*pip install -U"):
        _load(root, "vqa", tmp_path, streaming=True)


def test_corrupt_shard_raises_or_is_skipped(copy_root, index, tmp_path):
    root = copy_root()
    manifest = read_manifest(root)
    shard = max((s for s in manifest["shards"] if s["split"] == "train"),
                key=lambda s: s["samples"])
    path = root / shard["path"]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ShardError, match=rf"{shard['path']}' at byte \d+: .*truncated"):
        _rows(_load(root, "images", tmp_path, streaming=True, split="train", decode=False))
    b = hf.SarlangBuilder(cache_dir=str(tmp_path / "c"), config_name="images",
                          data_dir=str(root), decode=False, on_error="skip")
    rows = list(b.as_streaming_dataset(split="train"))
    in_shard = [r["key"] for r in index if r["shard"] == shard["path"]]
    kept = [k for k in in_shard if k in {r["key"] for r in rows}]
    assert kept == in_shard[: len(kept)] and 1 <= len(kept) < len(in_shard)  # a prefix survives
    assert len(rows) == manifest["configs"]["images"]["train"] - (len(in_shard) - len(kept))
    # every sample of the lost tail is counted (the manifest says how many the shard holds)
    lost = len(in_shard) - len(kept)
    assert b.read_stats.skipped_shard_tails == 1 and b.read_stats.reasons == {"truncated": lost}


# --------------------------------------------------------------------------- roots


def test_resolve_root(tmp_path, monkeypatch, caplog):
    assert hf.resolve_root("ORG/sarlang-1m") == "hf://datasets/ORG/sarlang-1m"
    assert hf.resolve_root("s3://bucket/root/") == "s3://bucket/root"
    assert hf.resolve_root(str(tmp_path)) == str(tmp_path)
    assert hf.resolve_root("ORG/x", data_dir=str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("SARLANG_DATA", "https://example.org/root")
    assert hf.resolve_root("sarlang-1m") == "https://example.org/root"
    monkeypatch.delenv("SARLANG_DATA")
    with caplog.at_level(logging.INFO, logger="sarlang_data.adapters.hf"):
        assert hf.resolve_root("sarlang-1m") == hf.preview_root()
    assert sum("bundled preview" in r.message for r in caplog.records) == 1
    assert hf.preview_root().endswith(("shards", "_preview"))


def test_sarlang_data_env_names_the_default_root(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SARLANG_DATA", str(tiny_root))
    ds = hf.load_dataset("sarlang-1m", "vhr", streaming=True, cache_dir=str(tmp_path / "c"))
    assert {s: sum(1 for _ in p) for s, p in ds.items()} == read_manifest(tiny_root)["configs"][
        "vhr"]


# --------------------------------------------------------------------------- stock datasets


@pytest.mark.parametrize("name", ["images", "vhr"])
def test_stock_datasets_reads_the_readme_configs(name, tiny_root, tmp_path):
    ds = datasets.load_dataset(str(tiny_root), name, streaming=True,
                               cache_dir=str(tmp_path / "c"))
    counts = {s: sum(1 for _ in p) for s, p in ds.items()}
    assert counts == {s: n for s, n in read_manifest(tiny_root)["configs"][name].items() if n}


# --------------------------------------------------------------------------- stream_rows


def test_stream_rows_prints_rows_and_rate(tiny_root, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "c"))
    out = io.StringIO()
    assert console.stream_rows("vqa", data=str(tiny_root), limit=7, cities=["rotterdam"],
                          out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 8 and lines[0].startswith("0: key=")
    assert all("rotterdam" in line and "image=" in line for line in lines[:7])
    assert all(" L" in line.split("image=")[1][:12] for line in lines[:7])  # size and mode
    assert lines[-1].startswith("7 rows of 'vqa' in ") and lines[-1].endswith("rows/s)")
    out = io.StringIO()
    console.stream_rows("images", data=str(tiny_root), split="test", decode=False, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == read_manifest(tiny_root)["configs"]["images"]["test"] + 1
    assert "bytes)" in lines[0] and "captions=" in lines[0]


def test_cli_stream(tiny_root, monkeypatch, tmp_path, capsys):
    from sarlang_data import cli

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "c"))
    assert cli.main(["stream", "chat", "--data", str(tiny_root), "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "turns=" in out[0] and "first='<image>" in out[0]
    assert cli.main(["stream", "vqa2", "--data", str(tiny_root)]) == 2
    assert "unknown config" in capsys.readouterr().err


def test_cli_stream_into_a_closed_pipe_stops_quietly(tiny_root, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_DATASETS_CACHE=str(tmp_path / "c"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sarlang_data.cli", "stream", "vqa", "--data",
         str(tiny_root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()  # read one row, then go away as `head -1` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(b"0: key=") and "Traceback" not in err and "Error" not in err


def test_views_and_features_agree():
    for name in CONFIGS:
        assert tuple(hf.features_for(name)) == views.columns(name)


def test_copy_root_fixture_is_private(copy_root, tiny_root):
    root = copy_root()
    shutil.rmtree(root / "data")
    assert (tiny_root / "data").is_dir()


def test_dataset_methods_on_typed_streams(tiny_root, tmp_path):
    ds = _load(tiny_root, "vqa", tmp_path, streaming=True, split="test")
    raw = _load(tiny_root, "vqa", tmp_path, streaming=True, split="test", decode=False)
    n = sum(1 for _ in ds)
    first_raw = next(iter(raw))
    # decode() switches our own image decoding, both ways, without touching the original
    off = ds.decode(False)
    assert off.features["image"] == datasets.Image(decode=False)
    assert next(iter(off))["image"] == first_raw["image"]
    assert isinstance(next(iter(ds))["image"], type(next(iter(raw.decode(True)))["image"]))
    assert ds.features["image"] == datasets.Image(decode=True)
    # casts are applied by datasets to the rows in their encoded form
    as_bytes = next(iter(ds.cast_column("image", datasets.Image(decode=False))))
    assert as_bytes["image"] == first_raw["image"]  # the shard's bytes, not a re-encoding
    as_int = next(iter(raw.cast_column("gsd_m", datasets.Value("int32"))))
    assert as_int["gsd_m"] == int(first_raw["gsd_m"]) and as_int["image"] == first_raw["image"]
    still_pil = next(iter(ds.cast(hf.features_for("vqa"))))
    assert hasattr(still_pil["image"], "size")
    # the usual stream methods keep the rows
    assert sorted(r["question"] for r in raw.shuffle(seed=1, buffer_size=7)) == sorted(
        r["question"] for r in raw)
    assert len(list(raw.take(3))) == 3 and sum(1 for _ in raw.skip(3)) == n - 3
    lens = [r["n"] for r in raw.map(lambda r: {"n": len(r["question"])})]
    assert lens == [len(r["question"]) for r in raw]
    assert sum(1 for _ in raw.filter(lambda r: r["task"] == "others")) == sum(
        r["task"] == "others" for r in raw)


def test_state_dict_resume_continues_where_it_stopped(tiny_root, tmp_path):
    def fresh():
        return _load(tiny_root, "vqa", tmp_path, streaming=True, split="train", decode=False)

    every = [(r["key"], r["question"]) for r in fresh()]
    ds = fresh()
    it = iter(ds)
    head = [(r["key"], r["question"]) for r in (next(it) for _ in range(37))]
    state = ds.state_dict()
    again = fresh()
    again.load_state_dict(state)
    assert head + [(r["key"], r["question"]) for r in again] == every


def test_every_config_over_the_bundled_preview(monkeypatch, tmp_path):
    monkeypatch.delenv("SARLANG_DATA", raising=False)
    root = hf.preview_root()
    manifest = read_manifest(root)  # the preview ships in the repo (shards/) and the wheel
    by_key = {r["key"]: r for r in read_index(root).to_pylist()}
    for name in CONFIGS:
        ds = hf.load_dataset("sarlang-1m", name, streaming=True, decode=False,
                             cache_dir=str(tmp_path / "c"))
        rows = {s: list(p) for s, p in ds.items()}
        assert {s: len(r) for s, r in rows.items()} == {
            s: n for s, n in manifest["configs"][name].items() if n}, name
        cfg = get_config(name)
        if cfg.unit == "qa":
            for r in rows.get("test", []):
                assert r["question"] in [q["question"] for q in by_key[r["key"]]["qa"]]


# --------------------------------------------------------------------------- datasets' keywords


def test_info_splits_give_every_configs_rows(tiny_root, tmp_path):
    manifest = read_manifest(tiny_root)
    for name in CONFIGS:
        ds = _load(tiny_root, name, tmp_path, streaming=True)
        for split, part in ds.items():
            assert part.info.splits[split].num_examples == manifest["configs"][name][split]
    # with a row filter, counted in the index
    ds = _load(tiny_root, "vqa", tmp_path, streaming=True, split="train", cities=["rotterdam"],
               decode=False)
    assert ds.info.splits["train"].num_examples == sum(1 for _ in ds) > 0
    prepared = _load(tiny_root, "captions", tmp_path, split="test")
    assert prepared.info.splits["test"].num_examples == len(prepared) == (
        manifest["configs"]["captions"]["test"])


def test_positional_split_features_and_other_keywords(tiny_root, tmp_path):
    cache = str(tmp_path / "c")
    ds = hf.load_dataset(str(tiny_root), "vqa", "test", streaming=True, cache_dir=cache)
    assert isinstance(ds, datasets.IterableDataset)
    assert ds.info.splits["test"].num_examples == len(list(ds))
    with pytest.raises(ConfigError, match="third positional argument.*data_dir"):
        hf.load_dataset("sarlang-1m", "vqa", str(tiny_root), cache_dir=cache)
    # features=: the rows cast, as datasets does
    feats = hf.features_for("captions_concise", decode=False)
    feats["width"] = datasets.Value("int64")
    got = hf.load_dataset(str(tiny_root), "captions_concise", "test", cache_dir=cache,
                          features=feats)
    assert got.features == feats and isinstance(got[0]["image"], dict)
    with pytest.raises(ConfigError, match="cannot be cast"):
        hf.load_dataset(str(tiny_root), "captions_concise", "test", cache_dir=cache,
                        features=datasets.Features({"x": datasets.Value("string")}))
    # trust_remote_code is accepted and changes nothing; data_files etc. refused with why
    same = hf.load_dataset(str(tiny_root), "vqa", "test", streaming=True, cache_dir=cache,
                           trust_remote_code=True)
    assert [r["id"] for r in same] == [r["id"] for r in ds]
    with pytest.raises(ConfigError, match="data_files.*manifest.json"):
        hf.load_dataset(str(tiny_root), "vqa", data_files=["x.tar"], cache_dir=cache)
    with pytest.raises(ConfigError, match="save_infos"):
        hf.load_dataset(str(tiny_root), "vqa", save_infos=True, cache_dir=cache)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['colour'\\]"):
        hf.load_dataset(str(tiny_root), "vqa", colour="red", cache_dir=cache)


def test_revision_pins_hub_roots_only(tiny_root):
    from sarlang_data.adapters.hf.load import _with_revision

    assert _with_revision("hf://datasets/org/sar", "v1.0") == "hf://datasets/org/sar@v1.0"
    assert _with_revision("hf://datasets/org/sar", "refs/pr/1") == (
        "hf://datasets/org/sar@refs%2Fpr%2F1")
    with pytest.raises(ConfigError, match="already names a revision"):
        _with_revision("hf://datasets/org/sar@main", "v1")
    with pytest.raises(ConfigError, match="revision='v1'.*not on the Hub"):
        hf.load_dataset(str(tiny_root), "vqa", streaming=True, revision="v1")
