"""Publishing (captured commit operations) and subset download (nginx, olah, local paths)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import servers
from build_fixture import synth_root
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.hf_api import RepoFile
from PIL import Image

from sarlang_data import hub, schema
from sarlang_data.cli import main as cli_main
from sarlang_data.errors import BuildError, ConfigError, RemoteError, VerifyError
from sarlang_data.format.card import card_text, root_stats
from sarlang_data.format.manifest import read_manifest
from sarlang_data.format.pictures import CONTACT_SHEET, STATS_CHART
from sarlang_data.format.verify import verify
from sarlang_data.hub import client
from sarlang_data.hub import uploads as hub_publish
from sarlang_data.ingest.build import BuildOptions, build

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def src_root(tmp_path_factory) -> Path:
    """A preview-size root with small images and small shards, so cities span several shards."""
    return synth_root(tmp_path_factory.mktemp("hubsrc"), preset="preview", seed=5,
                      image_size=40, shard_size=40 * 1024)


@pytest.fixture(scope="module")
def nginx(src_root, tmp_path_factory):
    with servers.start_nginx(src_root, tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


@pytest.fixture(scope="module")
def olah(src_root, tmp_path_factory):
    with servers.start_olah(tmp_path_factory.mktemp("olah"), src_root, "sarlang", "sub") as srv:
        yield srv


def _rows(root: Path) -> list[dict]:
    cols = ["key", "shard", "offset", "size", "split", "tier", "city", "source",
            *(f"n_{t}" for t in schema.TASKS), "image_sha256"]
    return pq.read_table(root / "index.parquet", columns=cols).to_pylist()


def _expected_keys(root: Path, cities=None, tiers=None, splits=None, tasks=None) -> list[str]:
    """The keys index.parquet says a filter selects, computed here without the package."""
    out = []
    for r in _rows(root):
        if cities and r["city"] not in cities or tiers and r["tier"] not in tiers:
            continue
        if splits and r["split"] not in splits:
            continue
        if tasks and not any(r[f"n_{t}"] for t in tasks):
            continue
        out.append(r["key"])
    return out


def _data_gets(srv, since: int) -> list:
    return [e for e in srv.access_entries()[since:] if "/data/" in e.uri and e.method == "GET"]


def _sample_bytes(root: Path, row: dict) -> bytes:
    with open(root / row["shard"], "rb") as f:
        f.seek(row["offset"])
        return f.read(row["size"])


def _image_member(root: Path, key: str) -> bytes:
    r = pq.read_table(root / "index.parquet", filters=[("key", "=", key)],
                      columns=["shard", "image_offset", "image_size"]).to_pylist()[0]
    with open(root / r["shard"], "rb") as f:
        f.seek(r["image_offset"])
        return f.read(r["image_size"])


def _check_subset(out: Path, src: Path, keys: list[str], mode: str) -> dict:
    """The subset root verifies, holds the expected samples, with the source's bytes."""
    report = verify(out)
    m = read_manifest(out)
    got = [r["key"] for r in _rows(out)]
    assert m["subset"]["mode"] == mode
    assert m["subset"]["selected"]["samples"] == len(keys)
    src_rows = {r["key"]: r for r in _rows(src)}
    if mode == "exact":
        assert got == keys
    else:
        assert set(keys) <= set(got)
        src_m = {s["path"]: s for s in read_manifest(src)["shards"]}
        for s in m["shards"]:  # whole shards: byte-identical to the source's
            assert s == src_m[s["path"]]
            assert hashlib.sha256((out / s["path"]).read_bytes()).hexdigest() == s["sha256"]
    for r in _rows(out):  # every sample's bytes equal the source's, wherever they sit now
        assert _sample_bytes(out, r) == _sample_bytes(src, src_rows[r["key"]])
    assert report["samples"] == len(got) == m["counts"]["samples"]
    assert "## This is a subset" in (out / "README.md").read_text()
    assert not (out / client.STAGING).exists()
    return m


FILTERS = [
    pytest.param({"cities": ["rotterdam"]}, id="city"),
    pytest.param({"tiers": ["mr"]}, id="tier"),
    pytest.param({"splits": ["test"]}, id="split"),
]


# --------------------------------------------------------------------------- download: nginx


@pytest.mark.parametrize("flt", FILTERS)
def test_subset_from_nginx(flt, src_root, nginx, tmp_path):
    before = len(nginx.access_entries())
    r = hub.download(url=nginx.url, out=tmp_path / "o", progress=False, **flt)
    keys = _expected_keys(src_root, **flt)
    m = _check_subset(tmp_path / "o", src_root, keys, "shards")
    assert [r["key"] for r in _rows(tmp_path / "o")] == keys  # shards hold one city/tier/split
    gets = _data_gets(nginx, before)
    assert sorted(e.uri.lstrip("/") for e in gets) == sorted(s["path"] for s in m["shards"])
    assert r.fetched_bytes == sum(e.body_bytes_sent for e in gets) == m["counts"]["bytes"]


def test_exact_over_nginx_costs_the_samples_own_bytes(src_root, nginx, tmp_path):
    flt = {"cities": ["rotterdam", "unlocated"], "tasks": ["region_referring"]}
    keys = _expected_keys(src_root, **flt)
    assert 5 < len(keys) < len(_expected_keys(src_root, cities=flt["cities"]))
    before = len(nginx.access_entries())
    r = hub.download(url=nginx.url, out=tmp_path / "o", exact=True, progress=False, **flt)
    _check_subset(tmp_path / "o", src_root, keys, "exact")
    src_rows = {x["key"]: x for x in _rows(src_root)}
    own = sum(src_rows[k]["size"] for k in keys)
    gets = _data_gets(nginx, before)
    sent = sum(e.body_bytes_sent for e in gets)
    assert all(e.status == 206 and e.range for e in gets)
    assert own <= sent <= 1.02 * own, (sent, own)
    assert r.fetched_bytes == sent and not r.ranges_ignored
    whole = sum(s["bytes"] for s in read_manifest(src_root)["shards"]
                if set(s["cities"]) & set(flt["cities"]))
    assert sent < 0.8 * whole  # the point of --exact
    # the subset loads offline with the package's loader
    from sarlang_data import load_dataset

    ds = load_dataset(str(tmp_path / "o"), "region_referring", split="train", streaming=True)
    rows = sum(1 for _ in ds)
    assert rows == read_manifest(tmp_path / "o")["configs"]["region_referring"]["train"] > 0


def test_exact_where_ranges_are_ignored_fetches_whole_shards(src_root, nginx, tmp_path, caplog):
    url = nginx.norange_url
    keys = _expected_keys(src_root, tiers=["mr"], tasks=["instance_counting"])
    before = len(nginx.access_entries())
    with caplog.at_level(logging.WARNING, logger="sarlang_data.hub"):
        r = hub.download(url=url, out=tmp_path / "o", tiers=["mr"], tasks=["instance_counting"],
                         exact=True, progress=False)
    assert "byte ranges cannot be used" in caplog.text and "ignored Range" in caplog.text
    assert r.ranges_ignored
    _check_subset(tmp_path / "o", src_root, keys, "exact")
    whole = [e for e in _data_gets(nginx, before) if e.status == 200 and e.body_bytes_sent]
    assert len({e.uri for e in whole}) == len(r.shards)


def test_interrupted_download_refetches_nothing_verified(src_root, nginx, tmp_path,
                                                         monkeypatch):
    out = tmp_path / "o"
    real = client._FsRemote.fetch

    def drop_after_two(self, rels, staging, sizes, bar, workers):
        if len(rels) <= 2 or not rels[0].startswith("data/"):
            return real(self, rels, staging, sizes, bar, workers)
        real(self, rels[:2], staging, sizes, bar, 1)
        part = staging / (rels[2] + ".partial")  # a file cut off halfway
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"\0" * 700)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(client._FsRemote, "fetch", drop_after_two)
    before = len(nginx.access_entries())
    with pytest.raises(ConnectionResetError):
        hub.download(url=nginx.url, out=out, tiers=["vhr"], progress=False, workers=1)
    assert not (out / "manifest.json").exists() and (out / client.STAGING).is_dir()
    first = [e.uri for e in _data_gets(nginx, before)]
    assert len(first) == 2
    monkeypatch.setattr(client._FsRemote, "fetch", real)
    middle = len(nginx.access_entries())
    r = hub.download(url=nginx.url, out=out, tiers=["vhr"], progress=False)
    second = [e.uri for e in _data_gets(nginx, middle)]
    m = _check_subset(out, src_root, _expected_keys(src_root, tiers=["vhr"]), "shards")
    assert not set(first) & set(second)
    assert sorted(u.lstrip("/") for u in first + second) == sorted(s["path"] for s in m["shards"])
    assert r.fetched_bytes == sum(s["bytes"] for s in m["shards"]
                                  if "/" + s["path"] in second)


def test_interrupted_exact_download_refetches_nothing_verified(src_root, nginx, tmp_path,
                                                               monkeypatch):
    from sarlang_data import remote as reader

    out = tmp_path / "o"
    real = reader.read_range
    calls = []

    def fail_third(url, offset, size, opts=None, **kw):
        calls.append(url)
        if len(calls) == 3:
            raise ConnectionResetError("connection reset by peer")
        return real(url, offset, size, opts, **kw)

    monkeypatch.setattr(reader, "read_range", fail_third)
    before = len(nginx.access_entries())
    with pytest.raises(ConnectionResetError):
        hub.download(url=nginx.url, out=out, tiers=["vhr"], exact=True, progress=False,
                     workers=1)
    first = [(e.uri, e.range) for e in _data_gets(nginx, before)]
    # shards that finished before the failure (a worker may finish the one it had started)
    done = set(json.loads((out / client.STAGING / "verified.json").read_text()))
    assert len(done) >= 2 and all((out / p).is_file() for p in done)
    monkeypatch.setattr(reader, "read_range", real)
    middle = len(nginx.access_entries())
    r = hub.download(url=nginx.url, out=out, tiers=["vhr"], exact=True, progress=False)
    second = [(e.uri, e.range) for e in _data_gets(nginx, middle)]
    # a tier subset keeps the source's shard boundaries, so output and source names agree
    assert not {u.lstrip("/") for u, _ in second} & done and r.reused == len(done)
    assert len(set(first + second)) == len(first) + len(second)
    keys = _expected_keys(src_root, tiers=["vhr"])
    _check_subset(out, src_root, keys, "exact")
    src_rows = {x["key"]: x for x in _rows(src_root)}
    fetched = sum(e.body_bytes_sent for e in _data_gets(nginx, before))
    assert fetched == sum(src_rows[k]["size"] for k in keys)  # nothing fetched twice
    # a finished download run again into the same folder fetches nothing
    again = len(nginx.access_entries())
    r = hub.download(url=nginx.url, out=out, tiers=["vhr"], exact=True, progress=False)
    assert _data_gets(nginx, again) == [] and r.fetched_bytes == 0
    assert r.reused == len(read_manifest(out)["shards"])


def test_dry_run_prints_sizes_and_fetches_nothing(src_root, nginx, tmp_path, capsys):
    out = tmp_path / "o"
    before = len(nginx.access_entries())
    assert cli_main(["download", "--url", nginx.url, "--city", "rotterdam", "--tier", "vhr",
                     "--out", str(out), "--dry-run", "-q"]) == 0
    text = capsys.readouterr().out
    assert _data_gets(nginx, before) == [] and not out.exists()
    shards = [s for s in read_manifest(src_root)["shards"]
              if s["cities"] == ["rotterdam"] and s["tier"] == "vhr"]
    assert len(shards) >= 2
    for s in shards:
        assert s["path"] in text
    n = len(_expected_keys(src_root, cities=["rotterdam"], tiers=["vhr"]))
    assert f"selected: {n:,} samples" in text and "dry run" in text


def test_cli_download_exact(src_root, nginx, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli_main(["download", "--url", nginx.url, "--split", "test", "--task",
                     "object_positioning,others", "--exact", "--out", str(out), "-q"]) == 0
    keys = _expected_keys(src_root, splits=["test"], tasks=["object_positioning", "others"])
    _check_subset(out, src_root, keys, "exact")
    printed = capsys.readouterr().out
    assert "transferred" in printed
    # --task brings whole samples, and both the report and the subset's card say so
    assert "--task keeps whole samples" in printed
    m = json.loads((out / "manifest.json").read_text())
    other = sum(1 for r in _rows(out) for t in schema.TASKS if r[f"n_{t}"]
                and t not in ("object_positioning", "others"))
    assert other > 0  # texts of other tasks came along ...
    assert f"{m['counts']['qa']:,} QA pairs in all" in printed
    card = (out / "README.md").read_text()
    assert "every image keeps all of its texts" in card  # ... and the card says so
    assert 'sarlang_data.load_dataset(ROOT, "object_positioning")' in card


# --------------------------------------------------------------------------- download: olah


@pytest.mark.parametrize("flt", FILTERS)
def test_subset_from_olah(flt, src_root, olah, tmp_path):
    r = hub.download(olah.repo_id, out=tmp_path / "o", endpoint=olah.endpoint, token=False,
                     progress=False, **flt)
    keys = _expected_keys(src_root, **flt)
    m = _check_subset(tmp_path / "o", src_root, keys, "shards")
    assert r.commit == olah.commit == m["subset"]["commit"]
    assert m["subset"]["from"] == f"hf://datasets/{olah.repo_id}"
    assert r.fetched_bytes == m["counts"]["bytes"]


def test_exact_over_olah_falls_back_to_whole_shards(src_root, olah, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sarlang_data.hub"):
        r = hub.download(url=olah.root_url, out=tmp_path / "o", cities=["rotterdam"],
                         tasks=["others"], exact=True, storage_options=olah.storage_options,
                         progress=False)
    assert r.ranges_ignored and "ignored Range" in caplog.text
    keys = _expected_keys(src_root, cities=["rotterdam"], tasks=["others"])
    _check_subset(tmp_path / "o", src_root, keys, "exact")


def test_offline_trap_is_caught(olah, tmp_path, monkeypatch):
    import huggingface_hub

    real = huggingface_hub.snapshot_download

    def offline_returns_quietly(repo_id, **kw):
        # what snapshot_download does offline with a non-empty local_dir: return it, fetch
        # nothing, raise nothing
        if any(p.startswith("data/") for p in kw["allow_patterns"]):
            return kw["local_dir"]
        return real(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline_returns_quietly)
    with pytest.raises(VerifyError, match=r"2 of 2 requested file\(s\) did not arrive.*"
                       r"data/train/vhr/rotterdam.*HF_HUB_OFFLINE"):
        hub.download(olah.repo_id, out=tmp_path / "o", cities=["rotterdam"], tiers=["vhr"],
                     splits=["train"], endpoint=olah.endpoint, token=False, progress=False)
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_offline_mode_is_a_clear_error(olah, tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    real = huggingface_hub.snapshot_download

    def offline(repo_id, **kw):
        if any(p.startswith("data/") for p in kw["allow_patterns"]):
            monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        return real(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(VerifyError, match=r"could not be fetched.*HF_HUB_OFFLINE"):
        hub.download(olah.repo_id, out=tmp_path / "o", cities=["rotterdam"], endpoint=olah.endpoint,
                     token=False, progress=False)


def test_hub_resume_asks_only_for_missing_files(src_root, olah, tmp_path, monkeypatch):
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    asked = []

    def record(repo_id, **kw):
        asked.append(sorted(kw["allow_patterns"]))
        return real(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", record)
    out = tmp_path / "o"
    hub.download(olah.repo_id, out=out, tiers=["hr"], endpoint=olah.endpoint, token=False,
                 progress=False)
    shards = [s["path"] for s in read_manifest(out)["shards"]]
    victim = out / shards[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")  # damaged after the download
    asked.clear()
    r = hub.download(olah.repo_id, out=out, tiers=["hr"], endpoint=olah.endpoint, token=False,
                     progress=False)
    data_asks = [a for a in asked if a[0].startswith("data/")]
    assert data_asks == [[shards[0]]] and r.reused == len(shards) - 1
    verify(out)


# --------------------------------------------------------------------------- download: local


def test_task_subset_in_shard_mode_says_what_was_selected(src_root, tmp_path):
    keys = _expected_keys(src_root, tasks=["region_referring"])
    hub.download(url=str(src_root), out=tmp_path / "o", tasks=["region_referring"], progress=False)
    m = _check_subset(tmp_path / "o", src_root, keys, "shards")
    assert m["counts"]["samples"] > len(keys)  # whole shards hold more than the selection
    assert m["subset"]["filters"] == {"cities": None, "sources": None, "splits": None,
                                      "tasks": ["region_referring"], "tiers": None}
    card = (tmp_path / "o" / "README.md").read_text()
    assert f"{len(keys):,} of the {m['counts']['samples']:,} samples here match" in card


def test_zstd_archive_source_and_exact(synth_tiny, tmp_path):
    zroot = tmp_path / "zroot"
    build(synth_tiny / "SARLANG_1M", zroot,
          BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=1, compress="archive"),
          progress=False)
    city = "rotterdam"
    keys = _expected_keys(zroot, cities=[city])
    r = hub.download(url=str(zroot), out=tmp_path / "x", cities=[city], exact=True,
                     progress=False)
    m = read_manifest(tmp_path / "x")
    assert all(s["path"].endswith(".tar") for s in m["shards"]) and not r.ranges_ignored
    assert [x["key"] for x in _rows(tmp_path / "x")] == keys
    verify(tmp_path / "x")
    hub.download(url=str(zroot), out=tmp_path / "w", cities=[city], progress=False)
    assert all(s["path"].endswith(".tar.zst") for s in read_manifest(tmp_path / "w")["shards"])
    verify(tmp_path / "w")


def test_download_errors(src_root, tmp_path):
    with pytest.raises(ConfigError, match=r"cities='atlantis': unknown city; valid city names"):
        hub.download(url=str(src_root), out=tmp_path / "o", cities=["atlantis"])
    with pytest.raises(ConfigError, match=r"tasks='weather': unknown task.*captions"):
        hub.download(url=str(src_root), out=tmp_path / "o", tasks=["weather"])
    with pytest.raises(ConfigError, match=r"no sample of .* matches these filters together"):
        hub.download(url=str(src_root), out=tmp_path / "o", cities=["rotterdam"], tiers=["mr"])
    with pytest.raises(ConfigError, match=r"pass exactly one of them"):
        hub.download("a/b", url=str(src_root), out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"repo='not a repo': not a Hub repo id"):
        hub.download("not a repo", out=tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match=r"is a file, not a folder"):
        hub.download(url=str(src_root), out=tmp_path / "file", cities=["rotterdam"])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("x")
    with pytest.raises(BuildError, match=r"neither a dataset root nor an unfinished download"):
        hub.download(url=str(src_root), out=tmp_path / "docs", cities=["rotterdam"])
    assert (tmp_path / "docs" / "thesis.tex").exists()
    assert not (tmp_path / "o").exists()


def test_corrupt_remote_shard_is_refused(src_root, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(src_root, bad)
    s = next(s for s in read_manifest(bad)["shards"] if s["cities"] == ["rotterdam"])
    last = [r for r in pq.read_table(bad / "index.parquet").to_pylist()
            if r["shard"] == s["path"]][-1]
    raw = bytearray((bad / s["path"]).read_bytes())
    raw[last["image_offset"] + 100] ^= 0xFF  # one image byte of the shard's last sample
    (bad / s["path"]).write_bytes(bytes(raw))
    with pytest.raises(VerifyError, match=rf"{s['path']}: expected {s['bytes']} bytes sha256 "
                       rf"{s['sha256']}, got"):
        hub.download(url=str(bad), out=tmp_path / "o", cities=["rotterdam"], progress=False)
    with pytest.raises(VerifyError, match=rf"sample '{last['key']}' at byte {last['offset']}: "
                       rf"image {last['key']}\.png sha256 expected {last['image_sha256']} "
                       r"\(index\.parquet\), found .*; the bytes that came back"):
        hub.download(url=str(bad), out=tmp_path / "e", cities=["rotterdam"], exact=True,
                     progress=False)
    # damage in the very first range: the probe fails, whole shards are fetched and refused
    first = pq.read_table(bad / "index.parquet").to_pylist()[0]
    raw = bytearray((bad / first["shard"]).read_bytes())
    raw[first["json_offset"] + 1] ^= 0xFF
    (bad / first["shard"]).write_bytes(bytes(raw))
    with pytest.raises(VerifyError, match=rf"{first['shard']}: expected .* bytes sha256"):
        hub.download(url=str(bad), out=tmp_path / "f", cities=[first["city"]],
                     tiers=[first["tier"]], splits=[first["split"]], exact=True,
                     progress=False)


# --------------------------------------------------------------------------- publish


class FakeHub(HfApi):
    """Records what publish asks of the Hub and serves the tree of what was committed."""

    def __init__(self, fail_on_commit: int | None = None) -> None:
        super().__init__(endpoint="http://127.0.0.1:9", token=False)
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple] = []
        self.commits: list[list] = []
        self.fail_on_commit = fail_on_commit

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def list_repo_tree(self, repo_id, path_in_repo=None, **kw):
        self.calls.append(("list_repo_tree", repo_id, kw))
        for path, data in sorted(self.files.items()):
            lfs = None
            if path.endswith((".tar", ".zst", ".parquet")):  # as the Hub's .gitattributes
                lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                       "pointerSize": 134}
            oid = client.git_blob_sha1(data) if lfs is None else "0" * 40
            yield RepoFile(path=path, size=len(data), oid=oid, lfs=lfs)

    def create_commit(self, repo_id, operations, *, commit_message, **kw):
        ops = list(operations)
        self.calls.append(("create_commit", repo_id, kw, commit_message))
        if self.fail_on_commit == len(self.commits) + 1:
            self.fail_on_commit = None
            raise ConnectionResetError("connection reset while uploading")
        self.commits.append(ops)
        for op in ops:
            if isinstance(op, CommitOperationDelete):
                self.files.pop(op.path_in_repo)
            else:
                assert isinstance(op, CommitOperationAdd)
                with op.as_file() as f:
                    self.files[op.path_in_repo] = f.read()


@pytest.fixture(scope="module")
def many_root(tmp_path_factory) -> Path:
    """A root with 200 shards (one sample each), to exercise batching."""
    root = synth_root(tmp_path_factory.mktemp("many"), preset="preview", seed=1, image_size=24,
                      shard_size=1)
    assert len(read_manifest(root)["shards"]) > 150
    return root


def _root_files(root: Path, repo: str) -> dict[str, bytes]:
    m = read_manifest(root)
    files = {s["path"]: (root / s["path"]).read_bytes() for s in m["shards"]}
    for name in ("index.parquet", "manifest.json", "rejects.jsonl"):
        if (root / name).exists():
            files[name] = (root / name).read_bytes()
    pictures = {p: (root / p).read_bytes() for p in (CONTACT_SHEET, STATS_CHART)}
    files.update(pictures)  # the build's pictures are what publish renders and sends
    files["README.md"] = card_text(m, root_stats(root), repo_id=repo,
                                   pictures=list(pictures)).encode()
    return files


def test_publish_commits_everything_in_batches_card_last(many_root):
    fake = FakeHub()
    plan = hub.publish(many_root, "me/sar", api=fake)
    assert fake.files == _root_files(many_root, "me/sar")
    assert fake.calls[0][:2] == ("create_repo", "me/sar")
    assert fake.calls[0][2]["exist_ok"] is True and fake.calls[0][2]["repo_type"] == "dataset"
    paths = [[op.path_in_repo for op in c] for c in fake.commits]
    n = len(read_manifest(many_root)["shards"])
    assert all(1 <= len(c) <= 100 for c in paths)
    assert len(paths) == len(plan.commits) == -(-n // 100) + 2
    assert paths[-1] == ["README.md"]
    assert "manifest.json" in paths[-2] and "index.parquet" in paths[-2]
    assert CONTACT_SHEET in paths[-2] and STATS_CHART in paths[-2]  # before the card
    assert f"]({CONTACT_SHEET})" in fake.files["README.md"].decode()
    assert all(p.startswith("data/") for c in paths[:-2] for p in c)
    flat = [p for c in paths for p in c]
    assert len(flat) == len(set(flat)) == len(fake.files)
    assert all(call[2].get("repo_type") == "dataset" for call in fake.calls
               if call[0] == "create_commit")
    readme = fake.files["README.md"].decode()
    assert 'datasets.load_dataset("me/sar", "vhr", streaming=True)' in readme


def test_publish_rerun_after_a_failed_commit_sends_only_what_is_missing(many_root):
    fake = FakeHub(fail_on_commit=2)
    with pytest.raises(RemoteError, match=r"commit 2/\d+ \(100 files; 1 committed before it "
                       r"stay\).*ConnectionResetError: connection reset while uploading"):
        hub.publish(many_root, "me/sar", api=fake)
    first = {op.path_in_repo for op in fake.commits[0]}
    assert len(first) == 100 and "README.md" not in fake.files
    assert "manifest.json" not in fake.files  # the manifest never points at missing shards
    plan = hub.publish(many_root, "me/sar", api=fake)
    sent = [op.path_in_repo for c in fake.commits[1:] for op in c]
    assert not first & set(sent)
    assert sorted(first | set(sent)) == sorted(fake.files)
    assert fake.files == _root_files(many_root, "me/sar")
    assert {f.path for f in plan.uploads} == set(sent)
    # a third run finds everything in place (LFS sha256 and git blob ids) and sends nothing
    n = len(fake.commits)
    plan = hub.publish(many_root, "me/sar", api=fake)
    assert plan.uploads == [] and plan.batches == [] and len(fake.commits) == n


def test_publish_dry_run_plans_with_sizes_and_sends_nothing(tiny_root, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_NOTAREALTOKENbutSECRETanyway")
    fake = FakeHub()
    plan = hub.publish(tiny_root, "me/tiny", dry_run=True, api=fake)
    assert [c[0] for c in fake.calls] == ["list_repo_tree"] and fake.files == {}
    text = plan.describe()
    m = read_manifest(tiny_root)
    for s in m["shards"]:
        assert s["path"] in text
    # shards, index, rejects, manifest, the card's two pictures, the card
    assert f"send {len(m['shards']) + 6} files" in text and "commit 3/3" in text
    assert f"send   {CONTACT_SHEET}" in text and f"send   {STATS_CHART}" in text
    assert "hf_NOTAREAL" not in text and "hf_NOTAREAL" not in capsys.readouterr().out


def test_publish_cli_dry_run_prints_the_plan(tiny_root, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_NOTAREALTOKENbutSECRETanyway")
    fake = FakeHub()
    monkeypatch.setattr(hub_publish, "_hf_api", lambda api, endpoint, token: fake)
    assert cli_main(["publish", str(tiny_root), "--repo", "me/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "publish to me/tiny" in out and "index.parquet" in out and "KiB" in out
    assert "hf_NOTAREAL" not in out and fake.files == {}


class _NoSleep:
    """The time module without its waits."""

    def __getattr__(self, name):
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        pass


def test_an_unreachable_hub_is_a_clear_error(tiny_root, tmp_path, caplog, capsys,
                                             monkeypatch):
    from huggingface_hub.utils import _http

    # huggingface_hub retries a refused connection 5 times with backoff (~6 s per call);
    # the retries still happen, without their waits
    monkeypatch.setattr(_http, "time", _NoSleep())
    dead = f"http://127.0.0.1:{servers.free_ports(1)[0]}"  # nothing listens there
    out = tmp_path / "o"
    with pytest.raises(RemoteError) as e:
        hub.download("me/tiny", out=out, cities=["rotterdam"], endpoint=dead, token=False,
                     progress=False)
    assert f"the Hub at {dead} cannot be reached" in str(e.value)
    assert "repo='me/tiny'" in str(e.value) and "--endpoint" in str(e.value)
    assert not out.exists() or not any(out.iterdir())  # nothing half written
    with pytest.raises(RemoteError, match=f"repo='me/tiny': creating it: the Hub at {dead}"):
        hub.publish(tiny_root, "me/tiny", endpoint=dead, token=False)
    # a dry run still plans, as for an empty repo, and says so
    with caplog.at_level(logging.WARNING, logger="sarlang_data.hub"):
        plan = hub.publish(tiny_root, "me/tiny", endpoint=dead, token=False, dry_run=True)
    assert plan.files and all(f.send for f in plan.files) and plan.deletes == []
    assert "planned as for an empty repo" in caplog.text and dead in caplog.text
    # the command line: the message, status 2, no traceback
    assert cli_main(["download", "--repo", "me/tiny", "--endpoint", dead, "--out",
                     str(tmp_path / "c"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "sarlang-data download: error:" in err and "cannot be reached" in err


def test_publish_branch_and_stale_shards(tiny_root):
    fake = FakeHub()
    fake.files["data/train/vhr/gone/train-vhr-gone-00000.tar"] = b"old"
    fake.files["notes.txt"] = b"kept: not a shard"
    hub.publish(tiny_root, "me/tiny", revision="v2", private=True, api=fake)
    assert ("create_branch", "me/tiny", {"branch": "v2", "repo_type": "dataset",
                                         "exist_ok": True}) in fake.calls
    assert fake.calls[0][2]["private"] is True
    deletes = [op.path_in_repo for c in fake.commits for op in c
               if isinstance(op, CommitOperationDelete)]
    assert deletes == ["data/train/vhr/gone/train-vhr-gone-00000.tar"]
    assert any(isinstance(op, CommitOperationDelete) for op in fake.commits[-2])
    assert "notes.txt" in fake.files
    assert all(c[2]["revision"] == "v2" for c in fake.calls if c[0] == "create_commit")


def test_publish_a_downloaded_subset_over_its_source(tiny_root, tmp_path):
    fake = FakeHub()
    hub.publish(tiny_root, "me/tiny", api=fake)
    sub = tmp_path / "sub"
    hub.download(url=str(tiny_root), out=sub, cities=["rotterdam"], progress=False)
    n = len(fake.commits)
    plan = hub.publish(sub, "me/tiny", api=fake)
    assert fake.files == _root_files(sub, "me/tiny")  # rejects.jsonl and other shards gone
    assert "rejects.jsonl" in plan.deletes and "rejects.jsonl" not in fake.files
    assert not [f for f in plan.uploads if f.path.startswith("data/")]  # same shards, kept
    assert [op.path_in_repo for op in fake.commits[-1]] == ["README.md"]
    assert len(fake.commits) == n + 2


def test_publish_refuses_a_root_that_differs_from_its_manifest(copy_root):
    root = copy_root()
    m = read_manifest(root)
    shard = root / m["shards"][-1]["path"]
    raw = bytearray(shard.read_bytes())
    raw[700] ^= 1
    shard.write_bytes(bytes(raw))
    fake = FakeHub()
    with pytest.raises(VerifyError, match=rf"{m['shards'][-1]['path']}: sha256 .* the manifest "
                       rf"says {m['shards'][-1]['sha256']}"):
        hub.publish(root, "me/tiny", api=fake)
    assert "manifest.json" not in fake.files
    (root / m["shards"][0]["path"]).unlink()
    with pytest.raises(VerifyError, match=rf"cannot publish.*{m['shards'][0]['path']}: missing"):
        hub.plan_publish(root, "me/tiny", api=fake)
    with pytest.raises(ConfigError, match=r"repo='me': not a Hub repo id"):
        hub.publish(root, "me", api=fake)
    with pytest.raises(ConfigError, match=r"batch_size=101"):
        hub.plan_publish(root, "me/tiny", api=fake, batch_size=101)


def test_git_blob_sha1_matches_git():
    # `printf hello | git hash-object --stdin`
    assert client.git_blob_sha1(b"hello") == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
    buf = io.BytesIO(b"x" * 3_000_000)
    assert client.git_blob_sha1(buf.getvalue()) == hashlib.sha1(
        b"blob 3000000\0" + buf.getvalue()).hexdigest()


def test_manifest_json_of_subset_is_versioned_and_valid(src_root, tmp_path):
    hub.download(url=str(src_root), out=tmp_path / "o", sources=["spacenet6"], progress=False)
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    # the source's format version (a subset holds the same members) and build
    assert m["format_version"] == read_manifest(src_root)["format_version"] == 1
    assert m["build"] == read_manifest(src_root)["build"]
    assert m["counts"]["rejects"] == 0 and m["rejects"] == {}
    assert {s["sources"][0] for s in m["shards"]} == {"spacenet6"}
    assert m["subset"]["from"] == str(src_root)


def test_download_with_zstd_codec_lands_pixels_equal_to_the_source(src_root, nginx, tmp_path):
    from sarlang_data.format import codec
    from sarlang_data.stream.reader import iter_samples

    city = _rows(src_root)[0]["city"]
    out = tmp_path / "fast"
    hub.download(url=nginx.url, out=out, cities=[city], image_codec="zstd", zstd_jpeg=True,
                 progress=False, workers=2)
    assert not out.with_name(out.name + ".source-download").exists()
    verify(out)  # checks every pixel hash against the index
    m = read_manifest(out)
    assert m["build"]["image_codec"] == {"png": "zstd", "jpg": "zstd"}
    want = {r["key"]: r for r in _rows(src_root) if r["city"] == city}
    got = {}
    for s in m["shards"]:
        for sample in iter_samples(str(out / s["path"])):
            assert sample["image_ext"] == codec.EXT
            got[sample["__key__"]] = codec.decode_array(sample["image"])
    assert sorted(got) == sorted(want)
    for key, arr in got.items():
        r = want[key]
        src = np.asarray(Image.open(io.BytesIO(_image_member(src_root, r["key"]))))
        assert np.array_equal(arr, src), key


def test_publish_refuses_a_pixel_codec_root(src_root, tmp_path):
    from sarlang_data.ingest.transcode import transcode_root

    fast = tmp_path / "fast"
    transcode_root(src_root, fast, image_codec="zstd", workers=1, progress=False)
    with pytest.raises(ConfigError, match=r"image_codec=.*publish the source-codec root"):
        hub.publish(fast, "me/sar", api=FakeHub())
