"""What every download shares: the report, resumable state, verified fetching, output checks."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError, VerifyError
from ..format.manifest import (
    MANIFEST_NAME,
    SHARD_PATH_RE,
)
from ..format.tar import PARTIAL_SUFFIX, write_atomic
from .client import STAGING, _Bar, _size, sha256_file

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
        tasks = self.filters.get("tasks")
        if tasks:
            lines.append(whole_samples_note(tasks, s))
        return "\n".join(lines)


def whole_samples_note(tasks: list[str], selected: dict[str, int]) -> str:
    """Say that a ``tasks`` filter brings whole samples, and how to read only those texts."""
    config = tasks[0] if tasks[0] != "captions" else "captions"
    return (f"  note: --task keeps whole samples: each selected image comes with ALL of its "
            f"texts ({selected['captions']:,} captions and {selected['qa']:,} QA pairs in all, "
            f"not only {', '.join(tasks)}); read only the asked texts with their config, e.g. "
            f"sarlang_data.load_dataset(OUT, {config!r})")


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
