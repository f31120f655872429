"""The fault matrix (issue 13): every fault tried ends in a clear error, a counted skip, or a
correct read; nothing leaks, nothing hangs, nothing of the user's is touched.

Each row of ``ROWS`` is one fault: a function that causes it and looks at what came of it, and
the outcome it must have:

- ``error``: a :class:`~sarlang_data.errors.SarlangError` (on the command line: exit status 2
  and one ``sarlang-data CMD: error: ...`` line) whose message matches the row's pattern, which
  names the value, the cause and the fix;
- ``skip``: the work goes on, the fault is counted (``ReadStats`` of a read, the rejects of a
  build) and logged, and every intact row still comes exactly once;
- ``ok``: the input is read correctly (compared with what the test wrote).

A row observes what happened and says so (:class:`Seen`); anything else it sees is one of the
failures the matrix exists to rule out: ``traceback`` (an exception that is not ours, or a
command that printed one), ``hang`` (over the row's time bound), ``silent drop`` (rows missing
without a count), ``wrong data`` (rows that differ from what was written), ``unclear`` (our
error, but not naming what the row asks). On top of that, for every row: no secret
(password, signature, token) in any output, exception text or log record (``leak``), and the
files a row puts down as the user's keep their bytes (``user files``).

The next fault class found is one more row. The module's figures (faults tried, clear errors,
counted skips, correct reads, and 0 of each failure) are printed at its end.

Cost: about 3 minutes on 2 shared cores: the load row (8 client processes, 3 passes each) takes
about 75 s, the command-line rows start a Python each (2-9 s), the rest are quick; nginx is
shared by the module.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import servers

from sarlang_data import hf
from sarlang_data.errors import SarlangError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.format.verify import verify
from sarlang_data.ingest.build import BuildOptions, build
from sarlang_data.stream.reader import ReadStats

PASSWORD = "pw-5ecret-0xC0FFEE"
SIGNATURE = "sig-5ecret-0xBADF00D"
TOKEN = "hf_5ecretT0kenAbCdEfGhIjKlMnOpQrStUv"
BEARER = "bearer-5ecret-0xDEADBEEF"
SECRETS = (PASSWORD, SIGNATURE, TOKEN, BEARER)
REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- what a row saw


@dataclasses.dataclass
class Seen:
    """What came of a fault: its kind (``error``, ``skip``, ``ok`` or a failure) and detail."""

    kind: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Row:
    """One fault of the matrix."""

    klass: str
    name: str
    expect: str  # error | skip | ok
    run: Callable[[Ctx], Seen]
    timeout: float = 120.0  # seconds; over it the row is a hang (pytest-timeout stops it)

    @property
    def id(self) -> str:
        return f"{self.klass}/{self.name}"


ROWS: list[Row] = []


def row(klass: str, name: str, expect: str, timeout: float = 120.0):
    """Register the decorated function as a row of the matrix."""

    def add(fn):
        ROWS.append(Row(klass, name, expect, fn, timeout))
        return fn

    return add


class Ctx:
    """What a row gets: lazy fixtures, a private folder, and a record of all it saw."""

    def __init__(self, request, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.texts: list[str] = []  # every output, message and log line seen, for the leak check
        self.user_files: dict[Path, str] = {}  # files put down as the user's -> sha256

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def user_file(self, path: Path, data: bytes) -> Path:
        """Write a file that belongs to "the user": the row must leave it as it is."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.user_files[path] = hashlib.sha256(data).hexdigest()
        return path

    def seen(self, text: str) -> str:
        self.texts.append(text)
        return text


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def expect_error(ctx: Ctx, call: Callable[[], object], match: str) -> Seen:
    """Run ``call``: a SarlangError matching ``match`` is ``error``; anything else says what."""
    try:
        call()
    except SarlangError as e:
        msg = ctx.seen(str(e))
        ctx.seen("".join(traceback.format_exception(e)))
        if not re.search(match, msg, re.S):
            return Seen("unclear", msg)
        return Seen("error", msg)
    except Exception as e:  # noqa: BLE001 - what the matrix is here to catch
        text = ctx.seen("".join(traceback.format_exception(e)))
        return Seen("traceback", text[-3000:])
    return Seen("no error", "the call returned")


@dataclasses.dataclass
class Run:
    """One run of the ``sarlang-data`` command."""

    rc: int | None
    out: str
    err: str
    seconds: float


def sarlang(ctx: Ctx, *args: str, env: dict | None = None, timeout: float = 60) -> Run:
    """Run ``sarlang-data ARGS`` in a fresh Python; record its output for the leak check."""
    full_env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sarlang_data.cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ctx.tmp)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()  # ours, by its handle
        out, err = proc.communicate()
        rc = None
    ctx.seen(out + err)
    return Run(rc, out, err, time.monotonic() - t0)


def cli_outcome(run: Run, command: str, match: str | None = None) -> Seen:
    """Judge a command's run: ``error`` (exit 2, one error line matching), ``ok`` (exit 0)."""
    text = run.out + run.err
    if run.rc is None:
        return Seen("hang", f"no exit after {run.seconds:.0f} s; {text[-2000:]}")
    if "Traceback (most recent call last)" in text or run.rc not in (0, 2):
        return Seen("traceback", f"exit {run.rc}: {text[-3000:]}")
    if run.rc == 0:
        return Seen("ok", text)
    lines = [ln for ln in run.err.splitlines() if ln.startswith(f"sarlang-data {command}: error:")]
    if len(lines) != 1:
        return Seen("unclear", text[-3000:])
    msg = run.err[run.err.index(lines[0]):]
    if match and not re.search(match, msg, re.S):
        return Seen("unclear", msg)
    return Seen("error", msg)


# --------------------------------------------------------------------------- servers


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of an HTTP server, doing to responses what it is told.

    Each request goes upstream with ``Connection: close`` (one request per connection, so a
    response is all the server sends after its request). ``rule(path, n, ranged)`` (``n`` counts the
    requests for that path from 0; ``ranged`` says whether it asks for a Range, as a resumed
    read does) returns what to do with the answer: None (pass it on),
    ``("status", 403)`` (answer that status instead), ``("cut", b)`` (pass on ``b`` body bytes,
    then close both sockets) or ``("stall", b)`` (pass on ``b`` body bytes, then send nothing
    more, keeping the connection open until the client gives up). Counts what it did.
    """

    def __init__(self, upstream_port: int, rule) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rule = rule
        self.done: Counter = Counter()
        self.requests: Counter = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._spawn(self._accept)

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._socks.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            request, _, rest = head.partition(b"\r\n\r\n")
            lines = request.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode()
            with self._lock:
                n = self.requests[path]
                self.requests[path] += 1
            ranged = any(ln.lower().startswith(b"range:") for ln in lines[1:])
            action = self.rule(path, n, ranged)
            if action and action[0] == "status":
                with self._lock:
                    self.done["status"] += 1
                client.sendall(f"HTTP/1.1 {action[1]} Refused by the test\r\nContent-Length: 0"
                               "\r\nConnection: close\r\n\r\n".encode())
                return
            kept = [ln for ln in lines[1:] if not ln.lower().startswith(b"connection:")]
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._socks.append(upstream)
            upstream.sendall(b"\r\n".join([lines[0], *kept, b"Connection: close"])
                             + b"\r\n\r\n" + rest)
            limit = action[1] if action else None
            body_at = None
            sent = 0
            buf = b""
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if body_at is None:
                    buf += data
                    if b"\r\n\r\n" not in buf:
                        continue
                    body_at = buf.index(b"\r\n\r\n") + 4
                    client.sendall(buf[:body_at])
                    data = buf[body_at:]
                if limit is not None and sent + len(data) >= limit:
                    client.sendall(data[: limit - sent])
                    with self._lock:
                        self.done[action[0]] += 1
                    if action[0] == "stall":
                        while not self._stop.is_set():
                            # the client closes its side when it gives up
                            client.settimeout(0.2)
                            try:
                                if client.recv(1) == b"":
                                    return
                            except TimeoutError:
                                continue
                            except OSError:
                                return
                    return
                sent += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client)
            if upstream is not None:
                self._close(upstream)

    @staticmethod
    def _close(sock) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            self._close(s)
        for t in self._threads:
            t.join(timeout=5)


class StatusServer:
    """An HTTP server on 127.0.0.1 that answers every request with one status, as the Hub would.

    404 carries the Hub's ``X-Error-Code: RepoNotFound``; 401 the Hub's answer to a bad token.
    """

    def __init__(self, status: int) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's names
                self._answer(True)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def _answer(self, body: bool) -> None:
                msg = {401: "Invalid credentials in Authorization header",
                       404: "Repository not found"}.get(status, "error")
                data = json.dumps({"error": msg}).encode()
                self.send_response(status)
                if status in (401, 404):
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Web:
    """nginx serving a folder where rows put the roots they serve (``put``)."""

    def __init__(self, srv, folder: Path) -> None:
        self.srv = srv
        self.folder = folder
        self.port = int(srv.url.rsplit(":", 1)[1].strip("/"))

    def put(self, name: str, root: Path) -> str:
        dest = self.folder / name
        shutil.copytree(root, dest)
        return self.srv.url + name


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    with servers.start_nginx(folder, tmp_path_factory.mktemp("nginx")) as srv:
        yield Web(srv, folder)


_proxies: list[FaultProxy] = []


def proxy(ctx: Ctx, rule) -> FaultProxy:
    p = FaultProxy(ctx.fixture("web").port, rule)
    _proxies.append(p)
    return p


def with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://alice:{PASSWORD}@", 1)


# --------------------------------------------------------------------------- roots and releases


def root_copy(ctx: Ctx, name: str = "root") -> Path:
    dest = ctx.tmp / name
    shutil.copytree(ctx.fixture("tiny_root"), dest)
    return dest


def release_copy(ctx: Ctx, name: str = "syn") -> Path:
    dest = ctx.tmp / name
    shutil.copytree(ctx.fixture("synth_tiny") / "SARLANG_1M", dest)
    return dest


def build_root(ctx: Ctx, release: Path, name: str = "built", **opts) -> dict:
    opts.setdefault("workers", 1)
    return build(release, ctx.tmp / name, BuildOptions(**opts), progress=False)


def index_rows(root: Path) -> list[dict]:
    return pq.read_table(Path(root) / "index.parquet").to_pylist()


def shard_of(root: Path, pick: str = "largest") -> dict:
    """A shard of the root with at least 2 samples (the largest by samples)."""
    shards = read_manifest(root)["shards"]
    return max(shards, key=lambda s: (s["samples"], s["path"]))


def stream_keys(root: str, *, split: str | None = None, on_error: str = "raise",
                storage_options: dict | None = None, tmp: Path, **kw) -> tuple[list, ReadStats]:
    """Rows of the ``images`` config (one per sample) as keys, and the builder's read counts."""
    b = hf.SarlangBuilder(cache_dir=str(tmp / "cache"), config_name="images", data_dir=root,
                          decode=kw.pop("decode", False), on_error=on_error,
                          storage_options=storage_options, **kw)
    keys = []
    for s, part in b.as_streaming_dataset().items():
        if split is None or s == split:
            keys += [r["key"] for r in part]
    return keys, b.read_stats


def expected_keys(root: Path, split: str | None = None, drop=()) -> list[str]:
    """Keys of every sample the index lists (in manifest order), minus ``drop``."""
    rows = index_rows(root)
    return [r["key"] for r in rows if (split is None or r["split"] == split)
            and r["key"] not in set(drop)]


def judge_rows(got: list, want: list, stats: ReadStats, skipped: int, shards: int = 0) -> Seen:
    """``skip`` when every intact row came once and each lost sample (and shard) was counted."""
    if Counter(got) != Counter(want):
        lost = sorted(set(want) - set(got))
        extra = sorted((Counter(got) - Counter(want)).elements())
        kind = "silent drop" if lost and not extra else "wrong data"
        return Seen(kind, f"lost {lost[:5]}, extra {extra[:5]}; stats {stats}")
    if stats.skipped != skipped or stats.skipped_shards != shards:
        return Seen("silent drop", f"counted {stats.skipped} samples, {stats.skipped_shards} "
                                   f"shards; lost {skipped} samples, {shards} shards: {stats}")
    return Seen("skip", str(stats))


def rewrite_member(shard: Path, key: str, ext: str, edit: Callable[[bytes], bytes]) -> int:
    """Change one member's bytes in place (same length); return its data offset."""
    raw = bytearray(shard.read_bytes())
    pos = 0
    while pos < len(raw):
        hdr = bytes(raw[pos:pos + 512])
        if hdr == bytes(512):
            break
        name = hdr[:100].split(b"\0", 1)[0].decode()
        size = int(hdr[124:135], 8)
        if name == f"{key}.{ext}":
            new = edit(bytes(raw[pos + 512:pos + 512 + size]))
            assert len(new) == size
            raw[pos + 512:pos + 512 + size] = new
            shard.write_bytes(bytes(raw))
            return pos + 512
        pos += 512 + -(-size // 512) * 512
    raise AssertionError(f"{key}.{ext} not in {shard}")


def reseal(root: Path, changed: dict[str, dict]) -> None:
    """Make manifest and index agree with shards edited in place, as an older build would have.

    ``changed`` maps a key to index columns to set (e.g. a new ``image_sha256``).
    """
    table = pq.read_table(root / "index.parquet")
    rows = table.to_pylist()
    for r in rows:
        r.update(changed.get(r["key"], {}))
    import sarlang_data.format.manifest as mf

    data = mf.index_bytes(rows)
    (root / "index.parquet").write_bytes(data)
    m = json.loads((root / "manifest.json").read_text())
    for s in m["shards"]:
        s["sha256"] = hashlib.sha256((root / s["path"]).read_bytes()).hexdigest()
    m["index"]["sha256"] = hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_bytes(mf.manifest_bytes(m))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def first_image(release: Path, ext: str = ".png") -> Path:
    return sorted((release / "SARimages").glob(f"*{ext}"))[0]


def rejects_of(root: Path) -> list[dict]:
    return [json.loads(ln) for ln in (root / "rejects.jsonl").read_text().splitlines()]


def texts_of(root: Path) -> list[str]:
    out = []
    for r in index_rows(root):
        out += [c["text"] for c in r["captions"]]
        out += [t for q in r["qa"] for t in (q["question"], q["answer"])]
    return out


def build_outcome(ctx: Ctx, release: Path, reason: str, file_part: str, detail: str,
                  **opts) -> Seen:
    """Build; a fault the build must count: ``skip`` when it is one reject with that reason."""
    seen = expect_error(ctx, lambda: build_root(ctx, release, **opts), r".")
    if seen.kind != "no error":
        return seen
    rejects = [r for r in rejects_of(ctx.tmp / "built") if r["reason"] == reason]
    m = read_manifest(ctx.tmp / "built")
    if len(rejects) != 1 or m["rejects"].get(reason) != 1:
        return Seen("silent drop", f"rejects {m['rejects']}")
    r = rejects[0]
    if file_part not in r["file"] or not re.search(detail, r["detail"]):
        return Seen("unclear", str(r))
    return Seen("skip", str(r))


# =========================================================================== 1. secrets


@row("secrets", "stream-root-404-with-password", "error")
def _(ctx):
    url = with_userinfo(ctx.fixture("web").srv.url + "nosuch")
    seen = cli_outcome(sarlang(ctx, "stream", "--data", url, "--limit", "1"), "stream",
                       r"\*\*\*@127\.0\.0\.1.*no manifest\.json")
    return seen


@row("secrets", "stream-manifest-not-json-with-password", "error")
def _(ctx):
    root = root_copy(ctx)
    (root / "manifest.json").write_text("{not json")
    url = with_userinfo(ctx.fixture("web").put(f"badjson-{ctx.tmp.name}", root))
    return cli_outcome(sarlang(ctx, "stream", "--data", url, "--limit", "1"), "stream",
                       r"\*\*\*@.*manifest\.json.*not valid JSON")


@row("secrets", "stream-missing-shard-with-password", "error")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    (root / shard["path"]).unlink()
    url = with_userinfo(ctx.fixture("web").put(f"missing-{ctx.tmp.name}", root))
    return cli_outcome(sarlang(ctx, "stream", "--data", url, "--no-decode"), "stream",
                       rf"\*\*\*@.*{re.escape(shard['path'])}.*(404|missing)")


@row("secrets", "verify-missing-shard-with-password", "error")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    (root / shard["path"]).unlink()
    url = with_userinfo(ctx.fixture("web").put(f"vmissing-{ctx.tmp.name}", root))
    return cli_outcome(sarlang(ctx, "verify", url), "verify",
                       rf"\*\*\*@.*{re.escape(shard['path'])}: missing")


@row("secrets", "verbose-stream-logs-fsspec-debug", "ok")
def _(ctx):
    url = with_userinfo(ctx.fixture("web").put(f"vstream-{ctx.tmp.name}",
                                               ctx.fixture("tiny_root")))
    run = sarlang(ctx, "-v", "stream", "--data", url, "--limit", "3", "--no-decode")
    seen = cli_outcome(run, "stream")
    # the test must see fsspec's own DEBUG lines, with the URL in them, redacted
    fsspec_lines = [ln for ln in run.err.splitlines() if "HTTPFileSystem" in ln
                    or "Retrieve file size" in ln or "Fetch range" in ln]
    if seen.kind == "ok" and not any("***@127.0.0.1" in ln for ln in fsspec_lines):
        return Seen("unclear", "no redacted fsspec DEBUG line:\n" + run.err[-2000:])
    return seen


@row("secrets", "verbose-verify", "ok")
def _(ctx):
    url = with_userinfo(ctx.fixture("web").put(f"vverify-{ctx.tmp.name}",
                                               ctx.fixture("tiny_root")))
    run = sarlang(ctx, "-v", "verify", url)
    seen = cli_outcome(run, "verify")
    if seen.kind == "ok" and "***@127.0.0.1" not in run.err:
        return Seen("unclear", "no redacted URL in the DEBUG lines:\n" + run.err[-2000:])
    return seen


@row("secrets", "loader-missing-shard-with-password", "error")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    (root / shard["path"]).unlink()
    url = with_userinfo(ctx.fixture("web").put(f"lmissing-{ctx.tmp.name}", root))

    def read():
        for part in hf.load_dataset(url, "images", streaming=True, decode=False).values():
            for _ in part:
                pass

    return expect_error(ctx, read, rf"\*\*\*@.*{re.escape(shard['path'])}")


@row("secrets", "presigned-url-query", "error")
def _(ctx):
    url = (ctx.fixture("web").srv.url + f"nosuch?X-Amz-Signature={SIGNATURE}"
           f"&X-Amz-Credential={SIGNATURE}&token={TOKEN}")
    return cli_outcome(sarlang(ctx, "stream", "--data", url, "--limit", "1"), "stream",
                       r"X-Amz-Signature=\*\*\*.*no manifest\.json")


@row("secrets", "bearer-header-403-shard", "error")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    name = f"bearer-{ctx.tmp.name}"
    ctx.fixture("web").put(name, root)
    p = proxy(ctx, lambda path, n, *_: ("status", 403) if path.endswith(shard["path"]) else None)
    opts = {"headers": {"Authorization": f"Bearer {BEARER}"}}

    def read():
        stream_keys(p.url + name, storage_options=opts, tmp=ctx.tmp)

    return expect_error(ctx, read, rf"{re.escape(shard['path'])}.*403")


@row("secrets", "hub-token-401", "error")
def _(ctx):
    hub = StatusServer(401)
    try:
        with _env(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN):
            return expect_error(
                ctx, lambda: hf.load_dataset("org/x", "images", streaming=True),
                r"org/x.*401.*token")
    finally:
        hub.stop()


@contextlib.contextmanager
def _env(**values):
    """Set environment variables (and huggingface_hub's constants read from them) for a block."""
    from huggingface_hub import constants

    old = {k: os.environ.get(k) for k in values}
    old_ep = constants.ENDPOINT
    os.environ.update(values)
    if "HF_ENDPOINT" in values:
        constants.ENDPOINT = values["HF_ENDPOINT"]
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        constants.ENDPOINT = old_ep


# =========================================================================== 2. images


@row("images", "build-truncated-png", "skip")
def _(ctx):
    rel = release_copy(ctx)
    img = first_image(rel)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    return build_outcome(ctx, rel, "not_an_image", img.name, r"(?i)decode.*truncated")


@row("images", "build-corrupt-jpeg-data", "skip")
def _(ctx):
    rel = release_copy(ctx)
    img = first_image(rel, ".jpg")
    data = img.read_bytes()
    img.write_bytes(data[: len(data) * 2 // 3])  # JPEG magic and headers, then cut
    return build_outcome(ctx, rel, "not_an_image", img.name, r"(?i)decode")


def _undecodable_root(ctx: Ctx) -> tuple[Path, dict, str]:
    """A root an older build made from a damaged PNG: it verifies, its image cannot decode."""
    root = root_copy(ctx)
    rows = [r for r in index_rows(root) if r["image_ext"] == "png"]
    by_shard = Counter(r["shard"] for r in rows)
    target = next(r for r in rows if by_shard[r["shard"]] > 1)
    shard = root / target["shard"]
    cut = {}

    def truncate(data: bytes) -> bytes:
        # signature, IHDR and the IDAT chunk's header kept; its compressed data garbled
        bad = data[:41] + b"\xff" * (len(data) - 41 - 12) + data[-12:]
        cut["sha"] = hashlib.sha256(bad).hexdigest()
        return bad

    rewrite_member(shard, target["key"], "png", truncate)
    rewrite_member(shard, target["key"], "json",
                   lambda j: j.replace(target["image_sha256"].encode(), cut["sha"].encode()))
    reseal(root, {target["key"]: {"image_sha256": cut["sha"]}})
    assert verify(root)["samples"] == len(index_rows(root))  # what the old build let through
    return root, target, cut["sha"]


@row("images", "stream-undecodable-image-raise", "error")
def _(ctx):
    root, target, _ = _undecodable_root(ctx)
    return expect_error(
        ctx, lambda: stream_keys(str(root), decode=True, tmp=ctx.tmp),
        rf"{re.escape(target['shard'])}.*{target['key']}.*(?i:does not decode)")


@row("images", "stream-undecodable-image-skip", "skip")
def _(ctx):
    root, target, _ = _undecodable_root(ctx)
    got, stats = stream_keys(str(root), decode=True, on_error="skip", tmp=ctx.tmp)
    seen = judge_rows(got, expected_keys(root, drop=[target["key"]]), stats, 1)
    if seen.kind == "skip" and stats.reasons != {"bad_image": 1}:
        return Seen("unclear", str(stats))
    return seen


@row("images", "verify-decode-finds-undecodable-image", "error")
def _(ctx):
    root, target, _ = _undecodable_root(ctx)
    return expect_error(ctx, lambda: verify(root, decode=True),
                        rf"{re.escape(target['shard'])}.*{target['key']}.*(?i:decode)")


# =========================================================================== 3. on_error="skip"


def _missing_shard_root(ctx: Ctx) -> tuple[Path, dict]:
    root = root_copy(ctx)
    shard = shard_of(root)
    (root / shard["path"]).unlink()
    return root, shard


def _keys_in(root: Path, shard: dict) -> list[str]:
    return [r["key"] for r in index_rows(root) if r["shard"] == shard["path"]]


@row("skip", "local-missing-shard-raise", "error")
def _(ctx):
    root, shard = _missing_shard_root(ctx)
    return expect_error(ctx, lambda: stream_keys(str(root), tmp=ctx.tmp),
                        rf"{re.escape(shard['path'])}.*(?i:missing|no such file).*verify")


@row("skip", "local-missing-shard-skip", "skip")
def _(ctx):
    root, shard = _missing_shard_root(ctx)
    got, stats = stream_keys(str(root), on_error="skip", tmp=ctx.tmp)
    lost = _keys_in(root, shard)
    return judge_rows(got, [k for k in expected_keys(root) if k not in lost], stats,
                      len(lost), shards=1)


def _served_missing(ctx: Ctx) -> tuple[str, Path, dict]:
    root = root_copy(ctx)
    shard = shard_of(root)
    url = ctx.fixture("web").put(f"m404-{ctx.tmp.name}", root)
    (ctx.fixture("web").folder / f"m404-{ctx.tmp.name}" / shard["path"]).unlink()
    return url, root, shard


@row("skip", "http-404-shard-raise", "error")
def _(ctx):
    url, root, shard = _served_missing(ctx)
    return expect_error(ctx, lambda: stream_keys(url, tmp=ctx.tmp),
                        rf"{re.escape(shard['path'])}.*404")


@row("skip", "http-404-shard-skip", "skip")
def _(ctx):
    url, root, shard = _served_missing(ctx)
    got, stats = stream_keys(url, on_error="skip", tmp=ctx.tmp)
    lost = _keys_in(root, shard)
    return judge_rows(got, [k for k in expected_keys(root) if k not in lost], stats,
                      len(lost), shards=1)


def _served_403(ctx: Ctx) -> tuple[str, Path, dict]:
    root = root_copy(ctx)
    shard = shard_of(root)
    name = f"m403-{ctx.tmp.name}"
    ctx.fixture("web").put(name, root)
    p = proxy(ctx, lambda path, n, *_: ("status", 403) if path.endswith(shard["path"]) else None)
    return p.url + name, root, shard


@row("skip", "http-403-shard-raise", "error")
def _(ctx):
    url, root, shard = _served_403(ctx)
    return expect_error(ctx, lambda: stream_keys(url, tmp=ctx.tmp),
                        rf"{re.escape(shard['path'])}.*403.*(?i:credentials|access)")


@row("skip", "http-403-shard-skip", "skip")
def _(ctx):
    url, root, shard = _served_403(ctx)
    got, stats = stream_keys(url, on_error="skip", tmp=ctx.tmp)
    lost = _keys_in(root, shard)
    return judge_rows(got, [k for k in expected_keys(root) if k not in lost], stats,
                      len(lost), shards=1)


def _flipped_root(ctx: Ctx) -> tuple[Path, dict]:
    """A root with one byte of one image member changed (the manifest still says otherwise)."""
    root = root_copy(ctx)
    rows = [r for r in index_rows(root) if r["image_ext"] in ("png", "jpg")]
    by_shard = Counter(r["shard"] for r in rows)
    target = next(r for r in rows if by_shard[r["shard"]] > 2)

    def flip(data: bytes) -> bytes:
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]

    rewrite_member(root / target["shard"], target["key"], target["image_ext"], flip)
    return root, target


@row("skip", "remote-member-sha256-mismatch-raise", "error")
def _(ctx):
    root, target = _flipped_root(ctx)
    url = ctx.fixture("web").put(f"flip-{ctx.tmp.name}", root)
    return expect_error(ctx, lambda: stream_keys(url, tmp=ctx.tmp),
                        rf"{re.escape(target['shard'])}.*byte \d+.*{target['key']}.*sha256")


@row("skip", "remote-member-sha256-mismatch-skip", "skip")
def _(ctx):
    root, target = _flipped_root(ctx)
    url = ctx.fixture("web").put(f"flips-{ctx.tmp.name}", root)
    got, stats = stream_keys(url, on_error="skip", tmp=ctx.tmp)
    seen = judge_rows(got, expected_keys(root, drop=[target["key"]]), stats, 1)
    if seen.kind == "skip" and stats.reasons != {"bad_hash": 1}:
        return Seen("unclear", str(stats))
    return seen


@row("skip", "local-member-sha256-mismatch-when-asked", "error")
def _(ctx):
    root, target = _flipped_root(ctx)
    return expect_error(ctx, lambda: stream_keys(str(root), check_hashes=True, tmp=ctx.tmp),
                        rf"{re.escape(target['shard'])}.*{target['key']}.*sha256")


@row("skip", "bad-json-member-spares-its-neighbours", "skip")
def _(ctx):
    root = root_copy(ctx)
    rows = index_rows(root)
    by_shard = Counter(r["shard"] for r in rows)
    target = next(r for r in rows if by_shard[r["shard"]] > 2)
    rewrite_member(root / target["shard"], target["key"], "json",
                   lambda j: b"{" + b"\xff" * (len(j) - 1))
    got, stats = stream_keys(str(root), on_error="skip", tmp=ctx.tmp)
    return judge_rows(got, expected_keys(root, drop=[target["key"]]), stats, 1)


@row("skip", "truncated-shard-counts-its-lost-tail", "skip")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    path = root / shard["path"]
    rows = [r for r in index_rows(root) if r["shard"] == shard["path"]]
    cut_at = rows[1]["offset"] + 700  # inside the second sample
    path.write_bytes(path.read_bytes()[:cut_at])
    got, stats = stream_keys(str(root), on_error="skip", tmp=ctx.tmp)
    lost = [r["key"] for r in rows[1:]]
    return judge_rows(got, expected_keys(root, drop=lost), stats, len(lost))


# =========================================================================== 4. user files


@row("user files", "build-over-another-root", "error")
def _(ctx):
    out = root_copy(ctx, "other")  # built from the tiny release
    ctx.user_file(out / "notes.txt", b"my notes")
    before = _files(out)
    from build_fixture import make_release

    fx = make_release(ctx.tmp / "fx")
    seen = expect_error(
        ctx, lambda: build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.3),
                           progress=False),
        r"another.*release.*--overwrite")
    if _files(out) != before:
        return Seen("user files", "the other root changed")
    return seen


@row("user files", "overwrite-never-deletes-a-foreign-shard", "error")
def _(ctx):
    out = root_copy(ctx, "other")
    ctx.user_file(out / "data/train/hr/user.tar", b"the user's own tar")
    before = _files(out)
    from build_fixture import make_release

    fx = make_release(ctx.tmp / "fx")
    seen = expect_error(
        ctx, lambda: build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.3,
                                                            overwrite=True), progress=False),
        r"data/train/hr/user\.tar.*did not write")
    if _files(out) != before:
        return Seen("user files", "the root changed")
    return seen


@row("user files", "overwrite-replaces-only-its-own-files", "ok")
def _(ctx):
    out = root_copy(ctx, "other")
    ctx.user_file(out / "notes.txt", b"my notes")
    ctx.user_file(out / "data/notes.partial", b"not a shard of ours")
    ctx.user_file(out / "draft.json.partial", b"mine too")
    from build_fixture import make_release

    fx = make_release(ctx.tmp / "fx")
    seen = expect_error(
        ctx, lambda: build(fx["release"], out, BuildOptions(workers=1, max_reject_rate=0.3,
                                                            overwrite=True), progress=False), ".")
    if seen.kind != "no error":
        return seen
    m = read_manifest(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tar"))
    if on_disk != sorted(s["path"] for s in m["shards"]):
        return Seen("wrong data", f"{on_disk}")
    if verify(out)["samples"] != m["counts"]["samples"]:
        return Seen("wrong data", "verify")
    return Seen("ok", f"{len(on_disk)} shards")


@row("user files", "rebuild-after-a-crash-keeps-user-partials", "ok")
def _(ctx):
    from sarlang_data.ingest import build as build_mod

    rel = release_copy(ctx)
    out = ctx.tmp / "built"
    real = build_mod._finish

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")

    build_mod._finish = crash
    try:
        with contextlib.suppress(KeyboardInterrupt):
            build_root(ctx, rel)
    finally:
        build_mod._finish = real
    assert (out / ".build").is_dir() and not (out / "manifest.json").exists()
    ctx.user_file(out / "data" / "mine.tar.partial", b"user")
    ctx.user_file(out / "index.parquet.mine.partial", b"user")
    ctx.user_file(out / "data" / "train" / "notes.txt", b"user")
    seen = expect_error(ctx, lambda: build_root(ctx, rel), ".")
    if seen.kind != "no error":
        return seen
    if verify(out)["samples"] != read_manifest(out)["counts"]["samples"]:
        return Seen("wrong data", "verify")
    return Seen("ok", "rebuilt")


@row("user files", "build-into-a-folder-that-is-not-a-root", "error")
def _(ctx):
    out = ctx.tmp / "mine"
    ctx.user_file(out / "photo.png", b"user")
    return expect_error(ctx, lambda: build_root(ctx, release_copy(ctx), name="mine"),
                        r"mine.*not empty.*new or empty folder")


# =========================================================================== 5. release


def _drop_twin(rel: Path, rel_path: str) -> Path:
    p = rel / rel_path
    p.with_suffix(".json").unlink(missing_ok=True)
    return p


@row("release", "empty-text-file", "skip")
def _(ctx):
    rel = release_copy(ctx)
    _drop_twin(rel, "Text/VQA/SARVQA1_test.csv").write_text("")
    return build_outcome(ctx, rel, "empty_file", "SARVQA1_test.csv", r"(?i)empty")


@row("release", "header-only-text-file", "skip")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/VQA/SARVQA1_test.csv")
    p.write_text(p.read_text().splitlines()[0] + "\n")
    return build_outcome(ctx, rel, "empty_file", "SARVQA1_test.csv", r"(?i)header")


def _edit_csv(path: Path, edit) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


@row("release", "nul-in-a-caption", "skip")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/caption/Caption-training.csv")
    _edit_csv(p, lambda rows: rows[1].__setitem__(1, "A harbour\x00 with ships."))
    seen = build_outcome(ctx, rel, "control_characters", "Caption-training.csv", r"NUL|\\x00")
    if seen.kind == "skip" and any("\x00" in t for t in texts_of(ctx.tmp / "built")):
        return Seen("wrong data", "a NUL reached the root")
    return seen


@row("release", "control-characters-in-an-answer", "skip")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/VQA/SARVQA2_train.csv")
    _edit_csv(p, lambda rows: rows[1].__setitem__(2, "yes\x1b[31m\x07"))
    seen = build_outcome(ctx, rel, "control_characters", "SARVQA2_train.csv", r"\\x1b|ESC")
    bad = [t for t in texts_of(ctx.tmp / "built")
           if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", t)]
    if seen.kind == "skip" and bad:
        return Seen("wrong data", f"{bad[:3]}")
    return seen


@row("release", "csv-field-of-1-MB-validly-quoted", "ok")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/caption/Caption-training.csv")
    big = ('A "quoted" harbour, with ships, docks and roads. ' * 21000).strip()
    assert len(big) > 1_000_000
    _edit_csv(p, lambda rows: rows[1].__setitem__(1, big))
    seen = expect_error(ctx, lambda: build_root(ctx, rel), ".")
    if seen.kind != "no error":
        return seen
    if big not in texts_of(ctx.tmp / "built"):
        return Seen("wrong data", "the 1 MB caption is not in the root")
    return Seen("ok", "read")


@row("release", "csv-stray-quote-mid-file", "skip")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/caption/Caption-training.csv")
    lines = p.read_text().splitlines(keepends=True)
    name = lines[2].split(",", 1)[0]
    lines[2] = f'{name},"An unclosed caption of a harbour\n'  # the next quote closes it
    p.write_text("".join(lines))
    return build_outcome(ctx, rel, "unparseable_row", "Caption-training.csv", r"lines 3-\d+")


@row("release", "csv-quote-never-closed-at-the-end", "error")
def _(ctx):
    rel = release_copy(ctx)
    p = _drop_twin(rel, "Text/caption/Caption-training.csv")
    lines = p.read_text().splitlines(keepends=True)
    n = len(lines)
    name = lines[-3].split(",", 1)[0]
    lines[-3] = f'{name},"An unclosed caption of a harbour\n'
    lines[-2:] = [ln.replace('"', "") for ln in lines[-2:]]
    p.write_text("".join(lines))
    return expect_error(ctx, lambda: build_root(ctx, rel),
                        rf"line {n - 2}.*quote.*never closed")


@row("release", "symlink-loop-in-sarimages", "error")
def _(ctx):
    rel = release_copy(ctx)
    os.symlink("..", rel / "SARimages" / "loop")
    return expect_error(ctx, lambda: build_root(ctx, rel), r"SARimages/loop.*(?i:loop)")


@row("release", "symlink-loop-in-text", "error")
def _(ctx):
    rel = release_copy(ctx)
    os.symlink(".", rel / "Text" / "VQA" / "again")
    return expect_error(ctx, lambda: build_root(ctx, rel), r"Text/VQA/again.*(?i:loop)")


@row("release", "stray-shard-in-a-root", "error")
def _(ctx):
    root = root_copy(ctx)
    shard = shard_of(root)
    shutil.copy(root / shard["path"], root / "data/train/hr/train-hr-stray-00000.tar")
    return expect_error(ctx, lambda: verify(root),
                        r"data/train/hr/train-hr-stray-00000\.tar.*(?i:not in the manifest)")


@row("release", "png-of-12000x12000-pixels", "skip")
def _(ctx):
    rel = release_copy(ctx)
    img = first_image(rel)
    img.write_bytes(png_header_only(12000, 12000))
    return build_outcome(ctx, rel, "too_many_pixels", img.name, r"144000000.*max.pixels")


@row("release", "png-of-30000x30000-pixels", "skip")
def _(ctx):
    rel = release_copy(ctx)
    img = first_image(rel)
    img.write_bytes(png_header_only(30000, 30000))
    return build_outcome(ctx, rel, "too_many_pixels", img.name, r"900000000")


@contextlib.contextmanager
def _small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root only); unmounted afterwards."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(done.stderr)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@row("release", "disk-full-while-building", "error")
def _(ctx):
    rel = release_copy(ctx)
    try:
        with _small_disk(ctx.tmp / "disk", "300k") as disk:
            out = disk / "root"
            seen = expect_error(ctx, lambda: build(rel, out, BuildOptions(workers=1),
                                                   progress=False),
                                rf"{re.escape(str(disk))}.*(?i:no space left).*free")
            partial = sorted(str(p) for p in disk.rglob("*.partial"))
            if partial:
                return Seen("leak", f"left {partial}")
            return seen
    except OSError as e:  # no mount (not root): the same fault, injected at the writer
        if "tmpfs" not in str(e) and "mount" not in str(e) and "permission" not in str(e):
            raise
        from sarlang_data.format import tar as shards

        real = shards.TarWriter._write
        calls = {"n": 0}

        def full(self, data):
            calls["n"] += 1
            if calls["n"] > 40:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)

        out = ctx.tmp / "root"
        shards.TarWriter._write = full
        try:
            seen = expect_error(ctx, lambda: build(rel, out, BuildOptions(workers=1),
                                                   progress=False), r"(?i:no space left).*free")
        finally:
            shards.TarWriter._write = real
        return Seen("leak", "partial") if list(out.rglob("*.partial")) else seen


# =========================================================================== 6. hangs, tracebacks


@row("hangs", "server-stalls-mid-shard-then-recovers", "ok")
def _(ctx):
    root = ctx.fixture("tiny_root")
    shard = shard_of(root)
    name = f"stall-{ctx.tmp.name}"
    ctx.fixture("web").put(name, root)
    p = proxy(ctx, lambda path, n, *_: ("stall", 3000) if path.endswith(shard["path"]) and n == 0
              else None)
    t0 = time.monotonic()
    with _env(SARLANG_READ_TIMEOUT="1"):
        got, stats = stream_keys(p.url + name, tmp=ctx.tmp)
    took = time.monotonic() - t0
    if took > 20:
        return Seen("hang", f"{took:.0f} s")
    if Counter(got) != Counter(expected_keys(root)):
        return Seen("wrong data", "rows differ")
    if p.done["stall"] != 1 or stats.resumed < 1:
        return Seen("unclear", f"stalls {p.done}, {stats}")
    return Seen("ok", f"{took:.1f} s, {stats.resumed} resumed")


@row("hangs", "server-stalls-for-good", "error")
def _(ctx):
    root = ctx.fixture("tiny_root")
    shard = shard_of(root)
    name = f"stallf-{ctx.tmp.name}"
    ctx.fixture("web").put(name, root)
    p = proxy(ctx, lambda path, n, *_: ("stall", 3000) if path.endswith(shard["path"]) else None)
    t0 = time.monotonic()
    with _env(SARLANG_READ_TIMEOUT="1"):
        seen = expect_error(ctx, lambda: stream_keys(p.url + name, tmp=ctx.tmp),
                            rf"{re.escape(shard['path'])}.*(?i:timed out|timeout).*"
                            r"SARLANG_READ_TIMEOUT")
    if time.monotonic() - t0 > 30:
        return Seen("hang", f"{time.monotonic() - t0:.0f} s")
    return seen


def _corrupt_index(ctx: Ctx) -> Path:
    root = root_copy(ctx)
    data = (root / "index.parquet").read_bytes()
    (root / "index.parquet").write_bytes(data[:100] + b"\0" * 64 + data[164:])
    return root


@row("tracebacks", "stats-of-a-corrupt-index", "error")
def _(ctx):
    root = _corrupt_index(ctx)
    return cli_outcome(sarlang(ctx, "stats", str(root)), "stats",
                       r"index\.parquet.*(?i:corrupt|not a valid|cannot be read).*verify")


@row("tracebacks", "card-of-a-corrupt-index", "error")
def _(ctx):
    root = _corrupt_index(ctx)
    (root / "index.parquet").write_bytes(b"PAR1 but not parquet")
    return cli_outcome(sarlang(ctx, "card", str(root)), "card",
                       r"index\.parquet.*(?i:corrupt|not a valid|cannot be read)")


@row("tracebacks", "stats-of-no-such-path", "error")
def _(ctx):
    return cli_outcome(sarlang(ctx, "stats", "/no/such/path"), "stats",
                       r"/no/such/path.*(?i:no such folder|does not exist)")


@row("tracebacks", "stream-hub-401", "error")
def _(ctx):
    hub = StatusServer(401)
    try:
        return cli_outcome(sarlang(ctx, "stream", "--data", "org/x", "--limit", "1",
                                   env={"HF_ENDPOINT": hub.url}), "stream",
                           r"org/x.*401.*(?i:token|login)")
    finally:
        hub.stop()


@row("tracebacks", "stream-hub-404", "error")
def _(ctx):
    hub = StatusServer(404)
    try:
        return cli_outcome(sarlang(ctx, "stream", "--data", "org/x", "--limit", "1",
                                   env={"HF_ENDPOINT": hub.url}), "stream",
                           r"org/x.*(?i:no dataset repo|not found)")
    finally:
        hub.stop()


@row("tracebacks", "stream-hf-url-hub-refused", "error")
def _(ctx):
    port = servers.free_ports(1)[0]
    return cli_outcome(sarlang(ctx, "stream", "--data", "hf://datasets/org/x", "--limit", "1",
                               env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"}), "stream",
                       rf"127\.0\.0\.1:{port}.*(?i:cannot be reached)")


@row("tracebacks", "publish-dry-run-offline", "ok")
def _(ctx):
    run = sarlang(ctx, "publish", str(ctx.fixture("tiny_root")), "--repo", "org/x",
                  "--dry-run", env={"HF_HUB_OFFLINE": "1"})
    seen = cli_outcome(run, "publish")
    if seen.kind == "ok" and not ("offline" in run.err.lower() and "dry run" in run.out):
        return Seen("unclear", run.out + run.err)
    if seen.kind == "ok" and run.seconds > 15:
        return Seen("hang", f"{run.seconds:.0f} s")
    return seen


@row("tracebacks", "publish-dry-run-hub-refused-plans-at-once", "ok")
def _(ctx):
    port = servers.free_ports(1)[0]
    run = sarlang(ctx, "publish", str(ctx.fixture("tiny_root")), "--repo", "org/x",
                  "--dry-run", "--endpoint", f"http://127.0.0.1:{port}")
    seen = cli_outcome(run, "publish")
    if seen.kind == "ok" and run.seconds > 15:
        return Seen("hang", f"planned after {run.seconds:.0f} s")
    return seen


@row("tracebacks", "load-dataset-city-for-cities", "error")
def _(ctx):
    return expect_error(
        ctx, lambda: hf.load_dataset(str(ctx.fixture("tiny_root")), "vqa", streaming=True,
                                     city=["rotterdam"]),
        r"city=.*(?i:did you mean) cities=")


@row("tracebacks", "manifest-not-json-local", "error")
def _(ctx):
    root = root_copy(ctx)
    (root / "manifest.json").write_text("[1, 2")
    return cli_outcome(sarlang(ctx, "verify", str(root)), "verify", r"manifest\.json.*not valid")


# =========================================================================== 8. load

_CLIENT = textwrap.dedent("""
    import json, os, resource, sys
    import sarlang_data
    url, passes = sys.argv[1], int(sys.argv[2])
    rss = []
    for _ in range(passes):
        keys = []
        for split, part in sarlang_data.load_dataset(url, "vqa", streaming=True,
                                                     decode=False).items():
            keys += [r["key"] + "|" + r["question"] for r in part]
        with open(f"/proc/{os.getpid()}/status") as f:
            rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS")))
        print(json.dumps({"keys": keys}), flush=True)
    print(json.dumps({"rss_kib": rss}), flush=True)
""")


@row("load", "8-clients-random-cuts", "ok", timeout=300)  # about 75 s
def _(ctx):
    root = ctx.fixture("tiny_root")
    name = f"load-{ctx.tmp.name}"
    ctx.fixture("web").put(name, root)
    rnd = random.Random(13)
    lock = threading.Lock()

    def rule(path, n, ranged):
        if not path.endswith(".tar"):
            return None
        with lock:  # a lossy link: 30% of GETs cut at a random byte, 10% of resumed ones
            if rnd.random() < (0.1 if ranged else 0.3):
                return ("cut", rnd.randrange(1, 40_000))  # tiny's shards: 10-60 KB
        return None

    p = proxy(ctx, rule)
    want = sorted(r["key"] + "|" + q["question"] for r in index_rows(root) for q in r["qa"])
    script = ctx.tmp / "client.py"
    script.write_text(_CLIENT)
    clients = [subprocess.Popen([sys.executable, str(script), p.url + name, "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(8)]
    outs = []
    deadline = time.monotonic() + 240
    for c in clients:
        try:
            outs.append(c.communicate(timeout=max(1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in clients:
                other.kill()
            return Seen("hang", "a client did not finish in 240 s")
    growth = []
    for (out, err), c in zip(outs, clients, strict=True):
        ctx.seen(err)
        if c.returncode != 0:
            return Seen("traceback", err[-3000:])
        lines = [json.loads(ln) for ln in out.splitlines()]
        for ln in lines[:-1]:
            if sorted(ln["keys"]) != want:
                return Seen("wrong data", f"{len(ln['keys'])} rows, {len(want)} expected")
        rss = lines[-1]["rss_kib"]
        growth.append(rss[-1] - rss[0])
    if max(growth) > 40_000:
        return Seen("leak", f"RSS grew by {max(growth)} KiB between passes")
    if p.done["cut"] < 8:
        return Seen("unclear", f"only {p.done['cut']} cuts")
    detail = (f"{p.done['cut']} cuts in {sum(p.requests.values())} requests; every row once in "
              f"each of 8 clients x 3 passes; RSS growth per client between passes (KiB): "
              f"{growth}")
    print("load:", detail)
    return Seen("ok", detail)


# =========================================================================== the matrix

_FIGURES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures(request):
    yield
    for p in _proxies:
        p.stop()
    tried = sum(_FIGURES[k] for k in _FIGURES if not k.startswith("_"))
    if not tried:
        return
    failures = ("silent drop", "wrong data", "traceback", "hang", "leak", "user files",
                "unclear", "no error")
    line = (f"fault matrix: {tried} faults tried, {_FIGURES['error']} clear errors, "
            f"{_FIGURES['skip']} counted skips, {_FIGURES['ok']} read correctly; "
            + ", ".join(f"{k} {_FIGURES[k]}" for k in failures))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # a fixture's teardown runs under output capture: step outside it to be seen
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line("")
            reporter.write_line(line)


@pytest.mark.parametrize("fault", [pytest.param(r, id=r.id, marks=pytest.mark.timeout(r.timeout))
                                   for r in ROWS])
def test_fault(fault: Row, request, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ctx = Ctx(request, tmp_path)
    t0 = time.monotonic()
    seen = fault.run(ctx)
    took = time.monotonic() - t0
    logged = caplog.text
    ctx.seen(logged)
    leaks = [s for s in SECRETS for t in ctx.texts if s in t]
    if leaks:
        seen = Seen("leak", f"{sorted(set(leaks))} in what the row saw")
    touched = [str(p) for p, sha in ctx.user_files.items()
               if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != sha]
    if touched:
        seen = Seen("user files", f"changed or deleted: {touched}")
    if seen.kind in ("error", "skip", "ok") and took > fault.timeout:
        seen = Seen("hang", f"{took:.0f} s")
    _FIGURES[seen.kind] += 1
    assert seen.kind == fault.expect, f"{fault.id}: expected {fault.expect}, saw {seen.kind}:\n" \
                                      f"{seen.detail}"
