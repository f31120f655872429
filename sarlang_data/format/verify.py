"""``verify``: check a dataset root against its manifest and index, shard by shard.

Every listed shard must exist with the manifest's size and sha256, every sample's members must
sit at the index's offsets, and every image must hash to the index's sha256 (and, for pixel
members, decode to its pixel hash). What verify promises is written in ``docs/format.md``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SarlangError, VerifyError
from ..remote import _fs, join
from .manifest import PIXEL_COLUMN, read_manifest

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- verify


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes and counts everything read from ``raw``."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # noqa: D102 - io protocol
        data = self.raw.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data

    def readinto(self, b) -> int:  # noqa: D102 - io protocol
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) whatever is left."""
        while self.read(1 << 20):
            pass


def _split_name(name: str) -> tuple[str, str]:
    key, _, ext = posixpath.basename(name).partition(".")
    return key, ext


def _check_image(name: str, ext: str, data: bytes, row: Mapping[str, Any]) -> str | None:
    """Return what is wrong with an image member, or None.

    A member of the release's bytes must hash to ``image_sha256``; a pixel member
    (``npy.zst``) must decompress to the pixels whose hash the build took from the decoded
    source image (``pixel_sha256``).
    """
    from . import codec

    if ext != codec.EXT:
        got = hashlib.sha256(data).hexdigest()
        if got != row["image_sha256"]:
            return (f"image {name} sha256 expected {row['image_sha256']} (index.parquet), "
                    f"found {got}")
        return None
    want = row.get(PIXEL_COLUMN)
    if not want:
        return f"image {name} holds pixels but index.parquet has no {PIXEL_COLUMN} for it"
    try:
        got = codec.member_pixel_sha256(data)
    except SarlangError as e:
        return f"image {name}: {e}"
    if got != want:
        return f"image {name} {PIXEL_COLUMN} expected {want} (index.parquet), found {got}"
    return None


def _decode_problem(name: str, ext: str, data: bytes) -> str | None:
    """Decode an image member fully; return what stops it, or None."""
    import warnings

    from PIL import Image

    from . import codec

    try:
        if ext == codec.EXT:
            codec.decode_array(data)
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except Exception as e:  # noqa: BLE001 - whatever the decoder raises is the finding
        return f"image {name} does not decode ({type(e).__name__}: {e})"
    return None


def _stray_shards(fs, base: str, listed: set[str]) -> tuple[list[str], bool]:
    """Shard files under ``data/`` that the manifest does not list, and whether it could tell.

    Stock ``datasets`` reads every ``.tar`` its globs match, so such a file would add rows the
    manifest and index know nothing of. Roots whose storage cannot list folders (plain HTTP
    servers without listings) cannot be checked.
    """
    try:
        found = fs.find(join(base, "data"))
    except Exception:  # noqa: BLE001 - a server without folder listings
        return [], False
    prefix = base.rstrip("/") + "/"
    out = []
    for p in found:
        p = str(p)
        rel = p[len(prefix):] if p.startswith(prefix) else p.split("/data/", 1)[-1]
        if not rel.startswith("data/"):
            rel = "data/" + rel.split("data/", 1)[-1]
        if rel.endswith((".tar", ".tar.zst", ".tzst")) and rel not in listed:
            out.append(rel)
    return sorted(out), True


def _verify_shard(
    fs, base: str, shard: Mapping[str, Any], rows: list[dict], check_images: bool,
    decode: bool = False,
) -> tuple[list[str], int, int]:
    """Check one shard; return (problems, samples found, images hashed)."""
    rel = shard["path"]
    path = join(base, rel)
    if not fs.exists(path):
        return [f"{rel}: missing (expected {shard['bytes']} bytes, sha256 {shard['sha256']})"], 0, 0
    size = fs.size(path)
    if size != shard["bytes"]:
        return [f"{rel}: size expected {shard['bytes']} bytes (manifest), found {size}"], 0, 0
    problems: list[str] = []
    by_key = {r["key"]: r for r in rows}
    found: list[str] = []  # sample keys in tar order
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    images = 0
    with fs.open(path, "rb") as raw:
        hashed = _HashingReader(raw)
        stream = hashed
        dctx_reader = None
        try:
            if rel.endswith(".zst"):
                import zstandard

                dctx_reader = zstandard.ZstdDecompressor().stream_reader(hashed)
                stream = dctx_reader
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for info in tf:
                    key, ext = _split_name(info.name)
                    if not found or found[-1] != key:
                        found.append(key)
                        members[key] = {}
                    members[key][ext] = info
                    row = by_key.get(key)
                    if check_images and row is not None and ext == row["image_ext"]:
                        data = tf.extractfile(info).read()
                        images += 1
                        problem = _check_image(info.name, ext, data, row)
                        if problem is None and decode:
                            problem = _decode_problem(info.name, ext, data)
                        if problem:
                            problems.append(f"{rel}: {problem}")
            if dctx_reader is not None:
                while dctx_reader.read(1 << 20):
                    pass
        except Exception as e:  # noqa: BLE001 - any decoding failure is a finding, not a crash
            problems.append(
                f"{rel}: unreadable after {hashed.count} bytes ({type(e).__name__}: {e})"
            )
        hashed.drain()
    digest = hashed.sha.hexdigest()
    if digest != shard["sha256"]:
        problems.insert(0, f"{rel}: sha256 expected {shard['sha256']} (manifest), found {digest}")
    if len(found) != shard["samples"]:
        problems.append(
            f"{rel}: samples expected {shard['samples']} (manifest), found {len(found)}"
        )
    expected_keys = [r["key"] for r in rows]
    if found != expected_keys:
        missing = [k for k in expected_keys if k not in members]
        extra = [k for k in found if k not in by_key]
        problems.append(
            f"{rel}: sample keys differ from index.parquet (missing {missing[:5]}, "
            f"unexpected {extra[:5]})"
        )
    for key in found:
        row = by_key.get(key)
        if row is None:
            continue
        got_members = members[key]
        checks = [
            ("offset", got_members.get("json") and got_members["json"].offset, row["offset"]),
            ("json_offset", got_members.get("json") and got_members["json"].offset_data,
             row["json_offset"]),
            ("image_offset", got_members.get(row["image_ext"])
             and got_members[row["image_ext"]].offset_data, row["image_offset"]),
            ("image_size", got_members.get(row["image_ext"])
             and got_members[row["image_ext"]].size, row["image_size"]),
        ]
        for name, got, want in checks:
            if got != want:
                problems.append(f"{rel}: {key} {name} expected {want} (index.parquet), found {got}")
                break
    return problems, len(found), images


def verify(
    root: str | Path, check_images: bool = True, storage_options: dict | None = None,
    decode: bool = False,
) -> dict:
    """Check every shard and image of a root against its manifest and index.

    Checks each shard's size, sha256 and sample count against ``manifest.json``; its sample keys
    and member offsets against ``index.parquet``; with ``check_images`` every image member's
    sha256 against the index (for pixel members, ``npy.zst``, the sha256 of the decompressed
    pixels against ``pixel_sha256``, the hash of the source image's decoded pixels); and the
    index's own sha256 and row count against the manifest. Shard files under ``data/`` that the
    manifest does not list are problems too (stock ``datasets`` would read them), where the
    storage can list folders. With ``decode`` every image is decoded fully as well (a root an
    older build made may hold images that hash right but do not decode).

    Args:
        root: dataset root, a local path or an fsspec URL.
        check_images: also hash every image member.
        storage_options: passed to fsspec.
        decode: also decode every image member (with ``check_images``).

    Returns:
        ``{"shards": n, "samples": n, "images": n}``: what was checked (a warning says when
        stray shards could not be looked for).

    Raises:
        ManifestError: if the manifest is missing or malformed.
        VerifyError: naming each shard or key that differs, with expected and found values.

    """
    import pyarrow.parquet as pq

    manifest = read_manifest(root, storage_options)
    fs, base = _fs(root, storage_options)
    problems: list[str] = []
    rows_by_shard: dict[str, list[dict]] = {}
    idx = manifest["index"]
    idx_path = join(base, idx["path"])
    if not fs.exists(idx_path):
        problems.append(f"{idx['path']}: missing (expected sha256 {idx['sha256']})")
    else:
        data = fs.cat_file(idx_path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != idx["sha256"]:
            problems.append(f"{idx['path']}: sha256 expected {idx['sha256']} (manifest), "
                            f"found {digest}")
        cols = ["key", "shard", "offset", "json_offset", "image_offset", "image_size",
                "image_ext", "image_sha256"]
        try:
            if PIXEL_COLUMN in pq.read_schema(io.BytesIO(data)).names:
                cols.append(PIXEL_COLUMN)
            table = pq.read_table(io.BytesIO(data), columns=cols)
        except Exception as e:  # noqa: BLE001 - a corrupt index is a finding
            problems.append(f"{idx['path']}: unreadable ({type(e).__name__}: {e})")
        else:
            if table.num_rows != idx["rows"]:
                problems.append(f"{idx['path']}: rows expected {idx['rows']} (manifest), "
                                f"found {table.num_rows}")
            for row in table.to_pylist():
                rows_by_shard.setdefault(row["shard"], []).append(row)
    listed = {s["path"] for s in manifest["shards"]}
    for shard_path in sorted(set(rows_by_shard) - listed):
        problems.append(f"{idx['path']}: rows point at {shard_path}, which the manifest lacks")
    stray, stray_checked = _stray_shards(fs, base, listed)
    if not stray_checked:
        log.warning("root=%r: its storage lists no folders, so shard files the manifest does not "
                    "list (which stock `datasets` would read) were not looked for", str(root))
    for rel in stray:
        problems.append(f"{rel}: a shard file not in the manifest (stock `datasets` would read "
                        "its rows); remove it, or rebuild the root")
    samples = images = 0
    for shard in manifest["shards"]:
        found, n, k = _verify_shard(
            fs, base, shard, rows_by_shard.get(shard["path"], []), check_images, decode
        )
        problems += found
        samples += n
        images += k
    for f in (manifest.get("stock") or {}).get("files", []):  # the stock-datasets mirror
        path = join(base, f["path"])
        if not fs.exists(path):
            problems.append(f"{f['path']}: missing (expected sha256 {f['sha256']})")
            continue
        digest = hashlib.sha256(fs.cat_file(path)).hexdigest()
        if digest != f["sha256"]:
            problems.append(f"{f['path']}: sha256 expected {f['sha256']} (manifest), found "
                            f"{digest}; rewrite it with `sarlang-data stock ROOT`")
    if samples != manifest["counts"]["samples"] and not problems:
        problems.append(f"counts.samples expected {manifest['counts']['samples']} (manifest), "
                        f"found {samples} in the shards")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise VerifyError(
            f"root={str(root)!r}: {len(problems)} problem(s):\n  {shown}{more}\n"
            "fix: download the named shards again, or rebuild the root with `sarlang-data build`"
        )
    return {"shards": len(manifest["shards"]), "samples": samples, "images": images}
