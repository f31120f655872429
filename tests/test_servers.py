"""The test servers of tests/servers.py, as fsspec sees them: nginx, SeaweedFS (S3), olah (Hub).

Each server gets the same small tree (with a ~3 MB binary standing in for a shard) and must
list it, return every file byte for byte, and honour (nginx, S3) or visibly ignore (nginx's
/norange/ location, olah) Range requests. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import random
import socket
import time
from pathlib import Path

import fsspec
import pytest
import requests
import servers  # tests/ is on sys.path: pytest's default "prepend" import mode puts it there

BIG = "data/train/vhr/rotterdam/train-vhr-rotterdam-00000.tar"
BIG_SIZE = 3 * 2**20 + 12345
# (start, end) byte ranges of BIG: first byte, an early block, across a MiB boundary, the tail.
RANGES = [(0, 1), (1000, 2000), (2**20 - 7, 2**20 + 13), (BIG_SIZE - 4096, BIG_SIZE)]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_tree(root: Path) -> dict[str, bytes]:
    rng = random.Random(20250101)
    files = {
        "README.md": b"---\nlicense: cc-by-4.0\n---\n# preview\n",
        "manifest.json": b'{"format_version": 1, "shards": []}\n',
        BIG: rng.randbytes(BIG_SIZE),
        "data/test/mr/nice/test-mr-nice-00000.tar": rng.randbytes(200_001),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("tree")
    return root, _make_tree(root)


# ------------------------------------------------------------------------------------ nginx


@pytest.fixture(scope="module")
def nginx(tree, tmp_path_factory):
    with servers.start_nginx(tree[0], tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


def _http_fs():
    return fsspec.filesystem("http", skip_instance_cache=True)


def _new_entries(srv: servers.NginxServer, before: int, uri: str) -> list[servers.AccessEntry]:
    return [e for e in srv.wait_for_entries(before + 1)[before:] if e.uri == uri]


def test_nginx_lists_the_tree(nginx, tree):
    _, files = tree
    fs = _http_fs()
    found = fs.find(nginx.url)
    assert sorted(u.removeprefix(nginx.url) for u in found) == sorted(files)
    top = fs.ls(nginx.url, detail=False)
    assert sorted(u.removeprefix(nginx.url) for u in top) == ["README.md", "data/", "manifest.json"]
    assert fs.info(nginx.url_of(BIG))["size"] == BIG_SIZE


def test_nginx_full_reads_match_and_log_counts_bytes(nginx, tree):
    _, files = tree
    fs = _http_fs()
    for rel, data in files.items():
        before = len(nginx.access_entries())
        assert _sha(fs.cat_file(nginx.url_of(rel))) == _sha(data)
        [entry] = _new_entries(nginx, before, "/" + rel)
        assert (entry.method, entry.status, entry.range) == ("GET", 200, None)
        assert entry.body_bytes_sent == len(data)


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_nginx_range_read_sends_exactly_the_range(nginx, tree, start, end):
    data = tree[1][BIG]
    before = len(nginx.access_entries())
    assert _http_fs().cat_file(nginx.url_of(BIG), start=start, end=end) == data[start:end]
    [entry] = _new_entries(nginx, before, "/" + BIG)
    assert (entry.status, entry.range) == (206, f"bytes={start}-{end - 1}")
    assert entry.body_bytes_sent == end - start


def test_nginx_seek_read_fetches_only_blocks_near_the_offset(nginx, tree):
    data = tree[1][BIG]
    block = 2**16
    before = len(nginx.access_entries())
    with fsspec.open(nginx.url_of(BIG), "rb", block_size=block) as f:
        f.seek(2_000_003)
        assert f.read(5000) == data[2_000_003:2_005_003]
    gets = [e for e in nginx.wait_for_entries(before + 1)[before:] if e.method == "GET"]
    assert gets and all(e.status == 206 and e.range for e in gets)
    # readahead may fetch a block more than asked, never the whole file
    assert 5000 <= sum(e.body_bytes_sent for e in gets) <= 5000 + 2 * block


def test_nginx_norange_location_answers_200_with_the_whole_file(nginx, tree):
    data = tree[1][BIG]
    ranged = requests.get(nginx.url_of(BIG), headers={"Range": "bytes=100-199"}, timeout=10)
    assert ranged.status_code == 206
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{BIG_SIZE}"
    assert ranged.content == data[100:200]

    before = len(nginx.access_entries())
    url = nginx.url_of(BIG, ignore_range=True)
    whole = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert whole.status_code == 200
    assert "Content-Range" not in whole.headers
    assert int(whole.headers["Content-Length"]) == BIG_SIZE
    assert _sha(whole.content) == _sha(data)
    [entry] = _new_entries(nginx, before, "/norange/" + BIG)
    assert (entry.status, entry.range, entry.body_bytes_sent) == (200, "bytes=100-199", BIG_SIZE)


def test_fsspec_http_does_not_always_catch_an_ignored_range(nginx, tree):
    # Why the project checks status and length itself: fsspec's cat_file takes the whole
    # body of a 200 answer as the range; only its file objects refuse.
    data = tree[1][BIG]
    url = nginx.url_of(BIG, ignore_range=True)
    fs = _http_fs()
    assert _sha(fs.cat_file(url, start=100, end=200)) == _sha(data)
    with fs.open(url, "rb", block_size=2**16) as f:
        f.seek(100)
        with pytest.raises(ValueError, match="support range requests"):
            f.read(100)


def test_nginx_stop_ends_master_and_workers(tree, tmp_path):
    srv = servers.start_nginx(tree[0], tmp_path)
    pids = [srv.pid, *servers.child_pids(srv.pid)]
    assert len(pids) == 2 and all(servers.pid_alive(p) for p in pids)  # master + 1 worker
    assert requests.get(srv.url_of("README.md"), timeout=10).content == tree[1]["README.md"]
    srv.stop()
    assert not any(servers.pid_alive(p) for p in pids)
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url, timeout=2)
    srv.stop()  # idempotent


def test_nginx_start_failure_names_the_cause_from_its_log(tree, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(servers.ServerStartError, match=r"(?s)exited with code.*in use"):
            servers.start_nginx(tree[0], tmp_path, port=port)
        assert time.monotonic() - t0 < servers.READY_TIMEOUT
    with pytest.raises(FileNotFoundError, match="nothing to serve"):
        servers.start_nginx(tmp_path / "missing", tmp_path)


# ------------------------------------------------------------------------------ SeaweedFS S3


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with servers.start_seaweedfs(tmp_path_factory.mktemp("s3")) as srv:
        yield srv


@pytest.fixture(scope="module")
def s3_root(s3, tree) -> str:
    return servers.upload_tree(s3, tree[0], "preview")


def test_s3_lists_and_reads_the_tree(s3, s3_root, tree):
    _, files = tree
    assert s3_root == f"s3://{s3.bucket}/preview"
    fs, _, [root] = fsspec.get_fs_token_paths(s3_root, storage_options=s3.storage_options)
    assert sorted(p.removeprefix(root + "/") for p in fs.find(root)) == sorted(files)
    top = fs.ls(root, detail=False)
    assert sorted(p.removeprefix(root + "/") for p in top) == ["README.md", "data", "manifest.json"]
    for rel, data in files.items():
        with fsspec.open(f"{s3_root}/{rel}", "rb", **s3.storage_options) as f:
            assert _sha(f.read()) == _sha(data)


def test_s3_range_reads(s3, s3_root, tree):
    data = tree[1][BIG]
    fs = s3.filesystem()
    path = f"{s3_root.removeprefix('s3://')}/{BIG}"
    for start, end in RANGES:
        assert fs.cat_file(path, start=start, end=end) == data[start:end]
    with fs.open(path, "rb", block_size=2**16) as f:
        f.seek(2_000_003)
        assert f.read(5000) == data[2_000_003:2_005_003]


def test_s3_needs_the_credentials_and_keeps_them_out_of_args_logs_and_repr(s3, s3_root):
    path = f"{s3_root.removeprefix('s3://')}/README.md"
    cmdline = Path(f"/proc/{s3.pid}/cmdline").read_bytes()
    assert s3.key.encode() not in cmdline and s3.secret.encode() not in cmdline
    for log in (s3.workdir / "logs").iterdir():
        assert s3.secret.encode() not in log.read_bytes(), log
    assert s3.secret not in repr(s3)
    with pytest.raises(PermissionError):
        s3.filesystem(secret=s3.secret[::-1]).cat_file(path)
    anon = fsspec.filesystem(
        "s3", anon=True, client_kwargs={"endpoint_url": s3.endpoint}, skip_instance_cache=True
    )
    with pytest.raises(PermissionError):
        anon.cat_file(path)


def test_seaweedfs_stop_ends_the_process(tmp_path):
    srv = servers.start_seaweedfs(tmp_path, bucket="lifecycle")
    assert srv.alive() and servers.pid_alive(srv.pid)
    srv.filesystem().pipe_file("lifecycle/x.bin", b"\x00\x01")
    assert srv.filesystem().cat_file("lifecycle/x.bin") == b"\x00\x01"
    srv.stop()
    assert not servers.pid_alive(srv.pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.endpoint, timeout=2)


# ------------------------------------------------------------------------------------- olah


@pytest.fixture(scope="module")
def olah(tree, tmp_path_factory):
    with servers.start_olah(tmp_path_factory.mktemp("olah"), tree[0]) as srv:
        yield srv


def test_olah_lists_the_repo(olah, tree):
    _, files = tree
    assert olah.url_of(BIG) == f"hf://datasets/sarlang/preview@main/{BIG}"
    fs, _, [root] = fsspec.get_fs_token_paths(olah.root_url, storage_options=olah.storage_options)
    assert sorted(p.removeprefix(root + "/") for p in fs.find(root)) == sorted(files)
    top = fs.ls(root, detail=False)
    assert sorted(p.removeprefix(root + "/") for p in top) == ["README.md", "data", "manifest.json"]
    assert fs.info(f"{root}/{BIG}")["size"] == BIG_SIZE


def test_olah_full_reads_by_branch_and_by_commit(olah, tree):
    _, files = tree
    for rel, data in files.items():
        with fsspec.open(olah.url_of(rel), "rb", block_size=0, **olah.storage_options) as f:
            assert _sha(f.read()) == _sha(data)
    pinned = f"hf://datasets/{olah.repo_id}@{olah.commit}/{BIG}"
    assert _sha(olah.filesystem().cat_file(pinned)) == _sha(files[BIG])


def test_olah_ignores_range(olah, tree):
    data = tree[1][BIG]
    head = requests.head(olah.http_url_of(BIG), timeout=10)
    assert head.status_code == 200 and int(head.headers["content-length"]) == BIG_SIZE
    resp = requests.get(olah.http_url_of(BIG), headers={"Range": "bytes=100-199"}, timeout=10)
    assert resp.status_code == 200
    assert "content-range" not in resp.headers
    assert len(resp.content) == BIG_SIZE and _sha(resp.content) == _sha(data)


def test_hf_filesystem_range_read_through_olah_is_silently_wrong(olah, tree):
    # huggingface_hub does not look at the status of a ranged GET: against a server that
    # ignores Range it hands back the file's first bytes as if they were the range asked
    # for. This is exactly what the project's range checks must catch.
    data = tree[1][BIG]
    got = olah.filesystem().cat_file(olah.url_of(BIG), start=1000, end=2000)
    assert got == data[:1000] and got != data[1000:2000]


def test_olah_answers_locally_and_never_goes_upstream(olah):
    # An unmirrored repo is refused at once (offline mode); with the upstream pointed at a
    # closed loopback port, any upstream attempt would show as a proxy error instead.
    t0 = time.monotonic()
    resp = requests.get(f"{olah.endpoint}/api/datasets/other/repo/revision/main", timeout=10)
    assert resp.status_code in (401, 404) and "not found" in resp.text.lower()
    assert time.monotonic() - t0 < 2
    fs = olah.filesystem()
    with pytest.raises(FileNotFoundError):
        fs.cat_file("hf://datasets/other/repo@main/README.md")
    assert "Failed to reach" not in olah.log_tail(1000)


def test_olah_stop_ends_the_process(tree, tmp_path):
    srv = servers.start_olah(tmp_path, tree[0], org="someone", name="lifecycle")
    assert srv.alive()
    readme = requests.get(srv.http_url_of("README.md"), timeout=10)
    assert readme.content == tree[1]["README.md"]
    srv.stop()
    assert not servers.pid_alive(srv.pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.endpoint, timeout=2)
