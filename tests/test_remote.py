"""Streaming from real servers on 127.0.0.1: nginx (HTTP), SeaweedFS (S3), olah (Hub).

Every remote root gives the rows of the local root; the first row comes before the first
shard is read through; a connection cut in mid-shard (by a proxy written here) is resumed
and every row still comes exactly once; servers that ignore Range are caught; credentials
stay out of logs, errors and process arguments.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
import traceback

import pytest

from sarlang_data import remote as reader
from sarlang_data.adapters import hf
from sarlang_data.errors import ManifestError, RangeError, RemoteError, SarlangError
from sarlang_data.format.manifest import read_index, read_manifest


def _rows(ds):
    return [(r["key"], r["question"], r["answer"], hashlib.sha256(r["image"]["bytes"]).hexdigest())
            for r in ds]


def _builder(root, tmp_path, name="vqa", **kw):
    kw.setdefault("decode", False)
    return hf.SarlangBuilder(cache_dir=str(tmp_path / "c"), config_name=name,
                             data_dir=str(root), **kw)


@pytest.fixture(scope="module")
def local_rows(tiny_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    b = _builder(tiny_root, tmp)
    return {s: _rows(b.as_streaming_dataset(split=s)) for s in ("train", "test")}


@pytest.fixture
def roots(request, http_server, tiny_root):
    """(url, storage_options) of the tiny root on the server named by the parameter."""
    kind = request.param
    if kind == "http":
        return http_server.url + "tiny", None
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        return request.getfixturevalue("s3_tiny_root"), s3.storage_options
    olah = request.getfixturevalue("olah_server")
    return olah.root_url + "/tiny", olah.storage_options


# --------------------------------------------------------------------------- same rows


@pytest.mark.parametrize("roots", ["http", "s3", "hf"], indirect=True)
def test_remote_roots_give_the_local_rows(roots, local_rows, tmp_path):
    url, options = roots
    ds = hf.load_dataset(url, "vqa", streaming=True, decode=False, storage_options=options,
                         cache_dir=str(tmp_path / "c"))
    assert {s: _rows(part) for s, part in ds.items()} == local_rows


@pytest.mark.parametrize("where", ["http", "s3", "hf"])
def test_first_row_arrives_before_the_first_shard_is_read(where, request, http_server, big_root,
                                                          tmp_path):
    manifest = read_manifest(big_root)
    [shard] = [s for s in manifest["shards"] if s["split"] == "train" and s["tier"] == "mr"
               and s["cities"] == ["unlocated"]]
    assert shard["bytes"] > reader.READ_SIZE  # bigger than one read
    options = None
    if where == "http":
        root = http_server.url + "big"
    elif where == "s3":
        s3 = request.getfixturevalue("s3_server")
        root, options = request.getfixturevalue("s3_big_root"), s3.storage_options
    else:
        olah = request.getfixturevalue("olah_server")
        root, options = olah.root_url + "/big", olah.storage_options
    b = _builder(root, tmp_path, tiers=["mr"], cities=["unlocated"], storage_options=options)
    before = len(http_server.access_entries())
    ds = b.as_streaming_dataset(split="train")
    t0 = time.perf_counter()
    it = iter(ds)
    first = next(it)
    seconds = time.perf_counter() - t0
    at_first = b.read_stats.bytes_read
    assert 0 < at_first < shard["bytes"]
    in_shard = sorted((r for r in read_index(big_root).to_pylist()
                       if r["shard"] == shard["path"] and r["qa"]), key=lambda r: r["offset"])
    assert first["key"] == in_shard[0]["key"]
    rest = list(it)
    assert len(rest) + 1 == shard["configs"]["vqa"]
    assert b.read_stats.bytes_read == shard["bytes"]  # each byte of the shard once
    if where == "http":
        gets = [e for e in http_server.wait_for_entries(before + 1)[before:]
                if e.uri.endswith(".tar")]
        assert [(e.uri, e.status, e.body_bytes_sent) for e in gets] == [
            ("/big/" + shard["path"], 200, shard["bytes"])]  # one GET, no HEAD, no ranges
    print(f"\nfirst row over {where} after {seconds * 1000:.1f} ms and {at_first} of "
          f"{shard['bytes']} bytes")


# --------------------------------------------------------------------------- dropped links


class CutProxy:
    """A TCP proxy on 127.0.0.1 that cuts one response after ``cut_after`` body bytes.

    Only responses to requests whose path contains ``match`` count; the first that passes
    ``cut_after`` bytes gets exactly ``cut_after`` bytes, then (after ``pause`` seconds, so
    the client has taken them) both its sockets are closed; once. Two threads per
    connection.
    """

    def __init__(self, port: int, cut_after: int, match: bytes = b".tar",
                 pause: float = 0.3) -> None:
        self.pause = pause
        self.target = ("127.0.0.1", port)
        self.cut_after = cut_after
        self.match = match
        self.cuts = 0
        self._armed = True
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            state = {"path": b"", "sent": 0}
            self._spawn(self._requests, client, upstream, state)
            self._spawn(self._responses, upstream, client, state)

    def _requests(self, src, dst, state) -> None:
        request = re.compile(rb"(?:^|\r\n)[A-Z]+ (\S+) HTTP/1\.[01]\r\n")
        try:
            while data := src.recv(65536):
                found = request.findall(data)
                if found:
                    state["path"], state["sent"] = found[-1], 0
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(dst)

    def _responses(self, src, dst, state) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    cut = (self._armed and self.match in state["path"]
                           and state["sent"] + len(data) > self.cut_after)
                    if cut:
                        self._armed = False
                        self.cuts += 1
                if cut:
                    dst.sendall(data[: max(0, self.cut_after - state["sent"])])
                    time.sleep(self.pause)
                    self._close(dst)
                    self._close(src)
                    return
                state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(dst)

    @staticmethod
    def _close(sock) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def stop(self) -> None:
        try:  # wakes the thread blocked in accept(), which close() alone does not
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for s in self._socks:
            self._close(s)
        for t in self._threads:
            t.join(timeout=2)


@pytest.fixture
def proxy_to():
    made = []

    def make(port, cut_after):
        made.append(CutProxy(port, cut_after))
        return made[-1]

    yield make
    for p in made:
        p.stop()


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def big_shard(big_root):
    """The largest shard of the big root (~1.5 MB: more than one 1 MiB read) and its rows."""
    manifest = read_manifest(big_root)
    [shard] = [s for s in manifest["shards"] if s["split"] == "train" and s["tier"] == "mr"
               and s["cities"] == ["unlocated"]]
    assert shard["bytes"] > reader.READ_SIZE + 200_000
    return shard


@pytest.mark.parametrize("where", ["http", "http-norange", "s3", "hf"])
def test_a_dropped_connection_is_resumed_exactly(where, request, http_server, big_root,
                                                 big_shard, local_rows, proxy_to, tmp_path,
                                                 caplog, monkeypatch):
    monkeypatch.setattr(reader, "RETRY_WAIT", 0.01)
    filters = {}
    if where == "s3":  # S3 reads are 1 MiB ranged GETs: cut one of the tiny root's
        s3 = request.getfixturevalue("s3_server")
        proxy = proxy_to(_port(s3.endpoint), 25_000)
        options = {**s3.storage_options,
                   "client_kwargs": {**s3.storage_options["client_kwargs"],
                                     "endpoint_url": proxy.url}}
        root, expected = request.getfixturevalue("s3_tiny_root"), local_rows["train"]
    else:
        # cut the big shard's stream after its first 1 MiB read, so the stream has a
        # position to resume from (and huggingface_hub reconnects with a Range header)
        filters = {"tiers": ["mr"], "cities": ["unlocated"]}
        expected = _rows(_builder(big_root, tmp_path, **filters)
                         .as_streaming_dataset(split="train"))
        cut = reader.READ_SIZE + 100_000
        if where == "hf":
            olah = request.getfixturevalue("olah_server")
            proxy = proxy_to(_port(olah.endpoint), cut)
            options = {**olah.storage_options, "endpoint": proxy.url}
            root = olah.root_url + "/big"
        else:
            proxy = proxy_to(_port(http_server.url), cut)
            root = proxy.url + ("/norange/big" if where == "http-norange" else "/big")
            options = None
    before = len(http_server.access_entries())
    b = _builder(root, tmp_path, storage_options=options, **filters)
    with caplog.at_level(logging.WARNING):
        got = _rows(b.as_streaming_dataset(split="train"))
    assert proxy.cuts == 1
    assert got == expected  # every row once, in order, image bytes intact
    said = [r.getMessage() for r in caplog.records]
    if where != "s3":  # (s3fs may retry a cut ranged GET by itself)
        assert b.read_stats.resumed == 1
        [lost] = [m for m in said if "connection lost at byte" in m]
        at = int(re.search(r"at byte (\d+)", lost).group(1))
        assert at >= reader.READ_SIZE
    if where == "http":
        entries = http_server.wait_for_entries(before + 2)[before:]
        assert [(e.status, e.range) for e in entries if e.uri.endswith(".tar")] == [
            (200, None), (206, f"bytes={at}-")]
    if where == "http-norange":
        assert any("ignored Range; reading its first" in m for m in said)
    if where == "hf":
        # huggingface_hub's own Range retry got the file's start from olah: caught
        assert "_RangeIgnored" in lost


def test_a_connection_that_keeps_failing_raises(http_server, tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "RETRY_WAIT", 0.01)
    calls = []
    real_open_at = reader.ResumableStream._open_at

    def cut_again(self, pos):
        calls.append(pos)
        f = real_open_at(self, pos)
        f.read = lambda n: (_ for _ in ()).throw(ConnectionResetError("cut"))
        return f

    url = http_server.url.replace("://", "://user:hunter2@") + "tiny"
    shard = read_manifest(http_server.root / "tiny")["shards"][0]
    stream = reader.open_url(f"{url}/{shard['path']}", size=shard["bytes"], retries=2)
    stream._f.read = lambda n: (_ for _ in ()).throw(ConnectionResetError("cut"))
    monkeypatch.setattr(reader.ResumableStream, "_open_at", cut_again)
    with pytest.raises(ConnectionError, match=r"failed 3 times at byte 0") as e:
        stream.read(100)
    assert "hunter2" not in str(e.value) and "***@" in str(e.value)
    assert len(calls) == 2


# --------------------------------------------------------------------------- range checks


def test_range_reads_are_checked(http_server, olah_server, s3_server, s3_tiny_root, tiny_root):
    shard = read_manifest(tiny_root)["shards"][3]
    data = (tiny_root / shard["path"]).read_bytes()
    off, size = 1536, 3000
    want = data[off:off + size]
    assert reader.read_range(http_server.url + "tiny/" + shard["path"], off, size) == want
    norange = http_server.norange_url + "tiny/" + shard["path"]
    with pytest.raises(RangeError, match="ignored Range and answered 200"):
        reader.read_range(norange, off, size)
    assert reader.read_range(norange, off, size, allow_full=True) == want
    assert reader.read_range(f"{s3_tiny_root}/{shard['path']}", off, size,
                             s3_server.storage_options) == want
    # huggingface_hub alone returns the file's first bytes through olah; ours refuses
    hub = olah_server.url_of("tiny/" + shard["path"])
    assert olah_server.filesystem().cat_file(hub, start=off, end=off + size) != want
    with pytest.raises(RangeError, match="ignored Range"):
        reader.read_range(hub, off, size, olah_server.storage_options)
    assert reader.read_range(hub, off, size, olah_server.storage_options,
                             allow_full=True) == want


# --------------------------------------------------------------------------- credentials


def _everything_said(caplog, error: BaseException | None) -> str:
    said = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    if error is not None:
        said += "\n" + "".join(traceback.format_exception(error))
    return said


def test_credentials_stay_out_of_logs_errors_and_arguments(
        s3_server, s3_tiny_root, http_server, olah_server, tiny_root, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ngSecret" + "x" * 29
    options = {**s3_server.storage_options, "secret": wrong}
    with pytest.raises(Exception) as bad_secret:
        hf.load_dataset(s3_tiny_root, "vqa", streaming=True, storage_options=options,
                        cache_dir=str(tmp_path / "c"))
    assert isinstance(bad_secret.value, (PermissionError, SarlangError, OSError))
    assert wrong not in _everything_said(caplog, bad_secret.value)

    good = s3_server.storage_options
    with pytest.raises(ManifestError) as bad_url:
        hf.load_dataset(s3_tiny_root + "-missing", "vqa", streaming=True, storage_options=good,
                        cache_dir=str(tmp_path / "c"))
    token = "Bearer tok-" + "s" * 30
    with pytest.raises(ManifestError) as bad_http:
        hf.load_dataset(http_server.url + "nothing-here", "vqa", streaming=True,
                        storage_options={"headers": {"Authorization": token}},
                        cache_dir=str(tmp_path / "c"))
    hf_token = "hf_" + "t" * 34
    with pytest.raises(Exception) as bad_hub:
        hf.load_dataset("hf://datasets/sarlang/absent@main", "vqa", streaming=True,
                        storage_options={"endpoint": olah_server.endpoint, "token": hf_token},
                        cache_dir=str(tmp_path / "c"))
    said = "\n".join(_everything_said(caplog, e.value) for e in (bad_url, bad_http, bad_hub))
    for secret in (good["secret"], token, hf_token):
        assert secret not in said

    # a real read through a DataLoader: workers are forks, the secret is in no argument list
    import torch

    ds = hf.load_dataset(s3_tiny_root, "vqa", streaming=True, split="test", decode=False,
                         storage_options=good, cache_dir=str(tmp_path / "c"))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    it = iter(loader)
    rows = [next(it)]
    pids = [w.pid for w in it._workers]
    args = [open(f"/proc/{pid}/cmdline", "rb").read() for pid in pids]
    rows += list(it)
    assert len(rows) == read_manifest(tiny_root)["configs"]["vqa"]["test"]
    assert len(pids) == 2 and all(good["secret"].encode() not in a for a in args)
    assert good["secret"] not in _everything_said(caplog, None)


def test_redact():
    assert reader.redact("https://u:p@host/x?X-Amz-Signature=abc&part=1") == (
        "https://***@host/x?X-Amz-Signature=***&part=1")
    assert reader.redact("s3://bucket/key") == "s3://bucket/key"
    assert reader.redact("https://h/x?token=t1&sig=s2") == "https://h/x?token=***&sig=***"


# --------------------------------------------------------------------------- memory


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_memory_stays_flat_over_a_long_http_stream(http_server, big_root, tmp_path):
    # the big root's vqa rows (10 MB of shards) eight times over, through 2 persistent
    # workers: the RSS of the main process plus the workers after the last pass must stay
    # within 10% of what it was after the first (bench/bench_memory.py does 1M rows)
    import torch

    ds = hf.load_dataset(http_server.url + "big", "vqa", streaming=True, split="train",
                         decode=False, cache_dir=str(tmp_path / "c"))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2, collate_fn=list,
                                         persistent_workers=True)
    rows_per_pass = read_manifest(big_root)["configs"]["vqa"]["train"]
    marks = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        it = iter(loader)
        n = 0
        for batch in it:
            n += len(batch)
            if n == rows_per_pass:  # the last batch: the workers still hold their state
                pids = [os.getpid(), *(w.pid for w in it._workers)]
                marks.append(sum(_rss_kib(p) for p in pids))
        assert n == rows_per_pass
    first, last = marks[0], marks[-1]
    print(f"\nRSS (main + 2 workers) after pass 1: {first / 1024:.1f} MiB, after pass 8: "
          f"{last / 1024:.1f} MiB")
    assert last <= 1.10 * first  # issue 4's criterion
    # and tighter: a leak keeping a quarter of what streamed after pass 1 would fail here
    streamed = 7 * sum(s["bytes"] for s in read_manifest(big_root)["shards"]
                       if s["split"] == "train" and s["configs"]["vqa"])
    assert (last - first) * 1024 < streamed / 4


def test_the_parent_keeps_working_after_dataloader_workers(http_server, tmp_path):
    # DataLoader workers are forks: they inherit the parent's fsspec loop and its pooled
    # HTTP connections; dropping them in a worker must not break the parent's next request
    import gc

    import torch

    url = http_server.url + "tiny"
    ds = hf.load_dataset(url, "vqa", streaming=True, split="test", decode=False,
                         cache_dir=str(tmp_path / "c"))  # the manifest: a pooled connection

    def drop_inherited(_):
        import fsspec

        fsspec.filesystem("http")  # a new instance: fsspec forgets the inherited ones
        gc.collect()

    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                         worker_init_fn=drop_inherited)
    n = sum(1 for _ in loader)
    done = []
    t = threading.Thread(target=lambda: done.append(sum(1 for _ in hf.load_dataset(
        url, "vqa", streaming=True, split="test", decode=False,
        cache_dir=str(tmp_path / "c")))), daemon=True)
    t.start()
    t.join(30)
    assert done == [n], "the parent hung on a connection its workers unregistered"


def test_an_unreachable_http_root_is_not_called_missing(http_server, tmp_path):
    import servers

    # fsspec reports a refused connection as FileNotFoundError, like a 404: we ask again
    dead = f"http://user:secret@127.0.0.1:{servers.free_ports(1)[0]}/root"
    with pytest.raises(RemoteError, match=r"cannot read manifest.json: cannot connect \(") as e:
        read_manifest(dead)
    assert "secret" not in str(e.value) and "Connection refused" in str(e.value)
    with pytest.raises(RemoteError, match="cannot connect"):
        hf.load_dataset(dead, "vqa", streaming=True, cache_dir=str(tmp_path / "c"))
    # a server that answers 404 still means: no root there
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(http_server.url + "nothing-here")


@pytest.mark.parametrize("roots", ["http", "s3", "hf"], indirect=True)
def test_row_ranges_start_inside_remote_shards(roots, local_rows, tmp_path):
    # 3 ranks then 2 readers each: most readers start inside a shard, opened at their
    # sample's byte offset (HTTP Range, an S3 ranged read; olah ignores Range, so the bytes
    # before it are read and dropped)
    url, options = roots
    parts, inside = [], 0
    for rank in range(3):
        ds = hf.load_dataset(url, "vqa", split="train", streaming=True, decode=False,
                             storage_options=options, distributed=(rank, 3),
                             cache_dir=str(tmp_path / "c"))
        inner = ds._ex_iterable.ex_iterable
        for w in range(2):
            reader = inner.split_rows(2, w)
            inside += reader.plan()[0].segments[0][1] > 0  # its first row is not a shard's
            parts.append(_rows(row for _, row in reader))
    assert inside >= 3
    assert sorted(x for p in parts for x in p) == sorted(local_rows["train"])
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
