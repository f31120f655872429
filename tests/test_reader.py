import hashlib
import http.server
import io
import json
import threading
import tracemalloc

import fsspec
import pytest
import zstandard

from sarlang_data import remote
from sarlang_data.errors import ConfigError, RangeError, ShardError
from sarlang_data.format.manifest import read_index, read_manifest
from sarlang_data.schema import text_id
from sarlang_data.stream import reader


def _index_by_shard(root):
    rows = read_index(root).to_pylist()
    out = {}
    for r in rows:
        out.setdefault(r["shard"], []).append(r)
    return out


def _record(key, n=2):
    return {"key": key, "city": "nice", "tier": "vhr", "split": "train", "source": "oem_sar",
            "gsd_m": 0.3, "captions": [], "qa": [{"question": f"q{i}", "answer": "a"}
                                                for i in range(n)]}


def _members(n, size=700, originals=False):
    out = []
    for i in range(n):
        key = f"k{i:03d}"
        out.append((f"{key}.json", json.dumps(_record(key)).encode()))
        out.append((f"{key}.png", bytes([i % 251]) * (size + i)))
        if originals:
            out.append((f"{key}.tif.zst",
                        zstandard.ZstdCompressor().compress(b"TIFF" + bytes([i]) * 5000)))
    return out


def _offsets(members):
    """Header offset of every member of a tarfile-written ustar tar."""
    pos, out = 0, []
    for _, data in members:
        out.append(pos)
        pos += 512 + -(-len(data) // 512) * 512
    return out


# --------------------------------------------------------------------------- round trips


def test_every_sample_of_a_built_root_matches_the_index(tiny_root):
    manifest = read_manifest(tiny_root)
    index = _index_by_shard(tiny_root)
    stats = reader.ReadStats()
    total = 0
    for shard in manifest["shards"]:
        samples = list(reader.iter_samples(str(tiny_root / shard["path"]), stats=stats))
        expected = index[shard["path"]]
        assert len(samples) == shard["samples"] == len(expected)
        for s, r in zip(samples, expected, strict=True):
            assert s["__key__"] == r["key"] == s["json"]["key"]
            assert s["__offset__"] == r["offset"]
            assert s["image_ext"] == r["image_ext"]
            assert hashlib.sha256(s["image"]).hexdigest() == r["image_sha256"]
            # the record's captions are the index's, each with its stored id first
            assert s["json"]["captions"] == [
                {"id": text_id(r["key"], c), **c} for c in r["captions"]]
            assert [q["question"] for q in s["json"]["qa"]] == [q["question"] for q in r["qa"]]
            assert s["__url__"] == str(tiny_root / shard["path"])
        total += len(samples)
    assert stats.samples == total == manifest["counts"]["samples"]
    assert stats.shards == len(manifest["shards"]) and stats.skipped == 0


def test_tar_zst_file_and_memory_urls_read_the_same_samples(tiny_root, tmp_path, tar_members):
    shard = max(read_manifest(tiny_root)["shards"], key=lambda s: s["samples"])
    path = tiny_root / shard["path"]
    plain = list(reader.iter_samples(str(path)))
    zst = tmp_path / "s.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor(level=3).compress(path.read_bytes()))
    fs = fsspec.filesystem("memory")
    fs.pipe("/reader-test/s.tar", path.read_bytes())
    try:
        for url in (str(zst), path.as_uri(), "memory://reader-test/s.tar"):
            got = list(reader.iter_samples(url))
            assert [(s["__key__"], s["json"], s["image"]) for s in got] == [
                (s["__key__"], s["json"], s["image"]) for s in plain]
    finally:
        fs.rm("/reader-test", recursive=True)
    assert len(plain) == shard["samples"] == len(tar_members(path)) // 2


def test_originals_are_kept_compressed_until_asked(tmp_path, write_tar):
    path = write_tar(tmp_path / "o.tar", _members(3, originals=True))
    samples = list(reader.iter_samples(str(path)))
    assert [s["__key__"] for s in samples] == ["k000", "k001", "k002"]
    for i, s in enumerate(samples):
        assert s["tif.zst"][:4] == b"\x28\xb5\x2f\xfd"  # still a zstd frame
        assert reader.original_of(s) == b"TIFF" + bytes([i]) * 5000
    assert reader.original_of({"json": {}, "image": b""}) is None
    with pytest.raises(ShardError, match=r"'o.tar' at byte 512: zstd member is corrupt"):
        reader.decompress_member(b"\x28\xb5\x2f\xfd garbage", url="o.tar", offset=512)


def test_memory_stays_flat_over_a_large_shard(tmp_path, write_tar):
    # 300 samples x 60 KB: the reader must hold one sample, never the member list
    path = write_tar(tmp_path / "big.tar", _members(300, size=60_000))
    tracemalloc.start()
    try:
        n = 0
        for s in reader.iter_samples(str(path)):
            n += len(s["image"]) > 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 300
    assert peak < 1_000_000, peak  # the shard is 18 MB


def test_gnu_long_names_and_pax_paths_are_followed(tmp_path):
    import tarfile

    key = "k" * 120  # too long for a ustar name: tarfile writes a GNU or pax header
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w", format=fmt) as tf:
            for ext, data in (("json", json.dumps(_record(key)).encode()), ("jpg", b"JPEG")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        p = tmp_path / f"long{fmt}.tar"
        p.write_bytes(bio.getvalue())
        (s,) = reader.iter_samples(str(p))
        assert s["__key__"] == key and s["image"] == b"JPEG" and s["image_ext"] == "jpg"


def test_parse_header_checks_the_checksum():
    from sarlang_data.format.tar import ustar_header

    h = ustar_header("abc.json", 1234)
    assert reader.parse_header(h) == (b"abc.json", 1234, b"0")
    bad = bytearray(h)
    bad[3] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        reader.parse_header(bytes(bad))


# --------------------------------------------------------------------------- corrupt input


def _cut(tmp_path, write_tar, n_bytes_from):
    members = _members(5)
    full = write_tar(tmp_path / "full.tar", members).read_bytes()
    offs = _offsets(members)
    cut = n_bytes_from(offs)
    p = tmp_path / "cut.tar"
    p.write_bytes(full[:cut])
    return p, cut


def test_truncated_inside_a_member(tmp_path, write_tar):
    # sample 2 = members 4 (json) and 5 (png): cut 10 bytes into the png's data
    p, cut = _cut(tmp_path, write_tar, lambda offs: offs[5] + 512 + 10)
    with pytest.raises(ShardError, match=rf"'{p}' at byte {cut}: .*inside member 'k002.png'"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    assert got == ["k000", "k001"]
    assert stats.skipped == 1 and stats.reasons == {"truncated": 1}
    assert stats.skipped_shard_tails == 1


def test_truncated_without_end_blocks(tmp_path, write_tar):
    p, cut = _cut(tmp_path, write_tar, lambda offs: offs[6])  # ends right before sample 3
    with pytest.raises(ShardError, match=rf"at byte {cut}: .*end-of-archive"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    # sample 2 may have had more members: without the end blocks it cannot be trusted
    assert got == ["k000", "k001"] and stats.reasons == {"truncated": 1}


@pytest.mark.parametrize("member,lost", [(4, "k002"), (5, "k002"), (0, "k000"), (9, "k004")])
def test_bad_header_checksum_skips_only_its_sample(tmp_path, write_tar, member, lost):
    members = _members(5)
    raw = bytearray(write_tar(tmp_path / "s.tar", members).read_bytes())
    at = _offsets(members)[member]
    raw[at + 2] ^= 0x20  # a name byte: the checksum no longer matches
    p = tmp_path / "bad.tar"
    p.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=rf"'{p}' at byte {at}: tar header checksum"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    assert got == [k for k in ("k000", "k001", "k002", "k003", "k004") if k != lost]
    assert stats.skipped == 1 and sum(stats.reasons.values()) == 1


def test_bad_zstd_frame(tmp_path, write_tar):
    raw = write_tar(tmp_path / "s.tar", _members(40, size=3000)).read_bytes()
    frame = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(raw)
    p = tmp_path / "magic.tar.zst"
    p.write_bytes(b"\0\0\0\0" + frame[4:])
    with pytest.raises(ShardError, match=rf"'{p}' at byte 0: the zstd stream is corrupt"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    assert list(reader.iter_samples(str(p), on_error="skip", stats=stats)) == []
    assert stats.skipped_shard_tails == 1
    # damage in the middle: zstd reports it (block or checksum error) or the tar parser does
    mid = bytearray(frame)
    for i in range(len(mid) // 2, len(mid) // 2 + 64):
        mid[i] ^= 0xFF
    p2 = tmp_path / "mid.tar.zst"
    p2.write_bytes(bytes(mid))
    with pytest.raises(ShardError, match=rf"'{p2}' at byte \d+"):
        list(reader.iter_samples(str(p2)))
    stats = reader.ReadStats()
    got = list(reader.iter_samples(str(p2), on_error="skip", stats=stats))
    assert len(got) < 40 and stats.skipped + stats.skipped_shard_tails >= 1


@pytest.mark.parametrize("drop,reason,cause", [
    ("k001.png", "missing_image", "has no image member"),
    ("k001.json", "missing_json", "has no k001.json member"),
])
def test_sample_missing_a_member(tmp_path, write_tar, drop, reason, cause):
    members = [m for m in _members(3) if m[0] != drop]
    at = _offsets(members)[2]  # k001's remaining member
    p = write_tar(tmp_path / "m.tar", members)
    with pytest.raises(ShardError, match=rf"'{p}' at byte {at}: sample 'k001' {cause}"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    assert got == ["k000", "k002"] and stats.reasons == {reason: 1} and stats.samples == 2


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_json_member_that_is_not_a_json_object(tmp_path, write_tar, payload):
    members = _members(3)
    members[2] = ("k001.json", payload)
    p = write_tar(tmp_path / "j.tar", members)
    with pytest.raises(ShardError, match=rf"at byte {_offsets(members)[2]}: member k001.json"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    assert got == ["k000", "k002"] and stats.reasons == {"bad_json": 1}


def test_duplicate_member(tmp_path, write_tar):
    members = _members(3)
    members.insert(4, ("k001.png", b"again"))
    p = write_tar(tmp_path / "d.tar", members)
    with pytest.raises(ShardError, match=rf"at byte {_offsets(members)[4]}: sample 'k001' has two"):
        list(reader.iter_samples(str(p)))
    stats = reader.ReadStats()
    got = [s["__key__"] for s in reader.iter_samples(str(p), on_error="skip", stats=stats)]
    assert got == ["k000", "k002"] and stats.reasons == {"duplicate_member": 1}


def test_unknown_on_error_policy(tmp_path, write_tar):
    p = write_tar(tmp_path / "x.tar", _members(1))
    with pytest.raises(ConfigError, match=r"on_error='ignore': unknown on_error policy.*skip"):
        list(reader.iter_samples(str(p), on_error="ignore"))


# --------------------------------------------------------------------------- range reads


def test_read_range_local_and_memory(tmp_path):
    data = bytes(range(256)) * 40
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    fs = fsspec.filesystem("memory")
    fs.pipe("/range-test/f.bin", data)
    try:
        for url in (str(p), p.as_uri(), "memory://range-test/f.bin"):
            assert remote.read_range(url, 1000, 300) == data[1000:1300]
            assert remote.read_range(url, 0, 0) == b""
            with pytest.raises(RangeError, match=r"got 240 bytes, asked for 300; .*shorter"):
                remote.read_range(url, len(data) - 240, 300)
    finally:
        fs.rm("/range-test", recursive=True)
    with pytest.raises(ValueError, match="must be >= 0"):
        remote.read_range(str(p), -1, 5)


class _Handler(http.server.BaseHTTPRequestHandler):
    data = bytes(range(256)) * 64  # 16 KiB

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        rng = self.headers.get("Range")
        if mode == "missing":
            self.send_error(404)
            return
        if mode == "honour" and rng:
            start, end = (int(x) for x in rng.split("=")[1].split("-"))
            body = self.data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.data)}")
        elif mode == "liar" and rng:
            body = self.data[: len(self.data) // 2]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(self.data)}")
        else:  # ignores Range: the whole file with 200
            body = self.data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_base():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_read_range_http_checks_status_and_content_range(http_base):
    data = _Handler.data
    assert remote.read_range(f"{http_base}/honour/f", 1000, 300) == data[1000:1300]
    with pytest.raises(RangeError, match=r"ignored Range and answered 200 .*allow_full=True"):
        remote.read_range(f"{http_base}/ignore/f", 1000, 300)
    got = remote.read_range(f"{http_base}/ignore/f", 1000, 300, allow_full=True)
    assert got == data[1000:1300]
    with pytest.raises(RangeError, match=r"status 206 but Content-Range is 'bytes 0-8191/16384'"):
        remote.read_range(f"{http_base}/liar/f", 1000, 300)
    with pytest.raises(RangeError, match=r"HTTP status 404"):
        remote.read_range(f"{http_base}/missing/f", 0, 10)


def test_streams_a_shard_over_http(http_base, tiny_root):
    # the shard is served whole (the handler ignores Range): block_size=0 streams one GET
    shard = read_manifest(tiny_root)["shards"][0]
    data = (tiny_root / shard["path"]).read_bytes()
    old = _Handler.data
    _Handler.data = data
    try:
        got = list(reader.iter_samples(f"{http_base}/ignore/x.tar"))
    finally:
        _Handler.data = old
    assert [s["__key__"] for s in got] == [s["__key__"] for s in
                                           reader.iter_samples(str(tiny_root / shard["path"]))]
