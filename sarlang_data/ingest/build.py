"""Release -> dataset root: shards, index.parquet, rejects.jsonl, README.md, manifest.json.

The build runs in five steps:

1. parse the release (:func:`sarlang_data.ingest.release.parse_release`);
2. read every image once in a pool of ``workers`` processes: its sha256, and its format and
   size from Pillow's header parse (no pixel decode); images Pillow cannot open become
   ``not_an_image`` rejects. With originals, each GeoTIFF is zstd-compressed here, once, into a
   content-addressed cache, so its member size is known; with ``image_codec="zstd"`` each
   PNG (and with ``zstd_jpeg`` each JPEG) is decoded here, once, and its pixel member
   (:mod:`sarlang_data.format.codec`) goes to the same kind of cache;
3. serialise every sample record; every member size is now known, so the parent plans the
   shards exactly (rollover by ``shard_size`` within each (split, tier, city));
4. write the shards, one task per shard, in the same pool (a single large group still spreads
   over every worker); each task re-hashes the images it copies;
5. write index.parquet, rejects.jsonl and the card, and the manifest LAST: a root with a
   manifest is complete.

The build is deterministic (same release and options -> byte-identical files, whatever the
worker count) and resumable: ``ROOT/.build/`` keeps the plan fingerprint and one done-record
per finished shard, and a rerun keeps every finished shard whose bytes still hash to its record.


The per-image and per-shard work that runs in the pool is :mod:`sarlang_data.ingest.workers`.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schema
from ..configs import CONFIGS, rows_per_config
from ..errors import BuildError, StorageError
from ..format import codec
from ..format.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    index_bytes,
    manifest_bytes,
    validate_manifest,
)
from ..format.tar import (
    COMPRESSIONS,
    PARTIAL_SUFFIX,
    ZSTD_LEVEL,
    SampleSpan,
    ShardResult,
    plan_rollover,
    sample_bytes,
    write_atomic,
)
from .workers import (
    MAX_PIXELS,
    _hash_file,
    _Item,
    _Pool,
    _Probe,
    _probe,
    _record_from_result,
    _ShardTask,
    _write_shard,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .release import ParsedRelease

STATE_DIR = ".build"
IMAGE_CODECS = codec.CODECS
#: reject reasons that do not stand for a lost text row
NOT_TEXT_ROWS = ("unused_image", "empty_file")
#: Pillow format name -> image member extension


@dataclass(frozen=True)
class BuildOptions:
    """Options of :func:`build`; all but ``workers``, ``max_pixels``, ``overwrite`` recorded.

    The manifest records every option that changes the bytes of the root.

    Attributes:
        workers: processes that read images and write shards (1 = no pool).
        shard_size: shard size limit in bytes of the tar stream (default 256 MiB).
        originals: add ``{key}.tif.zst`` members from the release's original GeoTIFFs.
        compress: ``"none"`` (plain ``.tar``) or ``"archive"`` (each shard one zstd stream,
            ``.tar.zst``; stock tools cannot read it).
        gsd_table: CSV of ``file_name,gsd_m`` overriding the per-source nominal GSD.
        columns: explicit column mapping for the release's text files.
        max_reject_rate: fail when more than this fraction of text rows is rejected.
        image_codec: ``"source"``: image members are the release's bytes (what the Hub
            copy holds); ``"zstd"``: PNG images are stored as their decoded pixels,
            losslessly, as ``{key}.npy.zst`` members (training copies: they decode ~7x
            faster than PNG, see ``sarlang_data.format.codec``). Recorded in the manifest per source
            image format (``build.image_codec``).
        zstd_jpeg: with ``image_codec="zstd"``, store JPEG images as pixels too (their pixels
            take several times the JPEG's bytes; by default JPEG images keep their bytes).
        max_pixels: images with more pixels (width x height) are rejected (``too_many_pixels``),
            a guard against decompression bombs (default 4096 x 4096); not recorded in the
            manifest, its effect is in the rejects.
        overwrite: replace a root in ``out`` that was built from another release (or is a
            downloaded subset); even then only files this package wrote are deleted.
        pixel_version: with ``image_codec="zstd"``, the pixel member version: 2 (a predictor
            per image before zstd: about the PNG's bytes on speckle-filtered images) or 1 (the
            members of roots built before it). Recorded as ``build.pixel_version``.

    """

    workers: int = 2
    shard_size: int = 256 * 2**20
    originals: bool = False
    compress: str = "none"
    gsd_table: Path | None = None
    columns: dict[str, str] | None = None
    max_reject_rate: float = 0.05
    image_codec: str = "source"
    zstd_jpeg: bool = False
    max_pixels: int = MAX_PIXELS
    overwrite: bool = False
    pixel_version: int = codec.PIXEL_VERSION

    def check(self) -> None:
        """Raise BuildError naming the first option that cannot work."""
        if not isinstance(self.workers, int) or self.workers < 1:
            raise BuildError(f"workers={self.workers!r}: must be an integer >= 1; pass --workers 2")
        if not isinstance(self.shard_size, int) or self.shard_size <= 0:
            raise BuildError(
                f"shard_size={self.shard_size!r}: must be a positive number of bytes; "
                "pass e.g. --shard-size 268435456 (256 MiB)"
            )
        if self.compress not in COMPRESSIONS:
            raise BuildError(
                f"compress={self.compress!r}: unknown; use one of {', '.join(COMPRESSIONS)}"
            )
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise BuildError(
                f"max_reject_rate={self.max_reject_rate!r}: must be a fraction in [0, 1], "
                "e.g. --max-reject-rate 0.05"
            )
        if self.image_codec not in IMAGE_CODECS:
            raise BuildError(
                f"image_codec={self.image_codec!r}: unknown; use one of "
                f"{', '.join(IMAGE_CODECS)} (--image-codec zstd for a fast-decoding training copy)"
            )
        if self.zstd_jpeg and self.image_codec != "zstd":
            raise BuildError(
                f"zstd_jpeg=True with image_codec={self.image_codec!r}: JPEG pixels are stored "
                "only by the zstd codec; pass --image-codec zstd --zstd-jpeg, or drop --zstd-jpeg"
            )
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise BuildError(f"max_pixels={self.max_pixels!r}: must be a positive number of "
                             f"pixels, e.g. --max-pixels {MAX_PIXELS}")
        if self.pixel_version not in codec.PIXEL_VERSIONS:
            raise BuildError(
                f"pixel_version={self.pixel_version!r}: unknown; use one of "
                f"{', '.join(map(str, codec.PIXEL_VERSIONS))} (--pixel-version 2, the default)"
            )
        if self.gsd_table is not None and not Path(self.gsd_table).is_file():
            raise BuildError(
                f"gsd_table={str(self.gsd_table)!r}: no such file; pass the CSV written by "
                "`sarlang-data synth` or your own file_name,gsd_m table, or leave it out"
            )

    @property
    def codec_rule(self) -> dict[str, str]:
        """The image codec per source image format (``{"png": ..., "jpg": ...}``)."""
        return codec.codec_rule(self.image_codec, self.zstd_jpeg)


# --------------------------------------------------------------------------- state and root


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _claim_root(out: Path) -> Path:
    """Make ``out`` a root in progress; return its state dir. Refuse folders that are not ours."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r}: is a file; pass a folder for the dataset root")
    state = out / STATE_DIR
    if out.is_dir() and any(out.iterdir()):
        if not ((out / MANIFEST_NAME).is_file() or state.is_dir()):
            raise BuildError(
                f"out={str(out)!r}: exists, is not empty and holds no manifest.json or "
                f"{STATE_DIR}/ of an earlier build; pass a new or empty folder"
            )
    (state / "done").mkdir(parents=True, exist_ok=True)
    (state / "originals").mkdir(exist_ok=True)
    (state / "pixels").mkdir(exist_ok=True)
    return state


def _begin_changes(out: Path) -> None:
    """Drop an earlier manifest before the first change to the root's files.

    From here until the new manifest is written the root is incomplete, and says so; a build
    that fails before this point (bad release, columns) leaves an earlier root intact.
    """
    (out / MANIFEST_NAME).unlink(missing_ok=True)


def _done_path(state: Path, shard_path: str) -> Path:
    return state / "done" / (hashlib.sha256(shard_path.encode()).hexdigest()[:24] + ".json")


def _load_done(state: Path, shard_path: str) -> dict | None:
    try:
        return json.loads(_done_path(state, shard_path).read_text())
    except (OSError, ValueError):
        return None


def _record_done(state: Path, task: _ShardTask, result: ShardResult) -> None:
    """Write the done-record of a shard (after its rename, so a record implies the file)."""
    record = _record_from_result(task, result)
    write_atomic(_done_path(state, task.path), json.dumps(record).encode())


_OWNED = "owned.json"
#: the files of a root besides its shards, all written by the build
_ROOT_FILES = (MANIFEST_NAME, INDEX_NAME, REJECTS_NAME, "README.md")
_SHARD_SUFFIXES = (".tar", ".tar.zst", ".tzst")


def _owned_shards(out: Path, state: Path) -> set[str]:
    """Shard paths this package wrote in ``out``: the manifest's, the state's record, done ones."""
    owned: set[str] = set(_read_json(state / _OWNED).get("shards", []))
    manifest = _read_json(out / MANIFEST_NAME)
    owned |= {s["path"] for s in manifest.get("shards", []) if isinstance(s, dict)
              and isinstance(s.get("path"), str)}
    for done in (state / "done").glob("*.json"):
        path = _read_json(done).get("path")
        if isinstance(path, str):
            owned.add(path)
    return owned


def _check_ownership(out: Path, state: Path, parsed: ParsedRelease, opts: BuildOptions) -> None:
    """Refuse a root of another release (without ``overwrite``) and any foreign shard file.

    A complete root in ``out`` is "another root" when its manifest names another release
    (other text files or row counts) or is a downloaded subset. Shard files under ``data/``
    that neither that manifest nor this build's state names were not written by this package:
    the build would not delete them, and stock ``datasets`` would read them as shards, so it
    stops and names them. Nothing has been changed when this raises.
    """
    old = _read_json(out / MANIFEST_NAME)
    if old and not opts.overwrite:
        release = {"files": dict(sorted(parsed.files.items())), "text_rows": parsed.text_rows}
        theirs = (old.get("build") or {}).get("release")
        if "subset" in old or theirs != release:
            what = ("a subset downloaded from " + str(old["subset"].get("from"))
                    if "subset" in old else
                    f"another release ({len((theirs or {}).get('files', {}))} text files, "
                    f"{(theirs or {}).get('text_rows')} rows; this release: "
                    f"{len(release['files'])} files, {release['text_rows']} rows)")
            raise BuildError(
                f"out={str(out)!r}: holds a dataset root of {what}; pass --overwrite "
                "(overwrite=True) to replace it (only files this package wrote are deleted), "
                "or build into a new folder"
            )
    owned = _owned_shards(out, state)
    data = out / "data"
    foreign = sorted(p.relative_to(out).as_posix() for p in data.rglob("*")
                     if p.is_file() and p.name.endswith(_SHARD_SUFFIXES)
                     and p.relative_to(out).as_posix() not in owned) if data.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise BuildError(
            f"out={str(out)!r}: holds {len(foreign)} shard file(s) this package did not write "
            f"({shown}); the build never deletes files it did not write, and stock `datasets` "
            "would read them as shards of the root: move them out of the root, then rerun"
        )
    write_atomic(state / _OWNED, json.dumps({"shards": sorted(owned)}).encode())


def _record_owned(state: Path, paths: set[str]) -> None:
    """Add the planned shard paths to the state's record of what this package writes here."""
    owned = set(_read_json(state / _OWNED).get("shards", [])) | paths
    write_atomic(state / _OWNED, json.dumps({"shards": sorted(owned)}).encode())


def _is_our_partial(rel: str, names: set[str]) -> bool:
    """Whether ``rel`` is a temporary file of ours: ``NAME.partial`` or ``NAME.PID.partial``."""
    if not rel.endswith(PARTIAL_SUFFIX):
        return False
    base = rel[: -len(PARTIAL_SUFFIX)]
    head, _, pid = base.rpartition(".")
    return base in names or (pid.isdigit() and head in names)


def _clean_root(out: Path, planned: set[str], owned: set[str]) -> None:
    """Remove our partial files, and the shards we wrote that the current plan does not name.

    Only files this package wrote go: shards of the earlier manifest or state (``owned``) and
    temporary files of those or of the root's own files. Anything else stays.
    """
    names = planned | owned | set(_ROOT_FILES)
    for path in sorted(out.rglob(f"*{PARTIAL_SUFFIX}")):
        rel = path.relative_to(out).as_posix()
        if not rel.startswith(STATE_DIR + "/") and _is_our_partial(rel, names):
            path.unlink(missing_ok=True)
    emptied: set[Path] = set()
    for rel in sorted(owned - planned):
        path = out / rel
        if path.is_file():
            log.info("removing %s: a shard of the earlier build, not of this one", path)
            path.unlink()
            emptied.add(path.parent)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def _clean_partials(out: Path) -> None:
    """After a failed write: drop our temporary files in the root (not the state's)."""
    names = _owned_shards(out, out / STATE_DIR) | set(_ROOT_FILES)
    for path in sorted(out.rglob(f"*{PARTIAL_SUFFIX}")):
        if _is_our_partial(path.relative_to(out).as_posix(), names):
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- rejects


def _reject_dict(r: Any) -> dict[str, Any]:
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    return {"file": str(get("file")), "line": int(get("line") or 0), "reason": str(get("reason")),
            "detail": str(get("detail") or "")}


def _reject_order(r: dict) -> tuple:
    return (r["file"], r["line"], r["reason"], r["detail"])


def _write_rejects(out: Path, rejects: list[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
    return write_atomic(out / REJECTS_NAME, text.encode("utf-8"))


def _check_reject_rate(
    out: Path, rejects: list[dict], lost_rows: int, text_rows: int, limit: float
) -> None:
    """Fail when too many text rows were rejected; write rejects.jsonl first so it can be read.

    A reject with ``line`` > 0 is one text row; ``line`` 0 is a whole file (an image), which
    is no row: an ``unused_image`` loses nothing, and the rows of an image Pillow could not
    open are counted by the caller in ``lost_rows``.
    """
    per_row = [r for r in rejects if r["line"] > 0 and r["reason"] not in NOT_TEXT_ROWS]
    rejected = len(per_row) + lost_rows
    rate = rejected / text_rows if text_rows else (1.0 if rejected else 0.0)
    if rate <= limit:
        return
    _begin_changes(out)
    path = _write_rejects(out, sorted(rejects, key=_reject_order))
    top = Counter(r["reason"] for r in rejects if r["reason"] not in NOT_TEXT_ROWS)
    reasons = ", ".join(f"{k}={v}" for k, v in top.most_common(5))
    raise BuildError(
        f"{rejected} of {text_rows} text rows rejected ({rate:.2%}), above "
        f"max_reject_rate={limit} ({limit:.2%}); top reasons: {reasons}; every reject is listed "
        f"in {path}; fix the release (missing images, column names: pass --columns) or accept "
        f"the loss with --max-reject-rate {min(1.0, rate + 0.005):.3f}"
    )


# --------------------------------------------------------------------------- the build


def _order(s: schema.Sample) -> tuple[str, str, str, str]:
    return (s.split, s.tier, s.city, s.key)


def _check_samples(samples: list[schema.Sample], image_paths: dict) -> None:
    """Check what the shard layout relies on; a failure here is a bug in the release parser."""
    seen: set[str] = set()
    for s in samples:
        problem = None
        if s.key in seen:
            problem = "the key occurs twice"
        elif not schema.KEY_RE.match(s.key) or len(s.key) > schema.MAX_KEY_LEN:
            problem = f"the key is not 1-{schema.MAX_KEY_LEN} characters of [a-z0-9_-]"
        elif s.split not in schema.SPLITS or s.tier not in schema.TIERS:
            problem = f"split={s.split!r} tier={s.tier!r} is not a known split and tier"
        elif not schema.SLUG_RE.match(s.city):
            problem = f"city={s.city!r} is not a slug"
        elif s.key not in image_paths:
            problem = "the release parser gave no image path for it"
        if problem:
            raise BuildError(
                f"sample {s.key!r} ({s.file_name}): {problem}; this is a bug in the release "
                "parser: please report it with the file name"
            )
        seen.add(s.key)


def _record(s: schema.Sample, p: _Probe) -> dict[str, Any]:
    """Return the sample's record with the image facts filled in, as ``Sample.to_dict()`` does.

    ``dataclasses.asdict`` deep-copies every caption and QA, and even a comprehension over the
    field names costs seconds at a million texts, in the parent the workers wait for. A
    dataclass's ``__dict__`` holds its fields in declaration order, so copying it gives the same
    dict (``test_fast_record_equals_sample_to_dict`` holds this to ``Sample.to_dict()``).
    """
    d: dict[str, Any] = {f: getattr(s, f) for f in schema.META_FIELDS}
    d["width"], d["height"], d["image_sha256"] = p.width, p.height, p.sha256
    key, field, text_id = s.key, schema.TEXT_ID_FIELD, schema.text_id
    d["captions"] = [{field: text_id(key, c), **c} for c in map(vars, s.captions)]
    qa = d["qa"] = [{field: text_id(key, q), **q} for q in map(vars, s.qa)]
    for q in qa:
        if q["bbox_xywh"] is not None:
            q["bbox_xywh"] = list(q["bbox_xywh"])
    return d


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _shard_name(split: str, tier: str, city: str, n: int, compress: str) -> str:
    ext = ".tar.zst" if compress == "archive" else ".tar"
    return f"data/{split}/{tier}/{city}/{split}-{tier}-{city}-{n:05d}{ext}"


def _plan(entries: list[dict], shard_size: int, compress: str) -> list[_ShardTask]:
    """Cut the sorted entries into shard tasks, rolling over within each (split, tier, city)."""
    tasks: list[_ShardTask] = []
    start = 0
    while start < len(entries):
        group = entries[start]["group"]
        end = start
        while end < len(entries) and entries[end]["group"] == group:
            end += 1
        members = entries[start:end]
        for n, idx in enumerate(plan_rollover([e["tar_bytes"] for e in members], shard_size)):
            chosen = [members[i] for i in idx]
            path = _shard_name(*group, n, compress)
            items = tuple(e["item"] for e in chosen)
            fp = _fingerprint([
                schema.FORMAT_VERSION, ZSTD_LEVEL, compress, path,
                [[e["item"].key, hashlib.sha256(e["item"].json).hexdigest(), e["item"].ext,
                  e["item"].image_sha256, e["original_sha256"]]
                 + ([e["item"].member_sha256] if e["item"].member_sha256 else [])
                 for e in chosen],
            ])
            tasks.append(_ShardTask(path, *group, items, fp))
        start = end
    return sorted(tasks, key=lambda t: t.path)



def _progress(total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)


def build(
    release: str | os.PathLike,
    out: str | os.PathLike,
    opts: BuildOptions = BuildOptions(),  # noqa: B008 - frozen dataclass, never mutated
    progress: bool = True,
) -> dict:
    """Build a dataset root from the authors' release layout.

    Args:
        release: release folder holding ``SARimages/`` and ``Text/``.
        out: dataset root to write: a new or empty folder, or an earlier root (rebuilt in place;
            an interrupted build resumes, keeping its finished shards).
        opts: build options.
        progress: show progress bars on stderr.

    Returns:
        The manifest (also written to ``OUT/manifest.json``).

    Raises:
        BuildError: on bad options, an ``out`` folder that is not a root, too many rejected
            text rows (after writing ``OUT/rejects.jsonl``), or no usable sample.
        ReleaseError: when the release cannot be parsed.

    """
    opts.check()
    release, out = Path(release), Path(out)
    if not release.is_dir():
        raise BuildError(
            f"release={str(release)!r}: not a folder; pass the release folder that holds "
            "SARimages/ and Text/ (e.g. OUT/SARLANG_1M of `sarlang-data synth`)"
        )
    state = _claim_root(out)
    try:
        with _gc_paused():
            return _build(release, out, opts, state, progress)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        _clean_partials(out)
        free = shutil.disk_usage(out).free
        where = getattr(e, "filename", None) or str(out)
        raise StorageError(
            f"out={str(out)!r}: no space left on the device while writing {where} "
            f"({os.strerror(e.errno)}; {_size(free)} free there); free some space or build "
            "into a folder on another disk, then rerun: finished shards are kept, partial "
            "files were removed"
        ) from None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the duration.

    The parent holds a million small objects (texts, records); every collection walks them all
    and, measured on the full-size synthetic release, took about half the parent's time. The
    build creates no reference cycles worth collecting.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(
    release: Path, out: Path, opts: BuildOptions, state: Path, progress: bool
) -> dict:
    """Run the five steps of :func:`build` once its checks have passed."""
    from .release import parse_release

    laps = [("start", time.perf_counter())]

    # 1. parse
    parsed = parse_release(release, columns=opts.columns, gsd_table=opts.gsd_table,
                           originals=opts.originals)
    _check_ownership(out, state, parsed, opts)
    rejects = [_reject_dict(r) for r in parsed.rejects]
    _check_reject_rate(out, rejects, 0, parsed.text_rows, opts.max_reject_rate)
    samples = sorted(parsed.samples, key=_order)
    _check_samples(samples, parsed.image_paths)
    laps.append(("parse", time.perf_counter()))

    with _Pool(opts.workers) as pool:
        # 2. read every image once
        probes = _read_images(pool, samples, parsed, opts, state, progress)
        laps.append(("read images", time.perf_counter()))

        # 3. records and the exact shard plan
        entries, lost_rows = _entries(release, samples, probes, parsed, rejects)
        rejects.sort(key=_reject_order)
        _check_reject_rate(out, rejects, lost_rows, parsed.text_rows, opts.max_reject_rate)
        if not entries:
            raise BuildError(
                f"release={str(release)!r}: no usable sample ({len(rejects)} rejects, see "
                f"{out / REJECTS_NAME}); check that SARimages/ and Text/ are the release's"
            )
        tasks = _plan(entries, opts.shard_size, opts.compress)
        _start_plan(state, tasks)
        owned = _owned_shards(out, state)
        _record_owned(state, {t.path for t in tasks})
        _begin_changes(out)
        _clean_root(out, {t.path for t in tasks}, owned)
        laps.append(("plan", time.perf_counter()))

        # 4. shards, one task each
        results = _write_shards(pool, out, state, tasks, opts.compress, progress)
        laps.append(("write shards", time.perf_counter()))

    # 5. index, rejects, card, manifest (last)
    manifest = _finish(out, opts, parsed, entries, tasks, results, rejects)
    shutil.rmtree(state, ignore_errors=True)
    laps.append(("index+manifest", time.perf_counter()))
    log.debug("build steps: %s", ", ".join(
        f"{name} {t - laps[i][1]:.2f}s" for i, (name, t) in enumerate(laps[1:])))
    return manifest


def _read_images(
    pool: _Pool,
    samples: list[schema.Sample],
    parsed: ParsedRelease,
    opts: BuildOptions,
    state: Path,
    progress: bool,
) -> list[_Probe]:
    """Step 2: probe every sample's image (and original) in the pool, in sample order."""
    originals = parsed.original_paths if opts.originals else {}
    cache = str(state / "originals") if opts.originals else None
    rule = opts.codec_rule
    pixels = str(state / "pixels") if codec.manifest_value(rule) != "source" else None
    jobs = [
        (s.key, str(parsed.image_paths[s.key]),
         str(originals[s.key]) if s.key in originals else None, cache, pixels, rule,
         opts.max_pixels, opts.pixel_version)
        for s in samples
    ]
    probes: list[_Probe] = []
    with _progress(len(jobs), "reading images", "img", progress) as bar:
        for p in pool.map(_probe, jobs):
            probes.append(p)
            bar.update(1)
    for why, n in sorted(Counter(p.kept for p in probes if p.kept).items()):
        log.info("%d images keep their source bytes (image_codec=%s): %s", n, opts.image_codec,
                 why)
    return probes


def _entries(
    release: Path, samples: list[schema.Sample], probes: list[_Probe], parsed: ParsedRelease,
    rejects: list[dict],
) -> tuple[list[dict], int]:
    """Step 3a: serialise each usable sample; reject the images Pillow could not open.

    Returns:
        The entries (record, JSON member, tar bytes, shard item) in sample order, and the
        number of text rows lost with rejected images. Rejects are appended to ``rejects``.

    """
    entries: list[dict] = []
    lost_rows = 0
    for s, p in zip(samples, probes, strict=True):
        if not p.ok:
            n_texts = len(s.captions) + len(s.qa)
            lost_rows += n_texts
            rejects.append({
                "file": _release_rel(release, parsed.image_paths[s.key]), "line": 0,
                "reason": p.reason,
                "detail": f"{p.detail}; its {n_texts} text rows are dropped",
            })
            continue
        record = _record(s, p)
        try:
            js = json.dumps(record, ensure_ascii=False, separators=(",", ":"),
                            allow_nan=False).encode("utf-8")
        except ValueError as e:
            raise BuildError(
                f"sample {s.key!r}: record is not valid JSON ({e}); a NaN or infinite "
                "number came from the release or the GSD table; fix that value"
            ) from None
        if p.member is not None:  # pixels: the cached npy.zst member
            image_path, ext, image_size = p.member, codec.EXT, p.member_size
        else:
            image_path, ext, image_size = str(parsed.image_paths[s.key]), p.ext, p.size
        sizes = [len(js), image_size] + ([p.original_size] if p.original else [])
        entries.append({
            "group": (s.split, s.tier, s.city),
            "record": record,
            "tar_bytes": sample_bytes(sizes),
            "original_sha256": p.original_sha256 or None,
            "item": _Item(s.key, js, image_path, ext, p.sha256, p.original,
                          p.member_sha256, p.pixel_sha256),
        })
    return entries, lost_rows


def _start_plan(state: Path, tasks: list[_ShardTask]) -> None:
    """Record the plan's fingerprint; a different plan voids every done-record."""
    fingerprint = _fingerprint([t.fingerprint for t in tasks])
    if _read_json(state / "plan.json").get("fingerprint") != fingerprint:
        for old in (state / "done").glob("*.json"):
            old.unlink()
        write_atomic(state / "plan.json", json.dumps({"fingerprint": fingerprint}).encode())


def _write_shards(
    pool: _Pool, out: Path, state: Path, tasks: list[_ShardTask], compress: str, progress: bool
) -> dict[str, ShardResult]:
    """Step 4: write (or keep, when their done-record holds) every shard, one task each."""
    results: dict[str, ShardResult] = {}
    reused = 0
    total = sum(len(t.items) for t in tasks)
    with _progress(total, f"writing {len(tasks)} shards", "img", progress) as bar:
        jobs = [(str(out), t, compress, _load_done(state, t.path)) for t in tasks]
        for (_, task, _, _), (result, kept) in pool.unordered(_write_shard, jobs):
            _check_result(task, result)
            if not kept:
                _record_done(state, task, result)
            reused += kept
            results[task.path] = result
            bar.update(len(task.items))
    if reused:
        log.info("resumed: kept %d finished shards, wrote %d", reused, len(tasks) - reused)
    return results


def _finish(
    out: Path,
    opts: BuildOptions,
    parsed: ParsedRelease,
    entries: list[dict],
    tasks: list[_ShardTask],
    results: dict[str, ShardResult],
    rejects: list[dict],
) -> dict:
    """Step 5: write index.parquet, rejects.jsonl, README.md and, last, manifest.json."""
    from ..format.card import write_card

    by_key = {e["item"].key: e for e in entries}
    index_rows, shard_entries = [], []
    config_rows = {name: dict.fromkeys(schema.SPLITS, 0) for name in CONFIGS}
    for task in tasks:
        result = results[task.path]
        shard_configs = dict.fromkeys(CONFIGS, 0)
        sources = set()
        for span in result.samples:
            e = by_key[span.key]
            record = e["record"]
            for name, n in rows_per_config(record).items():
                shard_configs[name] += n
                config_rows[name][record["split"]] += n
            sources.add(record["source"])
            index_rows.append(_index_row(task.path, span, record, e["item"]))
        shard_entries.append({
            "path": task.path, "split": task.split, "tier": task.tier, "cities": [task.city],
            "sources": sorted(sources), "samples": len(result.samples), "bytes": result.bytes,
            "sha256": result.sha256, "configs": shard_configs,
        })
    idx = index_bytes(index_rows)
    write_atomic(out / INDEX_NAME, idx)
    _write_rejects(out, rejects)
    records = [e["record"] for e in entries]
    manifest = {
        "format": schema.FORMAT_NAME,
        "format_version": codec.format_version(opts.codec_rule, opts.pixel_version),
        "build": {
            "shard_size": opts.shard_size,
            "compress": opts.compress,
            "originals": opts.originals,
            "image_codec": codec.manifest_value(opts.codec_rule),
            **codec.manifest_pixel_version(opts.codec_rule, opts.pixel_version),
            "gsd_table": _hash_file(Path(opts.gsd_table)) if opts.gsd_table else None,
            "columns": dict(sorted(opts.columns.items())) if opts.columns else None,
            "max_reject_rate": opts.max_reject_rate,
            "release": {"files": dict(sorted(parsed.files.items())),
                        "text_rows": parsed.text_rows},
        },
        "counts": {
            "samples": len(records),
            "captions": sum(len(r["captions"]) for r in records),
            "qa": sum(len(r["qa"]) for r in records),
            "originals": sum(1 for e in entries if e["item"].original is not None),
            "rejects": len(rejects),
            "bytes": sum(s["bytes"] for s in shard_entries),
        },
        "configs": config_rows,
        "shards": shard_entries,
        "index": {"path": INDEX_NAME, "rows": len(index_rows),
                  "sha256": hashlib.sha256(idx).hexdigest()},
        "rejects": dict(sorted(Counter(r["reason"] for r in rejects).items())),
    }
    validate_manifest(manifest, "the manifest being built")
    write_card(out, manifest)
    write_atomic(out / MANIFEST_NAME, manifest_bytes(manifest))
    return manifest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _release_rel(release: Path, path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(release.resolve()).as_posix()
    except ValueError:
        return str(path)


def _check_result(task: _ShardTask, result: ShardResult) -> None:
    keys = [s.key for s in result.samples]
    if keys != [it.key for it in task.items]:
        raise BuildError(
            f"shard {task.path}: holds samples {keys[:3]}... but the plan says "
            f"{[it.key for it in task.items][:3]}...; delete {STATE_DIR}/ in the root and rebuild"
        )


def _index_row(shard: str, span: SampleSpan, record: dict, item: _Item) -> dict:
    key, ext = span.key, item.ext
    json_m = span.member(schema.JSON_EXT)
    image_m = span.member(ext)
    tif_m = span.member(schema.ORIGINAL_EXT)
    row = {
        "key": key, "shard": shard, "offset": span.offset, "size": span.size,
        "json_offset": json_m.data_offset, "json_size": json_m.size,
        "image_offset": image_m.data_offset, "image_size": image_m.size, "image_ext": ext,
        "tif_offset": tif_m.data_offset if tif_m else None,
        "tif_size": tif_m.size if tif_m else None,
    }
    for f in ("split", "tier", "city", "country", "region", "source", "file_name", "gsd_m",
              "lat", "lon", "width", "height", "image_sha256", "captions", "qa"):
        row[f] = record[f]
    kinds = Counter(c["kind"] for c in record["captions"])
    tasks = Counter(q["task"] for q in record["qa"])
    for k in schema.CAPTION_KINDS:
        row[f"n_{k}"] = kinds.get(k, 0)
    for t in schema.TASKS:
        row[f"n_{t}"] = tasks.get(t, 0)
    row["pixel_sha256"] = item.pixel_sha256  # written only when some image is stored as pixels
    return row
