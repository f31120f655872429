"""The speed paths of issue 6 keep every result, and the benchmarks' own checks can fail.

- the reader's JSON decoding (orjson, with the standard library deciding what orjson refuses)
  gives the records ``json`` gives, and rejects the same bad members;
- the inlined tar header parsing reads every header layout ``tarfile`` writes and still
  rejects a damaged header;
- streamed keys are ``(shard, row)`` tuples, rows unchanged;
- ``bench/full_scale.py``'s row fingerprints computed from ``index.parquet`` equal those of the
  streamed rows, and differ when a row is missing;
- ``bench/bench_read.py``'s floors count the samples the manifest says.
"""

from __future__ import annotations

import io
import json
import math
import sys
import tarfile
from pathlib import Path

import pytest

from sarlang_data.adapters import hf
from sarlang_data.errors import ShardError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.stream import reader, views

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _record(key, **extra):
    return {"key": key, "city": "nice", "tier": "vhr", "split": "train", "source": "oem_sar",
            "gsd_m": 0.3, "captions": [{"kind": "concise", "text": "t", "kind_from": "label"}],
            "qa": [], **extra}


def _tar(path, members, fmt=tarfile.USTAR_FORMAT):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(bio.getvalue())
    return str(path)


# --------------------------------------------------------------------------- JSON


def test_records_orjson_refuses_are_decoded_by_the_standard_library(tmp_path):
    # NaN and integers beyond 64 bits: orjson raises, json accepts; the record must not be
    # rejected, and must equal what json makes of it
    raw = json.dumps(_record("a", lat=float("nan"), big=2**70)).encode()
    plain = json.dumps(_record("b", note="ünïcode ✓")).encode()
    url = _tar(tmp_path / "s.tar", [("a.json", raw), ("a.png", b"x" * 10),
                                     ("b.json", plain), ("b.png", b"y" * 10)])
    got = list(reader.iter_samples(url))
    assert [s["__key__"] for s in got] == ["a", "b"]
    assert math.isnan(got[0]["json"]["lat"]) and got[0]["json"]["big"] == 2**70
    assert got[1]["json"] == json.loads(plain)
    assert {k: v for k, v in got[0]["json"].items() if k != "lat"} == {
        k: v for k, v in json.loads(raw).items() if k != "lat"}


@pytest.mark.parametrize("bad", [b"\xff\xfe{}", b'{"key": ', b"[1, 2]"])
def test_bad_json_members_are_still_rejected(tmp_path, bad):
    url = _tar(tmp_path / "s.tar", [("a.json", bad), ("a.png", b"x"),
                                     ("b.json", json.dumps(_record("b")).encode()),
                                     ("b.png", b"y")])
    with pytest.raises(ShardError, match=r"a\.json"):
        list(reader.iter_samples(url))
    stats = reader.ReadStats()
    got = list(reader.iter_samples(url, on_error="skip", stats=stats))
    assert [s["__key__"] for s in got] == ["b"]
    assert stats.reasons == {"bad_json": 1}


# --------------------------------------------------------------------------- tar headers


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_tarfile_layout_reads_the_same(tmp_path, fmt):
    # long names (GNU "L" / pax path / ustar prefix) and sizes of every padding remainder
    members = []
    for i, size in enumerate([0, 1, 511, 512, 513, 5000]):
        key = f"{'d' * 60}/{'k' * (40 + 8 * i)}{i}"
        members.append((f"{key}.json", json.dumps(_record(key.split("/")[-1])).encode()))
        members.append((f"{key}.png", bytes([i]) * size))
    url = _tar(tmp_path / "s.tar", members, fmt)
    got = list(reader.iter_samples(url))
    assert [(s["__key__"], s["image"]) for s in got] == [
        (name[: -len(".png")], data) for name, data in members if name.endswith(".png")]


def test_a_damaged_header_is_still_caught(tmp_path):
    url = _tar(tmp_path / "s.tar", [("a.json", json.dumps(_record("a")).encode()),
                                     ("a.png", b"x" * 600)])
    raw = bytearray(Path(url).read_bytes())
    raw[3] ^= 0x01  # a name byte of the first header: only the checksum can tell
    Path(url).write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="checksum"):
        list(reader.iter_samples(url))


# --------------------------------------------------------------------------- rows and keys


def test_streamed_keys_are_shard_row_pairs_and_rows_match_the_views(tiny_root):
    ds = hf.load_dataset(str(tiny_root), "vqa", streaming=True, decode=False, split="train",
                         cache_dir=str(tiny_root.parent / "hf-cache-bench"))
    inner = ds._ex_iterable.ex_iterable
    got = list(inner)
    want = []
    for j, url in enumerate(inner.urls):
        k = 0
        for sample in reader.iter_samples(url):
            for row in views.rows("vqa", sample):
                want.append(((j, k), row))
                k += 1
    assert got == want
    assert len(got) == read_manifest(tiny_root)["configs"]["vqa"]["train"]


# --------------------------------------------------------------------------- the benchmarks


@pytest.fixture
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_read
        import full_scale

        yield bench_read, full_scale
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("config", ["vqa", "captions", "chat"])
def test_full_scale_fingerprints_catch_a_missing_row(tiny_root, bench_modules, config):
    _, full_scale = bench_modules
    want = full_scale.expected_fingerprints(tiny_root, config)
    ds = hf.load_dataset(str(tiny_root), config, streaming=True, decode=False,
                         cache_dir=str(tiny_root.parent / "hf-cache-bench"))
    got, rows = {}, {}
    for split in ds:
        fps = [full_scale._fingerprint_row(config, r) for r in ds[split]]
        got[split] = sum(fps) % (1 << 64)
        rows[split] = fps
    assert got == want
    assert {s: len(v) for s, v in rows.items()} == read_manifest(tiny_root)["configs"][config]
    split = next(iter(rows))
    assert sum(rows[split][1:]) % (1 << 64) != want[split]  # one row short is noticed


def test_bench_floors_count_the_manifest_samples(tiny_root, bench_modules):
    bench_read, _ = bench_modules
    manifest = read_manifest(tiny_root)
    paths = [str(tiny_root / s["path"]) for s in manifest["shards"]]
    n = manifest["counts"]["samples"]
    for fn in (bench_read.minimal_tar, bench_read.minimal_grouped, bench_read.minimal_samples,
               bench_read.minimal_samples_orjson,
               bench_read.stdlib_tarfile, bench_read.our_reader):
        assert fn(paths)[0] == n, fn.__name__
    raw = list(bench_read.iter_raw_samples(paths))
    assert [(s["key"], s["image"]) for s in raw] == [
        (s["__key__"], s["image"]) for p in paths for s in reader.iter_samples(p)]
