"""CPU cost per sample of each layer of reading, on one or more roots, interleaved in one run.

The layers, each a superset of the one before: the minimal tar parser (the floor), the same
with grouping and orjson (the reader's work minus its checks), our reader (``iter_samples``),
the views' rows (``stream.views.rows``) of ``images`` and ``vqa``, and those rows through
``load_dataset(..., streaming=True, decode=False)``. Each method is timed per CPU second
(``time.process_time``), best of ``--repeat`` passes, the roots taking turns, so two roots
(e.g. one built before a format change and one after, from the same release) compare within
one run. Where the time between two layers goes is what this prints: the microseconds per
sample and the share of the floor.

Usage::

    python bench/layer_costs.py ROOT [ROOT ...] [--split test] [--repeat 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_read  # noqa: E402

from sarlang_data.configs import get_config  # noqa: E402
from sarlang_data.format.manifest import read_manifest  # noqa: E402
from sarlang_data.stream import reader, views  # noqa: E402

LAYERS = ("floor", "floor + group + orjson", "reader", "rows images", "rows vqa",
          "load_dataset images", "load_dataset vqa")


def methods(root: Path, split: str):
    """Return ``(samples, {layer: run})`` for one root's split."""
    shards = [s for s in read_manifest(str(root))["shards"] if s["split"] == split]
    paths = [str(root / s["path"]) for s in shards]

    def rows(config):
        cfg = get_config(config)

        def run():
            for p in paths:
                for s in reader.iter_samples(p):
                    views.rows(cfg, s)
        return run

    return sum(s["samples"] for s in shards), {
        "floor": lambda: bench_read.minimal_tar(paths),
        "floor + group + orjson": lambda: bench_read.minimal_samples_orjson(paths),
        "reader": lambda: bench_read.our_reader(paths),
        "rows images": rows("images"),
        "rows vqa": rows("vqa"),
        "load_dataset images": bench_read.ours(root, "images", False, split, None, None),
        "load_dataset vqa": bench_read.ours(root, "vqa", False, split, None, None),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--repeat", type=int, default=5, help="passes per method; the best counts")
    ap.add_argument("--out", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    setup = {root: methods(root, args.split) for root in args.roots}
    best = {(root, layer): float("inf") for root in args.roots for layer in LAYERS}
    for _ in range(args.repeat):
        for layer in LAYERS:
            for root in args.roots:
                n, fns = setup[root]
                t = time.process_time()
                fns[layer]()
                best[root, layer] = min(best[root, layer], (time.process_time() - t) / n * 1e6)
    lines = [f"# bench/layer_costs.py, split {args.split}, best of {args.repeat}, "
             f"{time.strftime('%Y-%m-%dT%H:%M:%S')}, load {os.getloadavg()[0]:.2f}",
             f"{'layer':24s}" + "".join(f" | {root.name:>22s}" for root in args.roots),
             f"{'':24s}" + " | us/sample  x of floor" * len(args.roots)]
    for layer in LAYERS:
        cells = ""
        for root in args.roots:
            us = best[root, layer]
            cells += f" | {us:9.2f} {best[root, 'floor'] / us:11.3f}"
        lines.append(f"{layer:24s}{cells}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
