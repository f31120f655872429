"""Where DataLoader workers spend their time: py-spy over a multi-worker DataLoader.

pyinstrument (``bench_read.py --profile``) sees one process; DataLoader workers are forked
children, so this samples the whole process tree with py-spy and splits the samples into the
workers' main threads (stacks through ``_worker_loop``) and everything else (the main
process, and the workers' queue feeder and file-descriptor sharer threads). For each it
prints the functions by inclusive share of samples and by own share.

Usage::

    python bench/profile_workers.py --root ROOT --split test            # images, decoded
    python bench/profile_workers.py --root ROOT --collate identity --workers 1

Writes ``bench/results/profile-workers-<config>-<collate>-<time>.txt``. Needs ``py-spy``
(``pip install py-spy``) and permission to trace child processes (root, or
``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
from sarlang_data.adapters import hf
from sarlang_data.torch import collate

root, config, split, workers, how, epochs = sys.argv[2:8]
ds = hf.load_dataset(root, config, streaming=True, split=split or None)
loader = torch.utils.data.DataLoader(
    ds, batch_size=64, num_workers=int(workers), persistent_workers=int(workers) > 0,
    collate_fn=collate if how == "collate" else (lambda b: b))
for epoch in range(int(epochs)):
    t, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch) if isinstance(batch, list) else len(batch["key"])
    print(f"epoch {epoch}: {n} rows, {n / (time.perf_counter() - t):,.0f} rows/s (sampled)")
"""


def _name(frame: str) -> str:
    func, _, where = frame.partition(" (")
    return f"{func} ({Path(where.split(':')[0]).name})" if where else func


def summarise(raw: Path, top: int) -> str:
    """Inclusive and own shares of the samples, workers' main threads apart from the rest."""
    groups: dict[str, tuple[collections.Counter, collections.Counter]] = {
        "DataLoader workers (main threads)": (collections.Counter(), collections.Counter()),
        "main process, and the workers' feeder and fd-sharer threads": (
            collections.Counter(), collections.Counter()),
    }
    totals = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [f for f in stack.split(";")
                  if not f.startswith(("process ", "thread ")) and "(" in f]
        group = next(iter(groups)) if any("_worker_loop" in f for f in frames) else list(
            groups)[1]
        inclusive, own = groups[group]
        n = int(count)
        totals[group] += n
        for name in {_name(f) for f in frames}:
            inclusive[name] += n
        if frames:
            own[_name(frames[-1])] += n
    out = []
    for group, (inclusive, own) in groups.items():
        n = totals[group] or 1
        out.append(f"== {group}: {totals[group]} samples")
        out.append("-- inclusive")
        out += [f"{v / n * 100:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
        out.append("-- own")
        out += [f"{v / n * 100:5.1f}%  {k}" for k, v in own.most_common(top // 2)]
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", required=True, help="dataset root")
    ap.add_argument("--config", default="images")
    ap.add_argument("--split", default="test", help="split to read ('' for all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--collate", choices=["collate", "identity"], default="collate",
                    help="sarlang_data.torch.collate, or a list of rows")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=40, help="functions listed per group")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = ap.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw, script = Path(tmp) / "raw.txt", Path(tmp) / "loader.py"
        script.write_text(CHILD)  # a file, not -c: py-spy puts the command line in stacks
        cmd = [spy, "record", "--subprocesses", "--format", "raw", "-r", str(a.rate), "-o",
               str(raw), "--", sys.executable, str(script), str(REPO), str(a.root), a.config,
               a.split, str(a.workers), a.collate, str(a.epochs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode or not raw.exists():
            print(proc.stdout, proc.stderr, sep="\n", file=sys.stderr)
            return 1
        report = (f"py-spy, {a.rate} Hz: DataLoader({a.config}, split {a.split or 'all'}, "
                  f"{a.workers} workers, {a.collate} collate, batch 64) over {a.root}\n"
                  f"{proc.stdout.strip()}\n(sampling slows the run: read shares, not "
                  "rates; threads blocked in accept, poll or wait may be sampled too, so "
                  "read the own column of the second group)\n\n"
                  + summarise(raw, a.top))
    print(report)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / (f"profile-workers-{a.config}-{a.collate}-"
                    f"{time.strftime('%Y%m%d-%H%M%S')}.txt")
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text(report)
    os.replace(tmp_path, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
