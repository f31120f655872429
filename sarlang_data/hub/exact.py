"""``download(..., exact=True)``: only the selected samples' byte ranges, rewritten into new shards.

Ranges are read with :func:`sarlang_data.remote.read_range` (status and length checked), every
sample is checked by its tar headers and image sha256, and the new shards are planned by
``shard_size`` as a build plans them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schema
from ..configs import CONFIGS, rows_per_config
from ..errors import VerifyError
from ..format.manifest import (
    PIXEL_COLUMN,
)
from ..format.tar import BLOCK, PARTIAL_SUFFIX, TarWriter, padded, tar_file_bytes
from .client import RANGE_CHUNK, _Bar, _FsRemote, _run_all, sha256_file
from .fetch import DownloadReport, _clean_out, _fetch_verified, _State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _OutShard:
    path: str
    rows: tuple[dict, ...]
    offsets: tuple[int, ...]  # new offset of each sample in the output tar

    @property
    def bytes(self) -> int:
        return tar_file_bytes(sum(r["size"] for r in self.rows))


def _plan_exact(rows: list[dict], shard_size: int) -> list[_OutShard]:
    """Group selected samples by (split, tier, city) and roll shards over as the builder does."""
    from ..format.tar import plan_rollover

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
    from ..stream.reader import parse_header

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
    from ..format.verify import _check_image

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


def _download_exact(remote, manifest: dict, picked, sel: list[dict], out: Path,
                    staging: Path, state: _State, report: DownloadReport, workers: int,
                    progress: bool, previous: Mapping[str, tuple[list, str]]
                    ) -> tuple[Any, list[dict]]:
    """Exact mode: fetch the selected samples' byte ranges and write new shards."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..remote import read_range

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
