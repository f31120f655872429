"""Publish a dataset root to the Hub, in batched commits, resumable, the card last.

:func:`publish` goes through ``huggingface_hub``: ``create_repo(exist_ok=True)``, then
``create_commit`` in batches of at most 100 files: the shards first, then ``index.parquet``,
``rejects.jsonl`` and ``manifest.json`` (with the deletion of shards the manifest no longer
lists), and the card last, so the card's configs never point at files that are not there yet.
Files whose sha256 already stands in the repo (the LFS sha256, or the git blob id for small
files) are not sent again, so a rerun after a failure sends only what is missing. Tokens come
from ``huggingface_hub``'s usual sources and never appear in output.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RemoteError, VerifyError
from ..format.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    SHARD_PATH_RE,
)
from .client import (
    CARD_NAME,
    MAX_BATCH,
    _calling_hub,
    _check_repo_id,
    _hf_api,
    _size,
    git_blob_sha1,
    sha256_file,
)

log = logging.getLogger(__name__)


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
    from ..format.card import card_text, root_stats
    from ..format.manifest import read_manifest
    from ..format.pictures import card_pictures

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
    for f in (manifest.get("stock") or {}).get("files", []):  # the stock-datasets mirror
        path = root / f["path"]
        if not path.is_file() or path.stat().st_size != f["bytes"]:
            problems.append(f"{f['path']}: missing or not {f['bytes']} bytes (rewrite it with "
                            f"`sarlang-data stock {root}`)")
        else:
            files.append((f["path"], f["bytes"], f["sha256"], path))
    if not (manifest.get("stock") or {}).get("files"):
        log.warning("%s has no stock mirror: the Hub viewer and stock datasets will see raw "
                    "WebDataset columns (png/jpg); run `sarlang-data stock %s` first for one "
                    "image column", root, root)
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
    st = root_stats(root)
    # the card's pictures, rendered afresh (pure functions of the root, so equal to what the
    # build wrote beside the root's card); they go before the card that shows them
    pictures = card_pictures(root, st)
    for rel, data in pictures.items():
        files.append((rel, len(data), hashlib.sha256(data).hexdigest(), data))
    card = card_text(manifest, st, repo_id=repo_id, pictures=list(pictures)).encode("utf-8")
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


def _offline_reason(api: Any) -> str | None:
    """Why a dry run should not ask the Hub at all, or None: offline mode, or no server.

    ``huggingface_hub`` raises at once under ``HF_HUB_OFFLINE``, and retries a refused
    connection for ~24 s; one quick probe of the endpoint tells the same in well under a second.
    """
    from huggingface_hub import HfApi

    if not isinstance(api, HfApi) or type(api).list_repo_tree is not HfApi.list_repo_tree:
        return None  # a caller's own client (a test double, a mirror's) decides for itself
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set (offline mode), so the Hub is not asked"
    endpoint = getattr(api, "endpoint", None)
    if isinstance(endpoint, str):
        from ..remote import http_unreachable

        cause = http_unreachable(endpoint, timeout=5.0)
        if cause is not None and cause.startswith("cannot connect"):
            return f"the Hub at {endpoint} cannot be reached ({cause}), so it is not asked"
    return None


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
    hf = _hf_api(api, endpoint, token)
    offline = _offline_reason(hf) if offline_ok else None
    if offline is not None:
        log.warning("repo=%r: %s; planned as for an empty repo: every file would be sent and "
                    "none deleted", repo_id, offline)
        remote: dict[str, Any] = {}
    else:
        try:
            remote = _remote_tree(hf, repo_id, revision)
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
