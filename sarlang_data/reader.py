"""Shard URLs -> samples: one streaming path through fsspec, zstd and a minimal tar parser.

A shard is read front to back exactly once: ``fsspec.open(url, "rb", block_size=0)`` (no
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

import io
import json
import logging
import os
import re
import select
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
import zstandard
from fsspec.implementations.local import LocalFileSystem

from .codec import EXT as PIXEL_EXT
from .errors import RangeError, ShardError
from .schema import IMAGE_EXTS, JSON_EXT, ORIGINAL_EXT

log = logging.getLogger(__name__)

BLOCK = 512
#: bytes asked of a remote file per read: few requests to S3/HTTP, flat memory
READ_SIZE = 1 << 20
#: buffer for local files and decompressed streams: members larger than it (images) are read
#: straight into their own bytes object, skipping a copy through the buffer (measured: 64 KiB
#: reads our shards ~30% faster than 1 MiB, 16 KiB is slower again)
LOCAL_BUFFER = 64 << 10
ON_ERROR = ("raise", "skip")
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")  # regular file, old-style regular file, contiguous file
_PAX_PATH = re.compile(rb"\d+ path=([^\n]*)\n")
_ZSTD_SUFFIXES = (".tar.zst", ".tar.zstd", ".tzst")
#: image members a sample may carry: the release's bytes, or pixels (``sarlang_data.codec``)
_IMAGE_MEMBERS = (*IMAGE_EXTS, PIXEL_EXT)


@dataclass
class ReadStats:
    """Counters of one or more reads; pass the same object to several calls to add them up.

    Attributes:
        shards: shards opened.
        samples: samples yielded.
        skipped: samples skipped because they were corrupt (``on_error="skip"``).
        reasons: skipped samples per reason (``truncated``, ``bad_header``, ``bad_zstd``,
            ``missing_image``, ``missing_json``, ``bad_json``, ``duplicate_member``).
        skipped_shard_tails: shards whose rest could not be read after an error.
        bytes_read: bytes received from remote storage (local files are not counted).
        resumed: remote reads resumed after a dropped connection.

    """

    shards: int = 0
    samples: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_shard_tails: int = 0
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
        from .errors import unknown_name

        raise unknown_name("on_error policy", on_error, ON_ERROR, "on_error")
    return on_error


def is_zstd_archive(url: str) -> bool:
    """Return whether a shard URL names a whole-archive zstd shard (``.tar.zst``)."""
    return url.split("?", 1)[0].lower().endswith(_ZSTD_SUFFIXES)


def open_url(url: str, storage_options: Mapping[str, Any] | None = None, *,
             size: int | None = None, retries: int | None = None,
             stats: ReadStats | None = None) -> BinaryIO:
    """Open a shard for sequential reading through fsspec, without read-ahead.

    ``block_size=0`` turns off fsspec's block caches: HTTP(S) and ``hf://`` then stream one
    GET, and S3/GCS read exactly what is asked, which our 1 MiB reads keep to few requests.
    Remote files come wrapped in a :class:`ResumableStream`, which resumes a dropped
    connection from the last byte received (see there).

    Args:
        url: local path or fsspec URL of the shard.
        storage_options: passed to the fsspec filesystem (credentials, endpoint, headers).
        size: the file's size in bytes when known (the manifest's ``bytes``): saves a HEAD
            request over HTTP and lets an early end of the stream be told from the real end.
        retries: times a remote read is resumed after a dropped connection (default
            :data:`RETRIES`); 0 turns resuming off.
        stats: counters to update (``bytes_read``, ``resumed``).

    Returns:
        A binary file object; the caller closes it.

    """
    if "::" not in url and ("://" not in url or url.startswith("file://")):
        # a local file: skip fsspec's URL parsing, which costs more than reading a small shard
        path = url[len("file://"):] if url.startswith("file://") else url
        return open(path, "rb", buffering=0)
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        # the OS file without Python-level wrappers: our BufferedReader asks it for 1 MiB
        # at a time, and a wrapper's per-call overhead would cost more than the parsing
        return open(path, "rb", buffering=0)
    return ResumableStream(url, fs, path, size=size,
                           retries=RETRIES if retries is None else retries, stats=stats)


#: times a remote shard read is resumed after a dropped connection before it fails
RETRIES = 3
#: seconds before the first resume; doubled for each further one at the same place
RETRY_WAIT = 0.2
#: a read that got this far past the place of its last failure starts counting afresh
_RETRY_PROGRESS = 1 << 20
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:[\w.-]*signature|[\w.-]*credential|[\w.-]*security-token|sig|token|"
    r"access_token|api_?key|key|password|secret)=)[^&#]*")


def http_unreachable(url: str, storage_options: Mapping[str, Any] | None = None,
                     timeout: float = 10.0) -> str | None:
    """Say why an ``http(s)`` URL cannot be read, when the cause is not a missing file.

    fsspec's HTTP filesystem reports every failed open, an unreachable host included, as
    ``FileNotFoundError``; this asks the server once more, with the same headers.

    Args:
        url: the URL that could not be opened.
        storage_options: fsspec options; their ``headers`` are sent.
        timeout: seconds to wait for the server.

    Returns:
        None for other schemes, and when the server answers (404 and 410 mean the file is
        missing); else the cause, e.g. ``cannot connect ([Errno 111] Connection refused)``
        or ``the server answered 403 Forbidden``.

    """
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    if not str(url).startswith(("http://", "https://")):
        return None
    headers = dict((storage_options or {}).get("headers") or {})
    parts = urllib.parse.urlsplit(str(url))
    if parts.username is not None:  # user:password@host, as fsspec (aiohttp) sends it
        unquote = urllib.parse.unquote
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.setdefault("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=host))
    request = urllib.request.Request(str(url), headers=headers, method="HEAD")
    # as for range reads: a redirect to another host must not carry the credentials
    opener = urllib.request.build_opener(_same_host_auth_redirect())
    try:
        with opener.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as e:
        return None if e.code in (404, 410) else f"the server answered {e.code} {e.reason}"
    except (urllib.error.URLError, OSError) as e:
        return f"cannot connect ({getattr(e, 'reason', e)})"


def redact(url: str) -> str:
    """Return ``url`` with credentials blanked: user info and secret query parameters.

    Shard URLs end up in log lines and error messages; presigned S3 URLs and
    ``https://user:password@host`` carry secrets, which must not.

    Args:
        url: a URL or path.

    Returns:
        The URL with ``user:password@`` and values of parameters such as ``X-Amz-Signature``,
        ``token`` or ``key`` replaced by ``***``.

    """
    out = _USERINFO.sub(r"\1***@", str(url))
    return _SECRET_QUERY.sub(r"\1***", out)


class _RangeIgnored(OSError):
    """A reconnect came back with bytes from another place than asked (internal)."""


class ResumableStream(io.RawIOBase):
    """A remote file read front to back that survives dropped connections, exactly.

    When a read fails (connection reset, timeout, an incomplete body) or the stream ends
    before ``size`` bytes, the file is opened again at the byte after the last one received:

    - ``http(s)://``: a new GET with ``Range: bytes=POS-``; the answer must be 206 with a
      ``Content-Range`` starting at ``POS``. A server that ignores Range (200) is read again
      from the start, its first ``POS`` bytes dropped.
    - ``hf://``: opened again from the start and its first ``POS`` bytes dropped, because Hub
      mirrors may ignore Range and ``huggingface_hub`` does not check (it would hand back the
      file's first bytes as if they came from ``POS``). For the same reason, when
      ``huggingface_hub`` reconnects by itself with a Range header, the answer is checked, and
      bytes from a reconnect that did not honour it are dropped and read again.
    - other filesystems (S3, GCS, ...): a new file object seeked to ``POS`` (their reads are
      ranged GETs), or read again from the start when it cannot seek.

    More than ``retries`` failures without 1 MiB of progress in between raise
    ``ConnectionError``.
    Nothing received twice reaches the caller, so every byte, and so every row, comes exactly
    once. Messages name the URL with credentials blanked (:func:`redact`).

    Args:
        url: the URL, for messages.
        fs: its fsspec filesystem.
        path: its path in ``fs``.
        size: its size in bytes when known.
        retries: resumes allowed at one place.
        stats: counters to update (``bytes_read``, ``resumed``).

    """

    def __init__(self, url: str, fs: Any, path: str, *, size: int | None = None,
                 retries: int = RETRIES, stats: ReadStats | None = None) -> None:
        super().__init__()
        self.url = url
        self._fs = fs
        self._path = path
        self._size = size
        self._retries = retries
        self._stats = stats
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._kind = {"http": "http", "https": "http", "hf": "hf"}.get(protocol, "other")
        self._pos = 0
        self._fails = 0
        self._failed_at = -1
        self._f: Any = self._open_fresh()

    def readable(self) -> bool:
        """Return True: the stream is readable."""
        return True

    def readinto(self, b: Any) -> int:
        """Read up to ``len(b)`` bytes into ``b``, resuming a dropped connection."""
        want = len(b)
        if want == 0:
            return 0
        while True:
            try:
                data = self._read(self._f, want)
            except (FileNotFoundError, PermissionError):
                raise
            except Exception as e:  # noqa: BLE001 - any transport error: resume and retry
                self._resume(type(e).__name__)
                continue
            if not data and self._size is not None and self._pos < self._size:
                self._resume(f"the stream ended at byte {self._pos} of {self._size}")
                continue
            n = len(data)
            b[:n] = data
            self._pos += n
            if self._stats is not None:
                self._stats.bytes_read += n
            if self._fails and self._pos - self._failed_at > _RETRY_PROGRESS:
                self._fails = 0
            return n

    def close(self) -> None:
        """Close the underlying file."""
        if not self.closed:
            self._close_file()
        super().close()

    # ----------------------------------------------------------------------- internals

    def _read(self, f: Any, n: int) -> bytes:
        response = getattr(f, "response", _NO_RESPONSE)
        loc = getattr(f, "loc", 0)
        data = f.read(n)
        if response is not _NO_RESPONSE and loc and getattr(f, "response", None) is not response:
            # huggingface_hub reconnected by itself with "Range: bytes=loc-" and does not
            # look at the answer; a server that ignored the range sent the file's start
            r = f.response
            status = getattr(r, "status_code", None)
            crange = r.headers.get("content-range", "") if r is not None else ""
            if r is not None and not (status == 206 and crange.startswith(f"bytes {loc}-")):
                raise _RangeIgnored(f"a reconnect at byte {loc} got status {status}")
        return data

    def _close_file(self) -> None:
        try:
            self._f.close()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass

    def _open_fresh(self) -> Any:
        if self._kind == "http" and self._size:
            return self._fs.open(self._path, "rb", block_size=0, size=self._size)
        return self._fs.open(self._path, "rb", block_size=0)

    def _resume(self, cause: str) -> None:
        """Reopen the file at ``self._pos`` after a failure, or raise after too many."""
        import time

        while True:
            # failures count until a read gets _RETRY_PROGRESS bytes past the last one, so
            # a link that keeps dropping after a few bytes cannot loop for ever
            self._failed_at = self._pos
            self._fails += 1
            if self._fails > self._retries:
                raise ConnectionError(
                    f"shard {redact(self.url)!r}: the connection failed {self._fails} times at "
                    f"byte {self._pos} ({cause}); check the server and the network and read "
                    "again (a DataLoader state_dict resumes without re-reading finished shards)"
                ) from None
            log.warning("shard %r: connection lost at byte %d (%s); resuming (%d of %d)",
                        redact(self.url), self._pos, cause, self._fails, self._retries)
            if self._stats is not None:
                self._stats.resumed += 1
            self._close_file()
            time.sleep(RETRY_WAIT * 2 ** (self._fails - 1))
            try:
                self._f = self._open_at(self._pos)
                return
            except (FileNotFoundError, PermissionError):
                raise
            except Exception as e:  # noqa: BLE001 - the server may still be unreachable
                cause = type(e).__name__

    def _open_at(self, pos: int) -> Any:
        if pos == 0:
            return self._open_fresh()
        if self._kind == "http":
            headers = dict(self._fs.kwargs.get("headers") or {})
            headers["Range"] = f"bytes={pos}-"
            f = self._fs.open(self._path, "rb", block_size=0, size=self._size or None,
                              headers=headers)
            r = f.r
            crange = r.headers.get("Content-Range", "")
            if r.status == 206 and crange.startswith(f"bytes {pos}-"):
                return f
            if r.status != 200:
                f.close()
                raise RangeError(f"status {r.status} with Content-Range {crange!r}")
            log.warning("shard %r: the server ignored Range; reading its first %d bytes again",
                        redact(self.url), pos)
            return self._dropped(f, pos)
        f = self._open_fresh()
        if self._kind == "other":
            try:
                f.seek(pos)
                return f
            except (ValueError, OSError, NotImplementedError):
                f.close()
                f = self._open_fresh()
        return self._dropped(f, pos)

    def _dropped(self, f: Any, n: int) -> Any:
        """Read and drop the first ``n`` bytes of a freshly opened ``f``; return ``f``."""
        left = n
        while left:
            chunk = self._read(f, min(left, READ_SIZE))
            if not chunk:
                f.close()
                raise EOFError(f"the file ended after {n - left} of {n} bytes")
            left -= len(chunk)
            if self._stats is not None:
                self._stats.bytes_read += len(chunk)
        return f


_NO_RESPONSE = object()


# A forked child (a DataLoader worker) inherits the parent's fsspec event loop, including
# its epoll instance, which the kernel shares between both processes, and the parent's open
# HTTP/S3 connections. When the child drops those inherited objects (fsspec clears its
# instance cache in a new process), aiohttp closes the connections and asyncio unregisters
# their sockets from that shared epoll: the parent's loop never hears from them again, and
# the parent's next request on a pooled connection (say, the manifest of the next
# load_dataset) hangs forever. So in the child, the inherited loop gets a private, empty
# epoll under the same descriptor: its unregistrations then touch nothing of the parent's.
_PARENT_LOOP: list[Any] = [None]


def _before_fork() -> None:
    asyn = sys.modules.get("fsspec.asyn")
    _PARENT_LOOP[0] = asyn.loop[0] if asyn is not None else None


def _after_fork_in_child() -> None:
    loop, _PARENT_LOOP[0] = _PARENT_LOOP[0], None
    epoll = getattr(getattr(loop, "_selector", None), "_selector", None)
    if epoll is None or not hasattr(epoll, "fileno") or not hasattr(select, "epoll"):
        return
    try:
        fresh = select.epoll()
        try:
            os.dup2(fresh.fileno(), epoll.fileno())
        finally:
            fresh.close()
    except (OSError, ValueError):  # a closed loop: nothing shared any more
        pass


def _after_fork_in_parent() -> None:
    _PARENT_LOOP[0] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


class _BadHeader(ValueError):
    """A header block whose checksum or fields are wrong (internal)."""


class _Truncated(Exception):
    """The stream ended before the tar did (internal)."""

    def __init__(self, offset: int, cause: str) -> None:
        super().__init__(cause)
        self.offset = offset
        self.cause = cause


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

    def __init__(self, stream: BinaryIO, on_bad_header) -> None:
        self.stream = stream
        self.pos = 0
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
                raise _Truncated(pos + BLOCK + len(data), "the shard ends inside member "
                                 f"{name.decode('utf-8', 'replace')!r} (truncated)")
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


def _assemble(url: str, key: str, offset: int, parts: dict[str, bytes]
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


def iter_samples(
    url: str,
    *,
    on_error: str = "raise",
    storage_options: Mapping[str, Any] | None = None,
    stats: ReadStats | None = None,
    fileobj: BinaryIO | None = None,
    size: int | None = None,
    retries: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard.

    Each sample is a dict: ``__key__``, ``__url__``, ``__offset__`` (byte offset of its first
    header in the tar stream), ``json`` (the decoded record), ``image`` (the image member's
    bytes), ``image_ext`` (``png``, ``jpg``, or ``npy.zst`` for pixels: decode those with
    :mod:`sarlang_data.codec`), and ``tif.zst`` (the compressed original) or
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

    Yields:
        Sample dicts, in tar order; ``__url__`` has credentials blanked (:func:`redact`).

    Raises:
        ShardError: corrupt input with ``on_error="raise"``; the message names the URL and
            the byte offset in the (decompressed) tar stream.
        ConfigError: an unknown ``on_error`` value.
        ConnectionError: a remote read failed more than ``retries`` times at one place.

    """
    check_on_error(on_error)
    stats = stats if stats is not None else ReadStats()
    raw = fileobj if fileobj is not None else open_url(
        url, storage_options, size=size, retries=retries, stats=stats)
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
        yield from _samples(shown, stream, on_error == "skip", stats)
    finally:
        if fileobj is None:
            raw.close()


def _samples(url: str, stream: BinaryIO, skip: bool, stats: ReadStats) -> Iterator[dict]:
    """Group the members of a tar stream into samples, applying the error policy."""
    damaged: list[int] = []  # offsets of damaged headers, as they are found

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
        sample, reason, cause = _assemble(url, key, offset, parts)
        if sample is None:
            reject(offset, cause, reason)
            return None
        stats.samples += 1
        return sample

    tar = _TarStream(stream, bad_header)
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
        _stop(url, e.offset, e.cause, "truncated", skip, key is not None and bad != "counted",
              stats)
    except zstandard.ZstdError as e:
        cause = f"the zstd stream is corrupt ({e}); the offset is in the decompressed tar"
        _stop(url, tar.pos, cause, "bad_zstd", skip, key is not None and bad != "counted", stats)


def _stop(url: str, at: int, cause: str, reason: str, skip: bool, pending: bool,
          stats: ReadStats) -> None:
    """Handle an error after which the rest of a shard cannot be read."""
    if not skip:
        raise ShardError(url, at, cause, _FIX) from None
    log.warning("skipping the rest of shard %r from byte %d: %s", url, at, cause)
    stats.skipped_shard_tails += 1
    if pending:  # the sample being assembled is lost with the tail
        stats.skip(reason)


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


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def read_range(
    url: str,
    offset: int,
    size: int,
    storage_options: Mapping[str, Any] | None = None,
    *,
    allow_full: bool = False,
    timeout: float = 60.0,
) -> bytes:
    """Read ``size`` bytes at ``offset`` of a file, checking that the server honoured the range.

    Some HTTP servers (and Hub mirrors) ignore ``Range`` and answer ``200`` with the whole
    file; taking the first ``size`` bytes of that would silently return the wrong data. For
    ``http(s)://`` URLs the status must be 206 with a ``Content-Range`` that names exactly the
    bytes asked for, and the body must have ``size`` bytes. ``hf://`` URLs get the same
    checks on the Hub's HTTP ``resolve`` URL (``huggingface_hub`` itself does not look at the
    status, so a mirror that ignores Range would hand back the file's first bytes). For every
    other fsspec URL the length of what came back must equal ``size``.

    Args:
        url: local path or fsspec URL.
        offset: first byte to read (>= 0).
        size: number of bytes (>= 0).
        storage_options: fsspec options; for HTTP(S) only ``headers`` is used, for
            ``hf://`` ``endpoint`` and ``token``.
        allow_full: when an HTTP server ignores the range, read through the full response
            to the wanted bytes (costs ``offset + size`` bytes of transfer) instead of raising.
        timeout: seconds to wait for an HTTP response.

    Returns:
        Exactly ``size`` bytes.

    Raises:
        RangeError: the server ignored the range (status 200, wrong or missing
            ``Content-Range``), answered with another status, or returned a different number
            of bytes (also when the file is shorter than ``offset + size``).
        ValueError: a negative offset or size.

    """
    if offset < 0 or size < 0:
        raise ValueError(f"read_range({url!r}, offset={offset}, size={size}): offset and size "
                         "must be >= 0")
    if size == 0:
        return b""
    opts = dict(storage_options or {})
    if url.startswith(("http://", "https://")):
        return _http_range(url, offset, size, opts.get("headers") or {}, allow_full, timeout)
    fs, path = fsspec.core.url_to_fs(url, **opts)
    if "hf" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(token=getattr(fs, "token", None))
        return _http_range(fs.url(path), offset, size, headers, allow_full, timeout)
    data = fs.cat_file(path, start=offset, end=offset + size)
    if len(data) != size:
        more = len(data) > size
        raise RangeError(
            f"range read of {url!r} bytes {offset}-{offset + size - 1}: got {len(data)} bytes, "
            f"asked for {size}; "
            + ("the server ignored the range and sent more; read the whole file instead, or "
               "use a server that honours Range" if more else
               "the file is shorter than the index says; the index and the shards do not "
               "match, rebuild or re-download the root")
        )
    return data


def _same_host_auth_redirect():
    import urllib.parse
    import urllib.request

    class SameHostAuthRedirect(urllib.request.HTTPRedirectHandler):
        """Follow redirects, sending ``Authorization`` only to the host it was meant for."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and (urllib.parse.urlsplit(newurl).netloc
                                    != urllib.parse.urlsplit(req.full_url).netloc):
                new.remove_header("Authorization")
            return new

    return SameHostAuthRedirect


def _http_range(url: str, offset: int, size: int, headers: Mapping[str, str],
                allow_full: bool, timeout: float) -> bytes:
    import urllib.error
    import urllib.request

    end = offset + size - 1
    req = urllib.request.Request(url, headers={**headers, "Range": f"bytes={offset}-{end}",
                                               "Accept-Encoding": "identity"})
    where = f"range read of {redact(url)!r} bytes {offset}-{end}"
    # the Hub redirects to a CDN; urllib would forward the token there
    opener = urllib.request.build_opener(_same_host_auth_redirect())
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            raise RangeError(f"{where}: status 416, the file is shorter than the range; the "
                             "index and the shards do not match, rebuild or re-download the "
                             "root") from None
        raise RangeError(f"{where}: HTTP status {e.code} {e.reason}; check the URL and "
                         "credentials") from None
    with resp:
        status = resp.status
        if status == 206:
            crange = resp.headers.get("Content-Range", "")
            m = _CONTENT_RANGE.fullmatch(crange.strip())
            if not m or (int(m.group(1)), int(m.group(2))) != (offset, end):
                raise RangeError(f"{where}: status 206 but Content-Range is {crange!r}; the "
                                 "server or a proxy mangles range requests, read whole shards "
                                 "instead")
            data = resp.read(size + 1)
            if len(data) != size:
                raise RangeError(f"{where}: status 206 with {len(data)} body bytes, asked for "
                                 f"{size}; the response was cut or padded, retry or read whole "
                                 "shards")
            return data
        if status == 200:
            if not allow_full:
                raise RangeError(
                    f"{where}: the server ignored Range and answered 200 with the whole file "
                    f"(Content-Length {resp.headers.get('Content-Length', 'unknown')}); use a "
                    "server that honours Range (nginx, S3, the Hub), or pass allow_full=True "
                    "to read through the file"
                )
            log.warning("%s: the server ignored Range; reading through %d bytes", where,
                        offset + size)
            skipped = 0
            while skipped < offset:
                chunk = resp.read(min(READ_SIZE, offset - skipped))
                if not chunk:
                    break
                skipped += len(chunk)
            data = resp.read(size)
            if skipped < offset or len(data) != size:
                raise RangeError(f"{where}: the full response has only {skipped + len(data)} "
                                 "bytes; the index and the shards do not match, rebuild or "
                                 "re-download the root")
            return data
        raise RangeError(f"{where}: unexpected HTTP status {status}; expected 206 Partial "
                         "Content")
