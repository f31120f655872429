"""Pixel members, version 2: predictor + zstd, read beside version 1, transcoded both ways.

Every mode and dtype the codec stores, under every predictor, must come back pixel-identical
through every decoder (numpy array, PIL image, Pillow plugin, pixel hash); old (version-1)
members and roots must keep reading; transcode must turn either version into the other with
the pixel hashes of the index unchanged and the bytes a build of that version makes.
Runs in ~15 s (one tiny synthetic build and four transcodes).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import zstandard
from PIL import Image

from sarlang_data.adapters import hf
from sarlang_data.errors import BuildError, ShardError
from sarlang_data.format import codec
from sarlang_data.format.manifest import PIXEL_COLUMN, read_index, read_manifest
from sarlang_data.format.verify import verify
from sarlang_data.ingest.build import BuildOptions, build
from sarlang_data.ingest.transcode import transcode_root
from sarlang_data.stream.reader import iter_samples

SHAPES = [(1, 1), (1, 9), (9, 1), (5, 7), (8, 8), (17, 9), (64, 64), (67, 130)]


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _array(mode: str, shape: tuple[int, int], rng: np.random.Generator, smooth: bool
           ) -> np.ndarray:
    """Pixels of a mode: random over the dtype's full range, or a smooth ramp plus noise."""
    descr, channels = codec.MODES[mode]
    dtype = np.dtype(descr)
    full = shape + ((channels,) if channels else ())
    if dtype.kind == "f":
        a = rng.standard_normal(full).astype(dtype)
        special = np.array([np.inf, -0.0, np.nan], dtype)  # any bits come back
        a.reshape(-1)[:3] = special[:a.size]
        return a
    info = np.iinfo(dtype)
    if not smooth:
        return rng.integers(info.min, info.max, full, endpoint=True, dtype=dtype)
    y, x = np.indices(full[:2])
    ramp = (3 * y + 2 * x)[..., None] if channels else 3 * y + 2 * x
    return (ramp + rng.integers(0, 3, full)).astype(dtype)


def _decompressed(member: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(member)


def _reference_pixels(raw: bytes) -> np.ndarray:
    """Decode a version-2 member's bytes as docs/format.md says, with numpy's own cumsum."""
    assert raw[:6] == b"\x93SARPX" and raw[6] == 2
    predictor = raw[7]
    arr = np.load(io.BytesIO(raw[8:]), allow_pickle=False)  # the .npy of the residuals
    u = {1: np.uint8, 2: np.uint16, 4: np.uint32}[arr.dtype.itemsize]
    res = arr.view(u)
    if predictor == 2:
        res = np.cumsum(res.reshape(-1), dtype=u).reshape(res.shape)
    if predictor >= 1:
        res = np.cumsum(res, axis=0, dtype=u)
    return res.view(arr.dtype)


# --------------------------------------------------------------------------- members


@pytest.mark.parametrize("mode", list(codec.MODES))
@pytest.mark.parametrize("predictor", [0, 1, 2])
def test_every_mode_and_predictor_round_trips(mode, predictor):
    rng = np.random.default_rng(predictor)
    for shape in SHAPES:
        for smooth in (False, True):
            a = _array(mode, shape, rng, smooth)
            sha = hashlib.sha256(codec.npy_header(a.dtype.str, a.shape) + a.tobytes()).hexdigest()
            member = codec._encode_v2(a, predictors=(predictor,))
            raw = _decompressed(member)
            # the documented layout: magic, version, predictor, then the .npy of residuals
            # whose data starts at a multiple of 64 bytes of the decompressed member
            assert raw[7] == predictor
            hlen = int.from_bytes(raw[16:18], "little")
            assert raw[8:16] == b"\x93NUMPY\x01\x00" and (18 + hlen) % 64 == 0
            assert _reference_pixels(raw).tobytes() == a.tobytes()
            got = codec.decode_array(member)
            assert got.dtype == a.dtype and got.shape == a.shape
            assert got.tobytes() == a.tobytes(), (mode, shape, smooth)
            assert codec.member_version(member) == 2
            assert codec.member_pixel_sha256(member) == sha
            im = codec.decode_image(member)
            assert im.mode == mode and im.size == (shape[1], shape[0])
            assert codec.pixel_sha256(im) == sha
            opened = Image.open(io.BytesIO(member))
            assert opened.format == codec.FORMAT and codec.pixel_sha256(opened) == sha
            slot = np.zeros_like(a)
            assert codec.decode_into(member, slot).tobytes() == a.tobytes()


@pytest.mark.parametrize("mode", list(codec.MODES))
def test_version_1_and_2_members_hold_the_same_pixels(mode):
    rng = np.random.default_rng(7)
    a = _array(mode, (33, 20), rng, smooth=True)
    v1, v2 = codec.encode_array(a, 1), codec.encode_array(a, 2)
    assert v1.pixel_sha256 == v2.pixel_sha256 == codec.pixel_sha256(Image.fromarray(a))
    assert [codec.member_version(m) for m in (v1.member, v2.member)] == [1, 2]
    assert codec.decode_array(v1.member).tobytes() == codec.decode_array(v2.member).tobytes() \
        == a.tobytes()
    # the same pixels always give the same bytes
    assert codec.encode_array(a.copy(), 2).member == v2.member


def _rule(sizes: list[int]) -> int:
    """The choice docs/format.md describes: least size * (1 + cost), the first on a tie."""
    scores = [n * (1 + c) for n, c in zip(sizes, (0.0, 0.08, 0.10), strict=True)]
    return scores.index(min(scores))


def test_the_smallest_predictor_is_chosen_unless_a_cheaper_one_is_nearly_as_small():
    rng = np.random.default_rng(3)
    y, x = np.indices((128, 128))
    smooth = ((x * 1.5 + y * 0.7) % 256).astype(np.uint8)  # a plane: grad leaves ~zeros
    noise = rng.integers(0, 256, (128, 128), dtype=np.uint8)  # nothing predicts noise
    # each row the one above plus a little noise: up leaves the noise, grad doubles it
    walk = np.cumsum(np.vstack([noise[:1], rng.integers(-2, 3, (127, 128))]), axis=0
                     ).astype(np.uint8)
    for a, want in ((smooth, 2), (noise, 0), (walk, 1)):
        member = codec.encode_array(a, 2).member
        sizes = [len(codec._encode_v2(a, predictors=(p,))) for p in range(3)]
        assert _decompressed(member)[7] == want == _rule(sizes)
        assert len(member) == sizes[want]
        assert codec.decode_array(member).tobytes() == a.tobytes()
    assert len(codec.encode_array(smooth, 2).member) < len(codec.encode_array(smooth, 1).member) / 4
    # images where the predictors come close: the rule, whichever it picks
    for k in range(6):
        a = (noise // (k + 1) + smooth // (6 - k)).astype(np.uint8)
        sizes = [len(codec._encode_v2(a, predictors=(p,))) for p in range(3)]
        assert _decompressed(codec.encode_array(a, 2).member)[7] == _rule(sizes)


def test_without_imagecodecs_the_numpy_prefix_sum_decodes_the_same(monkeypatch):
    a = _array("L", (67, 130), np.random.default_rng(9), smooth=True)
    member = codec._encode_v2(a, predictors=(2,))
    fast = codec.decode_array(member)
    monkeypatch.setattr(codec, "_delta_decode", None)
    assert codec.decode_array(member).tobytes() == fast.tobytes() == a.tobytes()


def test_scan_rows_equals_cumsum_for_any_height():
    rng = np.random.default_rng(11)
    for h in (1, 2, 7, 8, 9, 63, 64, 65, 200, 513):
        for trailing in ((5,), (3, 4)):
            a = rng.integers(0, 256, (h, *trailing), dtype=np.uint8)
            assert np.array_equal(codec._scan_rows(a.copy()), np.cumsum(a, axis=0, dtype=np.uint8))


def test_version_1_members_written_by_hand_still_decode():
    # the version-1 layout of docs/format.md, made here with numpy and zstandard only
    a = _array("RGB", (9, 13), np.random.default_rng(2), smooth=False)
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    member = zstandard.ZstdCompressor(level=3).compress(buf.getvalue())
    assert codec.member_version(member) == 1
    assert codec.decode_array(member).tobytes() == a.tobytes()
    assert codec.member_pixel_sha256(member) == hashlib.sha256(buf.getvalue()).hexdigest()
    im = Image.open(io.BytesIO(member))
    assert (im.mode, im.tobytes()) == ("RGB", a.tobytes())


def test_unknown_versions_and_predictors_are_clear_errors():
    a = _array("L", (4, 4), np.random.default_rng(0), smooth=False)
    raw = bytearray(_decompressed(codec._encode_v2(a, predictors=(1,))))
    for i, value, what in ((6, 3, "version 3"), (7, 9, "predictor 9")):
        bad = bytearray(raw)
        bad[i] = value
        member = zstandard.ZstdCompressor().compress(bytes(bad))
        with pytest.raises(ShardError, match=rf"{what}.*pip install -U sarlang-data"):
            codec.decode_array(member, url="s.tar", offset=512)
    with pytest.raises(ValueError, match="pixel version 3: unknown"):
        codec.encode_image(Image.fromarray(a), version=3)


# --------------------------------------------------------------------------- roots


@pytest.fixture(scope="module")
def roots(synth_tiny, tiny_root, tmp_path_factory) -> dict[str, Path]:
    """Source root, its transcodes to v1 and v2, and the v1 <-> v2 transcodes between them."""
    base = tmp_path_factory.mktemp("codec_v2")
    r = {"source": tiny_root}
    for name, src, version in (("v1", "source", 1), ("v2", "source", 2),
                               ("v1to2", "v1", 2), ("v2to1", "v2", 1)):
        r[name] = base / name
        transcode_root(r[src], r[name], pixel_version=version, workers=2, progress=False)
    r["built_v1"] = base / "built_v1"
    build(synth_tiny / "SARLANG_1M", r["built_v1"],
          BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=2, image_codec="zstd",
                       pixel_version=1), progress=False)
    return r


def test_transcode_goes_both_ways_pixel_identically(roots):
    # either way round gives the bytes of a direct transcode (and so of a build) of that version
    assert _files(roots["v1to2"]) == _files(roots["v2"])
    assert _files(roots["v2to1"]) == _files(roots["v1"]) == _files(roots["built_v1"])
    m1, m2 = read_manifest(roots["v1"]), read_manifest(roots["v2"])
    assert (m1["format_version"], m1["build"]["pixel_version"]) == (1, 1)
    assert (m2["format_version"], m2["build"]["pixel_version"]) == (2, 2)
    i1, i2 = read_index(roots["v1"]), read_index(roots["v2"])
    assert i1["key"].to_pylist() == i2["key"].to_pylist()
    assert i1[PIXEL_COLUMN].to_pylist() == i2[PIXEL_COLUMN].to_pylist()
    assert sum(h is not None for h in i2[PIXEL_COLUMN].to_pylist()) >= 10
    for name in ("v1", "v2"):
        m = read_manifest(roots[name])
        assert verify(roots[name])["images"] == m["counts"]["samples"]
        versions = {codec.member_version(s["image"])
                    for shard in m["shards"]
                    for s in iter_samples(str(roots[name] / shard["path"]))
                    if s["image_ext"] == codec.EXT}
        assert versions == {int(name[1])}


def test_old_roots_read_the_same_rows_as_new_ones(roots, tmp_path):
    def rows(root: Path) -> list:
        ds = hf.load_dataset(str(root), "images", split="train", streaming=True)
        return [(r["key"], r["image"].mode, r["image"].tobytes()) for r in ds]

    old, new, src = rows(roots["v1"]), rows(roots["v2"]), rows(roots["source"])
    assert old == new == src
    assert len(src) == read_manifest(roots["source"])["configs"]["images"]["train"]


def test_a_version_1_root_without_pixel_version_still_reads(roots, tmp_path):
    # roots built before version 2 have no build.pixel_version: their members are version 1
    m = read_manifest(roots["v1"])
    assert codec.pixel_version_of({k: v for k, v in m["build"].items()
                                   if k != "pixel_version"}) == 1
    assert codec.pixel_version_of(m["build"]) == 1


def test_transcode_refuses_an_unknown_pixel_version(roots, tmp_path):
    with pytest.raises(BuildError, match="pixel_version=3: unknown"):
        transcode_root(roots["source"], tmp_path / "x", pixel_version=3, progress=False)
    with pytest.raises(BuildError, match="pixel_version=0: unknown"):
        BuildOptions(image_codec="zstd", pixel_version=0).check()


def test_cli_pixel_version(roots, tmp_path, capsys):
    from sarlang_data.cli import main

    assert main(["transcode", str(roots["v2"]), "--out", str(tmp_path / "t"), "-q",
                 "--workers", "1", "--pixel-version", "1"]) == 0
    assert _files(tmp_path / "t") == _files(roots["v1"])
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["build"]["pixel_version"] == 1
