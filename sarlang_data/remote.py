"""URL I/O at the ground of the package: open a URL, read a byte range, resume a dropped stream.

Every read of a local path or fsspec URL (``https://``, ``s3://``, ``hf://``, ``memory://``)
goes through here: :func:`open_url` (sequential reads without read-ahead, remote files wrapped
in a :class:`ResumableStream` that resumes a dropped connection from the last byte),
:func:`read_range` (a byte range, with the HTTP status and length checked: some servers ignore
Range), :func:`join` for root paths, and :func:`redact`, which blanks credentials in every
URL that reaches a message or a log line.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import re
import select
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import RangeError, RemoteError
from .errors import redact as _redact_text

log = logging.getLogger(__name__)
#: bytes asked of a remote file per read: few requests to S3/HTTP, flat memory
READ_SIZE = 1 << 20


def open_url(url: str, storage_options: Mapping[str, Any] | None = None, *,
             size: int | None = None, retries: int | None = None,
             stats: Any = None, offset: int = 0) -> BinaryIO:
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
        stats: a :class:`~sarlang_data.stream.reader.ReadStats` to update (``bytes_read``,
            ``resumed``).
        offset: start reading at this byte (a seek, or an HTTP Range from there; a server
            that ignores Range has the bytes before it dropped).

    Returns:
        A binary file object positioned at ``offset``; the caller closes it.

    """
    if "::" not in url and ("://" not in url or url.startswith("file://")):
        # a local file: skip fsspec's URL parsing, which costs more than reading a small shard
        path = url[len("file://"):] if url.startswith("file://") else url
        return _local(path, offset)
    fs, path = url_to_fs(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        # the OS file without Python-level wrappers: our BufferedReader asks it for 1 MiB
        # at a time, and a wrapper's per-call overhead would cost more than the parsing
        return _local(path, offset)
    return ResumableStream(url, fs, path, size=size,
                           retries=RETRIES if retries is None else retries, stats=stats,
                           offset=offset)


def _local(path: str, offset: int) -> BinaryIO:
    f = open(path, "rb", buffering=0)
    if offset:
        f.seek(offset)
    return f


#: times a remote shard read is resumed after a dropped connection before it fails (a cut
#: often loses the bytes of the read in flight, so a lossy link can fail a few times in a row
#: at the same byte; the waits double from RETRY_WAIT: 6 s in all)
RETRIES = 5
#: seconds before the first resume; doubled for each further one at the same place
RETRY_WAIT = 0.2
#: a read that got this far past the place of its last failure starts counting afresh (a
#: link cut at random places keeps making progress; one that drops at the same byte does not)
_RETRY_PROGRESS = 64 << 10
#: seconds a remote read may wait for the next bytes before the connection counts as dropped
#: (and is resumed): ``$SARLANG_READ_TIMEOUT`` or this
READ_TIMEOUT = 30.0
#: seconds to wait for a connection to a remote server
CONNECT_TIMEOUT = 30.0


def read_timeout() -> float:
    """Return the read timeout of remote reads in seconds (``$SARLANG_READ_TIMEOUT`` or 30).

    Raises:
        ConfigError: ``$SARLANG_READ_TIMEOUT`` is not a positive number.

    """
    raw = os.environ.get("SARLANG_READ_TIMEOUT")
    if raw is None:
        return READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from .errors import ConfigError

        raise ConfigError(f"SARLANG_READ_TIMEOUT={raw!r}: must be a positive number of seconds, "
                          "e.g. SARLANG_READ_TIMEOUT=30")
    return value


def with_timeouts(protocol: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return fsspec options with a read timeout for ``protocol``, unless the caller set one.

    aiohttp (fsspec's HTTP) waits 5 minutes for a stalled server by default, botocore (S3) a
    minute; here a stalled read fails after :func:`read_timeout` seconds, and
    :class:`ResumableStream` resumes it as a dropped connection. A caller's own
    ``client_kwargs={"timeout": ...}`` (HTTP) or ``config_kwargs`` timeouts (S3) win.
    """
    opts = dict(storage_options or {})
    if protocol in ("http", "https"):
        client = dict(opts.get("client_kwargs") or {})
        if "timeout" not in client and "timeout" not in opts:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                                      sock_read=read_timeout())
            opts["client_kwargs"] = client
    elif protocol in ("s3", "s3a"):
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("read_timeout", read_timeout())
        config.setdefault("connect_timeout", CONNECT_TIMEOUT)
        opts["config_kwargs"] = config
    return opts


def url_to_fs(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with read timeouts (:func:`with_timeouts`) and guarded logs.

    Args:
        url: local path or fsspec URL.
        storage_options: fsspec options.

    Returns:
        ``(filesystem, path)``.

    """
    url = str(url)
    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    fs, path = fsspec.core.url_to_fs(url, **with_timeouts(protocol, storage_options))
    guard_logs()
    return fs, path


class RedactFilter(logging.Filter):
    """A logging filter that blanks secrets (:func:`redact`) in a record's message and traceback.

    The message is formatted once here (``msg % args``) and the args dropped, so no handler
    sees the original values.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - logging protocol
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: show it as it is
            text = str(record.msg)
        clean = _redact_text(text)
        if clean != text or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact_text(record.exc_text)
        return True


#: loggers whose records may carry our URLs: ours and those of the libraries we read through
_GUARDED_PREFIXES = ("sarlang_data", "fsspec", "s3fs", "aiohttp", "urllib3", "httpx", "httpcore",
                     "httpx2", "httpcore2", "huggingface_hub", "datasets", "botocore", "requests")
_FILTER = RedactFilter()
_guarded: set[str] = set()
_guarded_at = [0]


def guard_logs() -> None:
    """Attach :class:`RedactFilter` to the loggers of the package and the libraries it uses.

    Those are fsspec, aiohttp, huggingface_hub, datasets, ...

    A logging filter acts on records logged by its own logger, so each is guarded; loggers
    created later are guarded at the next call (every :func:`url_to_fs` calls this; the
    command line also filters its own handler).
    """
    loggers = logging.Logger.manager.loggerDict
    if len(loggers) == _guarded_at[0]:
        return
    _guarded_at[0] = len(loggers)
    for name in list(loggers):
        if name in _guarded or not name.startswith(_GUARDED_PREFIXES):
            continue
        logger = loggers[name]
        if isinstance(logger, logging.Logger):
            logger.addFilter(_FILTER)
            _guarded.add(name)
    for name in _GUARDED_PREFIXES:  # the parents too, created if need be
        if name not in _guarded:
            logging.getLogger(name).addFilter(_FILTER)
            _guarded.add(name)


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
    """Return ``url`` (or any text holding URLs) with credentials blanked.

    Shard URLs end up in log lines and error messages; presigned S3 URLs and
    ``https://user:password@host`` carry secrets, which must not. The one implementation is
    :func:`sarlang_data.errors.redact`, which every error message passes through.

    Args:
        url: a URL, path or message.

    Returns:
        The text with ``user:password@`` and values of parameters such as
        ``X-Amz-Signature``, ``token`` or ``key`` (and Hub tokens) replaced by ``***``.

    """
    return _redact_text(url)


def _cause(e: BaseException) -> str:
    """Name a transport failure for a message: its type, and "timeout" when it is one."""
    name = type(e).__name__
    if isinstance(e, TimeoutError) or "timeout" in name.lower():
        return f"{name}, read timeout"
    return name


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
        stats: a :class:`~sarlang_data.stream.reader.ReadStats` to update (``bytes_read``,
            ``resumed``).

    """

    def __init__(self, url: str, fs: Any, path: str, *, size: int | None = None,
                 retries: int = RETRIES, stats: Any = None, offset: int = 0) -> None:
        super().__init__()
        self.url = url
        self._fs = fs
        self._path = path
        self._size = size
        self._retries = retries
        self._stats = stats
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._kind = {"http": "http", "https": "http", "hf": "hf"}.get(protocol, "other")
        self._pos = offset
        self._fails = 0
        self._failed_at = -1
        self._f: Any = self._open_at(offset)

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
                self._resume(_cause(e))
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
                timed_out = "timeout" in cause.lower()
                raise RemoteError(
                    f"shard {redact(self.url)!r}: the connection failed {self._fails} times at "
                    f"byte {self._pos} ({cause}"
                    + (f": no bytes for {read_timeout():g} s, the read timed out; a slower "
                       "server needs a larger SARLANG_READ_TIMEOUT" if timed_out else "")
                    + "); check the server and the network and read again (a DataLoader "
                    "state_dict resumes without re-reading finished shards)"
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
                cause = _cause(e)

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
    fs, path = url_to_fs(url, opts)
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


# --------------------------------------------------------------------------- paths


def join(root: str | Path, *parts: str) -> str:
    """Join a root (local path or URL) and a relative path with ``/``."""
    base = str(root)
    return posixpath.join(base.rstrip("/") if base not in ("/", "") else base, *parts)


def _fs(root: str | Path, storage_options: Mapping[str, Any] | None):
    return url_to_fs(str(root), storage_options)
