"""What publish and download share: the Hub API client, remotes, hashes, progress bars.

A remote is a Hub dataset repo or any fsspec root. Tokens come from ``huggingface_hub``'s usual
sources and never appear in output; connection, timeout and HTTP failures become
:class:`~sarlang_data.errors.RemoteError` naming the endpoint, the cause and the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BuildError, ConfigError, ManifestError, RemoteError, VerifyError
from ..format.tar import PARTIAL_SUFFIX

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
        from ..remote import join

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
