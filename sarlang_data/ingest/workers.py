"""The build's pool work: probe each image once, encode pixel members, write one shard per task.

Everything here runs in the worker processes of :mod:`sarlang_data.ingest.build` (or inline
with one worker) and returns picklable results; the parent plans and records.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import schema
from ..errors import BuildError
from ..format import codec
from ..format.tar import (
    ZSTD_LEVEL,
    MemberSpan,
    SampleSpan,
    ShardResult,
    TarWriter,
    write_atomic,
)

# --------------------------------------------------------------------------- worker tasks

#: Pillow format name -> member extension
_FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg"}
#: object reprs in Pillow's messages (their addresses differ from run to run)
_REPR_RE = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")



@dataclass(frozen=True)
class _Probe:
    """What step 2 learnt about one image (and its original)."""

    key: str
    ok: bool
    detail: str = ""
    ext: str = ""
    width: int = 0
    height: int = 0
    sha256: str = ""
    size: int = 0
    original: str | None = None  # path of the cached .tif.zst member
    original_size: int = 0
    original_sha256: str = ""  # of the GeoTIFF itself
    # the image member when the codec stores pixels (else the release's file is the member)
    member: str | None = None  # path of the cached npy.zst member
    member_size: int = 0
    member_sha256: str = ""
    pixel_sha256: str | None = None
    kept: str = ""  # why an image the codec would store as pixels keeps its bytes
    reason: str = "not_an_image"  # the reject reason when not ok


#: the build's default limit on an image's pixels (width x height): 16 times the largest
#: SARLANG-1M image (1024 x 1024, OpenEarthMap-SAR); a 12000 x 12000 PNG would take ~475 MB of
#: memory in every stream that decodes it
MAX_PIXELS = 4096 * 4096


def _decode_fully(data: bytes) -> str | None:
    """Decode every pixel of an image; return why it cannot be decoded, or None."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # the build applies its own pixel limit (max_pixels) before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises, the image is unusable
        return _REPR_RE.sub("(bytes)", f"{type(e).__name__}: {e}")
    return None


def _probe(job: tuple) -> _Probe:
    """Hash one image, read its format and size, decode it fully, compress its original.

    Encoding the pixels of an image (the zstd codec) decodes it fully; any other image is
    decoded here once, so a truncated or corrupt one is rejected at build, not in a stream.
    """
    from PIL import Image

    key, image_path, original_path, cache_dir, pixel_dir, rule = job[:6]
    max_pixels = job[6] if len(job) > 6 else MAX_PIXELS
    version = job[7] if len(job) > 7 else codec.PIXEL_VERSION
    try:
        data = Path(image_path).read_bytes()
    except OSError as e:
        return _Probe(key, False, f"cannot read it: {e}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
    except Image.DecompressionBombError as e:  # Pillow's own limit, above ours by default
        return _Probe(key, False, f"{e} (Pillow refuses it); it is over max_pixels="
                      f"{max_pixels} as well", sha256=sha, size=len(data),
                      reason="too_many_pixels")
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises, the file is not an image
        # drop object reprs ("<_io.BytesIO object at 0x7f...>"): rejects.jsonl is deterministic
        why = _REPR_RE.sub("(bytes)", f"{type(e).__name__}: {e}")
        return _Probe(key, False, f"Pillow cannot open it ({why})", sha256=sha, size=len(data))
    ext = _FORMAT_EXT.get(fmt or "")
    if ext is None:
        return _Probe(key, False, f"it is a {fmt} image; shards carry PNG or JPEG only",
                      sha256=sha, size=len(data))
    if width * height > max_pixels:
        return _Probe(key, False, f"it has {width} x {height} = {width * height} pixels, more "
                      f"than max_pixels={max_pixels} (a guard against decompression bombs: "
                      "every stream would decode it); raise the limit with --max-pixels if "
                      "such images are meant to be there", sha256=sha, size=len(data),
                      reason="too_many_pixels")
    probe = _Probe(key, True, ext=ext, width=width, height=height, sha256=sha, size=len(data))
    decoded = False
    if pixel_dir is not None and rule.get(ext, "source") != "source":
        probe = _encode_pixels(probe, data, Path(pixel_dir), rule, version)
        if not probe.ok:
            return probe
        decoded = probe.member is not None  # encoding the pixels decoded every one of them
    if not decoded:
        # the header parse above does not read the pixel data: a truncated or corrupt image
        # would pass it and fail in every stream that decodes it
        why = _decode_fully(data)
        if why is not None:
            return _Probe(key, False, f"Pillow cannot decode it ({why})", sha256=sha,
                          size=len(data))
    if original_path is None or cache_dir is None:
        return probe
    try:
        raw = Path(original_path).read_bytes()
    except OSError as e:
        raise BuildError(
            f"original {original_path!r} of {key!r}: cannot read it ({e}); fix the file or "
            "build without --originals"
        ) from None
    tif_sha = hashlib.sha256(raw).hexdigest()
    cached = Path(cache_dir) / f"{tif_sha}.tif.zst"
    if not cached.is_file():
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        write_atomic(cached, cctx.compress(raw))
    return replace(probe, original=str(cached), original_size=cached.stat().st_size,
                   original_sha256=tif_sha)


def _encode_pixels(probe: _Probe, data: bytes, pixel_dir: Path, rule: dict[str, str],
                   version: int) -> _Probe:
    """Store an image's pixels as a member in the content-addressed cache (once per image)."""
    from ..errors import SarlangError

    name = f"l{codec.LEVEL}" if version == 1 else f"v{version}"
    cached = pixel_dir / f"{probe.sha256}.{probe.ext}.{name}.{codec.EXT}"
    member = pixel_sha = None
    if cached.is_file():  # an earlier run of this build encoded it
        try:
            member = cached.read_bytes()
            pixel_sha = codec.member_pixel_sha256(member)
        except (OSError, SarlangError):
            member = None
    if member is None:
        try:
            m = codec.encode_member(data, probe.ext, rule, version)
        except ValueError as e:
            why = _REPR_RE.sub("(bytes)", str(e))
            return _Probe(probe.key, False, f"{why}; its pixels cannot be stored",
                          sha256=probe.sha256, size=probe.size)
        if m.ext != codec.EXT:
            return replace(probe, kept=m.kept_because or "")
        member, pixel_sha = m.data, m.pixel_sha256
        write_atomic(cached, member)
    return replace(probe, member=str(cached), member_size=len(member),
                   member_sha256=hashlib.sha256(member).hexdigest(), pixel_sha256=pixel_sha)


@dataclass(frozen=True)
class _Item:
    """One sample as a shard task needs it.

    ``image_path`` is the file holding the image member: the release's image, or its cached
    pixel member (``ext`` is then ``npy.zst`` and ``member_sha256`` that member's hash).
    """

    key: str
    json: bytes
    image_path: str
    ext: str
    image_sha256: str
    original: str | None
    member_sha256: str = ""
    pixel_sha256: str | None = None


@dataclass(frozen=True)
class _ShardTask:
    """One shard to write: its path relative to the root, its samples, its fingerprint."""

    path: str
    split: str
    tier: str
    city: str
    items: tuple[_Item, ...]
    fingerprint: str


def _hash_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _result_from_record(path: Path, record: dict) -> ShardResult:
    samples = tuple(
        SampleSpan(key, off, size, tuple(MemberSpan(*m) for m in members))
        for key, off, size, members in record["samples"]
    )
    return ShardResult(path, record["bytes"], record["sha256"], samples)


def _record_from_result(task: _ShardTask, result: ShardResult) -> dict:
    return {
        "path": task.path,
        "task": task.fingerprint,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "samples": [
            [s.key, s.offset, s.size,
             [[m.name, m.header_offset, m.data_offset, m.size] for m in s.members]]
            for s in result.samples
        ],
    }


def _write_shard(root: str, task: _ShardTask, compress: str, done: dict | None):
    """Write one shard, or keep the existing file when its done-record still holds.

    Returns:
        ``(result, reused)``.

    """
    path = Path(root) / task.path
    if done is not None and done.get("task") == task.fingerprint and path.is_file():
        if path.stat().st_size == done["bytes"] and _hash_file(path) == done["sha256"]:
            return _result_from_record(path, done), True
    with TarWriter(path, compress) as writer:
        for it in task.items:
            data = Path(it.image_path).read_bytes()
            got = hashlib.sha256(data).hexdigest()
            want = it.member_sha256 or it.image_sha256
            if got != want:
                raise BuildError(
                    f"image {it.image_path!r}: changed while the build ran (sha256 "
                    f"{want} when read, {got} now); rerun the build"
                )
            members = [(schema.JSON_EXT, it.json), (it.ext, data)]
            if it.original is not None:
                members.append((schema.ORIGINAL_EXT, Path(it.original).read_bytes()))
            writer.add_sample(it.key, members)
        return writer.close(), False


# --------------------------------------------------------------------------- the pool


class _Pool:
    """A process pool of ``workers`` processes, or plain calls in this process for 1 worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.ex: ProcessPoolExecutor | None = None
        if workers > 1:
            import multiprocessing

            # forkserver: workers do not inherit this process's threads (tqdm's monitor, ...)
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
                else "spawn"
            self.ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))

    def map(self, fn: Callable, jobs: list) -> Iterator:
        """Results of ``fn(job)`` in job order."""
        if self.ex is None:
            return map(fn, jobs)
        chunk = max(1, min(256, len(jobs) // (self.workers * 8)))
        return self.ex.map(fn, jobs, chunksize=chunk)

    def unordered(self, fn: Callable, jobs: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        """``(args, fn(*args))`` pairs as they finish."""
        if self.ex is None:
            for args in jobs:
                yield args, fn(*args)
            return
        pending = {self.ex.submit(fn, *args): args for args in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield pending.pop(fut), fut.result()

    def close(self) -> None:
        """Stop the workers; queued tasks are cancelled, running ones finish."""
        if self.ex is not None:
            self.ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
