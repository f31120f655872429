"""Dataset root -> dataset root with another image codec (``sarlang-data transcode``).

The Hub copy of SARLANG-1M keeps the release's PNG/JPEG bytes (viewers and stock tools read
them); a training copy stores PNG images as their decoded pixels (``{key}.npy.zst``, see
:mod:`sarlang_data.format.codec`), which decode several times faster. ``transcode_root`` turns one
into the other: it reads the source root's shards front to back (local or any fsspec URL),
checks every image member against the source index, re-encodes the images the codec rule asks
for, and writes new shards, ``index.parquet``, ``rejects.jsonl``, the card and, last,
``manifest.json``. Between pixel member versions it goes both ways (``pixel_version`` 1 or 2):
each member is decoded and re-encoded, and its pixel hash must stay the index's.

The result is byte for byte the root that ``sarlang-data build --image-codec ...`` makes from
the release: the same samples in the same order, each (split, tier, city) rolled over into
shards by the same rule (:func:`sarlang_data.format.tar.plan_rollover`, applied as the members
arrive by :class:`~sarlang_data.format.tar.ShardWriter`), the same index columns and the same
manifest, whose ``build`` differs from the source's in ``image_codec`` and ``pixel_version``
only (and ``format_version`` follows the pixel version).

Groups (split, tier, city) are independent and run in a pool of ``workers`` processes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import schema
from ..configs import CONFIGS, rows_per_config
from ..errors import BuildError
from ..format import codec
from ..format.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    PIXEL_COLUMN,
    REJECTS_NAME,
    index_table_bytes,
    manifest_bytes,
    read_index,
    read_manifest,
    validate_manifest,
)
from ..format.tar import ShardWriter, write_atomic
from ..remote import join

log = logging.getLogger(__name__)

#: marker of a transcode in progress in the output root (a rerun may clear such a folder)
STATE_DIR = ".transcode"
#: index columns that say where a sample's members are (the rest is copied from the source)
_PLACE_COLUMNS = ("shard", "offset", "size", "json_offset", "json_size", "image_offset",
                  "image_size", "image_ext", "tif_offset", "tif_size", PIXEL_COLUMN)
_IMAGE_MEMBERS = (*codec.SOURCE_EXTS, codec.EXT)


def transcode_root(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    image_codec: str = "zstd",
    zstd_jpeg: bool = False,
    pixel_version: int = codec.PIXEL_VERSION,
    workers: int = 2,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict:
    """Copy a dataset root, storing its images with another codec.

    Args:
        src: the source root: a local path or an fsspec URL (``hf://``, ``s3://``, ...).
        out: the new root: a new or empty local folder (or the folder of an interrupted
            transcode, which is cleared first).
        image_codec: ``"zstd"`` stores PNG images as pixels (``{key}.npy.zst``); ``"source"``
            keeps the release's bytes (a root holding pixels cannot go back: its PNG bytes are
            gone).
        zstd_jpeg: with ``"zstd"``, store JPEG images as pixels too.
        pixel_version: the version of the pixel members written (1 or 2, see
            :mod:`sarlang_data.format.codec`); members of the other version are re-encoded,
            pixel-identically.
        workers: processes, one (split, tier, city) group at a time each.
        storage_options: fsspec options for ``src``.
        progress: show a progress bar on stderr.

    Returns:
        The new root's manifest (also written to ``OUT/manifest.json``).

    Raises:
        BuildError: bad options, an ``out`` that is not free, a source image whose bytes differ
            from its index, that Pillow cannot decode, or pixels asked back to source bytes.
        ConfigError: an unknown codec name.
        ManifestError: ``src`` is not a dataset root.
        ShardError: a corrupt source shard.

    """
    rule = codec.codec_rule(image_codec, zstd_jpeg)
    if not isinstance(workers, int) or workers < 1:
        raise BuildError(f"workers={workers!r}: must be an integer >= 1; pass --workers 2")
    if pixel_version not in codec.PIXEL_VERSIONS:
        raise BuildError(f"pixel_version={pixel_version!r}: unknown; use one of "
                         f"{', '.join(map(str, codec.PIXEL_VERSIONS))} (2, the default)")
    opts = dict(storage_options or {})
    manifest = read_manifest(src, opts)
    _check_codecs(src, manifest, rule)
    out = Path(out)
    _claim(src, out)
    index = read_index(src, storage_options=opts)
    groups = _groups(manifest)
    expected = _expected(index)
    jobs = [
        (str(src), opts, str(out), group, [s["path"] for s in shards],
         manifest["build"]["shard_size"], _compress_of(shards), rule,
         {k: expected[k] for k in _keys_of(index, shards)}, pixel_version)
        for group, shards in groups.items()
    ]
    from .build import _progress
    from .workers import _Pool

    results: dict[tuple, dict] = {}
    with _Pool(min(workers, max(1, len(jobs)))) as pool, \
            _progress(manifest["counts"]["samples"], "transcoding", "img", progress) as bar:
        for args, result in pool.unordered(_transcode_group, jobs):
            results[args[3]] = result
            bar.update(len(result["samples"]))
    ordered = [results[g] for g in groups]
    new = _finish(src, opts, out, manifest, index, ordered, rule, pixel_version)
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return new


# --------------------------------------------------------------------------- checks


def _check_codecs(src: Any, manifest: Mapping[str, Any], rule: Mapping[str, str]) -> None:
    """Refuse to turn pixels back into source bytes: the release's bytes are not in the root."""
    have = codec.codec_rule(manifest["build"].get("image_codec", "source"))
    for ext in codec.SOURCE_EXTS:
        if have[ext] == "zstd" and rule[ext] == "source":
            raise BuildError(
                f"image_codec: root {str(src)!r} stores its {ext} images as pixels "
                f"(build.image_codec={manifest['build']['image_codec']!r}), and the original "
                f"{ext} bytes are not in it; transcode the Hub copy or a root built with "
                "--image-codec source instead"
            )


def _claim(src: Any, out: Path) -> None:
    """Make ``out`` a transcode in progress; refuse folders that hold anything else."""
    if "://" not in str(src) and Path(src).resolve() == out.resolve():
        raise BuildError(f"out={str(out)!r}: is the source root; pass a new folder")
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r}: is a file; pass a folder for the new root")
    if out.is_dir() and any(out.iterdir()):
        if not (out / STATE_DIR).is_dir():
            raise BuildError(
                f"out={str(out)!r}: exists and is not empty (and is no interrupted transcode); "
                "pass a new or empty folder"
            )
        log.info("%s: clearing an interrupted transcode", out)
        for child in out.iterdir():
            if child.name != STATE_DIR:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)


def _groups(manifest: Mapping[str, Any]) -> dict[tuple[str, str, str], list[dict]]:
    """Shards per (split, tier, city), in manifest order (which is path order)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for shard in manifest["shards"]:
        if len(shard["cities"]) != 1:
            raise BuildError(
                f"shard {shard['path']}: holds cities {shard['cities']}; transcode needs the "
                "one-city shards of `sarlang-data build` or `download`"
            )
        groups.setdefault((shard["split"], shard["tier"], shard["cities"][0]), []).append(shard)
    return groups


def _compress_of(shards: list[dict]) -> str:
    kinds = {"archive" if s["path"].endswith(".tar.zst") else "none" for s in shards}
    if len(kinds) != 1:
        raise BuildError(
            f"shards {[s['path'] for s in shards][:2]}: mix .tar and .tar.zst in one group; "
            "rebuild the source root"
        )
    return kinds.pop()


def _expected(index) -> dict[str, tuple[str, str, str | None]]:
    """Return ``{key: (image_ext, image_sha256, pixel_sha256)}`` of the source index."""
    cols = index.column_names
    pixels = index[PIXEL_COLUMN].to_pylist() if PIXEL_COLUMN in cols else None
    keys, exts, shas = (index[c].to_pylist() for c in ("key", "image_ext", "image_sha256"))
    return {k: (e, s, pixels[i] if pixels else None)
            for i, (k, e, s) in enumerate(zip(keys, exts, shas, strict=True))}


def _keys_of(index, shards: list[dict]) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    paths = pa.array([s["path"] for s in shards], pa.string())
    return index.filter(pc.is_in(index["shard"], value_set=paths))["key"].to_pylist()


# --------------------------------------------------------------------------- one group


def _tar_samples(url: str, opts: Mapping[str, Any]
                 ) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """Yield ``(key, [(ext, bytes), ...])`` of a shard, members in tar order.

    The standard library's ``tarfile`` in stream mode, not our reader: the reader hands back
    the decoded record, and the transcode copies the record's bytes unchanged.
    """
    from ..remote import open_url
    from ..stream.reader import is_zstd_archive

    with open_url(url, opts) as raw:
        stream: Any = raw
        if is_zstd_archive(url):
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            key, members = None, []
            for info in tf:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                k, _, ext = base.partition(".")
                if k != key:
                    if key is not None:
                        yield key, members
                    key, members = k, []
                members.append((ext, tf.extractfile(info).read()))
            if key is not None:
                yield key, members


def _recode(url: str, key: str, members: list[tuple[str, bytes]],
            want: tuple[str, str, str | None], rule: Mapping[str, str], version: int
            ) -> tuple[list[tuple[str, bytes]], str | None]:
    """Check a sample's image member against the index and re-encode it by the rule.

    Pixel members of another version than ``version`` are decoded and encoded again; their
    pixel hash must not change.
    """
    ext, image_sha, pixel_sha = want
    found = [i for i, (e, _) in enumerate(members) if e in _IMAGE_MEMBERS]
    if len(found) != 1 or members[found[0]][0] != ext:
        raise BuildError(
            f"shard {url!r}: sample {key!r} has image members "
            f"{[members[i][0] for i in found]}, index.parquet says {ext!r}; the root is "
            "damaged: `sarlang-data verify` it, download or rebuild it"
        )
    i = found[0]
    data = members[i][1]
    if ext == codec.EXT:
        got = codec.member_pixel_sha256(data, url=url)
        if got != pixel_sha:
            raise BuildError(
                f"shard {url!r}: sample {key!r} pixels hash to {got}, index.parquet says "
                f"{pixel_sha}; the root is damaged: download or rebuild it"
            )
        if codec.member_version(data, url=url) == version:
            return members, pixel_sha
        enc = codec.encode_array(codec.decode_array(data, url=url), version)
        if enc.pixel_sha256 != pixel_sha:  # the codec's own guarantee, checked for every image
            raise BuildError(
                f"shard {url!r}: sample {key!r}: its pixels re-encoded as version {version} "
                f"hash to {enc.pixel_sha256}, not {pixel_sha}; report this bug"
            )
        new = list(members)
        new[i] = (codec.EXT, enc.member)
        return new, pixel_sha
    got = hashlib.sha256(data).hexdigest()
    if got != image_sha:
        raise BuildError(
            f"shard {url!r}: image {key}.{ext} has sha256 {got}, index.parquet says "
            f"{image_sha}; the root is damaged: download or rebuild it"
        )
    try:
        m = codec.encode_member(data, ext, rule, version)
    except ValueError as e:
        raise BuildError(
            f"shard {url!r}: image {key}.{ext}: {e}; its pixels cannot be stored: transcode "
            "with --image-codec source, or rebuild from the release (which rejects it)"
        ) from None
    if m.kept_because:
        log.info("%s: %s.%s keeps its bytes: %s", url, key, ext, m.kept_because)
    new = list(members)
    new[i] = (m.ext, m.data)
    return new, m.pixel_sha256


def _transcode_group(src: str, opts: dict, out: str, group: tuple[str, str, str],
                     paths: list[str], shard_size: int, compress: str,
                     rule: dict[str, str], expected: dict[str, tuple], version: int) -> dict:
    """Transcode the shards of one (split, tier, city); return shard entries and placements."""
    from .build import _shard_name

    split, tier, city = group
    root = Path(out)
    samples: list[dict] = []
    shard_info: dict[str, dict] = {}
    with ShardWriter(lambda n: root / _shard_name(split, tier, city, n, compress),
                     shard_size, compress) as writer:
        for path in paths:
            url = join(src, path)
            for key, members in _tar_samples(url, opts):
                want = expected.get(key)
                if want is None:
                    raise BuildError(
                        f"shard {url!r}: sample {key!r} is not in index.parquet; the root is "
                        "damaged: download or rebuild it"
                    )
                members, pixel_sha = _recode(url, key, members, want, rule, version)
                shard_path, span = writer.add_sample(key, members)
                rel = shard_path.relative_to(root).as_posix()
                record = json.loads(dict(members)[schema.JSON_EXT])
                info = shard_info.setdefault(rel, {"sources": set(), "configs": dict.fromkeys(
                    CONFIGS, 0)})
                info["sources"].add(record["source"])
                for name, n in rows_per_config(record).items():
                    info["configs"][name] += n
                samples.append(_placement(rel, span, pixel_sha))
        written = writer.close()
    if len(samples) != len(expected):
        raise BuildError(
            f"group {'/'.join(group)}: index.parquet lists {len(expected)} samples, the shards "
            f"hold {len(samples)}; the root is damaged: download or rebuild it"
        )
    shards = []
    for result in written:
        rel = Path(result.path).relative_to(root).as_posix()
        info = shard_info[rel]
        shards.append({
            "path": rel, "split": split, "tier": tier, "cities": [city],
            "sources": sorted(info["sources"]), "samples": len(result.samples),
            "bytes": result.bytes, "sha256": result.sha256, "configs": info["configs"],
        })
    return {"shards": shards, "samples": samples}


def _placement(shard: str, span, pixel_sha: str | None) -> dict:
    json_m = span.member(schema.JSON_EXT)
    image_m = next(m for m in span.members if m.name.partition(".")[2] in _IMAGE_MEMBERS)
    tif_m = span.member(schema.ORIGINAL_EXT)
    return {
        "key": span.key, "shard": shard, "offset": span.offset, "size": span.size,
        "json_offset": json_m.data_offset, "json_size": json_m.size,
        "image_offset": image_m.data_offset, "image_size": image_m.size,
        "image_ext": image_m.name.partition(".")[2],
        "tif_offset": tif_m.data_offset if tif_m else None,
        "tif_size": tif_m.size if tif_m else None,
        PIXEL_COLUMN: pixel_sha,
    }


# --------------------------------------------------------------------------- the new root


def _finish(src: Any, opts: dict, out: Path, manifest: Mapping[str, Any], index,
            results: list[dict], rule: Mapping[str, str], version: int) -> dict:
    """Write index.parquet, rejects.jsonl, the card and, last, manifest.json."""
    import pyarrow as pa

    from ..format.card import write_card
    from ..remote import _fs

    placed = [s for r in results for s in r["samples"]]
    keys = index["key"].to_pylist()
    if [s["key"] for s in placed] != keys:
        raise BuildError(
            f"root {str(src)!r}: the shards hold the samples in another order than "
            "index.parquet; the root is damaged: download or rebuild it"
        )
    table = index
    types = {"image_ext": pa.string(), "shard": pa.string(), PIXEL_COLUMN: pa.string()}
    for col in _PLACE_COLUMNS:
        values = pa.array([s[col] for s in placed], types.get(col, pa.int64()))
        if col in table.column_names:
            table = table.set_column(table.column_names.index(col), col, values)
        else:
            table = table.append_column(col, values)
    idx = index_table_bytes(table)
    write_atomic(out / INDEX_NAME, idx)

    fs, base = _fs(src, opts)
    rejects = join(base, REJECTS_NAME)
    if fs.exists(rejects):
        write_atomic(out / REJECTS_NAME, fs.cat_file(rejects))

    shards = sorted((s for r in results for s in r["shards"]), key=lambda s: s["path"])
    new = copy.deepcopy(dict(manifest))
    new["build"]["image_codec"] = codec.manifest_value(rule)
    new["build"].pop("pixel_version", None)
    new["build"].update(codec.manifest_pixel_version(rule, version))
    new["format_version"] = codec.format_version(rule, version)
    new["counts"]["bytes"] = sum(s["bytes"] for s in shards)
    new["shards"] = shards
    new["index"] = {"path": INDEX_NAME, "rows": table.num_rows,
                    "sha256": hashlib.sha256(idx).hexdigest()}
    validate_manifest(new, "the manifest being transcoded")
    write_card(out, new)
    write_atomic(out / MANIFEST_NAME, manifest_bytes(new))
    return new


def describe(manifest: Mapping[str, Any], before: int) -> str:
    """Return one line saying what a transcode made.

    Args:
        manifest: the new root's manifest.
        before: the source root's shard bytes.

    """
    c = manifest["counts"]
    ratio = c["bytes"] / before if before else 0.0
    return (f"{len(manifest['shards'])} shards, {c['samples']} samples, {c['bytes']:,} bytes "
            f"({ratio:.3f}x the source's {before:,}), image_codec="
            f"{json.dumps(manifest['build']['image_codec'], sort_keys=True)}")
