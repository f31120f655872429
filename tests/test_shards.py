import hashlib
import io
import json
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import zstandard

from sarlang_data.format.tar import (
    BLOCK,
    RECORD,
    ShardWriter,
    TarWriter,
    padded,
    plan_rollover,
    sample_bytes,
    tar_file_bytes,
    ustar_header,
    write_atomic,
)

SIZES = [0, 1, 511, 512, 513, 4096, 10_000]


def _samples(n=7, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        key = f"k{i:03d}_x-{i}"
        js = json.dumps({"key": key, "i": i}).encode()
        img = rng.integers(0, 256, SIZES[i % len(SIZES)], dtype=np.uint8).tobytes()
        ext = "png" if i % 2 else "jpg"
        out.append((key, [("json", js), (ext, img)]))
    return out


def _write(path, samples, compress="none"):
    with TarWriter(path, compress) as w:
        for key, members in samples:
            w.add_sample(key, members)
        return w.close()


@pytest.mark.parametrize(
    "name,size", [("a.json", 0), ("k.png", 5), ("x" * 91 + ".tif.zst", 8**11 - 1)])
def test_header_equals_tarfile_ustar(name, size):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = size, 0o644, 0, "", ""
    assert ustar_header(name, size) == ti.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    assert len(ustar_header(name, size)) == BLOCK


@pytest.mark.parametrize("name,size", [("x" * 100, 1), ("", 1), ("a.png", 8**11), ("a.png", -1)])
def test_header_rejects_what_ustar_cannot_hold(name, size):
    with pytest.raises(ValueError, match="ustar"):
        ustar_header(name, size)


def test_round_trip_bytes_and_offsets(tmp_path):
    samples = _samples()
    res = _write(tmp_path / "s.tar", samples)
    raw = (tmp_path / "s.tar").read_bytes()
    assert res.bytes == len(raw) and len(raw) % RECORD == 0
    assert res.sha256 == hashlib.sha256(raw).hexdigest()
    body = sum(sample_bytes(len(d) for _, d in m) for _, m in samples)
    assert len(raw) == tar_file_bytes(body)
    assert not list(tmp_path.glob("*.partial"))

    with tarfile.open(tmp_path / "s.tar") as tf:
        infos = tf.getmembers()
        got = {i.name: tf.extractfile(i).read() for i in infos}
    expected = [(f"{k}.{ext}", data) for k, m in samples for ext, data in m]
    assert [i.name for i in infos] == [n for n, _ in expected]
    assert all(got[n] == d for n, d in expected)
    for info in infos:
        assert (info.mode, info.uid, info.gid, info.mtime, info.uname, info.gname) == (
            0o644, 0, 0, 0, "", "")

    spans = [m for s in res.samples for m in s.members]
    for info, span, (_, data) in zip(infos, spans, expected, strict=True):
        assert (info.offset, info.offset_data, info.size) == (
            span.header_offset, span.data_offset, span.size)
        assert raw[span.data_offset:span.data_offset + span.size] == data
        header = raw[span.header_offset:span.header_offset + BLOCK]
        assert header == ustar_header(info.name, len(data))
    for s in res.samples:
        last = s.members[-1]
        assert s.offset == s.members[0].header_offset
        assert s.offset + s.size == last.data_offset + padded(last.size)
    assert res.samples[0].member("json").size == len(samples[0][1][0][1])
    assert res.samples[0].member("tif.zst") is None


def test_gnu_tar_lists_members(tmp_path):
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("no tar executable on this machine")
    samples = _samples()
    _write(tmp_path / "s.tar", samples)
    out = subprocess.run([tar, "tf", str(tmp_path / "s.tar")], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == [f"{k}.{ext}" for k, m in samples for ext, _ in m]


def test_webdataset_reads_every_sample(tmp_path):
    import webdataset as wds

    samples = _samples(9)
    _write(tmp_path / "a.tar", samples[:4])
    _write(tmp_path / "b.tar", samples[4:])
    urls = [str(tmp_path / "a.tar"), str(tmp_path / "b.tar")]
    got = list(wds.WebDataset(urls, shardshuffle=False))
    assert [g["__key__"] for g in got] == [k for k, _ in samples]
    for g, (_, members) in zip(got, samples, strict=True):
        for ext, data in members:
            assert g[ext] == data


def test_archive_is_zstd_of_the_plain_tar(tmp_path):
    samples = _samples()
    plain = _write(tmp_path / "s.tar", samples)
    packed = _write(tmp_path / "s.tar.zst", samples, compress="archive")
    stored = (tmp_path / "s.tar.zst").read_bytes()
    assert packed.bytes == len(stored) and packed.sha256 == hashlib.sha256(stored).hexdigest()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)) as r:
        assert r.read() == (tmp_path / "s.tar").read_bytes()
    assert packed.samples == plain.samples  # offsets refer to the decompressed tar


def test_same_input_same_bytes(tmp_path):
    for compress, ext in (("none", "tar"), ("archive", "tar.zst")):
        a = _write(tmp_path / f"a.{ext}", _samples(), compress)
        b = _write(tmp_path / f"b.{ext}", _samples(), compress)
        assert a.sha256 == b.sha256
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


def test_plan_rollover_rule():
    # 10240-byte record granularity: 3 samples of 3072 bytes fit (9216 + 1024 end blocks)
    assert plan_rollover([3072] * 4, RECORD) == [[0, 1, 2], [3]]
    assert plan_rollover([3072] * 4, RECORD - 1) == [[0], [1], [2], [3]]
    # an oversized sample still gets a shard, of its own
    assert plan_rollover([100, 50_000, 100], RECORD) == [[0], [1], [2]]
    assert plan_rollover([], RECORD) == []


def test_shard_writer_rolls_over(tmp_path):
    samples = _samples(20, seed=3)
    limit = 3 * RECORD
    with ShardWriter(lambda n: tmp_path / f"s-{n:05d}.tar", limit) as w:
        for key, members in samples:
            w.add_sample(key, members)
    results = w.results
    plan = plan_rollover([sample_bytes(len(d) for _, d in m) for _, m in samples], limit)
    assert len(results) == len(plan) > 1
    assert [[s.key for s in r.samples] for r in results] == [
        [samples[i][0] for i in idx] for idx in plan]
    for r in results:
        assert r.bytes == r.path.stat().st_size
        assert r.bytes <= limit or len(r.samples) == 1
    keys = []
    for r in results:
        with tarfile.open(r.path) as tf:
            keys += [n.split(".")[0] for n in tf.getnames()[::2]]
    assert keys == [k for k, _ in samples]


def test_failure_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError), TarWriter(tmp_path / "s.tar") as w:
        w.add_sample("a", [("json", b"{}")])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_atomic(tmp_path):
    p = write_atomic(tmp_path / "d" / "f.json", b"one")
    write_atomic(p, b"two")
    assert p.read_bytes() == b"two"
    assert [x.name for x in p.parent.iterdir()] == ["f.json"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="compress='gzip'"):
        TarWriter(tmp_path / "x.tar", "gzip")
    with pytest.raises(ValueError, match="shard_size=0"):
        ShardWriter(lambda n: tmp_path / f"{n}.tar", 0)
