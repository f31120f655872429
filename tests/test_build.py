import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from build_fixture import BROKEN, MISSING, UNUSED, make_release

from sarlang_data import configs, schema
from sarlang_data.errors import BuildError
from sarlang_data.format.tar import RECORD
from sarlang_data.format.verify import verify
from sarlang_data.ingest import build as build_mod
from sarlang_data.ingest.build import BuildOptions, build

ROOT_FILES = ("manifest.json", "index.parquet", "rejects.jsonl", "README.md")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def ref_root(fx, tmp_path_factory):
    """The reference build: one worker, default options."""
    out = tmp_path_factory.mktemp("ref") / "root"
    build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.2), progress=False)
    return out


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_tar(data: bytes) -> list[tuple[str, bytes, tarfile.TarInfo]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(i.name, tf.extractfile(i).read(), i) for i in tf.getmembers()]


def shard_members(root: Path, manifest: dict) -> dict[str, list]:
    out = {}
    for s in manifest["shards"]:
        data = (root / s["path"]).read_bytes()
        if s["path"].endswith(".zst"):
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        out[s["path"]] = (data, read_tar(data))
    return out


def test_round_trip_with_originals(fx, tmp_path):
    out = tmp_path / "root"
    m = build(fx["release"], out, BuildOptions(workers=2, originals=True, max_reject_rate=0.2),
              progress=False)
    assert m == json.loads((out / "manifest.json").read_text())
    assert not (out / ".build").exists()
    shards = shard_members(out, m)

    # every usable image's bytes are in the shards exactly once, unchanged
    image_shas = Counter(hashlib.sha256(d).hexdigest() for _, members in shards.values()
                         for n, d, _ in members if n.endswith((".png", ".jpg")))
    want = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in fx["images"].values())
    assert image_shas == want

    # every usable text row appears exactly once, nothing else does
    records = [json.loads(d) for _, members in shards.values() for n, d, _ in members
               if n.endswith(".json")]
    got = Counter()
    for r in records:
        got.update((r["file_name"], "caption", c["text"]) for c in r["captions"])
        got.update((r["file_name"], "qa", q["question"], q["answer"]) for q in r["qa"])
    assert got == Counter(fx["texts"])

    # each record describes its image
    by_name = {r["file_name"]: r for r in records}
    for name, path in fx["images"].items():
        from PIL import Image

        with Image.open(path) as im:
            assert (by_name[name]["width"], by_name[name]["height"]) == im.size
        assert by_name[name]["image_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    # originals: one zstd frame with the content size, decompressing to the GeoTIFF
    tifs = {n.split(".")[0]: d for _, members in shards.values() for n, d, _ in members
            if n.endswith(".tif.zst")}
    assert len(tifs) == len(fx["originals"]) == m["counts"]["originals"]
    for name, tif in fx["originals"].items():
        frame = tifs[schema.key_for_stem(Path(name).stem)]
        assert zstandard.get_frame_parameters(frame).content_size == tif.stat().st_size
        assert zstandard.ZstdDecompressor().decompress(frame) == tif.read_bytes()

    # rejects: every unusable row and file, with its reason
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects == sorted(rejects, key=lambda r: (r["file"], r["line"]))
    got_bad = {(r["file"], r["line"], r["reason"]) for r in rejects}
    assert {(f, line, why) for f, line, why in fx["bad_rows"]} <= got_bad
    assert {(f, 0, why) for f, why in fx["bad_files"]} <= got_bad
    assert len(rejects) == len(fx["bad_rows"]) + len(fx["bad_files"]) == m["counts"]["rejects"]
    broken = next(r for r in rejects if r["reason"] == "not_an_image")
    assert broken["file"] == f"SARimages/{BROKEN}" and "2 text rows" in broken["detail"]
    assert m["rejects"] == {"missing_image": 1, "not_an_image": 1, "unused_image": 1}
    assert MISSING not in by_name and UNUSED not in by_name and BROKEN not in by_name

    # the manifest's counts are what a tar reader finds
    assert m["counts"]["samples"] == len(records) == len(fx["images"])
    assert m["counts"]["captions"] == sum(len(r["captions"]) for r in records)
    assert m["counts"]["qa"] == sum(len(r["qa"]) for r in records)
    assert m["counts"]["bytes"] == sum(len((out / s["path"]).read_bytes()) for s in m["shards"])
    totals = {c: dict.fromkeys(schema.SPLITS, 0) for c in configs.CONFIGS}
    for s in m["shards"]:
        recs = [json.loads(d) for n, d, _ in shards[s["path"]][1] if n.endswith(".json")]
        assert s["samples"] == len(recs)
        assert s["sha256"] == hashlib.sha256((out / s["path"]).read_bytes()).hexdigest()
        assert {r["split"] for r in recs} == {s["split"]}
        assert {r["tier"] for r in recs} == {s["tier"]}
        assert s["cities"] == sorted({r["city"] for r in recs})
        assert s["sources"] == sorted({r["source"] for r in recs})
        rows = Counter()
        for r in recs:
            rows.update(configs.rows_per_config(r))
            for c, n in configs.rows_per_config(r).items():
                totals[c][r["split"]] += n
        assert s["configs"] == {c: rows.get(c, 0) for c in configs.CONFIGS}
    assert m["configs"] == totals

    # the index points at the right bytes
    index = pq.read_table(out / "index.parquet")
    assert index.num_rows == m["index"]["rows"] == len(records)
    assert hashlib.sha256((out / "index.parquet").read_bytes()).hexdigest() == m["index"]["sha256"]
    order = [s["path"] for s in m["shards"]]
    rows = index.to_pylist()
    assert [r["shard"] for r in rows] == sorted((r["shard"] for r in rows), key=order.index)
    for row in rows:
        tar = shards[row["shard"]][0]
        js = tar[row["json_offset"]:row["json_offset"] + row["json_size"]]
        rec = json.loads(js)
        assert rec["key"] == row["key"] and list(rec) == list(schema.SAMPLE_FIELDS)
        assert js == json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode()
        img = tar[row["image_offset"]:row["image_offset"] + row["image_size"]]
        assert hashlib.sha256(img).hexdigest() == row["image_sha256"] == rec["image_sha256"]
        assert tar[row["offset"]:row["offset"] + 100].rstrip(b"\0") == f"{row['key']}.json".encode()
        # the record's texts carry their ids first; the index's are the same texts without them
        for text in rec["captions"] + rec["qa"]:
            assert list(text)[0] == schema.TEXT_ID_FIELD
            assert text.pop(schema.TEXT_ID_FIELD) == schema.text_id(rec["key"], text)
        assert row["captions"] == rec["captions"] and row["qa"] == rec["qa"]
        assert row["n_concise"] + row["n_detailed"] == len(rec["captions"])
        assert sum(row[f"n_{t}"] for t in schema.TASKS) == len(rec["qa"])
        if row["tif_offset"] is not None:
            tif = tar[row["tif_offset"]:row["tif_offset"] + row["tif_size"]]
            assert tif == tifs[row["key"]]
        end = max(o + s for o, s in ((row["json_offset"], row["json_size"]),
                                     (row["image_offset"], row["image_size"]),
                                     (row["tif_offset"] or 0, row["tif_size"] or 0)))
        assert row["offset"] + row["size"] == -(-end // 512) * 512
    assert verify(out)["images"] == len(records)
    assert "name: tif.zst" in (out / "README.md").read_text()


def test_deterministic_across_runs_and_worker_counts(fx, ref_root, tmp_path):
    two = tmp_path / "two"
    build(fx["release"], two, BuildOptions(workers=2, max_reject_rate=0.2), progress=False)
    assert files_of(two) == files_of(ref_root)
    build(fx["release"], two, BuildOptions(workers=2, max_reject_rate=0.2), progress=False)
    assert files_of(two) == files_of(ref_root)
    m = json.loads((ref_root / "manifest.json").read_text())
    assert "workers" not in m["build"] and str(fx["release"]) not in json.dumps(m)


def test_rollover_and_rebuild_removes_stale_shards(fx, ref_root, tmp_path):
    out = tmp_path / "root"
    shutil.copytree(ref_root, out)
    limit = 2 * RECORD
    m = build(fx["release"], out, BuildOptions(workers=2, shard_size=limit, max_reject_rate=0.2),
              progress=False)
    ref = json.loads((ref_root / "manifest.json").read_text())
    assert len(m["shards"]) > len(ref["shards"])
    by_group: dict[tuple, list[dict]] = {}
    for s in m["shards"]:
        assert s["bytes"] <= limit or s["samples"] == 1
        by_group.setdefault((s["split"], s["tier"], s["cities"][0]), []).append(s)
    for (split, tier, city), group in by_group.items():
        names = [s["path"] for s in group]
        assert names == [f"data/{split}/{tier}/{city}/{split}-{tier}-{city}-{n:05d}.tar"
                         for n in range(len(group))]
        keys = []
        for s in group:
            keys += [n.split(".")[0] for n, _, _ in read_tar((out / s["path"]).read_bytes())][::2]
        assert keys == sorted(keys)
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "data").rglob("*.tar"))
    assert on_disk == [s["path"] for s in m["shards"]]
    assert m["counts"]["samples"] == ref["counts"]["samples"]
    # back to the default size: the small shards go, the bytes equal the reference build
    build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.2), progress=False)
    assert files_of(out) == files_of(ref_root)


def test_archive_compression(fx, ref_root, tmp_path):
    out = tmp_path / "root"
    m = build(fx["release"], out, BuildOptions(workers=2, compress="archive",
                                               max_reject_rate=0.2), progress=False)
    ref = json.loads((ref_root / "manifest.json").read_text())
    assert [s["path"] for s in m["shards"]] == [s["path"] + ".zst" for s in ref["shards"]]
    for s, r in zip(m["shards"], ref["shards"], strict=True):
        stored = (out / s["path"]).read_bytes()
        assert (s["bytes"], s["sha256"]) == (len(stored), hashlib.sha256(stored).hexdigest())
        plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read()
        assert plain == (ref_root / r["path"]).read_bytes()
    # the offsets refer to the decompressed tar, so the index equals the plain build's but
    # for the shard names
    a = pq.read_table(out / "index.parquet").drop(["shard"])
    b = pq.read_table(ref_root / "index.parquet").drop(["shard"])
    assert a.equals(b)
    assert "configs:" in (out / "README.md").read_text()
    assert ".zst" not in (out / "README.md").read_text().split("---")[1]
    assert verify(out)["samples"] == m["counts"]["samples"]


def test_reject_rate_failure(fx, tmp_path):
    out = tmp_path / "root"
    with pytest.raises(BuildError) as e:
        build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.03), progress=False)
    msg = str(e.value)
    rows = 1 + 2  # the missing-image row and the two rows of the broken image
    assert f"{rows} of {fx['text_rows']} text rows" in msg
    assert f"({rows / fx['text_rows']:.2%})" in msg
    assert "not_an_image=1" in msg and "missing_image=1" in msg and "unused_image" not in msg
    assert str(out / "rejects.jsonl") in msg and "--max-reject-rate" in msg
    assert not (out / "manifest.json").exists()
    reasons = [json.loads(x)["reason"] for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert sorted(reasons) == ["missing_image", "not_an_image", "unused_image"]
    # the failed root is ours: a rerun with a looser limit completes it
    m = build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.2), progress=False)
    assert m["counts"]["samples"] == len(fx["images"])


def test_resume_after_failure(fx, ref_root, tmp_path, monkeypatch):
    out = tmp_path / "root"
    opts = BuildOptions(workers=1, max_reject_rate=0.2)
    real = build_mod._record_done
    done = []

    def fail_after_three(state, task, result):
        if len(done) == 3:
            raise KeyboardInterrupt("killed")
        real(state, task, result)
        done.append(task.path)

    monkeypatch.setattr(build_mod, "_record_done", fail_after_three)
    with pytest.raises(KeyboardInterrupt):
        build(fx["release"], out, opts, progress=False)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists() and len(done) == 3
    stamps = {p: (out / p).stat().st_mtime_ns for p in done}
    # a half-written shard from the "killed" run (the build deletes its own partial files
    # only: tests/test_faults.py keeps a user's ``*.partial`` files)
    pending = sorted(s["path"] for s in json.loads((ref_root / "manifest.json").read_text())
                     ["shards"] if s["path"] not in done)[0]
    (out / f"{pending}.partial").parent.mkdir(parents=True, exist_ok=True)
    (out / f"{pending}.partial").write_bytes(b"half")
    time.sleep(0.01)

    written = []
    real_write = build_mod._write_shard

    def counting(root, task, compress, record):
        result, kept = real_write(root, task, compress, record)
        if not kept:
            written.append(task.path)
        return result, kept

    monkeypatch.setattr(build_mod, "_write_shard", counting)
    m = build(fx["release"], out, opts, progress=False)
    assert set(written) == {s["path"] for s in m["shards"]} - set(done)
    assert {p: (out / p).stat().st_mtime_ns for p in done} == stamps
    assert files_of(out) == files_of(ref_root)


def test_resume_rewrites_a_corrupted_finished_shard(fx, ref_root, tmp_path, monkeypatch):
    out = tmp_path / "root"
    opts = BuildOptions(workers=1, max_reject_rate=0.2)
    real = build_mod._record_done
    done = []

    def fail_after_two(state, task, result):
        if len(done) == 2:
            raise KeyboardInterrupt("killed")
        real(state, task, result)
        done.append(task.path)

    monkeypatch.setattr(build_mod, "_record_done", fail_after_two)
    with pytest.raises(KeyboardInterrupt):
        build(fx["release"], out, opts, progress=False)
    monkeypatch.undo()
    data = bytearray((out / done[0]).read_bytes())
    data[700] ^= 0xFF
    (out / done[0]).write_bytes(bytes(data))
    build(fx["release"], out, opts, progress=False)
    assert files_of(out) == files_of(ref_root)


@pytest.mark.slow
def test_resume_after_sigkill(fx, ref_root, tmp_path):
    """A real kill: the build runs in its own process group, slowed down per shard."""
    out = tmp_path / "root"
    script = (
        "import sys, time\n"
        "from sarlang_data.ingest import build as b\n"
        "real = b._write_shard\n"
        "def slow(*a):\n"
        "    time.sleep(0.3)\n"
        "    return real(*a)\n"
        "b._write_shard = slow\n"
        f"b.build({str(fx['release'])!r}, {str(out)!r},"
        " b.BuildOptions(workers=1, max_reject_rate=0.2), progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if len(list((out / ".build" / "done").glob("*.json"))) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"build ended before it could be killed (rc={proc.returncode})")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "manifest.json").exists()
    records = [json.loads(p.read_text()) for p in (out / ".build" / "done").glob("*.json")]
    assert records
    stamps = {r["path"]: (out / r["path"]).stat().st_mtime_ns for r in records}
    m = build(fx["release"], out, BuildOptions(workers=2, max_reject_rate=0.2), progress=False)
    assert {p: (out / p).stat().st_mtime_ns for p in stamps} == stamps
    assert len(stamps) < len(m["shards"])
    assert files_of(out) == files_of(ref_root)


def test_refuses_a_folder_that_is_not_a_root(fx, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(BuildError, match=r"not empty.*new or empty folder"):
        build(fx["release"], out, BuildOptions(workers=1), progress=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("opts,match", [
    (BuildOptions(workers=0), r"workers=0.*>= 1"),
    (BuildOptions(shard_size=0), r"shard_size=0"),
    (BuildOptions(compress="gzip"), r"compress='gzip'.*none, archive"),
    (BuildOptions(max_reject_rate=1.5), r"max_reject_rate=1.5.*\[0, 1\]"),
    (BuildOptions(image_codec="webp"), r"image_codec='webp'.*source, zstd"),
    (BuildOptions(zstd_jpeg=True), r"zstd_jpeg=True with image_codec='source'.*--image-codec zstd"),
    (BuildOptions(gsd_table=Path("/nonexistent/gsd.csv")), r"gsd_table=.*no such file"),
])
def test_bad_options(fx, tmp_path, opts, match):
    with pytest.raises(BuildError, match=match):
        build(fx["release"], tmp_path / "root", opts, progress=False)
    assert not (tmp_path / "root").exists()


def test_release_must_be_a_folder(tmp_path):
    with pytest.raises(BuildError, match=r"release=.*not a folder.*SARimages"):
        build(tmp_path / "nope", tmp_path / "root", BuildOptions(workers=1), progress=False)


def test_webdataset_reads_built_shards(ref_root):
    import webdataset as wds

    m = json.loads((ref_root / "manifest.json").read_text())
    urls = [str(ref_root / s["path"]) for s in m["shards"]]
    got = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(got) == m["counts"]["samples"]
    for sample in got:
        rec = json.loads(sample["json"])
        assert rec["key"] == sample["__key__"]
        image = sample.get("png", sample.get("jpg"))
        assert hashlib.sha256(image).hexdigest() == rec["image_sha256"]


def _load_counts(root: Path, config: str) -> tuple[dict[str, int], set[str]]:
    import datasets

    ds = datasets.load_dataset(str(root), config, streaming=True)
    counts, kinds = {}, set()
    for split in ds:
        n = 0
        for row in ds[split]:
            n += 1
            assert row["json"]["key"] == row["__key__"]
            kinds |= {ext for ext in schema.IMAGE_EXTS if row.get(ext) is not None}
        counts[split] = n
    return counts, kinds


def test_stock_datasets_reads_no_code_configs(ref_root):
    m = json.loads((ref_root / "manifest.json").read_text())
    for config in ("images", "vhr", "hr"):
        counts, kinds = _load_counts(ref_root, config)
        want = {s: n for s, n in m["configs"][config].items() if n}
        assert counts == want, config
        has = {json.loads(read_tar((ref_root / s["path"]).read_bytes())[0][1])["file_name"][-3:]
               for s in m["shards"] if config in ("images", s["tier"])}
        assert kinds == has, config
    assert {"png", "jpg"} <= _load_counts(ref_root, "images")[1]


def test_declared_features_keep_every_image_type(ref_root, tmp_path):
    """Without dataset_info, stock datasets infers columns from the first shard and loses jpg."""
    import yaml

    root = tmp_path / "root"
    shutil.copytree(ref_root, root)
    text = (root / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    meta = yaml.safe_load(head)
    del meta["dataset_info"]
    (root / "README.md").write_text("---\n" + yaml.safe_dump(meta) + "---\n" + body)
    counts, kinds = _load_counts(root, "hr")
    assert "jpg" not in kinds  # the first hr shard is all PNG: inference drops the JPEGs
    assert _load_counts(ref_root, "hr")[1] == {"png", "jpg"}


# --------------------------------------------------------------------------- synthetic release


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from sarlang_data.ingest.synth import generate

    base = tmp_path_factory.mktemp("synth")
    generate(base, preset="tiny", seed=3, workers=1, progress=False, originals=True)
    root = base / "root"
    build(base / "SARLANG_1M", root,
          BuildOptions(workers=2, originals=True, gsd_table=base / "gsd_table.csv"),
          progress=False)
    return base, root


def _csv_rows(path: Path) -> dict[int, list[str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return {i + 1: r for i, r in enumerate(rows)}  # physical line (no text holds a newline)


def test_synth_tiny_round_trip(synth_root):
    import csv

    base, root = synth_root
    release = base / "SARLANG_1M"
    m = json.loads((root / "manifest.json").read_text())
    with open(base / "truth" / "images.csv", newline="") as f:
        truth_images = {r["file_name"]: r for r in csv.DictReader(f)}
    with open(base / "truth" / "texts.csv", newline="") as f:
        truth_texts = list(csv.DictReader(f))
    shards = shard_members(root, m)
    records = {}
    image_shas = Counter()
    for _, members in shards.values():
        for name, data, _ in members:
            if name.endswith(".json"):
                rec = json.loads(data)
                records[rec["file_name"]] = rec
            elif name.endswith((".png", ".jpg")):
                image_shas[hashlib.sha256(data).hexdigest()] += 1

    # every used image exactly once, byte for byte; unused ones nowhere
    used = {n for n, r in truth_images.items() if not r["defect"]}
    want = Counter(hashlib.sha256((release / "SARimages" / n).read_bytes()).hexdigest()
                   for n in used)
    assert image_shas == want and set(records) == used
    for name in used:
        t, r = truth_images[name], records[name]
        assert (r["source"], r["split"], r["city"], r["tier"]) == (
            t["source"], t["split"], t["city"], t["tier"])
        assert (r["width"], r["height"]) == (int(t["width"]), int(t["height"]))
        assert r["gsd_m"] == float(t["gsd_m"]) and r["gsd_from"] == "table"

    # every usable text row exactly once, with its labels; every defect row rejected
    files = {}
    expected, expected_rejects = Counter(), set()
    for t in truth_texts:
        row = files.setdefault(t["file"], _csv_rows(release / t["file"]))[int(t["line"])]
        if t["defect"]:
            expected_rejects.add((t["file"], int(t["line"]), t["defect"]))
        elif t["kind"]:
            expected[(t["image"], "caption", t["kind"], row[1])] += 1
        else:
            expected[(t["image"], t["subset"], t["task"], t["question_type"], row[1], row[2])] += 1
    got = Counter()
    for name, r in records.items():
        got.update((name, "caption", c["kind"], c["text"]) for c in r["captions"])
        got.update((name, q["subset"], q["task"], q["question_type"], q["question"], q["answer"])
                   for q in r["qa"])
    assert got == expected
    rejects = [json.loads(x) for x in (root / "rejects.jsonl").read_text().splitlines()]
    got_rejects = {(r["file"], r["line"], r["reason"]) for r in rejects}
    unused = {(f"SARimages/{n}", 0, "unused_image") for n, r in truth_images.items()
              if r["defect"] == "unused_image"}
    assert got_rejects == expected_rejects | unused
    assert m["counts"]["captions"] + m["counts"]["qa"] == sum(expected.values())

    # originals: the GeoTIFF of every high-resolution image
    tifs = {n.split(".")[0]: d for _, members in shards.values() for n, d, _ in members
            if n.endswith(".tif.zst")}
    originals = [t for t in sorted((release / "SARimages_original").glob("*.tif"))
                 if f"{t.stem}.png" in used]
    assert len(tifs) == len(originals) == m["counts"]["originals"] > 0
    for tif in originals:
        frame = tifs[schema.key_for_stem(tif.stem)]
        assert zstandard.ZstdDecompressor().decompress(frame) == tif.read_bytes()
    assert verify(root)["images"] == len(used)


def test_synth_tiny_stock_datasets(synth_root):
    _, root = synth_root
    m = json.loads((root / "manifest.json").read_text())
    for config in ("images", "vhr"):
        counts, kinds = _load_counts(root, config)
        assert counts == {s: n for s, n in m["configs"][config].items() if n}, config
        exts = set()
        for s in m["shards"]:
            if config in ("images", s["tier"]):
                tar = read_tar((root / s["path"]).read_bytes())
                exts |= {n.rsplit(".", 1)[1] for n, _, _ in tar if n.endswith((".png", ".jpg"))}
        assert kinds == exts, config
    assert _load_counts(root, "images")[1] == {"png", "jpg"}


def test_failed_rebuild_keeps_a_complete_root(fx, ref_root, tmp_path):
    from sarlang_data.errors import ColumnError

    out = tmp_path / "root"
    shutil.copytree(ref_root, out)
    with pytest.raises(ColumnError, match="img_path"):
        build(fx["release"], out, BuildOptions(workers=1, columns={"image": "img_path"}),
              progress=False)
    assert files_of(out) == {**files_of(ref_root), **{
        p: b for p, b in files_of(out).items() if p.startswith(".build/")}}
    assert verify(out)["samples"] == json.loads((out / "manifest.json").read_text())[
        "counts"]["samples"]


def test_fast_record_equals_sample_to_dict(fx):
    from dataclasses import replace

    from sarlang_data.ingest.release import parse_release

    parsed = parse_release(fx["release"])
    assert any(q.bbox_xywh for s in parsed.samples for q in s.qa)
    for i, s in enumerate(parsed.samples):
        probe = build_mod._Probe(s.key, True, ext="png", width=i + 1, height=2 * i + 1,
                                 sha256=f"{i:064x}")
        want = replace(s, width=i + 1, height=2 * i + 1, image_sha256=f"{i:064x}").to_dict()
        got = build_mod._record(s, probe)
        assert json.dumps(got) == json.dumps(want)  # same values, same key order
        # the stored text ids are derived: a record reads back into the same sample
        assert schema.Sample.from_dict(json.loads(json.dumps(got))) == replace(
            s, width=i + 1, height=2 * i + 1, image_sha256=f"{i:064x}")


def test_reject_rate_checked_before_reading_images(fx, tmp_path, monkeypatch):
    def no_reading(job):
        raise AssertionError("images were read although the release already failed the rate")

    monkeypatch.setattr(build_mod, "_probe", no_reading)
    with pytest.raises(BuildError, match=rf"1 of {fx['text_rows']} text rows rejected .*"
                       r"missing_image=1"):
        build(fx["release"], tmp_path / "root", BuildOptions(workers=1, max_reject_rate=0.0),
              progress=False)
