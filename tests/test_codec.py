"""The pixel codec: member bytes, pixel hash, build/transcode/verify, and the read path.

A zstd root must give exactly the rows of its source root (images compared as pixels) in every
config, through every datasets path, without any PNG encoder running.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zstandard
from PIL import Image

from sarlang_data.adapters import hf
from sarlang_data.configs import CONFIGS
from sarlang_data.errors import BuildError, ConfigError, ShardError, VerifyError
from sarlang_data.format import codec
from sarlang_data.format.manifest import (
    PIXEL_COLUMN,
    index_table_bytes,
    manifest_bytes,
    read_index,
    read_manifest,
)
from sarlang_data.format.verify import verify
from sarlang_data.ingest.build import BuildOptions, build
from sarlang_data.ingest.transcode import transcode_root
from sarlang_data.stream.reader import iter_samples


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _images(rng: np.random.Generator) -> dict[str, Image.Image]:
    """One image of every mode the codec stores."""
    h, w = 5, 7
    u8 = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    arrays = [u8[..., 0].copy(), u8[..., :2].copy(), u8[..., :3].copy(), u8,
              rng.integers(0, 65536, (h, w), dtype=np.uint16),
              rng.integers(-2**31, 2**31 - 1, (h, w), dtype=np.int32),
              rng.standard_normal((h, w)).astype(np.float32)]
    images = {im.mode: im for im in map(Image.fromarray, arrays)}
    assert list(images) == list(codec.MODES)
    return images


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _pixels(im: Image.Image) -> tuple:
    return im.mode, im.size, im.tobytes()


# --------------------------------------------------------------------------- member bytes


@pytest.mark.parametrize("mode", list(codec.MODES))
def test_every_mode_round_trips_through_the_documented_layout(mode):
    im = _images(np.random.default_rng(1))[mode]
    enc = codec.encode_image(im, version=1)
    params = zstandard.get_frame_parameters(enc.member)
    npy = zstandard.ZstdDecompressor().decompress(enc.member)
    assert params.content_size == len(npy) and params.has_checksum
    # numpy reads it, with the dtype and shape of the table in docs/format.md
    arr = np.load(io.BytesIO(npy), allow_pickle=False)
    descr, channels = codec.MODES[mode]
    assert arr.dtype.str == descr
    assert arr.shape == ((5, 7, channels) if channels else (5, 7))
    assert np.array_equal(arr, np.asarray(im))
    hlen = int.from_bytes(npy[8:10], "little")
    assert npy[:8] == b"\x93NUMPY\x01\x00" and (10 + hlen) % 64 == 0 and npy[10 + hlen - 1] == 10
    assert npy[10 + hlen:] == arr.tobytes()
    # the pixel hash is the sha256 of those .npy bytes, from either side
    assert enc.pixel_sha256 == hashlib.sha256(npy).hexdigest() == codec.pixel_sha256(im)
    assert codec.member_pixel_sha256(enc.member) == enc.pixel_sha256
    # decoding gives back the same image and array
    out = codec.decode_image(enc.member)
    assert out.format == codec.FORMAT and _pixels(out) == _pixels(im)
    assert np.array_equal(codec.decode_array(enc.member), np.asarray(im))
    assert codec.mode_of(codec.decode_array(enc.member)) == mode
    # the same pixels always give the same bytes
    assert codec.encode_image(im.copy(), version=1).member == enc.member


def test_decode_array_views_or_owns_its_memory():
    im = _images(np.random.default_rng(2))["L"]
    member = codec.encode_image(im, version=1).member
    view = codec.decode_array(member)
    own = codec.decode_array(member, writable=True)
    assert not view.flags.writeable and own.flags.writeable
    own[0, 0] ^= 1  # writable arrays can be handed to torch.from_numpy without a copy
    assert np.array_equal(view, np.asarray(im))


def test_decode_into_fills_a_batch_slot():
    ims = _images(np.random.default_rng(6))
    batch = np.zeros((2, 5, 7, 3), np.uint8)
    slot = batch[1]
    assert codec.decode_into(codec.encode_image(ims["RGB"]).member, slot) is slot
    assert np.array_equal(batch[1], np.asarray(ims["RGB"])) and not batch[0].any()
    with pytest.raises(ValueError, match=r"holds uint8 pixels of shape \(5, 7\), out is uint8 of "
                                         r"shape \(5, 7, 3\)"):
        codec.decode_into(codec.encode_image(ims["L"]).member, batch[0])


def test_pixel_hash_tells_mode_size_and_pixels_apart():
    base = np.arange(6, dtype=np.uint8).reshape(2, 3)
    hashes = {
        codec.pixel_sha256(Image.fromarray(base)),
        codec.pixel_sha256(Image.fromarray(base.reshape(3, 2))),
        codec.pixel_sha256(Image.fromarray(base.astype(np.uint16))),
        codec.pixel_sha256(Image.fromarray(base[::-1].copy())),
    }
    assert len(hashes) == 4


def test_modes_without_an_array_form_keep_their_bytes():
    pal = Image.fromarray(np.zeros((4, 4), np.uint8)).convert("P")
    data = _png(pal)
    m = codec.encode_member(data, "png", codec.codec_rule("zstd"))
    assert (m.ext, m.data, m.pixel_sha256) == ("png", data, None)
    assert "mode P" in m.kept_because
    with pytest.raises(ValueError, match=r"image mode 'P'.*keep the source bytes"):
        codec.encode_image(pal)
    assert codec.pixel_sha256(pal) is None


def test_exif_orientation_keeps_the_bytes():
    im = Image.fromarray(np.zeros((4, 6), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    m = codec.encode_member(buf.getvalue(), "png", codec.codec_rule("zstd"))
    assert m.ext == "png" and "EXIF orientation (6)" in m.kept_because


def test_the_rule_decides_per_source_format():
    im = _images(np.random.default_rng(3))["L"]
    png = _png(im)
    jbuf = io.BytesIO()
    im.save(jbuf, format="JPEG", quality=90)
    jpg = jbuf.getvalue()
    zstd = codec.codec_rule("zstd")
    assert zstd == {"png": "zstd", "jpg": "source"}
    assert codec.encode_member(png, "png", codec.codec_rule("source")).data == png
    assert codec.encode_member(jpg, "jpg", zstd).data == jpg  # JPEG stays JPEG unless asked
    m = codec.encode_member(png, "png", zstd)
    assert m.ext == codec.EXT and _pixels(codec.decode_image(m.data)) == _pixels(im)
    both = codec.codec_rule("zstd", zstd_jpeg=True)
    j = codec.encode_member(jpg, "jpg", both)
    assert j.ext == codec.EXT
    assert _pixels(codec.decode_image(j.data)) == _pixels(Image.open(io.BytesIO(jpg)))
    assert codec.manifest_value(codec.codec_rule("source")) == "source"
    assert codec.manifest_value(both) == {"png": "zstd", "jpg": "zstd"}
    assert codec.codec_rule(codec.manifest_value(zstd)) == zstd


def test_bad_codec_names():
    with pytest.raises(ConfigError, match=r"image_codec='zstandard'.*zstd"):
        codec.codec_rule("zstandard")
    with pytest.raises(ConfigError, match=r"zstd_jpeg=True with image_codec='source'"):
        codec.codec_rule("source", zstd_jpeg=True)
    with pytest.raises(ConfigError, match=r"unknown image format 'webp'"):
        codec.codec_rule({"webp": "zstd"})


def test_corrupt_members_raise_shard_errors():
    member = codec.encode_image(_images(np.random.default_rng(4))["L"]).member
    cctx = zstandard.ZstdCompressor()
    with pytest.raises(ShardError, match=r"shard 'x.tar' at byte 7: pixel member is not a valid"):
        codec.decode_array(member[:-3], url="x.tar", offset=7)
    with pytest.raises(ShardError, match=r"not a valid zstd frame"):
        codec.decode_image(member[:20] + bytes(40) + member[60:])
    with pytest.raises(ShardError, match=r"no NUMPY magic"):
        codec.decode_array(cctx.compress(b"PNG? no" * 10))
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ShardError, match=r"\|u1 array of shape \(2, 2, 5\), which is no image"):
        codec.decode_array(cctx.compress(buf.getvalue()))
    npy = zstandard.ZstdDecompressor().decompress(member)
    with pytest.raises(ShardError, match=r"header says"):
        codec.member_pixel_sha256(cctx.compress(npy[:-1]))
    # numpy's own writer (another header layout) is read through numpy's parser
    buf = io.BytesIO()
    np.save(buf, np.full((3, 4), 9, np.uint8))
    assert codec.decode_array(cctx.compress(buf.getvalue())).tolist() == [[9] * 4] * 3


def test_pillow_plugin_opens_and_saves_members():
    import datasets

    im = _images(np.random.default_rng(5))["RGB"]
    member = codec.encode_image(im).member
    opened = Image.open(io.BytesIO(member))
    assert opened.format == "NPYZST" and (opened.mode, opened.size) == ("RGB", (7, 5))
    assert _pixels(opened) == _pixels(im)
    # the stock datasets feature decodes members through the plugin
    got = datasets.Image().decode_example({"bytes": member, "path": None})
    assert _pixels(got) == _pixels(im)
    # and datasets re-encodes such images in this format (lossless), never as PNG: as
    # version-1 members (one fast compression) of the same pixels
    v1 = codec.encode_image(im, version=1).member
    assert codec.member_version(member) == 2 and codec.member_version(v1) == 1
    buf = io.BytesIO()
    opened.save(buf, format=codec.FORMAT)
    assert buf.getvalue() == v1
    for image in (opened, codec.decode_image(member), Image.open(io.BytesIO(v1))):
        assert datasets.Image().encode_example(image) == {"path": None, "bytes": v1}
    # a zstd frame of something else is no image
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(zstandard.ZstdCompressor().compress(b"not pixels" * 9)))


# --------------------------------------------------------------------------- roots


@pytest.fixture(scope="module")
def zstd_root(tiny_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("codec") / "zstd"
    transcode_root(tiny_root, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def zstd_built(synth_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("codec") / "built"
    build(synth_tiny / "SARLANG_1M", out,
          BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=2, image_codec="zstd"),
          progress=False)
    return out


def test_build_zstd_stores_png_pixels_that_hash_like_the_release(zstd_built, tiny_root,
                                                                  synth_tiny):
    release = synth_tiny / "SARLANG_1M" / "SARimages"
    rows = read_index(zstd_built).to_pylist()
    src_rows = {r["key"]: r for r in read_index(tiny_root).to_pylist()}
    assert [r["key"] for r in rows] == list(src_rows)
    n_pixels = 0
    for r in rows:
        raw = (release / r["file_name"]).read_bytes()
        assert r["image_sha256"] == hashlib.sha256(raw).hexdigest() == \
            src_rows[r["key"]]["image_sha256"]
        if r["file_name"].endswith(".png"):
            n_pixels += 1
            assert r["image_ext"] == codec.EXT
            # the pixel hash is that of the release PNG decoded by Pillow, independently here
            with Image.open(release / r["file_name"]) as im:
                im.load()
                assert r[PIXEL_COLUMN] == codec.pixel_sha256(im)
        else:
            assert (r["image_ext"], r[PIXEL_COLUMN]) == ("jpg", None)
    assert n_pixels >= 10
    m = read_manifest(zstd_built)
    assert m["build"]["image_codec"] == {"jpg": "source", "png": "zstd"}
    assert verify(zstd_built) == {"shards": len(m["shards"]), "samples": len(rows),
                                  "images": len(rows)}
    # the JPEG members are the release's bytes; the PNG members decode to its pixels
    for shard in m["shards"]:
        for s in iter_samples(str(zstd_built / shard["path"])):
            raw = (release / s["json"]["file_name"]).read_bytes()
            if s["image_ext"] == "jpg":
                assert s["image"] == raw
            else:
                assert _pixels(codec.decode_image(s["image"])) == \
                    _pixels(Image.open(io.BytesIO(raw)))


def test_transcode_gives_the_bytes_of_a_zstd_build(zstd_root, zstd_built, tiny_root):
    assert _files(zstd_root) == _files(zstd_built)
    src, new = read_manifest(tiny_root), read_manifest(zstd_root)
    # only where the images sit changes; counts, configs and build options stay
    for key in ("counts", "configs", "rejects"):
        want = dict(src[key], bytes=new["counts"]["bytes"]) if key == "counts" else src[key]
        assert new[key] == want
    # version-2 pixel members: a reader of format version 1 must not take the root
    assert (src["format_version"], new["format_version"]) == (1, 2)
    assert new["build"]["pixel_version"] == 2 and "pixel_version" not in src["build"]
    assert {k: v for k, v in new["build"].items() if k not in ("image_codec", "pixel_version")} \
        == {k: v for k, v in src["build"].items() if k != "image_codec"}
    assert [(s["path"], s["samples"], s["configs"]) for s in new["shards"]] == \
        [(s["path"], s["samples"], s["configs"]) for s in src["shards"]]
    # on speckled SAR the pixels take about the PNG's bytes
    assert new["counts"]["bytes"] <= 1.1 * src["counts"]["bytes"]


def test_build_is_deterministic_and_resumes_with_cached_pixels(zstd_built, synth_tiny,
                                                               tmp_path):
    out = tmp_path / "again"
    opts = BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=1, image_codec="zstd")
    state = out / ".build" / "pixels"
    state.mkdir(parents=True)
    # a stale, damaged cache entry is re-encoded, not trusted
    first = next(p for p in (zstd_built / "data").rglob("*.tar"))
    key = next(iter_samples(str(first)))["json"]
    (state / f"{key['image_sha256']}.png.l{codec.LEVEL}.{codec.EXT}").write_bytes(b"junk")
    build(synth_tiny / "SARLANG_1M", out, opts, progress=False)
    assert _files(out) == _files(zstd_built)


@pytest.mark.parametrize("compress", ["none", "archive"])
def test_transcode_equals_build_with_originals_rollover_and_archives(compress, tmp_path):
    from build_fixture import make_release

    fx = make_release(tmp_path)
    opts = {"workers": 1, "originals": True, "compress": compress, "max_reject_rate": 0.5,
            "shard_size": 12 * 1024}  # small: groups roll over into several shards
    build(fx["release"], tmp_path / "src", BuildOptions(**opts), progress=False)
    build(fx["release"], tmp_path / "z", BuildOptions(**opts, image_codec="zstd",
                                                      zstd_jpeg=True), progress=False)
    transcode_root(tmp_path / "src", tmp_path / "t", zstd_jpeg=True, progress=False,
                   workers=1 if compress == "none" else 2)
    assert _files(tmp_path / "t") == _files(tmp_path / "z")
    m = read_manifest(tmp_path / "t")
    assert len(m["shards"]) > len({(s["split"], s["tier"], s["cities"][0])
                                   for s in m["shards"]})
    rows = read_index(tmp_path / "t").to_pylist()
    assert {r["image_ext"] for r in rows} == {codec.EXT}
    assert all(r["tif_size"] for r in rows if r["file_name"].endswith(".png"))
    assert verify(tmp_path / "t")["images"] == len(rows)


def test_transcode_with_jpeg_pixels_then_verify(tiny_root, tmp_path):
    out = tmp_path / "all"
    m = transcode_root(tiny_root, out, zstd_jpeg=True, workers=2, progress=False)
    assert m["build"]["image_codec"] == {"jpg": "zstd", "png": "zstd"}
    rows = read_index(out).to_pylist()
    assert {r["image_ext"] for r in rows} == {codec.EXT}
    assert verify(out)["images"] == len(rows)
    # a zstd root transcodes on (JPEG pixels added), but never back to source bytes
    again = transcode_root(out, tmp_path / "same", zstd_jpeg=True, workers=1, progress=False)
    assert _files(tmp_path / "same") == _files(out) and again == m
    with pytest.raises(BuildError, match=r"stores its jpg images as pixels.*not in it"):
        transcode_root(out, tmp_path / "back", workers=1, progress=False)
    assert not (tmp_path / "back").exists()


def test_transcode_refuses_a_busy_folder_and_resumes_its_own(tiny_root, zstd_root, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match=r"not empty.*new or empty folder"):
        transcode_root(tiny_root, busy, workers=1, progress=False)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    with pytest.raises(BuildError, match=r"is the source root"):
        transcode_root(tiny_root, tiny_root, workers=1, progress=False)
    # an interrupted transcode (marker left, half the files) is cleared and redone
    half = tmp_path / "half"
    shutil.copytree(zstd_root, half)
    (half / "manifest.json").unlink()
    (half / ".transcode").mkdir()
    (half / "data" / "stale.tar").write_bytes(b"x")
    transcode_root(tiny_root, half, workers=1, progress=False)
    assert _files(half) == _files(zstd_root)


def test_transcode_checks_source_images(copy_root, tmp_path):
    root = copy_root()
    row = next(r for r in read_index(root).to_pylist() if r["image_ext"] == "png")
    with open(root / row["shard"], "r+b") as f:
        f.seek(row["image_offset"] + row["image_size"] // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(BuildError, match=rf"image {row['key']}\.png has sha256 .* index\.parquet"):
        transcode_root(root, tmp_path / "out", workers=1, progress=False)


def test_verify_checks_pixel_hashes(zstd_root, tmp_path):
    # a wrong pixel hash in the index (index hash fixed up in the manifest)
    root = tmp_path / "wrong"
    shutil.copytree(zstd_root, root)
    table = read_index(root)
    hashes = table[PIXEL_COLUMN].to_pylist()
    i = next(i for i, h in enumerate(hashes) if h)
    key = table["key"][i].as_py()
    hashes[i] = "0" * 64
    import pyarrow as pa

    table = table.set_column(table.column_names.index(PIXEL_COLUMN), PIXEL_COLUMN,
                             pa.array(hashes, pa.string()))
    data = index_table_bytes(table)
    (root / "index.parquet").write_bytes(data)
    m = read_manifest(root)
    m["index"]["sha256"] = hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_bytes(manifest_bytes(m))
    with pytest.raises(VerifyError, match=rf"image {key}\.npy\.zst pixel_sha256 expected 0{{64}}"):
        verify(root)
    # a damaged member: zstd's checksum (or the hash) catches it
    root2 = tmp_path / "flipped"
    shutil.copytree(zstd_root, root2)
    row = next(r for r in read_index(root2).to_pylist() if r["image_ext"] == codec.EXT)
    with open(root2 / row["shard"], "r+b") as f:
        f.seek(row["image_offset"] + row["image_size"] - 9)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(VerifyError, match=rf"image {row['key']}\.npy\.zst: .*pixel member"):
        verify(root2)


# --------------------------------------------------------------------------- read path


def _norm(value):
    """Rows with images as (mode, size, pixels), so PNG and pixel rows compare."""
    if isinstance(value, Image.Image):
        return ("image",) + _pixels(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _stream(root, name, tmp_path, **kw):
    ds = hf.load_dataset(str(root), name, streaming=True, cache_dir=str(tmp_path / "c"), **kw)
    return {split: [_norm(r) for r in part] for split, part in ds.items()}


@pytest.fixture
def no_png_encoder(monkeypatch):
    """Make every PNG (zlib) encoder and every ``Image.save`` raise."""
    from PIL import PngImagePlugin

    def refuse(*args, **kwargs):
        raise AssertionError("an image was encoded on the read path")

    real = Image._getencoder

    def getencoder(mode, encoder_name, *args, **kwargs):
        if encoder_name == "zip":
            refuse()
        return real(mode, encoder_name, *args, **kwargs)

    monkeypatch.setattr(PngImagePlugin, "_save", refuse)
    monkeypatch.setitem(Image.SAVE, "PNG", refuse)
    monkeypatch.setattr(Image.Image, "save", refuse)
    monkeypatch.setattr(Image, "_getencoder", getencoder)
    with pytest.raises(AssertionError, match="encoded on the read path"):
        _png(Image.new("L", (2, 2)))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_config_gives_the_same_rows_from_either_codec(name, tiny_root, zstd_root,
                                                            tmp_path, no_png_encoder):
    src = _stream(tiny_root, name, tmp_path)
    new = _stream(zstd_root, name, tmp_path)
    assert new == src
    assert sum(len(v) for v in src.values()) == sum(
        read_manifest(tiny_root)["configs"][name].values())


def test_prepared_datasets_and_formats_never_encode_png(tiny_root, zstd_root, tmp_path,
                                                        no_png_encoder):
    for name in ("images", "vqa", "chat"):
        src = hf.load_dataset(str(tiny_root), name, cache_dir=str(tmp_path / "a"))
        new = hf.load_dataset(str(zstd_root), name, cache_dir=str(tmp_path / "b"))
        assert new.keys() == src.keys()
        for split in src:
            assert [_norm(r) for r in new[split]] == [_norm(r) for r in src[split]]
    ds = hf.load_dataset(str(zstd_root), "images", split="train", cache_dir=str(tmp_path / "b"))
    ref = hf.load_dataset(str(tiny_root), "images", split="train", cache_dir=str(tmp_path / "a"))
    for fmt in ("numpy", "torch"):
        got = [np.asarray(r["image"]) for r in ds.with_format(fmt)]
        want = [np.asarray(r["image"]) for r in ref.with_format(fmt)]
        assert len(got) == len(want) > 0
        assert all(g.shape == w.shape and (g == w).all() for g, w in zip(got, want, strict=True))
    stream = hf.load_dataset(str(zstd_root), "images", split="train", streaming=True)
    arrays = [r["image"] for r in stream.with_format("numpy")]
    assert [a.shape for a in arrays] == [np.asarray(r["image"]).shape for r in ref]


def test_dataloader_workers_decode_pixel_members(tiny_root, zstd_root, no_png_encoder):
    import torch

    def collate(batch):
        return [(r["key"], np.asarray(r["image"]).tobytes()) for r in batch]

    got = {}
    for root in (tiny_root, zstd_root):
        ds = hf.load_dataset(str(root), "images", split="train", streaming=True)
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2,
                                             collate_fn=collate)
        got[root] = sorted(x for batch in loader for x in batch)
    assert got[zstd_root] == got[tiny_root]
    assert len(got[tiny_root]) == read_manifest(tiny_root)["configs"]["images"]["train"]


def test_undecoded_rows_carry_the_member_and_decode_array_reads_it(tiny_root, zstd_root,
                                                                   tmp_path):
    src = hf.load_dataset(str(tiny_root), "images", split="test", streaming=True, decode=False)
    new = hf.load_dataset(str(zstd_root), "images", split="test", streaming=True, decode=False)
    n = 0
    for a, b in zip(src, new, strict=True):
        assert a["key"] == b["key"]
        pil = np.asarray(Image.open(io.BytesIO(a["image"]["bytes"])))
        if b["image"]["path"].endswith(".npy.zst"):
            n += 1
            assert np.array_equal(codec.decode_array(b["image"]["bytes"]), pil)
        else:
            assert b["image"] == a["image"]
    assert n > 0


def test_cli_build_and_transcode(synth_tiny, tiny_root, zstd_root, tmp_path, capsys):
    from sarlang_data.cli import main

    assert main(["transcode", str(tiny_root), "--out", str(tmp_path / "t"), "-q",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"-> {tmp_path / 't'}" in out and '"png": "zstd"' in out
    assert _files(tmp_path / "t") == _files(zstd_root)
    assert main(["build", str(synth_tiny / "SARLANG_1M"), "--out", str(tmp_path / "b"), "-q",
                 "--gsd-table", str(synth_tiny / "gsd_table.csv"), "--workers", "1",
                 "--image-codec", "zstd", "--zstd-jpeg"]) == 0
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["build"]["image_codec"] == {"jpg": "zstd", "png": "zstd"}
    assert main(["transcode", str(zstd_root), "--image-codec", "source",
                 "--out", str(tmp_path / "x")]) == 2
    assert "stores its png images as pixels" in capsys.readouterr().err
