"""Full-scale run: synth the whole release, build, verify, stream every row of three configs.

One command reproduces the scale proof of issue 6::

    python bench/full_scale.py                      # full preset, 64 px, 2 build workers
    python bench/full_scale.py --preset preview     # the same steps on the preview (seconds)

Steps, each in its own child process so its memory is its own: ``synth`` (the full preset:
118,331 images and 1,126,277 texts, minus the defects synth injects on purpose), ``build``
(``--workers`` processes), ``verify`` (sha256 of every shard and image), then
``stream-vqa``, ``stream-captions`` and ``stream-chat``: every row of every split through
``sarlang_data.load_dataset(root, config, streaming=True)`` and a
``torch.utils.data.DataLoader`` with ``--loader-workers`` workers.

Recorded per step: wall time; CPU seconds of the step process (``RUSAGE_SELF``) plus its
descendants (``RUSAGE_CHILDREN``, or the CPU time sampled from ``/proc`` when that is more:
a forkserver's workers are not the step's children); peak memory as the step process's own
high-water mark (``VmHWM``), its largest child's (``ru_maxrss``), and the peak of the whole
process tree sampled from ``/proc`` every ``--sample`` seconds (sum of RSS, which counts pages
that forked workers share with their parent once per process, and sum of PSS, which splits
them). Streams also record rows, rows/s, seconds to the first row, and memory after 10%, 50%
and 100% of the rows of the whole stream and of each split (row counts from
``manifest.json``; the 100% reading is taken when the last row has arrived): the main
process's RSS, the largest worker's RSS, and the tree's RSS and PSS sums. Within one split's
loader the per-process figures compare like with like; the sums drop when a worker that has
finished its shards exits.

Checks, so a wrong benchmark cannot pass: the synth totals equal the preset's; the manifest's
text counts equal synth's minus the rejects it reports; streamed rows per split equal the
manifest; and an order-free fingerprint of the streamed rows (sum of CRC32 of key and text)
equals the one computed from ``index.parquet``, so every row came exactly once.

Writes ``bench/results/full_scale-<date>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STREAMS = ("vqa", "captions", "chat")
PAGE = os.sysconf("SC_PAGE_SIZE")
MARKS = (0.1, 0.5, 1.0)


# --------------------------------------------------------------------------- /proc


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid: int) -> list[int]:
    """Return ``pid`` and all its descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_ticks(pids: list[int], seen: dict[int, int]) -> None:
    """Record in ``seen`` the CPU ticks (user + system) each of ``pids`` has used so far."""
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        # fields from the state on: utime and stime are the 12th and 13th
        seen[p] = max(seen.get(p, 0), int(fields[11]) + int(fields[12]))


def memory(pids: list[int], pss: bool = True) -> dict[str, int]:
    """Sum of RSS (and PSS) in bytes over ``pids``; processes that are gone count 0.

    Also ``main_rss`` (the first pid's RSS) and ``max_other_rss`` (the largest of the others,
    e.g. a DataLoader worker), which stay comparable when workers come and go.
    """
    rss = pss_sum = main = other = live = 0
    for i, p in enumerate(pids):
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                one = int(f.read().split()[1]) * PAGE
            rss += one
            live += one > 0  # an exited worker not yet reaped shows no memory
            if i == 0:
                main = one
            else:
                other = max(other, one)
            if pss:
                with open(f"/proc/{p}/smaps_rollup", "rb") as f:
                    for line in f:
                        if line.startswith(b"Pss:"):
                            pss_sum += int(line.split()[1]) * 1024
                            break
        except (OSError, ValueError, IndexError):
            continue
    out = {"rss": rss, "processes": live, "main_rss": main, "max_other_rss": other}
    if pss:
        out["pss"] = pss_sum
    return out


def hwm_self() -> int:
    """This process's peak RSS (VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """Samples the memory of a process tree until stopped; keeps the peaks."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_rss = self.peak_pss = self.samples = self.max_processes = 0
        self.ticks: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = tree(self.pid)
            m = memory(pids)
            cpu_ticks(pids, self.ticks)
            self.samples += 1
            self.peak_rss = max(self.peak_rss, m["rss"])
            self.peak_pss = max(self.peak_pss, m["pss"])
            self.max_processes = max(self.max_processes, m["processes"])
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_seconds(self) -> float:
        """CPU seconds of the tree's processes as last sampled (the step process excluded).

        Catches processes that ``RUSAGE_CHILDREN`` misses: a forkserver's children are not
        the step's, and the forkserver outlives the step.
        """
        return sum(t for p, t in self.ticks.items() if p != self.pid) / os.sysconf(
            "SC_CLK_TCK")


# --------------------------------------------------------------------------- steps (children)


def step_synth(a, work: Path) -> dict:
    from sarlang_data.ingest import synth

    summary = synth.generate(work / "syn", preset=a.preset, seed=a.seed,
                             image_size=a.image_size, workers=a.workers, progress=False)
    return {"summary": summary}


def step_build(a, work: Path) -> dict:
    from sarlang_data.ingest.build import BuildOptions, build

    syn = work / "syn"
    manifest = build(syn / "SARLANG_1M", work / "root",
                     BuildOptions(workers=a.workers, gsd_table=syn / "gsd_table.csv"),
                     progress=False)
    return {"counts": manifest["counts"], "shards": len(manifest["shards"]),
            "rejects": manifest.get("rejects")}


def step_verify(a, work: Path) -> dict:
    from sarlang_data.format import verify

    return {"verified": verify.verify(work / "root")}


def _identity(batch):
    return batch


def _fingerprint_row(config: str, row: dict) -> int:
    if config == "vqa":
        text = f"{row['key']}\x1f{row['question']}\x1f{row['answer']}"
    elif config == "captions":
        text = f"{row['key']}\x1f{row['kind']}\x1f{row['caption']}"
    else:  # chat: one row per caption or QA pair, by its id
        text = f"{row['key']}\x1f{row['id']}"
    return zlib.crc32(text.encode())


def expected_fingerprints(root: Path, config: str) -> dict[str, int]:
    """Per split, the fingerprint of every row of ``config``, from ``index.parquet``."""
    from sarlang_data.configs import get_config
    from sarlang_data.format.manifest import read_index
    from sarlang_data.schema import text_id

    cfg = get_config(config)
    table = read_index(str(root), ["key", "split", "captions", "qa"])
    out: dict[str, int] = {}
    for batch in table.to_batches(20_000):
        for rec in batch.to_pylist():
            texts = cfg.select_texts(rec)
            if config == "chat":
                fps = [zlib.crc32(f"{rec['key']}\x1f{text_id(rec['key'], t)}".encode())
                       for t in texts]
            elif config == "vqa":
                fps = [zlib.crc32(f"{rec['key']}\x1f{q['question']}\x1f{q['answer']}".encode())
                       for q in texts]
            else:
                fps = [zlib.crc32(f"{rec['key']}\x1f{c['kind']}\x1f{c['text']}".encode())
                       for c in texts]
            out[rec["split"]] = (out.get(rec["split"], 0) + sum(fps)) % (1 << 64)
    return out


def step_stream(a, work: Path, config: str) -> dict:
    import torch.utils.data

    import sarlang_data
    from sarlang_data.format.manifest import read_manifest

    root = work / "root"
    expected = read_manifest(str(root))["configs"][config]
    total = sum(expected.values())
    marks = [(m, max(1, int(total * m))) for m in MARKS]
    t0 = time.perf_counter()
    ds = sarlang_data.load_dataset(str(root), config, streaming=True, decode=a.decode,
                                   cache_dir=str(work / "hf-cache"))
    t_open = time.perf_counter() - t0
    got: dict[str, int] = {}
    fps: dict[str, int] = {}
    at_mark: dict[str, dict] = {}
    n = 0
    first = None
    me = os.getpid()
    at_split: dict[str, dict] = {}
    for split in ds:
        loader = torch.utils.data.DataLoader(
            ds[split], batch_size=a.batch_size or None, num_workers=a.loader_workers,
            collate_fn=_identity)
        # marks within this split too: 10% and 100% of one loader compare the same processes
        split_marks = [(m, max(1, int(expected.get(split, 0) * m))) for m in MARKS]
        at_split[split] = {}
        fp = 0
        count = 0
        for batch in loader:
            rows = batch if a.batch_size else [batch]
            if first is None:
                first = time.perf_counter() - t0
            for row in rows:
                fp += _fingerprint_row(config, row)
            count += len(rows)
            n += len(rows)
            while marks and n >= marks[0][1]:
                m, _ = marks.pop(0)
                at_mark[f"{m:.0%}"] = {"rows": n, "seconds": time.perf_counter() - t0,
                                       **memory(tree(me))}
            while split_marks and count >= split_marks[0][1]:
                m, _ = split_marks.pop(0)
                at_split[split][f"{m:.0%}"] = {"rows": count,
                                               "seconds": time.perf_counter() - t0,
                                               **memory(tree(me))}
        got[split] = count
        fps[split] = fp % (1 << 64)
    wall = time.perf_counter() - t0
    growth = {split: {k: marks_["100%"][k] / marks_["10%"][k]
                      for k in ("rss", "pss", "main_rss", "max_other_rss") if marks_["10%"][k]}
              for split, marks_ in at_split.items() if "10%" in marks_ and "100%" in marks_}
    # the fingerprints are checked by the driver, so reading the index does not count here
    return {"config": config, "decode": a.decode, "batch_size": a.batch_size,
            "loader_workers": a.loader_workers, "rows": n, "rows_expected": total,
            "rows_per_split": got, "rows_per_split_expected": expected,
            "fingerprints": {k: str(v) for k, v in fps.items()}, "rows_ok": got == expected,
            "seconds_to_open": t_open, "seconds_to_first_row": first,
            "stream_seconds": wall, "rows_per_s": n / wall, "at": at_mark,
            "at_split": at_split, "memory_growth_10_to_100": growth}


def run_step(a) -> int:
    work = Path(a.work)
    name = a.step
    if name == "synth":
        result = step_synth(a, work)
    elif name == "build":
        result = step_build(a, work)
    elif name == "verify":
        result = step_verify(a, work)
    else:
        result = step_stream(a, work, name.removeprefix("stream-"))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    result["self_peak_rss"] = hwm_self()
    result["self_cpu_seconds"] = own.ru_utime + own.ru_stime
    result["children_cpu_seconds"] = kids.ru_utime + kids.ru_stime
    result["largest_child_peak_rss"] = kids.ru_maxrss * 1024
    tmp = Path(a.result + ".partial")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, a.result)
    return 0


# --------------------------------------------------------------------------- driver


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    return {"nproc": os.cpu_count(), "cpu": model, "mem_total_gb": round(mem / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def drive_step(a, work: Path, name: str) -> dict:
    """Run one step in a child process and measure it from outside."""
    result_path = work / f".step-{name}.json"
    result_path.unlink(missing_ok=True)
    argv = [sys.executable, __file__, "--step", name, "--work", str(work),
            "--result", str(result_path), *a.passthrough]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=str(REPO))
    sampler = Sampler(proc.pid, a.sample)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"step {name!r} failed with exit code {proc.returncode}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    result.update({
        "step": name, "wall_seconds": wall,
        # Linux: the step and the descendants it waited for
        "wait4_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "tree_peak_rss": sampler.peak_rss, "tree_peak_pss": sampler.peak_pss,
        "tree_max_processes": sampler.max_processes, "memory_samples": sampler.samples,
        "load_before": load0, "load_after": os.getloadavg()[0],
    })
    # descendants: what RUSAGE_CHILDREN saw (the children the step waited for), or more when
    # some were not its children (a forkserver's workers); sampling misses only each
    # process's last tenth of a second
    result["descendants_cpu_seconds_sampled"] = sampler.cpu_seconds()
    result["cpu_seconds"] = result["self_cpu_seconds"] + max(
        result["children_cpu_seconds"], result["descendants_cpu_seconds_sampled"])
    if "fingerprints" in result:
        want = expected_fingerprints(work / "root", result["config"])
        result["fingerprint_ok"] = result["fingerprints"] == {k: str(v) for k, v in
                                                              want.items()}
    return result


def _mb(x) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f}"


def _largest_split(r: dict) -> str | None:
    per = r.get("rows_per_split") or {}
    return max(per, key=per.get) if per else None


def table(results: list[dict]) -> str:
    head = (f"{'step':16} {'wall s':>7} {'cpu s':>7} {'rows':>10} {'rows/s':>8} {'1st row':>7} "
            f"{'peak tree RSS':>13} {'PSS':>6} {'main':>6} {'child':>6} "
            f"{'main@10%':>8} {'@100%':>6} {'wkr@10%':>8} {'@100%':>6} "
            f"{'PSS@10%':>8} {'@100%':>6}  MB")
    lines = [head]
    for r in results:
        split = _largest_split(r)
        at = (r.get("at_split") or {}).get(split) or {}

        def mark(m, k, at=at):
            return _mb(at[m][k]) if m in at else ""

        lines.append(
            f"{r['step']:16} {r['wall_seconds']:7.1f} {r['cpu_seconds']:7.1f} "
            f"{r.get('rows', ''):>10} "
            f"{format(r['rows_per_s'], ',.0f') if 'rows_per_s' in r else '':>8} "
            f"{format(r['seconds_to_first_row'], '.2f') if 'rows' in r else '':>7} "
            f"{_mb(r['tree_peak_rss']):>13} {_mb(r['tree_peak_pss']):>6} "
            f"{_mb(r['self_peak_rss']):>6} {_mb(r['largest_child_peak_rss']):>6} "
            f"{mark('10%', 'main_rss'):>8} {mark('100%', 'main_rss'):>6} "
            f"{mark('10%', 'max_other_rss'):>8} {mark('100%', 'max_other_rss'):>6} "
            f"{mark('10%', 'pss'):>8} {mark('100%', 'pss'):>6}")
    lines.append("(main/wkr@: RSS of the main process and of the largest DataLoader worker, "
                 "PSS@: the tree's, after 10% and 100% of the rows of the largest split, read by "
                 "one loader; peak tree RSS/PSS: sums over the step's processes, sampled; main, "
                 "child: peak RSS of the step process and of its largest child)")
    return "\n".join(lines)


#: the published totals (facts file, section 1-2) that the full preset reproduces
PUBLISHED = {"samples": 118_331, "captions": 45_650, "qa": 1_080_627}


def checks(a, results: dict[str, dict]) -> list[str]:
    """Return the failed checks (empty when everything adds up)."""
    bad = []
    if "build" in results:
        c = results["build"]["counts"]
        print(f"build: {c['samples']:,} samples, {c['captions']:,} captions, {c['qa']:,} QA "
              f"pairs, {c['rejects']} release rows rejected (defects synth injects), "
              f"{results['build']['shards']} shards")
        if a.preset == "full":
            for k, v in PUBLISHED.items():
                if c[k] != v:
                    bad.append(f"build: {c[k]:,} {k}, the published total is {v:,}")
    for name, r in results.items():
        for split, g in (r.get("memory_growth_10_to_100") or {}).items():
            procs = [r["at_split"][split][m]["processes"] for m in ("10%", "100%")]
            print(f"{name} {split}: from 10% to 100% of the split, main RSS "
                  f"x{g['main_rss']:.3f}, largest worker RSS x{g.get('max_other_rss', 0):.3f}, "
                  f"tree PSS x{g['pss']:.3f}, tree RSS x{g['rss']:.3f} ({procs[0]} -> "
                  f"{procs[1]} processes: a worker that finished its shards has exited)"
                  if procs[0] != procs[1] else
                  f"{name} {split}: from 10% to 100% of the split, main RSS "
                  f"x{g['main_rss']:.3f}, largest worker RSS x{g.get('max_other_rss', 0):.3f}, "
                  f"tree PSS x{g['pss']:.3f}, tree RSS x{g['rss']:.3f}")
        if "rows_ok" in r:
            if not r["rows_ok"]:
                bad.append(f"{name}: rows per split {r['rows_per_split']} != manifest "
                           f"{r['rows_per_split_expected']}")
            if not r["fingerprint_ok"]:
                bad.append(f"{name}: the streamed rows are not those of index.parquet "
                           "(fingerprints differ)")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", help="synth preset (default: full)")
    ap.add_argument("--image-size", type=int, default=64,
                    help="synth image side in px (default 64: at 32 px tanks, ships and "
                         "aircraft shrink to a few pixels and lose their shapes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="synth and build processes")
    ap.add_argument("--loader-workers", type=int, default=2, help="DataLoader num_workers")
    ap.add_argument("--batch-size", type=int, default=64,
                    help="DataLoader batch size with an identity collate (0: rows one by one)")
    ap.add_argument("--no-decode", dest="decode", action="store_false",
                    help="stream images as bytes (default: decoded to PIL, in the workers)")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true",
                    help="skip synth/build/verify when --work already holds a built root")
    ap.add_argument("--steps", nargs="+", default=None,
                    help="steps to run (default: synth build verify stream-vqa "
                         "stream-captions stream-chat)")
    ap.add_argument("--sample", type=float, default=0.1, help="seconds between memory samples")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.step:
        return run_step(a)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    a.passthrough = ["--preset", a.preset, "--image-size", str(a.image_size), "--seed",
                     str(a.seed), "--workers", str(a.workers), "--loader-workers",
                     str(a.loader_workers), "--batch-size", str(a.batch_size)]
    if not a.decode:
        a.passthrough.append("--no-decode")
    steps = a.steps or ["synth", "build", "verify", *(f"stream-{c}" for c in STREAMS)]
    if a.reuse and a.work and (a.work / "root" / "manifest.json").exists() and not a.steps:
        steps = [s for s in steps if s.startswith("stream-")]
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="sarlang-full-")
        a.work = Path(tmp.name)
    a.work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    results: dict[str, dict] = {}
    try:
        for name in steps:
            print(f"== {name} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            results[name] = drive_step(a, a.work, name)
            r = results[name]
            print(f"   {r['wall_seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
                  f"peak tree RSS {_mb(r['tree_peak_rss'])} MB", file=sys.stderr, flush=True)
        disk = sum(p.stat().st_size for p in (a.work / "root").rglob("*") if p.is_file()) \
            if (a.work / "root").exists() else None
    finally:
        if tmp is not None:
            tmp.cleanup()
    failed = checks(a, results)
    print()
    print(table(list(results.values())))
    doc = {"when": started, "machine": machine(), "args": {
        "preset": a.preset, "image_size": a.image_size, "seed": a.seed, "workers": a.workers,
        "loader_workers": a.loader_workers, "batch_size": a.batch_size, "decode": a.decode},
        "root_bytes": disk, "steps": results, "failed_checks": failed}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"full_scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    part = path.with_suffix(".partial")
    part.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(part, path)
    print(f"\nmachine: {doc['machine']['nproc']} CPUs ({doc['machine']['cpu']}), "
          f"{doc['machine']['mem_total_gb']} GiB RAM; root {_mb(disk)} MB on disk")
    for f in failed:
        print(f"FAILED: {f}")
    print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
