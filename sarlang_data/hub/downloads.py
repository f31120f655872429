"""Download a subset of a remote root by city, tier, split, source or task: verified, resumable.

:func:`download` reads the remote ``manifest.json`` and ``index.parquet``,
selects the samples that match the filters, and fetches either the whole shards that hold them
(``snapshot_download`` with ``allow_patterns`` and the resolved commit for the Hub, fsspec for
other URLs) or, with ``exact=True``, only their byte ranges, checked by status and length and
rewritten into new local shards. Every shard is verified by sha256 (whole shards) or every
sample by its tar headers and image sha256 (exact), files are written under temporary names,
and a rerun keeps what verified. The result is a dataset root (shards, index, card, and the
manifest written last) that ``load_dataset(DIR, ...)`` and ``manifest.verify(DIR)`` read
offline; its manifest's ``subset`` says where it came from and what was selected
(``docs/format.md``).


Exact (byte-range) downloads are :mod:`sarlang_data.hub.exact`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import schema
from ..configs import CONFIGS
from ..errors import ConfigError, ManifestError, VerifyError
from ..format.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    REJECTS_NAME,
    index_table_bytes,
    manifest_bytes,
    select_samples,
    validate_manifest,
)
from ..format.tar import write_atomic
from .client import STAGING, _Bar, _FsRemote, _hub_bars, _open_remote, sha256_file
from .exact import _download_exact
from .fetch import (
    DownloadReport,
    _check_out,
    _clean_out,
    _fetch_verified,
    _State,
    whole_samples_note,
)

log = logging.getLogger(__name__)


def _norm_filters(**filters: Any) -> dict[str, list[str] | None]:
    """Return the filters as the manifest records them: sorted names, None when unset."""
    from ..format.manifest import _as_list

    out: dict[str, list[str] | None] = {}
    for name, norm in (("cities", schema.slug), ("tiers", str.lower), ("splits", str.lower),
                       ("sources", str.lower), ("tasks", str.lower)):
        values = _as_list(filters.get(name))
        out[name] = None if values is None else sorted({norm(str(v).strip()) for v in values})
    return out


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
        if filters.get("tasks"):
            log.warning("%s", whole_samples_note(filters["tasks"], selected).strip())
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


def _write_root(out: Path, source_manifest: Mapping[str, Any], table, entries: list[dict],
                subset: dict) -> dict:
    """Write index, card and (last) manifest of the subset root."""
    from ..format.card import write_card

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
        # the source's: a subset holds the same members (its pixel version included)
        "format_version": source_manifest["format_version"],
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
    from ..ingest.transcode import transcode_root

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
