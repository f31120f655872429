"""The Hub side: publish a dataset root; download subsets by city, tier, split, source or task.

Publishing (:func:`publish`) goes through ``huggingface_hub``: ``create_repo(exist_ok=True)``,
then ``create_commit`` in batches of at most 100 files: the shards first, then
``index.parquet``, ``rejects.jsonl`` and ``manifest.json`` (with the deletion of shards the
manifest no longer lists), and the card last, so the card's configs never point at files that
are not there yet. Files whose sha256 already stands in the repo (the LFS sha256, or the git
blob id for small files) are not sent again, so a rerun after a failure sends only what is
missing. Tokens come from ``huggingface_hub``'s usual sources and never appear in output.

Downloading (:func:`download`) reads the remote ``manifest.json`` and ``index.parquet``,
selects the samples that match the filters, and fetches either the whole shards that hold them
(``snapshot_download`` with ``allow_patterns`` and the resolved commit for the Hub, fsspec for
other URLs) or, with ``exact=True``, only their byte ranges, checked by status and length and
rewritten into new local shards. Every shard is verified by sha256 (whole shards) or every
sample by its tar headers and image sha256 (exact), files are written under temporary names,
and a rerun keeps what verified. The result is a dataset root (shards, index, card, and the
manifest written last) that ``load_dataset(DIR, ...)`` and ``manifest.verify(DIR)`` read
offline; its manifest's ``subset`` says where it came from and what was selected
(``docs/format.md``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schema
from .configs import CONFIGS, rows_per_config
from .errors import BuildError, ConfigError, ManifestError, RemoteError, VerifyError
from .manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    PIXEL_COLUMN,
    REJECTS_NAME,
    SHARD_PATH_RE,
    index_table_bytes,
    manifest_bytes,
    select_samples,
    validate_manifest,
)
from .shards import BLOCK, PARTIAL_SUFFIX, TarWriter, padded, tar_file_bytes, write_atomic

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
#: at most this many files per commit
MAX_BATCH = 100
#: folder inside a download's output that holds its state until it finishes
STAGING = ".sarlang-download"
#: largest byte range asked for at once in exact mode (memory per worker stays below it)
RANGE_CHUNK = 32 << 20
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HF_URL = re.compile(r"^hf://datasets/([^/@]+/[^/@]+)(?:@([^/]+))?/?$")
_READ = 1 << 20


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a local file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(source: str | os.PathLike | bytes) -> str:
    """Return the git blob id of a file or of bytes (sha1 of a ``blob SIZE`` header + content)."""
    if isinstance(source, bytes):
        return hashlib.sha1(b"blob %d\0" % len(source) + source).hexdigest()  # noqa: S324
    size = os.path.getsize(source)
    h = hashlib.sha1(b"blob %d\0" % size)  # noqa: S324 - git's object id, not security
    with open(source, "rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()


def _check_repo_id(repo_id: Any, argument: str = "repo") -> str:
    if not isinstance(repo_id, str) or not _HUB_ID.match(repo_id):
        raise ConfigError(f"{argument}={repo_id!r}: not a Hub repo id; pass ORG/NAME, e.g. "
                          "'my-org/sarlang-1m'")
    return repo_id


def _size(b: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:,.1f} {unit}"
    return f"{b} B"


def _hf_api(api: Any, endpoint: str | None, token: str | bool | None) -> Any:
    if api is not None:
        return api
    try:
        from huggingface_hub import HfApi
    except ImportError:  # pragma: no cover - the hub extra is missing
        raise BuildError("the Hub tools need huggingface_hub: `pip install "
                         "'sarlang-data[hub]'`") from None
    return HfApi(endpoint=endpoint, token=token)


def _unreachable(e: BaseException) -> bool:
    """Tell whether a Hub call failed for want of a (working) server, not a missing thing.

    huggingface_hub lets its HTTP library's transport errors through (httpx, httpx2 or
    requests, by version) and raises ``HfHubHTTPError`` for error statuses; its not-found
    and access errors are callers' to explain.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                      OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)):
        return False
    # not every OSError: a local file that cannot be read while committing is not the Hub's
    if isinstance(e, (HfHubHTTPError, ConnectionError, TimeoutError)):
        return True
    return type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2",
                                                 "requests", "urllib3")


@contextmanager
def _calling_hub(what: str, endpoint: str | None) -> Iterator[None]:
    """Turn a failure to reach the Hub (or a mirror) into a :class:`RemoteError`."""
    try:
        yield
    except Exception as e:
        if not _unreachable(e):
            raise
        from huggingface_hub import constants

        where = endpoint or constants.ENDPOINT
        cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RemoteError(
            f"{what}: the Hub at {where} cannot be reached or failed ({type(e).__name__}: "
            f"{cause}); check the network, or point --endpoint (HF_ENDPOINT) at a reachable "
            "mirror, then rerun: finished work is kept"
        ) from None


# --------------------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishFile:
    """One file of a publish plan.

    Attributes:
        path: path in the repo (and under the root).
        size: bytes.
        sha256: hex sha256 of the content.
        source: the local file, or the content itself (the card is generated for the repo).
        send: whether it is uploaded (False: the repo already holds these bytes).

    """

    path: str
    size: int
    sha256: str
    source: Path | bytes
    send: bool


@dataclass
class PublishPlan:
    """What :func:`publish` sends, keeps and deletes, and in which commits.

    Attributes:
        repo_id: ``ORG/NAME``.
        revision: the branch committed to (None: the default branch).
        files: every file of the root, in commit order.
        deletes: repo paths of shards the manifest no longer lists, and ``rejects.jsonl`` when
            the root has none (deleted in the manifest's commit).
        batches: the commits, each a list of repo paths (``-path`` for a deletion), the card
            last.
        commits: commit ids made so far (filled while publishing).

    """

    repo_id: str
    revision: str | None
    files: list[PublishFile]
    deletes: list[str]
    batches: list[list[str]]
    commits: list[str] = field(default_factory=list)

    @property
    def uploads(self) -> list[PublishFile]:
        """The files that are sent."""
        return [f for f in self.files if f.send]

    def describe(self) -> str:
        """Return the plan as text: what is sent with sizes, what is kept, the commits."""
        send = self.uploads
        kept = [f for f in self.files if not f.send]
        where = self.repo_id + (f"@{self.revision}" if self.revision else "")
        lines = [
            f"publish to {where}: send {len(send)} files ({_size(sum(f.size for f in send))}), "
            f"keep {len(kept)} already there ({_size(sum(f.size for f in kept))}), "
            f"delete {len(self.deletes)}, in {len(self.batches)} commits"
        ]
        for i, batch in enumerate(self.batches, 1):
            lines.append(f"  commit {i}/{len(self.batches)}: {len(batch)} files")
        for f in send:
            lines.append(f"  send   {f.path}  {_size(f.size)}")
        for p in self.deletes:
            lines.append(f"  delete {p}")
        return "\n".join(lines)


def _root_files(root: Path, repo_id: str) -> tuple[dict, list[tuple[str, int, str, Path | bytes]]]:
    """List the files of a root to publish, checking them against the manifest first."""
    from .card import card_text, root_stats
    from .manifest import read_manifest

    manifest = read_manifest(root)
    files: list[tuple[str, int, str, Path | bytes]] = []
    problems = []
    for shard in manifest["shards"]:
        path = root / shard["path"]
        if not path.is_file():
            problems.append(f"{shard['path']}: missing")
        elif path.stat().st_size != shard["bytes"]:
            problems.append(f"{shard['path']}: {path.stat().st_size} bytes, the manifest says "
                            f"{shard['bytes']}")
        else:
            files.append((shard["path"], shard["bytes"], shard["sha256"], path))
    idx = root / INDEX_NAME
    if not idx.is_file():
        problems.append(f"{INDEX_NAME}: missing")
    else:
        digest = sha256_file(idx)
        if digest != manifest["index"]["sha256"]:
            problems.append(f"{INDEX_NAME}: sha256 {digest}, the manifest says "
                            f"{manifest['index']['sha256']}")
        files.append((INDEX_NAME, idx.stat().st_size, digest, idx))
    if problems:
        raise VerifyError(
            f"root={str(root)!r}: cannot publish, {len(problems)} file(s) differ from the "
            f"manifest: {'; '.join(problems[:5])}; run `sarlang-data verify {root}` and rebuild "
            "or re-download the root"
        )
    rejects = root / REJECTS_NAME
    if rejects.is_file():
        files.append((REJECTS_NAME, rejects.stat().st_size, sha256_file(rejects), rejects))
    raw = (root / MANIFEST_NAME).read_bytes()
    files.append((MANIFEST_NAME, len(raw), hashlib.sha256(raw).hexdigest(), root / MANIFEST_NAME))
    card = card_text(manifest, root_stats(root), repo_id=repo_id).encode("utf-8")
    files.append((CARD_NAME, len(card), hashlib.sha256(card).hexdigest(), card))
    return manifest, files


def _remote_tree(api: Any, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Map repo path -> RepoFile of what the repo holds now (empty for a new repo or branch)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        with _calling_hub(f"repo={repo_id!r}: listing its files",
                         getattr(api, "endpoint", None)):
            entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision,
                                         recursive=True)
            return {e.path: e for e in entries if hasattr(e, "blob_id")}
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        return {}


def _already_there(size: int, sha256: str, source: Path | bytes, remote: Any) -> bool:
    """Tell whether a repo file holds exactly these bytes."""
    if remote is None or remote.size != size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == sha256
    return remote.blob_id == git_blob_sha1(source)


def plan_publish(
    root: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    api: Any = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    batch_size: int = MAX_BATCH,
    offline_ok: bool = False,
) -> PublishPlan:
    """Work out what :func:`publish` would send, keep and delete (reads the repo, sends nothing).

    Args:
        root: a local dataset root.
        repo_id: ``ORG/NAME``.
        revision: branch to publish to (None: the default branch).
        api: an ``huggingface_hub.HfApi`` (None makes one from ``endpoint`` and ``token``).
        token: a Hub token; None takes ``huggingface_hub``'s usual sources.
        endpoint: the Hub endpoint (None: ``$HF_ENDPOINT`` or huggingface.co).
        batch_size: files per commit, 1 to 100.
        offline_ok: when the Hub cannot be reached, warn and plan as for an empty repo
            (every file sent, nothing deleted) instead of raising.

    Returns:
        The plan.

    Raises:
        ConfigError: a bad repo id or batch size.
        ManifestError: the root has no valid manifest.
        VerifyError: a shard or the index differs from the manifest.
        RemoteError: the Hub cannot be reached (unless ``offline_ok``).

    """
    _check_repo_id(repo_id)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise ConfigError(f"batch_size={batch_size!r}: must be an integer from 1 to {MAX_BATCH} "
                          "(files per commit)")
    root = Path(root)
    manifest, local = _root_files(root, repo_id)
    codec = manifest.get("build", {}).get("image_codec", "source")
    if codec != "source":
        # the Hub copy keeps the release's bytes so viewers and stock tools see PNG/JPEG
        raise ConfigError(
            f"root={str(root)!r}: built with image_codec={codec!r} (pixel members), which the "
            "Hub copy must not carry; publish the source-codec root it was transcoded from, "
            "and let users pass --image-codec zstd to `sarlang-data download`")
    try:
        remote = _remote_tree(_hf_api(api, endpoint, token), repo_id, revision)
    except RemoteError as e:
        if not offline_ok:
            raise
        log.warning("%s; planned as for an empty repo: every file would be sent and none "
                    "deleted", e)
        remote = {}
    files = [PublishFile(p, n, sha, src, not _already_there(n, sha, src, remote.get(p)))
             for p, n, sha, src in local]
    # shards the manifest no longer lists, and a rejects report the root does not have (a
    # downloaded subset), would otherwise outlive the publish and mislead readers
    ours = {p for p, _, _, _ in local}
    deletes = sorted(p for p in remote
                     if (SHARD_PATH_RE.match(p) or p == REJECTS_NAME) and p not in ours)
    shards = [f.path for f in files if f.send and f.path.startswith("data/")]
    meta = [f.path for f in files if f.send and f.path not in shards and f.path != CARD_NAME]
    batches = [shards[i:i + batch_size] for i in range(0, len(shards), batch_size)]
    tail = [f"-{p}" for p in deletes] + meta
    # the manifest goes in the last of these commits, after every shard it lists
    batches += [tail[i:i + batch_size] for i in range(0, len(tail), batch_size)]
    if any(f.send for f in files if f.path == CARD_NAME):
        batches.append([CARD_NAME])
    return PublishPlan(repo_id, revision, files, deletes, batches)


def publish(
    root: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    dry_run: bool = False,
    api: Any = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    batch_size: int = MAX_BATCH,
) -> PublishPlan:
    """Publish a dataset root to a Hub dataset repo, resumably, the card last.

    Creates the repo (``exist_ok=True``) and the branch when needed, then commits the files the
    repo does not already hold, in batches of at most ``batch_size``: shards, then index,
    rejects and manifest (deleting shards the manifest no longer lists, and a rejects report
    the root does not have), then ``README.md``, generated for ``repo_id`` from the manifest
    and the index. Each file sent is hashed while the commit is prepared and must match the
    manifest's sha256.

    Args:
        root: a local dataset root.
        repo_id: ``ORG/NAME``.
        revision: branch to publish to (None: the default branch).
        private: create the repo private (an existing repo keeps its visibility).
        dry_run: plan only: nothing is created or sent.
        api: an ``huggingface_hub.HfApi`` (None makes one from ``endpoint`` and ``token``).
        token: a Hub token; None takes ``huggingface_hub``'s usual sources (``HF_TOKEN``,
            ``huggingface-cli login``). It is never printed.
        endpoint: the Hub endpoint (None: ``$HF_ENDPOINT`` or huggingface.co).
        batch_size: files per commit, 1 to 100.

    Returns:
        The plan, with ``commits`` filled with the commit ids made.

    Raises:
        ConfigError: a bad repo id or batch size.
        ManifestError: the root has no valid manifest.
        VerifyError: a file differs from the manifest (before or while committing).

    """
    _check_repo_id(repo_id)
    hf = _hf_api(api, endpoint, token)
    if dry_run:
        return plan_publish(root, repo_id, revision=revision, api=hf, batch_size=batch_size,
                            offline_ok=True)
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    with _calling_hub(f"repo={repo_id!r}: creating it", getattr(hf, "endpoint", None)):
        hf.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            hf.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    plan = plan_publish(root, repo_id, revision=revision, api=hf, batch_size=batch_size)
    by_path = {f.path: f for f in plan.files}
    for i, batch in enumerate(plan.batches, 1):
        ops = []
        for item in batch:
            if item.startswith("-"):
                ops.append(CommitOperationDelete(path_in_repo=item[1:]))
                continue
            f = by_path[item]
            src = f.source if isinstance(f.source, bytes) else str(f.source)
            op = CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=src)
            got = op.upload_info.sha256.hex()
            if got != f.sha256:
                raise VerifyError(
                    f"{f.path}: sha256 {got} while preparing the upload, the manifest says "
                    f"{f.sha256}; the file changed or is corrupt: run `sarlang-data verify "
                    f"{root}`, rebuild it, then publish again (what is committed stays)"
                )
            ops.append(op)
        what = ("the card" if batch == [CARD_NAME] else
                f"{len(ops)} files" + (" with the manifest" if MANIFEST_NAME in batch else ""))
        with _calling_hub(f"repo={repo_id!r}: commit {i}/{len(plan.batches)} ({what}; "
                          f"{i - 1} committed before it stay)", getattr(hf, "endpoint", None)):
            info = hf.create_commit(
                repo_id, operations=ops, repo_type="dataset", revision=revision,
                commit_message=f"sarlang-data publish: {what} ({i}/{len(plan.batches)})",
            )
        plan.commits.append(getattr(info, "oid", None) or "")
        log.info("committed %d/%d: %s", i, len(plan.batches), what)
    return plan


# --------------------------------------------------------------------------- remotes


def _run_all(fn, items: Sequence[Any], workers: int) -> list:
    """Run ``fn`` over ``items`` in threads; on the first failure cancel what has not started.

    (``ThreadPoolExecutor.map`` inside ``with`` would run every queued item before the
    error surfaces, so an interrupted download would go on fetching.)
    """
    if not items:
        return []
    ex = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))))
    try:
        futures = [ex.submit(fn, item) for item in items]
        results = [f.result() for f in futures]
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return results


def _no_secrets(url: str) -> str:
    """Drop user info, query and fragment from a URL (the subset manifest records it)."""
    if "://" not in url:
        return url
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


class _FsRemote:
    """A dataset root at a local path or any fsspec URL."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        url = str(url)
        if "://" not in url and "::" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        self.url = url.rstrip("/") if url not in ("/", "") else url
        self.options = dict(storage_options or {})
        self.label = _no_secrets(self.url)
        self.revision = None
        self.commit = None

    def url_of(self, rel: str) -> str:
        from .manifest import join

        return join(self.url, rel)

    def fetch(self, rels: Sequence[str], staging: Path, sizes: Mapping[str, int],
              bar: Any, workers: int) -> dict[str, str]:
        """Stream each file to ``staging/rel`` (via a .partial name); return the sha256s."""
        import fsspec

        def one(rel: str) -> tuple[str, str]:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + PARTIAL_SUFFIX)
            h = hashlib.sha256()
            fs, path = fsspec.core.url_to_fs(self.url_of(rel), **self.options)
            with fs.open(path, "rb", block_size=0) as src, open(tmp, "wb") as out:
                while block := src.read(_READ):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
            os.replace(tmp, dest)
            return rel, h.hexdigest()

        return dict(_run_all(one, rels, workers))

    def range_source(self, rel: str) -> tuple[str, dict]:
        return self.url_of(rel), self.options


class _HubRemote:
    """A dataset repo on the Hub (or a mirror of it), pinned to one commit."""

    def __init__(self, repo_id: str, revision: str | None, endpoint: str | None,
                 token: str | bool | None) -> None:
        self.repo_id = _check_repo_id(repo_id)
        self.revision = revision
        self.endpoint = endpoint
        self.token = token
        self._ranges: dict[str, tuple[str, dict]] = {}
        self._lock = threading.Lock()
        if revision and _COMMIT.match(revision):
            self.commit = revision
        else:
            self.commit = self._resolve(revision)
        self.label = f"hf://datasets/{repo_id}"

    def _resolve(self, revision: str | None) -> str:
        from huggingface_hub.errors import (
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        api = _hf_api(None, self.endpoint, self.token)
        what = f"repo={self.repo_id!r} revision={revision or 'main'!r}"
        try:
            # the default branch by name: mirrors (olah) serve only /revision/{name}
            with _calling_hub(what, self.endpoint):
                sha = api.dataset_info(self.repo_id, revision=revision or "main").sha
        except OfflineModeIsEnabled:
            raise ManifestError(
                f"{what}: HF_HUB_OFFLINE is set, so the revision cannot be resolved to a "
                "commit; unset HF_HUB_OFFLINE, or pass --revision COMMIT_SHA to use files "
                "already cached"
            ) from None
        except RevisionNotFoundError:
            raise ManifestError(f"{what}: no such revision; pass an existing branch, tag or "
                                "commit") from None
        except RepositoryNotFoundError:
            raise ManifestError(
                f"{what}: no such dataset repo, or it is private and no token was found; check "
                "the name, or log in (`huggingface-cli login` or HF_TOKEN)") from None
        if not sha:
            raise ManifestError(f"{what}: the Hub returned no commit; retry")
        return sha

    def url_of(self, rel: str) -> str:
        return f"{self.label}@{self.commit}/{rel}"

    def fetch(self, rels: Sequence[str], staging: Path, sizes: Mapping[str, int],
              bar: Any, workers: int) -> dict[str, str]:
        """``snapshot_download`` the files into ``staging`` (it renames finished files)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        if not rels:
            return {}
        try:
            snapshot_download(
                self.repo_id, repo_type="dataset", revision=self.commit,
                allow_patterns=list(rels), local_dir=str(staging), endpoint=self.endpoint,
                token=self.token, max_workers=max(1, workers),
            )
        except LocalEntryNotFoundError as e:
            raise VerifyError(
                f"{self.label}@{self.commit}: {len(rels)} file(s) could not be fetched and are "
                f"not cached ({str(e).splitlines()[0]}); check the network and HF_HUB_OFFLINE, "
                "then rerun: files that verified are kept"
            ) from None
        bar.update(sum(sizes.get(r, 0) for r in rels if (staging / r).is_file()))
        return {}

    def range_source(self, rel: str) -> tuple[str, dict]:
        """Return the URL a ranged GET goes to (after the Hub's redirect) and its options."""
        with self._lock:
            if rel in self._ranges:
                return self._ranges[rel]
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(self.repo_id, rel, repo_type="dataset", revision=self.commit,
                         endpoint=self.endpoint)
        with _calling_hub(f"{self.label}@{self.commit}/{rel}", self.endpoint):
            meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        location = meta.location or url
        same_host = urllib.parse.urlsplit(location).netloc == urllib.parse.urlsplit(url).netloc
        # a signed CDN URL carries its own authorisation and refuses a second one
        headers = build_hf_headers(token=self.token) if same_host else {}
        out = (location, {"headers": headers})
        with self._lock:
            self._ranges[rel] = out
        return out


def _open_remote(repo: str | None, url: str | None, revision: str | None,
                 endpoint: str | None, token: str | bool | None,
                 storage_options: Mapping[str, Any] | None) -> _FsRemote | _HubRemote:
    if (repo is None) == (url is None):
        raise ConfigError(f"repo={repo!r}, url={url!r}: pass exactly one of them (--repo "
                          "ORG/NAME for the Hub, --url ROOT_URL for any other place)")
    opts = dict(storage_options or {})
    if url is not None:
        m = _HF_URL.match(str(url))
        if m is None:
            if revision:
                raise ConfigError(f"revision={revision!r}: only Hub sources have revisions; "
                                  f"drop it for url={url!r}")
            return _FsRemote(str(url), opts)
        # hf:// through HfFileSystem would take ranges a mirror ignores as silently wrong
        # bytes (tests/test_servers.py); the Hub path checks them
        repo, revision = m.group(1), revision or m.group(2)
        endpoint = endpoint or opts.get("endpoint")
        token = token if token is not None else opts.get("token")
    return _HubRemote(repo, revision, endpoint, token)


# --------------------------------------------------------------------------- download state


class _State:
    """Which output files verified, by size and mtime, so a rerun need not hash them again."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, dict] = {}
        if path is not None and path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    def verified(self, out: Path, rel: str, sha256: str | None = None,
                 fingerprint: str | None = None) -> dict | None:
        """Return the record of ``out/rel`` when it still holds what was verified."""
        p = out / rel
        rec = self.data.get(rel)
        if rec is None or not p.is_file():
            return None
        st = p.stat()
        if fingerprint is not None and rec.get("fingerprint") != fingerprint:
            return None
        if (st.st_size, st.st_mtime_ns) != (rec["size"], rec["mtime_ns"]):
            if sha256_file(p) != rec["sha256"]:
                return None
            self.record(out, rel, rec["sha256"], rec.get("fingerprint"))
        if sha256 is not None and rec["sha256"] != sha256:
            return None
        return self.data[rel]

    def record(self, out: Path, rel: str, sha256: str, fingerprint: str | None = None) -> None:
        st = (out / rel).stat()
        with self.lock:
            self.data[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                              "sha256": sha256, "fingerprint": fingerprint}
            if self.path is not None:
                write_atomic(self.path, json.dumps(self.data, sort_keys=True).encode())


class _Bar:
    """tqdm over bytes, or nothing."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._bar = None
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True)

    def update(self, n: int) -> None:
        with self._lock:
            self.count += n
            if self._bar is not None:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def _hub_bars(enabled: bool) -> Iterator[None]:
    """Turn huggingface_hub's own progress bars off for the block when asked to."""
    if enabled:
        yield
        return
    try:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )
    except ImportError:  # pragma: no cover
        yield
        return
    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


# --------------------------------------------------------------------------- download plan


@dataclass
class DownloadReport:
    """What a download selected, fetched and wrote.

    Attributes:
        source: where it came from (``hf://datasets/ORG/NAME`` or the root URL).
        commit: the Hub commit read (None for other sources).
        mode: ``shards`` (whole shards) or ``exact`` (byte ranges of the selected samples).
        out: the output root.
        filters: the normalised filters.
        selected: ``{"samples", "captions", "qa", "bytes"}`` of the matching samples
            (``bytes``: their tar bytes, headers and padding included).
        shards: remote shards involved: ``[(path, bytes)]``.
        outputs: output shard paths.
        fetch_bytes: shard bytes this run fetches (whole shards, or the selected ranges).
        fetched_bytes: shard bytes actually transferred (after the run).
        meta_bytes: bytes of ``manifest.json`` and ``index.parquet`` read.
        reused: output files kept from an earlier run (already verified).
        ranges_ignored: exact mode fell back to whole shards (the server ignores Range).
        seconds: wall time of the run.
        dry_run: nothing was fetched or written.

    """

    source: str
    commit: str | None
    mode: str
    out: Path
    filters: dict[str, list[str] | None]
    selected: dict[str, int]
    shards: list[tuple[str, int]]
    outputs: list[str] = field(default_factory=list)
    fetch_bytes: int = 0
    fetched_bytes: int = 0
    meta_bytes: int = 0
    reused: int = 0
    ranges_ignored: bool = False
    seconds: float = 0.0
    dry_run: bool = False

    def describe(self) -> str:
        """Return a readable summary (the dry-run plan, or what was done)."""
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in self.filters.items() if v) or "none"
        s = self.selected
        lines = [
            f"{self.source}" + (f"@{self.commit}" if self.commit else "")
            + f" -> {self.out} (mode {self.mode}; filters {shown})",
            f"  selected: {s['samples']:,} samples, {s['captions']:,} captions, "
            f"{s['qa']:,} QA pairs, {_size(s['bytes'])} of sample bytes",
            f"  needs: {_size(self.fetch_bytes)} from {len(self.shards)} shards "
            f"({_size(sum(b for _, b in self.shards))} whole)"
            + (f", plus {_size(self.meta_bytes)} of manifest and index" if self.meta_bytes
               else ""),
        ]
        if self.dry_run:
            for path, n in self.shards:
                lines.append(f"    {path}  {_size(n)}")
        else:
            lines.append(f"  transferred {_size(self.fetched_bytes)} in {self.seconds:.1f} s; "
                         f"kept {self.reused} verified shards from an earlier run; the root "
                         f"holds {len(self.outputs)} shards")
        if self.ranges_ignored:
            lines.append("  the server ignored Range requests: whole shards were fetched and "
                         "the selected samples cut from them")
        return "\n".join(lines)


@dataclass(frozen=True)
class _OutShard:
    path: str
    rows: tuple[dict, ...]
    offsets: tuple[int, ...]  # new offset of each sample in the output tar

    @property
    def bytes(self) -> int:
        return tar_file_bytes(sum(r["size"] for r in self.rows))


def _norm_filters(**filters: Any) -> dict[str, list[str] | None]:
    """Return the filters as the manifest records them: sorted names, None when unset."""
    from .manifest import _as_list

    out: dict[str, list[str] | None] = {}
    for name, norm in (("cities", schema.slug), ("tiers", str.lower), ("splits", str.lower),
                       ("sources", str.lower), ("tasks", str.lower)):
        values = _as_list(filters.get(name))
        out[name] = None if values is None else sorted({norm(str(v).strip()) for v in values})
    return out


def _plan_exact(rows: list[dict], shard_size: int) -> list[_OutShard]:
    """Group selected samples by (split, tier, city) and roll shards over as the builder does."""
    from .shards import plan_rollover

    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["split"], r["tier"], r["city"]), []).append(r)
    out = []
    for (split, tier, city), members in groups.items():
        for n, idx in enumerate(plan_rollover([r["size"] for r in members], shard_size)):
            chosen = [members[i] for i in idx]
            offsets, at = [], 0
            for r in chosen:
                offsets.append(at)
                at += r["size"]
            path = f"data/{split}/{tier}/{city}/{split}-{tier}-{city}-{n:05d}.tar"
            out.append(_OutShard(path, tuple(chosen), tuple(offsets)))
    return sorted(out, key=lambda s: s.path)


def _ranges(rows: Sequence[dict]) -> Iterator[tuple[str, int, int, list[dict]]]:
    """Coalesce adjacent samples of one shard into ranges of at most RANGE_CHUNK bytes."""
    cur: list[dict] = []
    for r in rows:
        if cur:
            last = cur[-1]
            start = cur[0]["offset"]
            if (r["shard"] == last["shard"] and r["offset"] == last["offset"] + last["size"]
                    and r["offset"] + r["size"] - start <= RANGE_CHUNK):
                cur.append(r)
                continue
            yield cur[0]["shard"], start, last["offset"] + last["size"] - start, cur
        cur = [r]
    if cur:
        yield (cur[0]["shard"], cur[0]["offset"],
               cur[-1]["offset"] + cur[-1]["size"] - cur[0]["offset"], cur)


def _members(raw: bytes, row: Mapping[str, Any], where: str) -> list[tuple[str, bytes]]:
    """Split one sample's tar bytes into members, checking them against its index row."""
    from .reader import parse_header

    def bad(cause: str) -> VerifyError:
        return VerifyError(
            f"{where}: sample {row['key']!r} at byte {row['offset']}: {cause}; the bytes that "
            "came back are not the ones index.parquet describes (a server or mirror that "
            "mangles Range, or a changed remote): download again without --exact to fetch "
            "whole shards checked by sha256"
        )

    if len(raw) != row["size"]:
        raise bad(f"got {len(raw)} bytes, expected {row['size']}")
    members: list[tuple[str, bytes]] = []
    at_data: dict[str, tuple[int, int]] = {}
    p = 0
    while p < len(raw):
        try:
            name, size, typeflag = parse_header(raw[p:p + BLOCK])
        except ValueError as e:
            raise bad(f"no valid tar header at +{p} ({e})") from None
        key, _, ext = name.decode("utf-8", "replace").partition(".")
        if key != row["key"] or typeflag not in (b"0", b"\0"):
            raise bad(f"member {name!r} at +{p} is not a file of this sample")
        data = raw[p + BLOCK:p + BLOCK + size]
        if len(data) != size:
            raise bad(f"member {name!r} is cut short")
        members.append((ext, data))
        at_data[ext] = (row["offset"] + p + BLOCK, size)
        p += BLOCK + padded(size)
    checks = [(schema.JSON_EXT, row["json_offset"], row["json_size"]),
              (row["image_ext"], row["image_offset"], row["image_size"])]
    if row.get("tif_offset") is not None:
        checks.append((schema.ORIGINAL_EXT, row["tif_offset"], row["tif_size"]))
    for ext, offset, size in checks:
        if at_data.get(ext) != (offset, size):
            raise bad(f"member .{ext} at {at_data.get(ext)}, index says ({offset}, {size})")
    from .manifest import _check_image

    # the release's bytes against image_sha256, a pixel member against pixel_sha256
    problem = _check_image(f"{row['key']}.{row['image_ext']}", row["image_ext"],
                           dict(members)[row["image_ext"]], row)
    if problem:
        raise bad(problem)
    try:
        record = json.loads(dict(members)[schema.JSON_EXT])
    except ValueError:
        raise bad("its .json member is not JSON") from None
    if record.get("key") != row["key"] or record.get("image_sha256") != row["image_sha256"]:
        raise bad("its .json record names another sample")
    return members


def _fingerprint(shard: _OutShard, remote_sha: Mapping[str, str]) -> str:
    items = [(r["key"], r["shard"], remote_sha[r["shard"]], r["offset"], r["size"])
             for r in shard.rows]
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


# --------------------------------------------------------------------------- download


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r}: is a file, not a folder; pass a folder path")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MANIFEST_NAME).exists() or (out / STAGING).exists()
        if not ours:
            raise BuildError(
                f"out={str(out)!r}: holds files but is neither a dataset root nor an unfinished "
                "download; pass an empty or new folder"
            )


def _clean_out(out: Path, keep: set[str]) -> None:
    """Remove partial files and shards the plan does not name (a root of other filters)."""
    data = out / "data"
    if not data.is_dir():
        return
    for p in sorted(data.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        if rel.endswith(PARTIAL_SUFFIX) or (SHARD_PATH_RE.match(rel) and rel not in keep):
            p.unlink()


def _fetch_verified(remote, rels: Sequence[str],
                    expect: Mapping[str, tuple[int | None, str]], staging: Path, bar: _Bar,
                    workers: int) -> None:
    """Fetch files into ``staging`` unless a verified copy is already there; check each.

    ``expect`` maps each path to (size or None, sha256).
    """

    def good(p: Path, size: int | None, sha: str, digest: str | None = None) -> bool:
        if not p.is_file() or (size is not None and p.stat().st_size != size):
            return False
        return (digest or sha256_file(p)) == sha

    todo = []
    for rel in rels:
        p = staging / rel
        if good(p, *expect[rel]):
            continue
        if p.exists():
            p.unlink()  # so no fetcher takes a bad copy for a finished download
        todo.append(rel)
    sizes = {r: expect[r][0] or 0 for r in todo}
    digests = remote.fetch(todo, staging, sizes, bar, workers)
    # the offline trap: snapshot_download in offline mode returns without error even when
    # nothing was fetched, so check that every expected file arrived
    missing = [r for r in todo if not (staging / r).is_file()]
    if missing:
        raise VerifyError(
            f"{remote.label}: {len(missing)} of {len(todo)} requested file(s) did not arrive "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); huggingface_hub "
            "returns without error when offline (HF_HUB_OFFLINE=1) or when the Hub cannot be "
            "reached: check the network and HF_HUB_OFFLINE, then rerun (verified files are kept)"
        )
    problems = []
    for rel in todo:
        p = staging / rel
        size, sha = expect[rel]
        if not good(p, size, sha, digests.get(rel)):
            problems.append(f"{rel}: expected {size if size is not None else '?'} bytes sha256 "
                            f"{sha}, got {p.stat().st_size} bytes sha256 {sha256_file(p)}")
            p.unlink()
    if problems:
        raise VerifyError(f"{remote.label}: {len(problems)} fetched file(s) differ from the "
                          f"manifest: {'; '.join(problems[:5])}; rerun to fetch them again; "
                          "if it persists the remote root is inconsistent")


def _read_meta(remote, staging: Path, workers: int) -> tuple[dict, bytes, Any, int]:
    """Fetch and check the remote manifest and index; return (manifest, its bytes, index, n)."""
    import pyarrow.parquet as pq

    dest = staging / MANIFEST_NAME
    if isinstance(remote, _FsRemote) and dest.exists():
        dest.unlink()  # always read the remote's current manifest
    with _no_bar() as bar:
        try:
            remote.fetch([MANIFEST_NAME], staging, {}, bar, workers)
        except FileNotFoundError:
            raise ManifestError(
                f"root={remote.label!r}: no {MANIFEST_NAME}, so it is not a (complete) "
                "sarlang-data dataset root; check the URL or repo") from None
    if not dest.is_file():
        raise VerifyError(
            f"{remote.label}: {MANIFEST_NAME} did not arrive; huggingface_hub returns without "
            "error when offline (HF_HUB_OFFLINE=1): check the network and HF_HUB_OFFLINE")
    raw = dest.read_bytes()
    try:
        manifest = validate_manifest(json.loads(raw), f"{remote.label}/{MANIFEST_NAME}")
    except ValueError as e:
        raise ManifestError(f"{remote.label}/{MANIFEST_NAME}: not valid JSON ({e}); the remote "
                            "root is broken: rebuild and publish it again") from None
    idx = manifest["index"]
    with _no_bar() as bar:
        # the manifest records the index's sha256 and rows, not its size
        _fetch_verified(remote, [INDEX_NAME], {INDEX_NAME: (None, idx["sha256"])}, staging,
                        bar, workers)
    index = pq.read_table(staging / INDEX_NAME)
    if index.num_rows != idx["rows"]:
        raise VerifyError(f"{remote.label}/{INDEX_NAME}: {index.num_rows} rows, the manifest "
                          f"says {idx['rows']}; the remote root is inconsistent: rebuild it")
    return manifest, raw, index, len(raw) + (staging / INDEX_NAME).stat().st_size


@contextmanager
def _no_bar() -> Iterator[_Bar]:
    bar = _Bar(0, "", False)
    try:
        yield bar
    finally:
        bar.close()


def download(
    repo: str | None = None,
    *,
    out: str | os.PathLike,
    url: str | None = None,
    cities: str | Iterable[str] | None = None,
    tiers: str | Iterable[str] | None = None,
    splits: str | Iterable[str] | None = None,
    sources: str | Iterable[str] | None = None,
    tasks: str | Iterable[str] | None = None,
    exact: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    workers: int = 4,
    progress: bool = True,
    image_codec: str = "source",
    zstd_jpeg: bool = False,
) -> DownloadReport:
    """Download the samples of a dataset root that match the filters, as a dataset root.

    Reads the remote ``manifest.json`` and ``index.parquet`` (checked by sha256), selects the
    samples matching every filter given (a sample matches ``tasks`` when it has a QA pair of
    one of them, or a caption for ``captions``; it comes with all of its texts), and fetches:

    - by default the whole shards that hold them, byte-identical to the remote (sha256 of the
      manifest); the output's ``manifest.json`` lists those shards, and its ``subset`` says
      how many of their samples match;
    - with ``exact`` only the byte ranges of the matching samples (adjacent samples coalesced
      into one request), each checked (HTTP status and length, tar headers, image sha256) and
      written into new local shards, so the output holds exactly the matching samples. When
      the server ignores Range (a Hub mirror such as olah, an HTTP server without range
      support) or a shard is a ``.tar.zst``, those shards are fetched whole and verified, the
      samples cut from them, and a warning says so: the output is the same.

    Files are written under temporary names and renamed once verified; a rerun after an
    interruption keeps every verified file and fetches the rest. ``OUT/.sarlang-download/``
    holds the state until the download finishes. The manifest is written last.

    Args:
        repo: a Hub dataset repo ``ORG/NAME`` (or pass ``url``).
        out: the folder to write the subset root to (new, empty, or an earlier download).
        url: a dataset root: a local path or any fsspec URL (``https://``, ``s3://``,
            ``hf://datasets/ORG/NAME@REV``, ...).
        cities: city slugs.
        tiers: resolution tiers (``vhr``, ``hr``, ``mr``).
        splits: ``train``, ``test``.
        sources: ``sardet100k``, ``spacenet6``, ``dfc2023``, ``oem_sar``.
        tasks: VQA task names, or ``captions``.
        exact: fetch only the selected samples' bytes and write new shards.
        revision: Hub branch, tag or commit (resolved to a commit once, so every file comes
            from the same commit).
        dry_run: read manifest and index and report what would be fetched; nothing else is
            fetched and nothing is written.
        endpoint: Hub endpoint (None: ``$HF_ENDPOINT`` or huggingface.co).
        token: Hub token; None takes ``huggingface_hub``'s usual sources; False sends none.
        storage_options: fsspec options for ``url``.
        workers: parallel fetches.
        progress: show progress bars.
        image_codec: ``source`` keeps the published bytes; ``zstd`` lands the subset ready for
            fast training: it is downloaded (and verified) into ``OUT.source-download`` beside
            ``out``, transcoded into ``out`` with :func:`transcode.transcode_root`, and the
            staging copy removed. A rerun after an interruption resumes the staging download.
        zstd_jpeg: with ``image_codec="zstd"``, store JPEG sources as pixels too.

    Returns:
        A :class:`DownloadReport`.

    Raises:
        ConfigError: an unknown filter name, filters that match nothing, or bad arguments.
        ManifestError: the source has no usable manifest or cannot be reached.
        VerifyError: a file or sample that arrived differs from the manifest or index, or
            files that never arrived (offline).
        RangeError: an exact-mode range read failed after ranges were found to work.
        BuildError: ``out`` is a file or an unrelated non-empty folder.

    """
    t0 = time.monotonic()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers={workers!r}: must be a positive integer; pass e.g. 4")
    if out is None:
        raise ConfigError("out=None: pass the folder to write the subset to, e.g. "
                          "out='./sarlang-rotterdam'")
    out = Path(out)
    if image_codec not in ("source", "zstd"):
        raise ConfigError(f"image_codec={image_codec!r}: must be 'source' or 'zstd'")
    if image_codec != "source":
        return _download_transcoded(
            out, image_codec, zstd_jpeg, dry_run, progress, workers,
            dict(repo=repo, url=url, cities=cities, tiers=tiers, splits=splits,
                 sources=sources, tasks=tasks, exact=exact, revision=revision,
                 endpoint=endpoint, token=token, storage_options=storage_options))
    remote = _open_remote(repo, url, revision, endpoint, token, storage_options)
    if not dry_run:
        _check_out(out)
    tmp_ctx = _staging(out, dry_run)
    with tmp_ctx as staging, _hub_bars(progress):
        manifest, manifest_raw, index, meta_bytes = _read_meta(remote, staging, workers)
        picked = select_samples(manifest, index, splits=splits, tiers=tiers, cities=cities,
                                sources=sources, tasks=tasks)
        filters = _norm_filters(cities=cities, tiers=tiers, splits=splits,
                                sources=sources, tasks=tasks)
        if picked.num_rows == 0:
            raise ConfigError(
                f"{ {k: v for k, v in filters.items() if v} }: no sample of {remote.label} "
                "matches these filters together; loosen them (`sarlang-data stats ROOT` lists "
                "what a root holds)")
        cols = ["key", "shard", "offset", "size", "split", "tier", "city", "source",
                *(f"n_{k}" for k in schema.CAPTION_KINDS), *(f"n_{t}" for t in schema.TASKS)]
        sel = picked.select(cols).to_pylist()
        shard_by_path = {s["path"]: s for s in manifest["shards"]}
        involved = sorted({r["shard"] for r in sel})
        selected = {
            "samples": len(sel),
            "captions": sum(r[f"n_{k}"] for r in sel for k in schema.CAPTION_KINDS),
            "qa": sum(r[f"n_{t}"] for r in sel for t in schema.TASKS),
            "bytes": sum(r["size"] for r in sel),
        }
        report = DownloadReport(
            source=remote.label, commit=remote.commit, mode="exact" if exact else "shards",
            out=out, filters=filters, selected=selected,
            shards=[(p, shard_by_path[p]["bytes"]) for p in involved],
            meta_bytes=meta_bytes, dry_run=dry_run,
        )
        report.fetch_bytes = selected["bytes"] if exact else sum(b for _, b in report.shards)
        if dry_run:
            report.seconds = time.monotonic() - t0
            return report
        subset = {
            "from": remote.label, "revision": remote.revision, "commit": remote.commit,
            "manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
            "mode": report.mode, "filters": filters, "selected": selected,
        }
        state = _State(staging / "verified.json")
        previous = _previous_shards(out, subset["manifest_sha256"])
        old = out / MANIFEST_NAME
        if old.exists():
            old.unlink()  # the root is incomplete until the new manifest is written
        if exact:
            table, entries = _download_exact(remote, manifest, picked, sel, out, staging,
                                             state, report, workers, progress, previous)
        else:
            table, entries = _download_shards(remote, manifest, index, involved, out, staging,
                                              state, report, workers, progress)
        _write_root(out, manifest, table, entries, subset)
        report.seconds = time.monotonic() - t0
    return report


@contextmanager
def _staging(out: Path, dry_run: bool) -> Iterator[Path]:
    """Yield the state folder: OUT/.sarlang-download (removed on success), or a temporary one."""
    if dry_run:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="sarlang-dry-run-") as tmp:
            yield Path(tmp)
        return
    staging = out / STAGING
    created_out, created = not out.exists(), not staging.exists()
    staging.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
    except (ConfigError, ManifestError):
        # raised while planning, before any shard was fetched: leave no trace
        if created_out:
            shutil.rmtree(out, ignore_errors=True)
        elif created:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _download_shards(remote, manifest: dict, index, involved: list[str], out: Path,
                     staging: Path, state: _State, report: DownloadReport, workers: int,
                     progress: bool) -> tuple[Any, list[dict]]:
    """Whole-shard mode: fetch, verify and keep the shards that hold selected samples."""
    import pyarrow as pa
    import pyarrow.compute as pc

    entries = [s for s in manifest["shards"] if s["path"] in set(involved)]
    _clean_out(out, set(involved))
    todo = []
    for s in entries:
        if state.verified(out, s["path"], s["sha256"]) is not None:
            report.reused += 1
            continue
        p = out / s["path"]
        if p.is_file() and p.stat().st_size == s["bytes"] and sha256_file(p) == s["sha256"]:
            state.record(out, s["path"], s["sha256"])
            report.reused += 1
            continue
        todo.append(s)
    expect = {s["path"]: (s["bytes"], s["sha256"]) for s in todo}
    bar = _Bar(sum(s["bytes"] for s in todo), "shards", progress and isinstance(remote,
                                                                                 _FsRemote))
    try:
        _fetch_verified(remote, [s["path"] for s in todo], expect, staging, bar, workers)
    finally:
        bar.close()
    report.fetched_bytes += bar.count
    for s in todo:
        dest = out / s["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / s["path"], dest)
        state.record(out, s["path"], s["sha256"])
    report.outputs = [s["path"] for s in entries]
    rows = index.filter(pc.is_in(index["shard"], value_set=pa.array(involved, pa.string())))
    return rows, [dict(s) for s in entries]


def _previous_shards(out: Path, remote_manifest_sha256: str) -> dict[str, tuple[list, str]]:
    """Shards of an earlier exact download of the same remote into ``out``: path -> (keys, sha).

    Only a finished earlier download (its manifest is there) of the very same remote manifest
    counts: then a shard with the same path and keys holds the same bytes, if its file still
    hashes to the recorded sha256.
    """
    import pyarrow.parquet as pq

    try:
        old = json.loads((out / MANIFEST_NAME).read_text())
        sub = old.get("subset") or {}
        if sub.get("mode") != "exact" or sub.get("manifest_sha256") != remote_manifest_sha256:
            return {}
        idx = pq.read_table(out / INDEX_NAME, columns=["key", "shard"]).to_pydict()
    except (OSError, ValueError, KeyError, AttributeError):
        return {}
    keys: dict[str, list[str]] = {}
    for key, shard in zip(idx["key"], idx["shard"], strict=True):
        keys.setdefault(shard, []).append(key)
    return {s["path"]: (keys.get(s["path"], []), s["sha256"]) for s in old.get("shards", [])}


def _download_exact(remote, manifest: dict, picked, sel: list[dict], out: Path,
                    staging: Path, state: _State, report: DownloadReport, workers: int,
                    progress: bool, previous: Mapping[str, tuple[list, str]]
                    ) -> tuple[Any, list[dict]]:
    """Exact mode: fetch the selected samples' byte ranges and write new shards."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .reader import read_range

    cols = ["key", "shard", "offset", "size", "json_offset", "json_size", "image_offset",
            "image_size", "image_ext", "tif_offset", "tif_size", "image_sha256", "split",
            "tier", "city"]
    cols += [c for c in (PIXEL_COLUMN,) if c in picked.column_names]
    full = picked.select(cols).to_pylist()
    shard_by_path = {s["path"]: s for s in manifest["shards"]}
    remote_sha = {p: s["sha256"] for p, s in shard_by_path.items()}
    plan = _plan_exact(full, manifest["build"]["shard_size"])
    _clean_out(out, {s.path for s in plan})
    fingerprints = {s.path: _fingerprint(s, remote_sha) for s in plan}
    for s in plan:
        keys, sha = previous.get(s.path, (None, None))
        if (keys == [r["key"] for r in s.rows] and s.path not in state.data
                and (out / s.path).is_file() and sha256_file(out / s.path) == sha):
            state.record(out, s.path, sha, fingerprints[s.path])
    todo = [s for s in plan if state.verified(out, s.path, None, fingerprints[s.path]) is None]
    report.reused = len(plan) - len(todo)
    need = sorted({r["shard"] for s in todo for r in s.rows})

    # shards read locally: .tar.zst (ranges refer to the decompressed stream), and every one
    # when the server does not honour Range
    local = {p for p in need if p.endswith(".zst")}
    ranged = [p for p in need if p not in local]
    cached: dict[tuple[str, int, int], bytes] = {}
    if ranged:
        # the first range read doubles as the probe: a server that ignores Range (status 200,
        # wrong length) or sends other bytes makes it fail, and costs no extra request
        first = next(s for s in todo if any(r["shard"] in ranged for r in s.rows))
        src, start, length, rows = next(g for g in _ranges(first.rows) if g[0] in ranged)
        try:
            url, opts = remote.range_source(src)
            data = read_range(url, start, length, opts)
            _members(data[:rows[0]["size"]], rows[0], remote.url_of(src))
        except Exception as e:  # noqa: BLE001 - any failure here means: fetch whole shards
            log.warning("%s: byte ranges cannot be used (%s: %s); fetching the %d shard(s) "
                        "that hold the selection whole instead and cutting the samples from "
                        "them", remote.label, type(e).__name__, str(e).split("; ")[0],
                        len(ranged))
            report.ranges_ignored = True
            local |= set(ranged)
        else:
            cached[(src, start, length)] = data
    if local:
        whole = staging / "whole"
        expect = {p: (shard_by_path[p]["bytes"], shard_by_path[p]["sha256"]) for p in local}
        bar = _Bar(sum(v[0] for v in expect.values()), "whole shards",
                   progress and isinstance(remote, _FsRemote))
        try:
            _fetch_verified(remote, sorted(local), expect, whole, bar, workers)
        finally:
            bar.close()
        report.fetched_bytes += bar.count
        for p in sorted(local):
            if p.endswith(".zst"):
                _decompress(whole / p, whole / (p + ".tar"))

    def read(shard: str, offset: int, size: int) -> bytes:
        if (shard, offset, size) in cached:
            return cached.pop((shard, offset, size))
        if shard in local:
            path = staging / "whole" / (shard + ".tar" if shard.endswith(".zst") else shard)
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(size)
        url, opts = remote.range_source(shard)
        return read_range(url, offset, size, opts)

    bar = _Bar(sum(r["size"] for s in todo for r in s.rows), "samples", progress)
    fetched = [0]
    lock = threading.Lock()

    def write(shard: _OutShard) -> None:
        with TarWriter(out / shard.path) as tw:
            for src, start, length, rows in _ranges(shard.rows):
                data = read(src, start, length)
                if src not in local:
                    with lock:
                        fetched[0] += len(data)
                where = remote.url_of(src)
                for r in rows:
                    raw = data[r["offset"] - start:r["offset"] - start + r["size"]]
                    span = tw.add_sample(r["key"], _members(raw, r, where))
                    if span.size != r["size"]:
                        raise VerifyError(f"{shard.path}: sample {r['key']!r} takes {span.size} "
                                          f"bytes rewritten, {r['size']} in {src}; report this")
                bar.update(length)
            result = tw.close()
        state.record(out, shard.path, result.sha256, fingerprints[shard.path])

    try:
        _run_all(write, todo, workers)
    finally:
        bar.close()
    report.fetched_bytes += fetched[0]
    if local:
        shutil.rmtree(staging / "whole", ignore_errors=True)
    report.outputs = [s.path for s in plan]

    # the index: the selected rows, moved to their new shards and offsets
    new_shard, delta = {}, {}
    for s in plan:
        for r, off in zip(s.rows, s.offsets, strict=True):
            new_shard[r["key"]] = s.path
            delta[r["key"]] = off - r["offset"]
    keys = picked["key"].to_pylist()
    order = sorted(range(len(keys)), key=lambda i: (new_shard[keys[i]], i))
    table = picked.take(pa.array(order, pa.int64()))
    keys = [keys[i] for i in order]
    d = pa.array([delta[k] for k in keys], pa.int64())
    for col in ("offset", "json_offset", "image_offset", "tif_offset"):
        table = table.set_column(table.schema.get_field_index(col), col,
                                 pc.add(table[col], d))
    table = table.set_column(table.schema.get_field_index("shard"), "shard",
                             pa.array([new_shard[k] for k in keys], pa.string()))
    by_key = {r["key"]: r for r in sel}
    entries = []
    for s in plan:
        rec = state.data[s.path]
        configs = dict.fromkeys(CONFIGS, 0)
        for r in s.rows:
            for name, n in rows_per_config(_light_record(by_key[r["key"]])).items():
                configs[name] += n
        entries.append({
            "path": s.path, "split": s.rows[0]["split"], "tier": s.rows[0]["tier"],
            "cities": [s.rows[0]["city"]],
            "sources": sorted({by_key[r["key"]]["source"] for r in s.rows}),
            "samples": len(s.rows), "bytes": rec["size"], "sha256": rec["sha256"],
            "configs": configs,
        })
    return table, entries


def _light_record(row: Mapping[str, Any]) -> dict:
    """Return a record with just what ``Config.rows_in`` reads, from an index row's counts."""
    return {
        "tier": row["tier"],
        "captions": [{"kind": k} for k in schema.CAPTION_KINDS for _ in range(row[f"n_{k}"])],
        "qa": [{"task": t} for t in schema.TASKS for _ in range(row[f"n_{t}"])],
    }


def _decompress(src: Path, dest: Path) -> None:
    import zstandard

    tmp = dest.with_name(dest.name + PARTIAL_SUFFIX)
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        zstandard.ZstdDecompressor().copy_stream(fin, fout)
    os.replace(tmp, dest)


def _write_root(out: Path, source_manifest: Mapping[str, Any], table, entries: list[dict],
                subset: dict) -> dict:
    """Write index, card and (last) manifest of the subset root."""
    from .card import write_card

    entries = sorted(entries, key=lambda s: s["path"])
    idx = index_table_bytes(table)
    write_atomic(out / INDEX_NAME, idx)
    rejects = out / REJECTS_NAME
    if rejects.exists():
        rejects.unlink()  # a rejects report of the source build does not describe the subset
    config_rows = {name: dict.fromkeys(schema.SPLITS, 0) for name in CONFIGS}
    for s in entries:
        for name, n in s["configs"].items():
            config_rows[name][s["split"]] += n
    import pyarrow.compute as pc

    n = table.num_rows
    counts = {
        "samples": n,
        "captions": int(sum(pc.sum(table[f"n_{k}"]).as_py() or 0
                            for k in schema.CAPTION_KINDS)),
        "qa": int(sum(pc.sum(table[f"n_{t}"]).as_py() or 0 for t in schema.TASKS)),
        "originals": n - table["tif_offset"].null_count,
        "rejects": 0,
        "bytes": sum(s["bytes"] for s in entries),
    }
    manifest = {
        "format": schema.FORMAT_NAME,
        "format_version": schema.FORMAT_VERSION,
        "build": source_manifest["build"],
        "counts": counts,
        "configs": config_rows,
        "shards": entries,
        "index": {"path": INDEX_NAME, "rows": n, "sha256": hashlib.sha256(idx).hexdigest()},
        "rejects": {},
        "subset": subset,
    }
    validate_manifest(manifest, "the subset manifest being written")
    write_card(out, manifest)
    write_atomic(out / MANIFEST_NAME, manifest_bytes(manifest))
    return manifest


def _download_transcoded(out: Path, image_codec: str, zstd_jpeg: bool, dry_run: bool,
                         progress: bool, workers: int, fetch: dict[str, Any]) -> DownloadReport:
    """Download as published into a staging root beside ``out``, then transcode into ``out``."""
    from .transcode import transcode_root

    staging = out.with_name(out.name + ".source-download")
    report = download(out=staging, dry_run=dry_run, progress=progress, workers=workers, **fetch)
    if dry_run:
        report.out = out
        return report
    transcode_root(staging, out, image_codec=image_codec, zstd_jpeg=zstd_jpeg,
                   workers=min(workers, os.cpu_count() or 1), progress=progress)
    shutil.rmtree(staging)
    report.out = out
    return report
