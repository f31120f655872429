"""Shard URLs -> samples: one streaming path through fsspec, zstd and a minimal tar parser.

A shard is read front to back exactly once: :func:`sarlang_data.remote.open_url` (no
read-ahead cache of the filesystem; our own 1 MiB buffer batches the reads, so S3 and HTTP get
few large requests), a zstd stream reader for whole-archive ``.tar.zst`` shards, then a parser
of the 512-byte ustar headers that yields one member at a time. Members that share a key (the
basename up to its first dot) are grouped into one sample dict; nothing but the sample being
assembled is held in memory.

The parser is ours rather than ``tarfile``'s because ``tarfile`` keeps every ``TarInfo`` it
has seen and costs about 3x more per member on our shards (see ``bench/bench_read.py``).

Corrupt input raises :class:`~sarlang_data.errors.ShardError` naming the URL and the byte
offset in the (decompressed) tar stream. With ``on_error="skip"`` the sample is skipped, or the
rest of the shard when the stream cannot be resynchronised; every skip is logged and counted in
a :class:`ReadStats` the caller can pass in and read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from ..errors import ShardError
from ..format.codec import EXT as PIXEL_EXT
from ..remote import READ_SIZE, open_url, redact
from ..schema import IMAGE_EXTS, JSON_EXT, ORIGINAL_EXT

log = logging.getLogger(__name__)

BLOCK = 512
#: buffer for local files and decompressed streams: members larger than it (images) are read
#: straight into their own bytes object, skipping a copy through the buffer (measured: 64 KiB
#: reads our shards ~30% faster than 1 MiB, 16 KiB is slower again)
LOCAL_BUFFER = 64 << 10
ON_ERROR = ("raise", "skip")
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")  # regular file, old-style regular file, contiguous file
_PAX_PATH = re.compile(rb"\d+ path=([^\n]*)\n")
_ZSTD_SUFFIXES = (".tar.zst", ".tar.zstd", ".tzst")
#: image members a sample may carry: the release's bytes, or pixels (``sarlang_data.format.codec``)
_IMAGE_MEMBERS = (*IMAGE_EXTS, PIXEL_EXT)


@dataclass
class ReadStats:
    """Counters of one or more reads; pass the same object to several calls to add them up.

    Attributes:
        shards: shards opened.
        samples: samples yielded.
        skipped: samples skipped because they were corrupt or could not be read
            (``on_error="skip"``).
        reasons: skipped samples per reason (``truncated``, ``bad_header``, ``bad_zstd``,
            ``missing_image``, ``missing_json``, ``bad_json``, ``duplicate_member``,
            ``bad_hash``: an image member whose sha256 is not its record's ``image_sha256``,
            ``bad_image``: an image that does not decode, ``missing_shard``: the samples of a
            shard that could not be opened).
        skipped_shard_tails: shards whose rest could not be read after an error.
        skipped_shards: shards not read at all (missing, or refused by the server).
        bytes_read: bytes received from remote storage (local files are not counted).
        resumed: remote reads resumed after a dropped connection.

    """

    shards: int = 0
    samples: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_shard_tails: int = 0
    skipped_shards: int = 0
    bytes_read: int = 0
    resumed: int = 0

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` skipped samples for ``reason``."""
        self.skipped += n
        self.reasons[reason] = self.reasons.get(reason, 0) + n


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` policy.

    Args:
        on_error: ``"raise"`` or ``"skip"``.

    Returns:
        The policy.

    Raises:
        ConfigError: for any other value.

    """
    if on_error not in ON_ERROR:
        from ..errors import unknown_name

        raise unknown_name("on_error policy", on_error, ON_ERROR, "on_error")
    return on_error


def is_zstd_archive(url: str) -> bool:
    """Return whether a shard URL names a whole-archive zstd shard (``.tar.zst``)."""
    return url.split("?", 1)[0].lower().endswith(_ZSTD_SUFFIXES)


class _BadHeader(ValueError):
    """A header block whose checksum or fields are wrong (internal)."""


class _Truncated(Exception):
    """The stream ended before the tar did (internal)."""

    def __init__(self, offset: int, cause: str, member: str | None = None) -> None:
        super().__init__(cause)
        self.offset = offset
        self.cause = cause
        self.member = member  # the member whose data was cut, when it was one


def _octal(raw: bytes) -> int:
    if raw[:1] and raw[0] & 0x80:  # GNU base-256, used for sizes of 8 GiB and more
        return int.from_bytes(raw[1:], "big")
    digits = raw.split(b"\0", 1)[0].strip()
    return int(digits, 8) if digits else 0


def parse_header(block: bytes) -> tuple[bytes, int, bytes]:
    """Parse one 512-byte tar header block and check its checksum.

    Args:
        block: the header block.

    Returns:
        ``(name, size, typeflag)``; the name includes the ustar prefix when there is one.

    Raises:
        ValueError: if the checksum does not match or a number field is not octal.

    """
    try:
        # fast paths for the "%011o\0" and "%06o\0 " layouts that tarfile, GNU tar and our
        # writer use; anything else goes through the general parser
        if block[135] in (0, 32):
            size = int(block[124:135], 8)
        else:
            size = _octal(block[124:136])
        stored = int(block[148:154], 8) if block[154] in (0, 32) else _octal(block[148:156])
    except ValueError:
        try:
            size, stored = _octal(block[124:136]), _octal(block[148:156])
        except ValueError:
            raise _BadHeader("tar header has non-octal number fields") from None
    # the checksum is the byte sum of the header with its own 8 bytes counted as spaces;
    # adler32's low half is 1 + that sum modulo 65521, computed at C speed
    if ((zlib.adler32(block) & 0xFFFF) - 1 - sum(block[148:156]) + 256 - stored) % 65521:
        _check_sum_exactly(block, stored)
    name = block[:100].split(b"\0", 1)[0]
    if block[345] and block[257:262] == b"ustar":
        name = block[345:500].split(b"\0", 1)[0] + b"/" + name
    return name, size, block[156:157]


def _check_sum_exactly(block: bytes, stored: int) -> None:
    unsigned = sum(block) - sum(block[148:156]) + 256
    # some old writers summed signed chars; tarfile accepts both, and so do we
    signed = unsigned - 256 * sum(1 for b in block if b > 127) + 256 * sum(
        1 for b in block[148:156] if b > 127)
    if stored not in (unsigned, signed):
        raise _BadHeader(f"tar header checksum {stored} does not match its bytes ({unsigned})")


def _looks_like_header(block: bytes) -> bool:
    if block[257:262] != b"ustar":
        return False
    try:
        parse_header(block)
    except _BadHeader:
        return False
    return True


class _TarStream:
    """A tar stream parsed one member at a time; ``pos`` is the offset parsed up to."""

    def __init__(self, stream: BinaryIO, on_bad_header, pos: int = 0) -> None:
        self.stream = stream
        self.pos = pos
        self.on_bad_header = on_bad_header

    def members(self) -> Iterator[tuple[str, int, bytes, bool]]:
        """Yield ``(name, header_offset, data, resynced)`` of each regular-file member.

        ``resynced`` is True for the first member found after a damaged header was skipped.
        """
        read = self.stream.read
        adler32 = zlib.adler32
        pos = self.pos
        long_name: bytes | None = None
        resynced = False
        while True:
            hdr = read(BLOCK)
            if len(hdr) < BLOCK:
                self.pos = pos
                raise _Truncated(
                    pos + len(hdr),
                    "the shard ends inside a tar header (truncated)" if hdr else
                    "the shard ends without tar's end-of-archive blocks (truncated)",
                )
            if hdr == _ZERO_BLOCK:
                self.pos = pos + BLOCK
                return
            # parse_header inlined for the layout tarfile, GNU tar and our writer use ("%011o\0"
            # size, "%06o\0 " checksum, no ustar prefix): a call per member costs as much as
            # the parsing. Any other layout, or a checksum that does not add up, goes through
            # parse_header, which decides.
            name = None
            if hdr[135] == 0 and hdr[154] == 0 and not hdr[345]:
                try:
                    size = int(hdr[124:135], 8)
                    if not ((adler32(hdr) & 0xFFFF) - (adler32(hdr[148:156]) & 0xFFFF) + 256
                            - int(hdr[148:154], 8)) % 65521:
                        name, kind = hdr[:100].split(b"\0", 1)[0], hdr[156:157]
                except ValueError:
                    pass
            if name is None:
                try:
                    name, size, kind = parse_header(hdr)
                except _BadHeader as e:
                    self.pos = pos
                    self.on_bad_header(pos, str(e))  # raises unless skipping
                    pos, hdr = self._resync(pos)
                    name, size, kind = parse_header(hdr)
                    resynced = True
            padded = size + (-size % BLOCK)
            data = read(size)
            if len(data) < size:
                self.pos = pos
                cut = name.decode("utf-8", "replace")
                raise _Truncated(pos + BLOCK + len(data), "the shard ends inside member "
                                 f"{cut!r} (truncated)", cut)
            if padded != size and len(read(padded - size)) < padded - size:
                self.pos = pos
                raise _Truncated(pos + BLOCK + size, "the shard ends inside tar padding "
                                 "(truncated)")
            at = pos
            pos += BLOCK + padded
            self.pos = pos
            if kind in _REGULAR:
                if long_name is not None:
                    name, long_name = long_name, None
                yield name.decode("utf-8", "replace"), at, data, resynced
                resynced = False
            elif kind == b"L":  # GNU long name of the next member
                long_name = data.split(b"\0", 1)[0]
            elif kind == b"x":  # pax extended header: only the path matters here
                m = _PAX_PATH.search(data)
                if m:
                    long_name = m.group(1)
            # directories, links and global pax headers carry nothing we read

    def _resync(self, bad_at: int) -> tuple[int, bytes]:
        """Scan whole blocks after a damaged header for the next valid ustar header.

        Returns:
            The offset of that header and its block (already read from the stream).

        """
        read = self.stream.read
        pos = bad_at + BLOCK
        while True:
            block = read(BLOCK)
            if len(block) < BLOCK:
                self.pos = pos
                raise _Truncated(pos + len(block),
                                 f"no valid tar header after the damaged one at byte {bad_at}")
            if block != _ZERO_BLOCK and _looks_like_header(block):
                self.pos = pos
                return pos, block
            pos += BLOCK


def _assemble(url: str, key: str, offset: int, parts: dict[str, bytes], check: bool = False
              ) -> tuple[dict[str, Any] | None, str, str]:
    """Turn the members of one key into a sample dict, or say what is wrong with them."""
    raw = parts.get(JSON_EXT)
    if raw is None:
        return None, "missing_json", f"sample {key!r} has no {key}.json member"
    for ext in _IMAGE_MEMBERS:
        if ext in parts:
            break
    else:
        return None, "missing_image", (f"sample {key!r} has no image member ({key}.png, .jpg "
                                        f"or .{PIXEL_EXT})")
    try:
        record = _fast_loads(raw)
    except ValueError:
        record = _NOT_DECODED
    if record is _NOT_DECODED:
        # NaN, huge integers, bad UTF-8 ...: the standard library decides, and says why
        try:
            record = _decode_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return None, "bad_json", f"member {key}.json is not UTF-8 JSON ({e})"
    if not isinstance(record, dict):
        return None, "bad_json", f"member {key}.json holds a {type(record).__name__}, not an object"
    if check and ext != PIXEL_EXT:
        want = record.get("image_sha256")
        got = hashlib.sha256(parts[ext]).hexdigest()
        if got != want:
            return None, "bad_hash", (f"sample {key!r}: member {key}.{ext} has sha256 {got}, its "
                                      f"record (and the index) say {want}: the shard is damaged")
    sample = {"__key__": key, "__url__": url, "__offset__": offset, "json": record,
              "image": parts[ext], "image_ext": ext}
    if len(parts) > 2:
        for name, data in parts.items():
            if name != JSON_EXT and name != ext:
                sample[name] = data
    return sample, "", ""


# json.loads minus its per-call argument handling and encoding sniffing (records are UTF-8)
_decode_json = json.JSONDecoder().decode
_NOT_DECODED = object()
try:
    # orjson decodes our records in ~5 us against ~11 us (bench/bench_read.py); what it
    # refuses (NaN, integers beyond 64 bits) goes to the standard library, which decides
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency on CPython
    def _fast_loads(raw: bytes) -> Any:
        return _NOT_DECODED

_FIX = "re-download or rebuild the shard (`sarlang-data verify ROOT` lists every bad one)"
_FIX_MISSING = ("the root is incomplete: download or copy the shard again (`sarlang-data verify "
                "ROOT` lists every missing one), or pass on_error='skip' to read the rest")
_FIX_REFUSED = ("check the credentials (storage_options, e.g. headers or a token) and the "
                "server's access rules, or pass on_error='skip' to read the rest")


def _open_failure(url: str, e: BaseException) -> tuple[str, str] | None:
    """Say why a shard could not be opened (cause, fix), or None when it is no such failure."""
    remote = "://" in url and not url.startswith("file://")
    if isinstance(e, FileNotFoundError):
        return ("missing (" + ("HTTP 404 Not Found" if url.startswith(("http://", "https://"))
                               else "no such file") + ")", _FIX_MISSING)
    if isinstance(e, (PermissionError, IsADirectoryError)):
        return f"cannot be read ({type(e).__name__}: {e.strerror or e})", _FIX_REFUSED
    status = getattr(e, "status", None) or getattr(getattr(e, "response", None),
                                                   "status_code", None)
    if remote and isinstance(status, int) and status >= 400:
        reason = getattr(e, "message", "") or ""
        return f"refused: the server answered HTTP {status} {reason}".rstrip(), _FIX_REFUSED
    return None


def check_hashes_default(url: str) -> bool:
    """Whether reads of ``url`` check image hashes by default: yes for remote URLs.

    Checking costs ~0.09 ms per 133 KB image (sha256 at ~1.5 GB/s), +5% on a read that
    decodes, +29% on a raw read over HTTP and +175% on a raw local read; local roots are
    checked by ``sarlang-data verify`` instead (``docs/format.md``).
    """
    return "://" in url and not url.startswith(("file://", "memory://"))


def iter_samples(
    url: str,
    *,
    on_error: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    stats: ReadStats | None = None,
    fileobj: BinaryIO | None = None,
    size: int | None = None,
    retries: int | None = None,
    offset: int = 0,
    check_hashes: bool | None = None,
    samples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard, from its start or from a sample's byte offset.

    Each sample is a dict: ``__key__``, ``__url__``, ``__offset__`` (byte offset of its first
    header in the tar stream), ``json`` (the decoded record), ``image`` (the image member's
    bytes), ``image_ext`` (``png``, ``jpg``, or ``npy.zst`` for pixels: decode those with
    :mod:`sarlang_data.format.codec`), and ``tif.zst`` (the compressed original) or
    any other member under its extension when present. Decompress originals with
    :func:`decompress_member` only when you need them.

    Args:
        url: local path or fsspec URL of a ``.tar`` or ``.tar.zst`` shard.
        on_error: ``"raise"`` raises ShardError on corrupt input; ``"skip"`` skips the
            sample (or the rest of the shard when it cannot resynchronise), logs a warning and
            counts it in ``stats``.
        storage_options: fsspec options (credentials, endpoint, headers).
        stats: counters to update; pass one to read the counts afterwards.
        fileobj: read this open binary stream instead of opening ``url`` (``url`` then only
            names the shard in messages and decides whether it is zstd-compressed).
        size: the shard's size in bytes when known (the manifest's ``bytes``); see
            :func:`open_url`.
        retries: resumes of a dropped remote connection (default :data:`RETRIES`).
        offset: byte offset of a sample's first header (``index.parquet``'s ``offset``) to
            start at; plain ``.tar`` shards only (a ``.tar.zst`` archive cannot be entered
            in the middle: ValueError).
        check_hashes: check each image member (the release's bytes) against its record's
            ``image_sha256`` (a mismatch is a corrupt sample, reason ``bad_hash``); None
            (default) checks remote URLs only (:func:`check_hashes_default`). Pixel members
            are checked by their zstd frame's checksum when decoded.
        samples: the shard's sample count when known (the manifest's ``samples``): with
            ``on_error="skip"`` the samples of a shard that cannot be opened, or of a lost
            tail, are counted one by one (not when starting at an ``offset``: the samples
            before it are not this read's).

    Yields:
        Sample dicts, in tar order; ``__url__`` has credentials blanked (:func:`redact`).

    Raises:
        ShardError: corrupt input with ``on_error="raise"``; the message names the URL and
            the byte offset in the (decompressed) tar stream.
        ConfigError: an unknown ``on_error`` value.
        ConnectionError: a remote read failed more than ``retries`` times at one place.

    """
    check_on_error(on_error)
    if offset and is_zstd_archive(url):
        raise ValueError(f"iter_samples({url!r}, offset={offset}): a .tar.zst archive can only "
                         "be read from its start; pass offset=0")
    stats = stats if stats is not None else ReadStats()
    if offset:
        samples = None  # a count of the whole shard would overcount what this read loses
    check = check_hashes_default(url) if check_hashes is None else bool(check_hashes)
    try:
        raw = fileobj if fileobj is not None else open_url(
            url, storage_options, size=size, retries=retries, stats=stats,
            offset=offset)
    except Exception as e:
        why = _open_failure(url, e)
        if why is None:
            raise
        shown = redact(url)
        if on_error != "skip":
            raise ShardError(shown, 0, f"cannot open it: the shard is {why[0]}"
                             if why[1] is _FIX_MISSING else f"cannot open it: {why[0]}",
                             why[1]) from None
        log.warning("skipping shard %r: cannot open it (%s); its %s samples are not read",
                    shown, why[0], "?" if samples is None else samples)
        stats.skipped_shards += 1
        if samples:
            stats.skip("missing_shard", samples)
        return
    stats.shards += 1
    try:
        source: Any = raw
        buffer = LOCAL_BUFFER if isinstance(raw, io.FileIO) else READ_SIZE
        if is_zstd_archive(url):
            source = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=READ_SIZE, closefd=False
            )
            buffer = LOCAL_BUFFER
        stream = io.BufferedReader(source, buffer_size=buffer)
        # local paths carry no credentials; redact's regexes cost more than a small shard's
        # parsing
        shown = redact(url) if "://" in url or "::" in url else url
        before = stats.samples + stats.skipped
        try:
            yield from _samples(shown, stream, on_error == "skip", stats, check, samples,
                                offset)
        except OSError as e:
            # the file went away or was refused while it was read (a reconnect answered 404 or
            # 403): the rest of the shard cannot be read
            why = _open_failure(url, e)
            if why is None:
                raise
            _stop(shown, -1, f"while reading, the shard became {why[0]}", "missing_shard",
                  on_error == "skip", True, stats, samples, before)
    finally:
        if fileobj is None:
            raw.close()


def _samples(url: str, stream: BinaryIO, skip: bool, stats: ReadStats, check: bool = False,
             expected: int | None = None, base: int = 0) -> Iterator[dict]:
    """Group the members of a tar stream into samples, applying the error policy."""
    damaged: list[int] = []  # offsets of damaged headers, as they are found
    seen = [stats.samples + stats.skipped]  # samples of this shard are counted from here

    def bad_header(at: int, cause: str) -> None:
        if not skip:
            raise ShardError(url, at, cause, _FIX)
        log.warning("shard %r at byte %d: %s; scanning for the next header", url, at, cause)
        damaged.append(at)

    def reject(at: int, cause: str, reason: str) -> None:
        if not skip:
            raise ShardError(url, at, cause, _FIX)
        log.warning("skipping a sample: shard %r at byte %d: %s", url, at, cause)
        stats.skip(reason)

    def finish(key: str, offset: int, parts: dict[str, bytes], bad: str) -> dict | None:
        if bad == "bad_header":
            reject(offset, f"sample {key!r} lost a member to a damaged tar header", bad)
            return None
        if bad:  # already counted
            return None
        sample, reason, cause = _assemble(url, key, offset, parts, check)
        if sample is None:
            reject(offset, cause, reason)
            return None
        stats.samples += 1
        return sample

    tar = _TarStream(stream, bad_header, base)
    key: str | None = None
    offset = 0
    parts: dict[str, bytes] = {}
    bad = ""  # "bad_header": the pending sample lost a member; "counted": already skipped
    try:
        for name, at, data, resynced in tar.members():
            dot = name.find(".", name.rfind("/") + 1)  # key = basename up to its first dot
            mkey, ext = (name, "") if dot < 0 else (name[:dot], name[dot + 1:])
            if resynced:
                # exactly one header was damaged (the scan stops at the next valid one) and
                # members come in the order json, image, original: a json member with a new key
                # means the damaged member ended the pending sample; a new key with any other
                # member means it opened this member's sample
                if mkey == key or ext == JSON_EXT:
                    if key is not None and not bad:
                        bad = "bad_header"
                else:
                    if key is not None:
                        sample = finish(key, offset, parts, bad)
                        if sample is not None:
                            yield sample
                    key, offset, parts, bad = mkey, damaged[-1], {}, "bad_header"
            if mkey != key:
                if key is not None:
                    sample = finish(key, offset, parts, bad)
                    if sample is not None:
                        yield sample
                key, offset, parts, bad = mkey, at, {}, ""
            if ext in parts:
                if not bad:
                    reject(at, f"sample {key!r} has two {name!r} members", "duplicate_member")
                    bad = "counted"
                continue
            parts[ext] = data
        if key is not None:
            sample = finish(key, offset, parts, bad)
            if sample is not None:
                yield sample
    except _Truncated as e:
        if key is not None and not bad and e.member is not None:
            cut = e.member[e.member.rfind("/") + 1:]
            if cut.split(".", 1)[0] != key.rsplit("/", 1)[-1]:
                # the cut is in the next sample's member: the pending one is whole
                sample = finish(key, offset, parts, bad)
                key = None
                if sample is not None:
                    yield sample
        _stop(url, e.offset, e.cause, "truncated", skip, key is not None and bad != "counted",
              stats, expected, seen[0])
    except zstandard.ZstdError as e:
        cause = f"the zstd stream is corrupt ({e}); the offset is in the decompressed tar"
        _stop(url, tar.pos, cause, "bad_zstd", skip, key is not None and bad != "counted", stats,
              expected, seen[0])


def _stop(url: str, at: int, cause: str, reason: str, skip: bool, pending: bool,
          stats: ReadStats, expected: int | None = None, before: int = 0) -> None:
    """Handle an error after which the rest of a shard cannot be read.

    The sample being assembled is lost with the tail; when the shard's sample count is known,
    so is every sample after it, and each is counted.
    """
    if not skip:
        raise ShardError(url, at, cause, _FIX) from None
    stats.skipped_shard_tails += 1
    done = stats.samples + stats.skipped - before
    lost = max(expected - done, 0) if expected is not None else int(pending)
    log.warning("skipping the rest of shard %r from byte %d: %s (%s samples lost)", url, at,
                cause, lost if expected is not None else "at least 1" if pending else "no")
    if lost:
        stats.skip(reason, lost)


def decompress_member(data: bytes, *, url: str = "", offset: int = -1) -> bytes:
    """Decompress a per-member zstd frame (e.g. ``{key}.tif.zst``).

    Args:
        data: the member's bytes: one zstd frame with its content size written.
        url: shard URL, for the error message.
        offset: member offset, for the error message.

    Returns:
        The decompressed bytes.

    Raises:
        ShardError: if the frame is corrupt.

    """
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as e:
        raise ShardError(url or "<member>", offset, f"zstd member is corrupt ({e})", _FIX) from None


def original_of(sample: Mapping[str, Any]) -> bytes | None:
    """Return the decompressed original GeoTIFF of a sample, or None when it has none."""
    data = sample.get(ORIGINAL_EXT)
    if data is None:
        return None
    return decompress_member(
        data, url=sample.get("__url__", ""), offset=sample.get("__offset__", -1)
    )
