"""Streaming over HTTP: memory along a long stream, time and bytes to the first row, rates.

1. Builds (or reuses, with ``--work``) a synthetic root of the ``full`` preset: 118,331 images
   and 1,126,277 texts (``--image-size`` 32 px by default, to keep the build short), and
   serves it with nginx on 127.0.0.1 (``tests/servers.py``).
2. Time and bytes to the first row: ``load_dataset(URL, "vqa", streaming=True)``, then
   ``next(iter(...))``, in a fresh process state (no fsspec instance cache).
3. Memory: streams every ``vqa`` row (1,080,627, over 100,000 texts as issue 4 asks) through
   a ``DataLoader`` with 2 workers, sampling the RSS (and PSS, which counts pages shared
   after fork once) of the main process and the workers every 0.2 s. Records the peak of
   their sum up to 10% of the rows and up to 100%, and the RSS at those points; the target
   is the 100% peak within 10% of the 10% peak.
4. Rates: rows/s and images/s (distinct samples) with 0, 1 and 2 workers, images as bytes,
   decoded to PIL, or decoded and collated to tensors (see :func:`rate`), each for
   ``--rate-seconds`` over the same HTTP root, and over a local root of the ``preview``
   preset at 512 px (``--rate-root`` to use another root).

Writes ``bench/results/bench_memory-*.json`` and ``bench/results/memory-latest.json``.

Usage::

    python bench/bench_memory.py                      # ~6 min on 2 cores, ~1 GB of disk
    python bench/bench_memory.py --work /tmp/memwork  # reuse the root built last time
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from sarlang_data.adapters import hf  # noqa: E402
from sarlang_data.format.manifest import read_manifest  # noqa: E402


def make_root(work: Path, preset: str, image_size: int) -> Path:
    from sarlang_data.ingest import synth
    from sarlang_data.ingest.build import BuildOptions, build

    syn, root = work / f"syn-{preset}-{image_size}", work / f"root-{preset}-{image_size}"
    if (root / "manifest.json").exists():
        return root
    t0 = time.perf_counter()
    if not (syn / "truth" / "summary.json").exists():
        synth.generate(syn, preset=preset, seed=0, image_size=image_size, progress=True,
                       workers=2)
    build(syn / "SARLANG_1M", root, BuildOptions(gsd_table=syn / "gsd_table.csv", workers=2),
          progress=True)
    print(f"built {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


# --------------------------------------------------------------------------- memory


def _kib(pid: int, field: str, path: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sampler:
    """Samples RSS and PSS (KiB) of this process and the given workers in a thread."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.pids: list[int] = []
        self.peak_rss = 0
        self.peak_pss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> dict:
        pids = [os.getpid(), *self.pids]
        rss = [_kib(p, "VmRSS") for p in pids]
        pss = [_kib(p, "Pss", "smaps_rollup") for p in pids]
        return {"rss_kib": rss, "pss_kib": pss, "rss_sum_kib": sum(rss), "pss_sum_kib": sum(pss)}

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            s = self.now()
            self.peak_rss = max(self.peak_rss, s["rss_sum_kib"])
            self.peak_pss = max(self.peak_pss, s["pss_sum_kib"])
            self.samples += 1

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def memory_run(url: str, total: int, workers: int, batch_size: int) -> dict:
    ds = hf.load_dataset(url, "vqa", streaming=True, split="train", decode=False)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=list,
                        prefetch_factor=2 if workers else None)
    sampler = Sampler().start()
    points = {}
    marks = {"10%": total // 10, "50%": total // 2}
    rows = 0
    t0 = time.perf_counter()
    it = iter(loader)
    sampler.pids = [w.pid for w in getattr(it, "_workers", [])]
    for batch in it:
        rows += len(batch)
        for name, at in list(marks.items()):
            if rows >= at:
                points[name] = {"rows": rows, "seconds": time.perf_counter() - t0,
                                "peak_rss_sum_kib": sampler.peak_rss,
                                "peak_pss_sum_kib": sampler.peak_pss, **sampler.now()}
                print(f"  {name}: {rows:,} rows, peak RSS {sampler.peak_rss / 1024:.0f} MiB",
                      flush=True)
                del marks[name]
        if rows == total:  # the last batch: measure while the workers still live
            points["100%"] = {"rows": rows, "seconds": time.perf_counter() - t0,
                              "peak_rss_sum_kib": sampler.peak_rss,
                              "peak_pss_sum_kib": sampler.peak_pss, **sampler.now()}
    sampler.stop()
    seconds = time.perf_counter() - t0
    assert rows == total, (rows, total)
    p10, p100 = points["10%"]["peak_rss_sum_kib"], points["100%"]["peak_rss_sum_kib"]
    return {"rows": rows, "workers": workers, "batch_size": batch_size, "seconds": seconds,
            "rows_per_s": rows / seconds, "points": points,
            "growth_10_to_100_percent": 100.0 * (p100 - p10) / p10,
            "within_10_percent": p100 <= 1.10 * p10}


# --------------------------------------------------------------------------- first row


def first_row(url: str, nginx) -> dict:
    before = len(nginx.access_entries())
    t0 = time.perf_counter()
    b = hf.SarlangBuilder(config_name="vqa", data_dir=url, decode=False)
    ds = b.as_streaming_dataset(split="train")
    t1 = time.perf_counter()
    row = next(iter(ds))
    t2 = time.perf_counter()
    first_shard = read_manifest(url)["shards"]
    first_shard = next(s for s in first_shard if s["split"] == "train" and s["configs"]["vqa"])
    entries = nginx.wait_for_entries(before + 1)[before:]
    return {"load_dataset_seconds": t1 - t0, "first_row_seconds": t2 - t1,
            "total_seconds": t2 - t0, "bytes_read_at_first_row": b.read_stats.bytes_read,
            "first_shard_bytes": first_shard["bytes"], "first_key": row["key"],
            "requests_before_first_row": [e.uri for e in entries]}


# --------------------------------------------------------------------------- rates


def rate(root: str, workers: int, mode: str, seconds: float, batch_size: int = 64) -> dict:
    """Rows/s and images/s of ``vqa`` rows through a DataLoader.

    ``mode``: ``bytes`` (images not decoded, rows batched as lists), ``pil`` (decoded to PIL
    images, rows as lists: pickled from the workers), ``tensor`` (decoded, then batched by
    :func:`sarlang_data.torch.collate` with ``ResizeNormalize(256)`` in the workers: one
    float tensor per batch crosses to the main process through shared memory, as in
    training).
    """
    import functools

    from sarlang_data.torch import ResizeNormalize, collate

    decode = mode != "bytes"
    ds = hf.load_dataset(root, "vqa", streaming=True, split="train", decode=decode)
    collate_fn = (functools.partial(collate, image_transform=ResizeNormalize(256))
                  if mode == "tensor" else list)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_fn,
                        persistent_workers=workers > 0)
    rows = 0
    images = 0
    last = None
    t0 = time.perf_counter()
    epoch = 0
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(epoch)
        for batch in loader:
            keys = batch["key"] if mode == "tensor" else [r["key"] for r in batch]
            rows += len(keys)
            for key in keys:
                if key != last:  # rows of one image come together
                    images, last = images + 1, key
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    dt = time.perf_counter() - t0
    del loader
    return {"workers": workers, "mode": mode, "seconds": dt, "rows": rows,
            "rows_per_s": rows / dt, "images_per_s": images / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="folder for the synthetic roots (kept)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rate-seconds", type=float, default=12.0)
    ap.add_argument("--rate-root", help="local root for the rate runs (default: preview, 512 px)")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args(argv)
    import servers

    # as DataLoader workers do: torch's intra-op threads only fight over the cores here
    # (on a busy 2-core machine, 64 small .float() calls took 75x longer with 2 threads)
    torch.set_num_threads(1)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    root = make_root(work, "full", args.image_size)
    manifest = read_manifest(root)
    total = manifest["configs"]["vqa"]["train"]
    result: dict = {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "root": str(root),
                    "root_bytes": sum(s["bytes"] for s in manifest["shards"]),
                    "shards": len(manifest["shards"]), "vqa_train_rows": total}
    with servers.start_nginx(root, tempfile.mkdtemp(prefix="nginx-", dir=work)) as nginx:
        url = nginx.url.rstrip("/")
        result["first_row_http"] = first_row(url, nginx)
        print("first row:", json.dumps(result["first_row_http"], indent=1), flush=True)
        if not args.skip_memory:
            print(f"memory: streaming {total:,} vqa rows over HTTP with {args.workers} workers",
                  flush=True)
            result["memory"] = memory_run(url, total, args.workers, args.batch_size)
            print(f"  growth 10% -> 100% of the peak RSS: "
                  f"{result['memory']['growth_10_to_100_percent']:+.1f}%", flush=True)
        result["rates_http_full_32px"] = []
        for mode in ("bytes", "pil", "tensor"):
            for w in (0, 1, 2):
                r = rate(url, w, mode, args.rate_seconds)
                print(f"  http {args.image_size}px workers={w} {mode}: "
                      f"{r['rows_per_s']:,.0f} rows/s {r['images_per_s']:,.0f} images/s",
                      flush=True)
                result["rates_http_full_32px"].append(r)
    local = args.rate_root or str(make_root(work, "preview", 512))
    result["rates_local_preview_512px"] = []
    for mode in ("bytes", "pil", "tensor"):
        for w in (0, 1, 2):
            r = rate(local, w, mode, args.rate_seconds)
            print(f"  local 512px workers={w} {mode}: {r['rows_per_s']:,.0f} rows/s "
                  f"{r['images_per_s']:,.0f} images/s", flush=True)
            result["rates_local_preview_512px"].append(r)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=1)
    (out / f"bench_memory-{stamp}.json").write_text(text)
    (out / "memory-latest.json").write_text(text)
    print(f"wrote {out / 'memory-latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
