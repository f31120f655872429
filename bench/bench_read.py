"""Anchor benchmark: every way to read the same shards, in one run, with ratios to the targets.

All methods read the same shards (one dataset root, optionally one split or tier of it), page
cache warm, most of them in this one process:

- floors: reading the bytes; the standard library's ``tarfile``; a minimal parser of the
  512-byte headers (nothing else); the same grouping members by key; and also decoding JSON;
- our reader (``sarlang_data.stream.reader.iter_samples``);
- stock ``webdataset``, raw and decoded (``.decode("pil")``: images and JSON);
- the stock ``datasets`` WebDataset builder through the root's README configs (the no-code
  path), ``decode=False`` and decoded;
- mosaicml-streaming (MDS) and litdata on the same samples (key, JSON bytes, image bytes),
  converted into their formats in a temporary folder, read raw; skipped with a note when they
  do not install or run;
- ours: ``sarlang_data.load_dataset(..., streaming=True)`` for ``images``, ``vqa`` and
  ``captions``, ``decode=False`` and decoded; a PIL decode-only loop over the same image bytes;
- the decode-only loop split over 2 forked processes: this machine's ceiling for 2 workers;
- a ``torch.utils.data.DataLoader`` over our ``vqa`` (``decode=False``) and ``images``
  (decoded) streams with 0, 1 and 2 workers (batches of 64 rows, identity collate, and for
  ``images`` also ``sarlang_data.torch.collate``'s tensors; persistent workers, so a pass
  measures the steady state and not worker start-up);
- ``build`` of the release with 1 and 2 workers (each in a child process);
- time to the first row: ``load_dataset`` + ``next(iter(...))`` from a local root in this
  process (imports done, as in a training script), in a fresh interpreter (imports included),
  and over HTTP from nginx (``tests/servers.py``) when nginx is installed.

The default root is the synth ``medium`` preset (a tenth of full) at 512 px, its test split
(1,449 images in 56 shards): shards of the sizes the full set has, images of the release's
size. ``--preset preview`` is quicker to make but its shards hold 4 samples each.

Per-core and wall throughput: each method runs ``--repeat`` passes (each at least
``--min-time`` seconds) and the best pass counts. CPU time is this process's
(``time.process_time``, all threads) plus its children's (DataLoader workers, sampled from
``/proc``); wall time is the clock. Single-process methods are compared per CPU second, which
other programs on a shared machine barely disturb; methods whose point is parallelism
(DataLoader workers, build workers) per wall second. The table shows both; each ratio says
which it uses. Rows per pass are checked against ``manifest.json``.

Targets (issue 6): our ``vqa`` streaming (``decode=False``) >= 5x the stock builder and >= 3x
raw webdataset in images/s; our reader >= 90% of the minimal tar parser; decoded rows >= 90% of
the decode-only loop per core and >= 1.8x it with 2 DataLoader workers; first row from a local
root < 0.5 s, over HTTP < 1 s.

Usage::

    python bench/bench_read.py                                   # synth medium, 512 px, test
    python bench/bench_read.py --work /tmp/bench                 # keep the synth root
    python bench/bench_read.py --root ROOT --split test          # any local root, one split
    python bench/bench_read.py --only 'ours*' 'webdataset*'      # some methods (fnmatch)
    python bench/bench_read.py --compare bench/results/latest.json
    python bench/bench_read.py --profile 'ours vqa, decode=False'   # + a pyinstrument tree

Writes ``bench/results/bench_read-<time>.json`` and ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from full_scale import Sampler, cpu_ticks, machine, tree  # noqa: E402

from sarlang_data.adapters import hf  # noqa: E402
from sarlang_data.format.manifest import read_manifest  # noqa: E402
from sarlang_data.stream import reader  # noqa: E402

BATCH = 64


class Skip(Exception):
    """A method that cannot run here; the message says why."""


@dataclass
class Method:
    """One way of reading: ``run()`` makes one pass and returns (samples, rows, bytes)."""

    name: str
    run: Callable[[], tuple[int | None, int | None, int | None]]
    basis: str = "cpu"  # what its ratios use: "cpu" (per CPU second) or "wall"
    note: str = ""
    children: Callable[[], list[int]] | None = None  # pids whose CPU time counts too
    expect: tuple[int | None, int | None] = (None, None)  # samples, rows per pass
    extra: dict = field(default_factory=dict)


def make_root(work: Path, preset: str, image_size: int, seed: int) -> Path:
    from sarlang_data.ingest import synth
    from sarlang_data.ingest.build import BuildOptions, build

    syn, root = work / "syn", work / "root"
    made = work / "made.json"
    wanted = {"preset": preset, "image_size": image_size, "seed": seed}
    if made.is_file() and json.loads(made.read_text()) == wanted:
        return root  # --work from an earlier run with the same options
    if made.exists() or syn.exists() or root.exists():
        raise SystemExit(f"--work {work}: holds a root of other options ({made}); "
                         "pass an empty or new folder")
    synth.generate(syn, preset=preset, seed=seed, image_size=image_size, progress=False,
                   workers=2)
    build(syn / "SARLANG_1M", root, BuildOptions(gsd_table=syn / "gsd_table.csv", workers=2),
          progress=False)
    made.write_text(json.dumps(wanted))
    return root


# --------------------------------------------------------------------------- floors
# each returns (samples, rows, bytes) it went through


def read_bytes(paths):
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return None, None, total


def stdlib_tarfile(paths):
    samples = total = 0
    for p in paths:
        last = None
        with tarfile.open(p, "r|") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                data = tf.extractfile(m).read()
                total += len(data)
                key = m.name.split(".", 1)[0]
                if key != last:
                    samples, last = samples + 1, key
    return samples, None, total


def minimal_tar(paths):
    """The floor: headers parsed, data read, nothing else (no checksum, grouping or JSON)."""
    members = total = 0
    zero = bytes(512)
    for p in paths:
        with open(p, "rb", buffering=0) as raw:
            read = io.BufferedReader(raw, 64 << 10).read
            while True:
                h = read(512)
                if len(h) < 512 or h == zero:
                    break
                size = int(h[124:135], 8)
                data = read(size)
                if size % 512:
                    read(512 - size % 512)
                members += 1
                total += len(data)
    return members // 2, None, total


def _minimal_grouped(paths, decode):
    loads = decode if callable(decode) else json.loads
    samples = total = 0
    zero = bytes(512)
    for p in paths:
        with open(p, "rb", buffering=0) as raw:
            read = io.BufferedReader(raw, 64 << 10).read
            cur, parts = None, {}
            while True:
                h = read(512)
                if len(h) < 512 or h == zero:
                    break
                size = int(h[124:135], 8)
                data = read(size)
                if size % 512:
                    read(512 - size % 512)
                key, _, ext = h[:100].rstrip(b"\0").decode().partition(".")
                if key != cur:
                    if parts:
                        if decode:
                            parts["json"] = loads(parts["json"])
                        samples += 1
                    cur, parts = key, {}
                parts[ext] = data
                total += len(data)
            if parts:
                if decode:
                    parts["json"] = loads(parts["json"])
                samples += 1
    return samples, None, total


def minimal_grouped(paths):
    """The minimal parser plus grouping members into one dict per key."""
    return _minimal_grouped(paths, False)


def minimal_samples(paths):
    """The minimal parser plus grouping and the JSON decoded (standard library)."""
    return _minimal_grouped(paths, True)


def minimal_samples_orjson(paths):
    """The same with orjson, as our reader decodes: what the reader does, minus its checks."""
    import orjson

    return _minimal_grouped(paths, orjson.loads)


def iter_members(paths):
    """(key, ext, data) of every member, for converting samples to other formats."""
    zero = bytes(512)
    for p in paths:
        with open(p, "rb") as f:
            while True:
                h = f.read(512)
                if len(h) < 512 or h == zero:
                    break
                size = int(h[124:135], 8)
                data = f.read(size)
                if size % 512:
                    f.read(512 - size % 512)
                key, _, ext = h[:100].rstrip(b"\0").decode().partition(".")
                yield key, ext, data


def iter_raw_samples(paths):
    """{"key", "json", "image", "ext"} per sample with the members' bytes."""
    cur, parts = None, {}
    for key, ext, data in iter_members(paths):
        if key != cur and parts:
            yield _raw(cur, parts)
            parts = {}
        cur = key
        parts[ext] = data
    if parts:
        yield _raw(cur, parts)


def _raw(key, parts):
    ext = next(e for e in parts if e != "json")
    return {"key": key, "json": parts["json"], "image": parts[ext], "ext": ext}


# --------------------------------------------------------------------------- other loaders


def our_reader(paths):
    samples = 0
    for p in paths:
        for _ in reader.iter_samples(p):
            samples += 1
    return samples, None, None


def webdataset_method(paths, decoded: bool):
    import webdataset as wds

    pipeline = wds.WebDataset(paths, shardshuffle=False, empty_check=False)
    if decoded:
        pipeline = pipeline.decode("pil")

    def run():
        samples = 0
        for _ in pipeline:
            samples += 1
        return samples, None, None

    return run


def stock_builder(root, split, tier, decoded: bool, cache):
    """The stock WebDataset builder through the root's README configs (the no-code path)."""
    import datasets

    ds = datasets.load_dataset(str(root), tier or "images", streaming=True, cache_dir=cache)
    parts = [ds[s].decode(decoded) for s in ds if split in (None, s)]

    def run():
        n = 0
        for part in parts:
            for _ in part:
                n += 1
        return n, n, None

    return run


def _stub_torchvision():
    """Modules standing in for torchvision while mosaicml-streaming is imported.

    ``import streaming`` imports its vision datasets, which import torchvision; no torchvision
    wheel on this machine matches the CPU build of torch 2.13. MDS reading never touches it.
    """
    tv = types.ModuleType("torchvision")
    tv_datasets = types.ModuleType("torchvision.datasets")
    tv_transforms = types.ModuleType("torchvision.transforms")
    tv_functional = types.ModuleType("torchvision.transforms.functional")

    class VisionDataset:  # never instantiated: MDS reading does not use it
        pass

    tv_datasets.VisionDataset = tv_datasets.CIFAR10 = VisionDataset
    tv_functional.to_tensor = None
    tv.datasets, tv.transforms, tv_transforms.functional = tv_datasets, tv_transforms, \
        tv_functional
    return {"torchvision": tv, "torchvision.datasets": tv_datasets,
            "torchvision.transforms": tv_transforms,
            "torchvision.transforms.functional": tv_functional}


def mosaic_method(paths, work: Path):
    try:
        import transformers.feature_extraction_utils  # noqa: F401 - before the stub
    except Exception:  # noqa: BLE001, S110 - streaming imports it itself and says what fails
        pass
    stub = {} if _importable("torchvision") else _stub_torchvision()
    added = [k for k in stub if k not in sys.modules]
    sys.modules.update({k: stub[k] for k in added})
    try:
        from streaming import MDSWriter, StreamingDataset
    except Exception as e:  # noqa: BLE001 - any import failure means "skip"
        raise Skip(f"mosaicml-streaming does not import: {type(e).__name__}: {e}") from None
    finally:
        for k in added:
            sys.modules.pop(k, None)
    out = work / "mds"
    t0 = time.perf_counter()
    with MDSWriter(out=str(out), columns={"key": "str", "json": "bytes", "image": "bytes",
                                          "ext": "str"}, size_limit=1 << 28) as w:
        for s in iter_raw_samples(paths):
            w.write(s)
    convert = time.perf_counter() - t0
    ds = StreamingDataset(local=str(out), shuffle=False, batch_size=1)

    def run():
        n = 0
        for _ in ds:
            n += 1
        return n, None, None

    return run, {"convert_seconds": convert,
                 "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}


def litdata_method(paths, work: Path):
    try:
        import litdata
        from litdata.streaming.writer import BinaryWriter
    except Exception as e:  # noqa: BLE001 - any import failure means "skip"
        raise Skip(f"litdata does not import: {type(e).__name__}: {e}") from None
    out = work / "litdata"
    out.mkdir()
    t0 = time.perf_counter()
    w = BinaryWriter(str(out), chunk_bytes=1 << 28)
    for i, s in enumerate(iter_raw_samples(paths)):
        w.add_item(i, s)
    w.done()
    w.merge()
    convert = time.perf_counter() - t0
    ds = litdata.StreamingDataset(input_dir=str(out))

    def run():
        n = 0
        for _ in ds:
            n += 1
        return n, None, None

    return run, {"convert_seconds": convert,
                 "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # noqa: BLE001 - broken installs count as missing
        return False
    return True


def ours(root, config, decode, split, tier, cache):
    """Our load_dataset stream; built once, each pass iterates it (setup is not timed)."""
    ds = hf.load_dataset(str(root), config, streaming=True, decode=decode, tiers=tier,
                         split=split, cache_dir=cache)
    parts = [ds] if split else list(ds.values())

    def run():
        rows = 0
        for part in parts:
            for _ in part:
                rows += 1
        return None, rows, None

    return run


def decode_only(images):
    from PIL import Image

    def run():
        for b in images:
            Image.open(io.BytesIO(b)).load()
        return len(images), None, None

    return run


_DECODE_IMAGES: list = []  # set before the pool forks: the children inherit it


def _decode_share(share):
    from PIL import Image

    start, step = share
    for b in _DECODE_IMAGES[start::step]:
        Image.open(io.BytesIO(b)).load()
    return len(_DECODE_IMAGES[start::step])


def decode_only_parallel(images, procs):
    """The decode-only loop split over ``procs`` forked processes (every procs-th image each).

    Nothing crosses between the processes but a count: this machine's ceiling for decoding
    in parallel, against which DataLoader workers can be read.
    """
    import multiprocessing as mp

    global _DECODE_IMAGES
    _DECODE_IMAGES = images
    pool = mp.get_context("fork").Pool(procs)

    def run():
        return sum(pool.map(_decode_share, [(i, procs) for i in range(procs)])), None, None

    def children():
        return [p for p in tree(os.getpid()) if p != os.getpid()]

    return run, children


def _identity(batch):
    return batch


def dataloader(root, config, decode, split, tier, cache, workers, collate):
    """Our stream through a DataLoader: batches of BATCH rows."""
    import torch.utils.data

    ds = hf.load_dataset(str(root), config, streaming=True, decode=decode, tiers=tier,
                         split=split, cache_dir=cache)
    parts = [ds] if split else list(ds.values())
    loaders = [torch.utils.data.DataLoader(
        p, batch_size=BATCH, collate_fn=collate, num_workers=workers,
        persistent_workers=workers > 0) for p in parts]
    def run():
        rows = 0
        for loader in loaders:
            for batch in loader:
                # identity collate: a list of rows; the tensor collate: a dict of columns
                rows += len(batch) if isinstance(batch, list) else len(batch["key"])
        return None, rows, None

    def children():
        return [p for p in tree(os.getpid()) if p != os.getpid()]

    return run, children


def build_method(release: Path, gsd: Path | None, workers: int, work: Path):
    """``build`` in a child process per pass; CPU time of the whole process tree."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from sarlang_data.ingest.build import BuildOptions, build\n"
        "if __name__ == '__main__':\n"
        "    gsd = Path(sys.argv[4]) if sys.argv[4] else None\n"
        "    m = build(Path(sys.argv[2]), Path(sys.argv[3]),\n"
        "              BuildOptions(workers=int(sys.argv[5]), gsd_table=gsd), progress=False)\n"
        "    print(m['counts']['samples'])\n"
    )
    passes = [0]

    def run():
        passes[0] += 1
        out = work / f"build-{workers}-{passes[0]}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(REPO), str(release), str(out), str(gsd or ""),
             str(workers)], stdout=subprocess.PIPE, text=True)
        sampler = Sampler(proc.pid, 0.05)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.stop()
        samples = int(proc.stdout.read().strip())
        proc.stdout.close()
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"build with {workers} workers failed")
        run.cpu = usage.ru_utime + usage.ru_stime + sampler.cpu_seconds()
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        return samples, None, None

    run.cpu = 0.0
    return run


# --------------------------------------------------------------------------- driver


def _ticks(pids: list[int]) -> dict[int, int]:
    seen: dict[int, int] = {}
    cpu_ticks(pids, seen)
    return seen


def measure(m: Method, repeat: int, min_time: float) -> dict:
    """Best of ``repeat`` passes, each looped to at least ``min_time`` seconds.

    CPU time: this process (all threads) plus the method's child processes (read from
    ``/proc`` before and after) or, for a build, its own process tree. Wall time: the clock.
    The best pass is the fastest on the method's basis.
    """
    best = None
    for _ in range(repeat):
        samples = rows = nbytes = 0
        ticks0 = _ticks(m.children() if m.children else [])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        extra_cpu = 0.0
        passes = 0
        while True:
            s, r, b = m.run()
            passes += 1
            extra_cpu += getattr(m.run, "cpu", 0.0)
            samples = samples + s if s is not None else None
            rows = rows + r if r is not None else None
            nbytes = nbytes + b if b is not None else None
            wall = time.perf_counter() - wall0
            if (wall if m.basis == "wall" else time.process_time() - cpu0) >= min_time:
                break
        cpu_self = time.process_time() - cpu0
        ticks1 = _ticks(m.children() if m.children else [])
        # per process: children that came or went during the pass count what they did in it
        cpu_kids = sum(t - ticks0.get(p, 0) for p, t in ticks1.items()) / os.sysconf(
            "SC_CLK_TCK") + extra_cpu
        exp_s, exp_r = m.expect
        if exp_r is not None and rows is not None and rows != exp_r * passes:
            raise SystemExit(f"{m.name}: {rows} rows in {passes} passes, the manifest says "
                             f"{exp_r} per pass")
        if exp_s is not None and samples is not None and samples != exp_s * passes:
            raise SystemExit(f"{m.name}: {samples} samples in {passes} passes, the manifest "
                             f"says {exp_s} per pass")
        if samples is None and exp_s is not None and rows is not None:
            samples = exp_s * passes  # row streams: images/s from the manifest's samples
        cpu = cpu_self + cpu_kids
        res = {"passes": passes, "cpu_seconds": cpu, "cpu_self_seconds": cpu_self,
               "wall_seconds": wall, "basis": m.basis}
        for unit, n in (("samples", samples), ("rows", rows), ("mb", nbytes)):
            scale = 1e6 if unit == "mb" else 1
            res[f"{unit}_per_cpu_s"] = n / cpu / scale if n is not None else None
            res[f"{unit}_per_wall_s"] = n / wall / scale if n is not None else None
        key = "samples" if samples is not None else "mb"
        if best is None or res[f"{key}_per_{m.basis}_s"] > best[f"{key}_per_{m.basis}_s"]:
            best = res
    if m.note:
        best["note"] = m.note
    best.update(m.extra)
    return best


def first_row_local(root, split, tier, cache, n=5) -> dict:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ds = hf.load_dataset(str(root), "vqa", streaming=True, split=split, tiers=tier,
                             cache_dir=cache)
        next(iter(ds))
        times.append(time.perf_counter() - t0)
    return {"seconds_median": statistics.median(times), "seconds_min": min(times),
            "runs": len(times)}


def first_row_cold(root, split, tier, cache) -> dict:
    """In a fresh interpreter: imports (torch comes with datasets' streaming) + first row."""
    code = (
        "import sys, time; t0 = time.perf_counter(); sys.path.insert(0, sys.argv[1])\n"
        "import sarlang_data\n"
        "t1 = time.perf_counter()\n"
        "ds = sarlang_data.load_dataset(sys.argv[2], 'vqa', streaming=True, split=sys.argv[3],"
        " tiers=sys.argv[4] or None, cache_dir=sys.argv[5])\n"
        "next(iter(ds)); t2 = time.perf_counter()\n"
        "print(t2 - t0, t2 - t1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO), str(root), split,
                          tier or "", cache], capture_output=True, text=True, check=True)
    total, after_import = map(float, out.stdout.split())
    return {"seconds_with_imports": total, "seconds_after_import_sarlang_data": after_import}


def first_row_http(root, split, tier, cache, work: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from servers import ServerStartError, start_nginx
    except ImportError as e:
        raise Skip(f"tests/servers.py does not import: {e}") from None
    try:
        server = start_nginx(root, work)
    except (ServerStartError, FileNotFoundError) as e:
        raise Skip(f"nginx does not start: {str(e).splitlines()[0]}") from None
    with server:
        url = server.url.rstrip("/")
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ds = hf.load_dataset(url, "vqa", streaming=True, split=split, tiers=tier,
                                 cache_dir=cache)
            row = next(iter(ds))
            times.append(time.perf_counter() - t0)
        if not row.get("key"):
            raise SystemExit(f"a row over HTTP without a key: {row}")
    return {"seconds_median": statistics.median(times), "seconds_min": min(times),
            "runs": len(times), "url": "nginx on 127.0.0.1"}


def ratio(results, num, den, target=None, basis="cpu"):
    """images/s of ``num`` over ``den``; basis "mixed": num per wall s over den per CPU s."""
    a, b = results.get(num), results.get(den)
    if not a or not b or "skipped" in a or "skipped" in b:
        return None
    if basis == "mixed":  # parallel wall throughput against one core's
        x, y = a.get("samples_per_wall_s"), b.get("samples_per_cpu_s")
    else:
        x, y = a.get(f"samples_per_{basis}_s"), b.get(f"samples_per_{basis}_s")
    if not x or not y:
        return None
    out = {"value": x / y, "basis": basis}
    if target is not None:
        out.update(target=target, met=x / y >= target)
    return out


RATIOS = [
    # (label, numerator, denominator, target, basis)
    ("vqa streaming / datasets builder (images/s)", "ours vqa, decode=False",
     "datasets WebDataset builder, decode=False", 5.0, "cpu"),
    ("vqa streaming / webdataset raw (images/s)", "ours vqa, decode=False",
     "webdataset raw", 3.0, "cpu"),
    ("our reader / minimal tar parser", "our reader (iter_samples)", "minimal tar parser",
     0.9, "cpu"),
    ("our reader / minimal parser + group", "our reader (iter_samples)",
     "minimal parser + group", None, "cpu"),
    ("our reader / minimal parser + group + json", "our reader (iter_samples)",
     "minimal parser + group + json", None, "cpu"),
    ("our reader / minimal parser + group + orjson (the same work)",
     "our reader (iter_samples)", "minimal parser + group + orjson", None, "cpu"),
    ("our reader / stdlib tarfile", "our reader (iter_samples)", "stdlib tarfile", None, "cpu"),
    # issue 15: rows without decoding at the parse floor (0.9 at 512 px, 0.5 at 64 px), and
    # decoded images scaling with DataLoader workers (2 workers >= 1.8x one process)
    ("images decode=False / minimal tar parser", "ours images, decode=False",
     "minimal tar parser", None, "cpu"),
    ("vqa decode=False / minimal tar parser (images/s)", "ours vqa, decode=False",
     "minimal tar parser", None, "cpu"),
    ("DataLoader images decoded, collate, 2 workers / 0 workers (wall)",
     "DataLoader images decoded, collate, 2 workers",
     "DataLoader images decoded, collate, 0 workers", 1.8, "wall"),
    ("images decoded / decode-only (per core)", "ours images, decoded", "PIL decode-only loop",
     0.9, "cpu"),
    ("DataLoader images decoded, collate, 2 workers (wall) / decode-only (1 core)",
     "DataLoader images decoded, collate, 2 workers", "PIL decode-only loop", 1.8, "mixed"),
    ("DataLoader images decoded, collate, 2 workers / decode-only, 2 processes (wall)",
     "DataLoader images decoded, collate, 2 workers", "PIL decode-only loop, 2 processes",
     None, "wall"),
    ("decode-only, 2 processes (wall) / decode-only (1 core)",
     "PIL decode-only loop, 2 processes", "PIL decode-only loop", None, "mixed"),
    ("DataLoader images decoded, collate, 0 workers / decode-only (per core)",
     "DataLoader images decoded, collate, 0 workers", "PIL decode-only loop", None, "cpu"),
    ("DataLoader images decoded, 2 workers (wall) / decode-only (1 core)",
     "DataLoader images decoded, 2 workers", "PIL decode-only loop", None, "mixed"),
    ("DataLoader images decoded, 1 worker (wall) / decode-only (1 core)",
     "DataLoader images decoded, 1 worker", "PIL decode-only loop", None, "mixed"),
    ("vqa decoded / decode-only (images/s, per core)", "ours vqa, decoded",
     "PIL decode-only loop", None, "cpu"),
    ("images decode=False / datasets builder decode=False", "ours images, decode=False",
     "datasets WebDataset builder, decode=False", None, "cpu"),
    ("images decoded / datasets builder decoded", "ours images, decoded",
     "datasets WebDataset builder, decoded", None, "cpu"),
    ("vqa streaming / mosaicml-streaming raw", "ours vqa, decode=False",
     "mosaicml-streaming raw (MDS)", None, "cpu"),
    ("vqa streaming / litdata raw", "ours vqa, decode=False", "litdata raw", None, "cpu"),
    ("DataLoader vqa, 2 workers / 0 workers (wall)", "DataLoader vqa decode=False, 2 workers",
     "DataLoader vqa decode=False, 0 workers", None, "wall"),
    ("build 2 workers / 1 worker (wall)", "build, 2 workers", "build, 1 worker", None, "wall"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", type=Path, help="dataset root to read (default: build a synth one)")
    ap.add_argument("--release", type=Path,
                    help="release folder for the build methods (default: the synth one; "
                         "with --root and no --release the build methods are skipped)")
    ap.add_argument("--gsd-table", type=Path, help="GSD table of --release")
    ap.add_argument("--preset", default="medium",
                    help="synth preset when no --root (default medium: 11,833 images in "
                         "shards of the full set's sizes)")
    ap.add_argument("--image-size", type=int, default=512, help="synth image size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default=None,
                    help="read only the shards of this split ('all': every split; default: "
                         "test for a synth root, all for --root)")
    ap.add_argument("--tier", default=None, help="read only the shards of this tier")
    ap.add_argument("--only", nargs="+", help="run only methods matching these patterns")
    ap.add_argument("--repeat", type=int, default=3, help="passes per method; the best counts")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds a pass lasts at least")
    ap.add_argument("--build-repeat", type=int, default=1,
                    help="passes of each build method (each is a whole build)")
    ap.add_argument("--no-first-row", action="store_true", help="skip the first-row timings")
    ap.add_argument("--profile", nargs="+", metavar="PATTERN",
                    help="profile the methods matching these patterns with pyinstrument "
                         "(one extra pass, not timed) and write the call tree to "
                         "bench/results/profile-<method>-<time>.txt")
    ap.add_argument("--compare", type=Path, help="an earlier JSON result to compare with")
    ap.add_argument("--work", type=Path,
                    help="keep the synth release and root here and reuse them in later runs "
                         "(default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = ap.parse_args(argv)
    if a.split is None and a.root is None:
        a.split = "test"  # 1,449 images of the medium preset: passes of a few seconds
    if a.split == "all":
        a.split = None
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch  # noqa: F401 - datasets' streaming imports it anyway; keep it out of timings

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sarlang-bench-") as tmp:
        work = a.work or Path(tmp)  # the synth release and root (kept with --work)
        scratch = Path(tmp)  # conversions, builds and caches of this run
        cache = str(scratch / "hf-cache")
        root = a.root or make_root(work, a.preset, a.image_size, a.seed)
        release = a.release or (None if a.root else work / "syn" / "SARLANG_1M")
        gsd = a.gsd_table or (None if a.root else work / "syn" / "gsd_table.csv")
        manifest = read_manifest(root)
        shards = [s for s in manifest["shards"] if s["path"].endswith(".tar")
                  and a.split in (None, s["split"]) and a.tier in (None, s["tier"])]
        paths = [str(root / s["path"]) for s in shards]
        total_mb = sum(Path(p).stat().st_size for p in paths) / 1e6
        n_samples = sum(s["samples"] for s in shards)

        def rows_of(config):
            return sum(s["configs"][config] for s in shards)

        images = [s["image"] for p in paths for s in reader.iter_samples(p)]
        # datasets' decoded rows: its Image feature, which runs Pillow with .load() too
        plans: list[tuple[str, Callable[[], Method]]] = [
            ("read bytes", lambda: Method("read bytes", lambda: read_bytes(paths))),
            ("stdlib tarfile", lambda: Method("stdlib tarfile", lambda: stdlib_tarfile(paths),
                                              expect=(n_samples, None))),
            ("minimal tar parser", lambda: Method("minimal tar parser",
                                                  lambda: minimal_tar(paths))),
            ("minimal parser + group", lambda: Method(
                "minimal parser + group", lambda: minimal_grouped(paths),
                expect=(n_samples, None))),
            ("minimal parser + group + json", lambda: Method(
                "minimal parser + group + json", lambda: minimal_samples(paths),
                expect=(n_samples, None))),
            ("minimal parser + group + orjson", lambda: Method(
                "minimal parser + group + orjson", lambda: minimal_samples_orjson(paths),
                expect=(n_samples, None))),
            ("our reader (iter_samples)", lambda: Method(
                "our reader (iter_samples)", lambda: our_reader(paths),
                expect=(n_samples, None))),
            ("webdataset raw", lambda: Method("webdataset raw", webdataset_method(paths, False),
                                              expect=(n_samples, None))),
            ("webdataset decoded", lambda: Method(
                "webdataset decoded", webdataset_method(paths, True), expect=(n_samples, None),
                note='.decode("pil"): images to PIL, JSON to dicts')),
            ("datasets WebDataset builder, decode=False", lambda: Method(
                "datasets WebDataset builder, decode=False",
                stock_builder(root, a.split, a.tier, False, cache), expect=(n_samples, None),
                note="README configs (no-code path)")),
            ("datasets WebDataset builder, decoded", lambda: Method(
                "datasets WebDataset builder, decoded",
                stock_builder(root, a.split, a.tier, True, cache), expect=(n_samples, None),
                note="README configs; images to PIL")),
        ]
        plans.append(("mosaicml-streaming raw (MDS)", lambda: _converted(
            "mosaicml-streaming raw (MDS)", mosaic_method, paths, scratch, n_samples)))
        plans.append(("litdata raw", lambda: _converted(
            "litdata raw", litdata_method, paths, scratch, n_samples)))
        for config in ("images", "vqa", "captions"):
            for dec in (False, True):
                name = f"ours {config}, {'decoded' if dec else 'decode=False'}"
                plans.append((name, lambda c=config, d=dec, n=name: Method(
                    n, ours(root, c, d, a.split, a.tier, cache),
                    expect=(n_samples, rows_of(c)))))
        plans.append(("PIL decode-only loop", lambda: Method(
            "PIL decode-only loop", decode_only(images), expect=(n_samples, None),
            note="Image.open(BytesIO(b)).load() over the same image bytes")))

        def make_parallel(n="PIL decode-only loop, 2 processes"):
            run, kids = decode_only_parallel(images, 2)
            run()  # fork and warm the pool: passes measure the steady state
            return Method(n, run, basis="wall", children=kids, expect=(n_samples, None),
                          note="the same loop, every other image in each of 2 forked "
                               "processes: the ceiling for 2 workers here")

        plans.append(("PIL decode-only loop, 2 processes", make_parallel))
        for config, dec, how in (("vqa", False, "identity"), ("images", True, "identity"),
                                 ("images", True, "collate")):
            for w in (0, 1, 2):
                name = (f"DataLoader {config} {'decoded' if dec else 'decode=False'}"
                        f"{', collate' if how == 'collate' else ''}, "
                        f"{w} worker{'s' if w != 1 else ''}")

                # identity collate: rows (bytes, PIL images) are pickled through the workers'
                # pipe. sarlang_data.torch.collate makes uint8 tensors in one buffer per batch,
                # in shared memory inside a worker: one file descriptor crosses per batch
                def make(c=config, d=dec, w=w, n=name, how=how):
                    from sarlang_data.torch import collate

                    fn = _identity if how == "identity" else collate
                    run, kids = dataloader(root, c, d, a.split, a.tier, cache, w, fn)
                    run()  # start the workers and warm them: passes measure the steady state
                    return Method(n, run, basis="wall" if w else "cpu", children=kids,
                                  expect=(n_samples, rows_of(c)),
                                  note=f"batch {BATCH}, "
                                       + ("identity collate" if how == "identity" else
                                          "sarlang_data.torch.collate (uint8 tensors)")
                                       + (", persistent workers" if w else ""))

                plans.append((name, make))
        for w in (1, 2):
            name = f"build, {w} worker{'s' if w > 1 else ''}"

            def make_build(w=w, n=name):
                if release is None:
                    raise Skip("no release (pass --release with --root)")
                return Method(n, build_method(release, gsd, w, scratch), basis="wall",
                              note="child process per pass, whole process tree's CPU")

            plans.append((name, make_build))

        results: dict[str, dict] = {}
        read_bytes(paths)  # page cache warm
        for name, make in plans:
            if a.only and not any(fnmatch.fnmatch(name, pat) for pat in a.only):
                continue
            try:
                method = make()
                repeat = a.build_repeat if name.startswith("build") else a.repeat
                results[name] = measure(method, repeat, 0.0 if name.startswith("build")
                                        else a.min_time)
                if a.profile and any(fnmatch.fnmatch(name, pat) for pat in a.profile):
                    results[name]["profile"] = str(profile(method, a.out, a.min_time))
            except Skip as e:
                results[name] = {"skipped": str(e)}
            except Exception as e:  # noqa: BLE001 - an anchor that breaks is skipped, noted
                if name.startswith("ours") or name.startswith("our ") or "DataLoader" in name:
                    raise
                results[name] = {"skipped": f"{type(e).__name__}: {e}"[:300]}
            r = results[name]
            print(f"  {name}: " + (f"skipped ({r['skipped']})" if "skipped" in r else
                                   f"{_fmt(r, 'samples') or _fmt(r, 'mb')} /s ({r['basis']})"),
                  file=sys.stderr, flush=True)
        first = {}
        if not a.no_first_row and not a.only:
            split = a.split or next(s["split"] for s in shards)
            first["local, in process"] = first_row_local(root, split, a.tier, cache)
            first["local, fresh interpreter"] = first_row_cold(root, split, a.tier, cache)
            try:
                first["http (nginx)"] = first_row_http(root, split, a.tier, cache, scratch)
            except Skip as e:
                first["http (nginx)"] = {"skipped": str(e)}

    ratios = {label: r for label, num, den, target, basis in RATIOS
              if (r := ratio(results, num, den, target, basis)) is not None}
    if first.get("local, in process"):
        v = first["local, in process"]["seconds_median"]
        ratios["first row, local (s, median of 5)"] = {"value": v, "target": 0.5,
                                                        "met": v < 0.5, "basis": "wall"}
    if first.get("http (nginx)", {}).get("seconds_median") is not None:
        v = first["http (nginx)"]["seconds_median"]
        ratios["first row, HTTP (s, median of 5)"] = {"value": v, "target": 1.0,
                                                       "met": v < 1.0, "basis": "wall"}
    where = (str(a.root) if a.root else f"synth {a.preset} @ {a.image_size}px (seed {a.seed})")
    sel = ", ".join(f"{k} {v}" for k, v in (("split", a.split), ("tier", a.tier)) if v)
    print(f"\nroot: {where}{f' ({sel})' if sel else ''} - {len(paths)} shards, {n_samples} "
          f"samples, {total_mb:.1f} MB; best of {a.repeat}; load average "
          f"{load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print(table(results))
    print()
    for label, r in ratios.items():
        met = "" if "target" not in r else (" (target >= " if "first row" not in label else
                                            " (target < ") + f"{r['target']}: " + (
            "met)" if r["met"] else "NOT met)")
        print(f"{label:72} {r['value']:7.2f}  [{r['basis']}]{met}")
    for name, r in first.items():
        print(f"first row, {name}: " + ("skipped (" + r["skipped"] + ")" if "skipped" in r else
                                        json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                                    for k, v in r.items()})))
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
        "load_average": {"before": load0, "after": os.getloadavg()},
        "root": str(a.root) if a.root else {"preset": a.preset, "image_size": a.image_size,
                                            "seed": a.seed},
        "split": a.split, "tier": a.tier, "shards": len(paths), "samples": n_samples,
        "mb": total_mb, "repeat": a.repeat, "min_time": a.min_time,
        "results": results, "ratios": ratios, "first_row": first,
    }
    if a.compare:
        compare(json.loads(a.compare.read_text()), doc)
    a.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ([f"bench_read-{stamp}.json"] + ([] if a.only else ["latest.json"])):
        part = a.out / (name + ".partial")
        part.write_text(text)
        os.replace(part, a.out / name)
    print(f"\nwrote {a.out / f'bench_read-{stamp}.json'}")
    return 0


def profile(m: Method, out: Path, min_time: float) -> Path:
    """Run ``m`` under pyinstrument for at least ``min_time`` s; write the call tree."""
    from pyinstrument import Profiler

    prof = Profiler(interval=0.0002)
    prof.start()
    t0 = time.process_time()
    while time.process_time() - t0 < max(min_time, 1.0):
        m.run()
    prof.stop()
    out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in m.name.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    path = out / f"profile-{slug}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text(prof.output_text(unicode=False, color=False, show_all=True))
    return path


def _converted(name, fn, paths, work, n_samples):
    run, extra = fn(paths, work)
    return Method(name, run, expect=(n_samples, None), extra=extra,
                  note=f"same samples converted in {extra['convert_seconds']:.1f} s (not timed)")


def _fmt(r, unit):
    v = r.get(f"{unit}_per_{r['basis']}_s")
    return None if v is None else f"{v:,.0f}"


def table(results: dict[str, dict]) -> str:
    lines = [f"{'method':46} {'samples/s':>10} {'rows/s':>10} {'MB/s':>7} {'basis':>5} "
             f"{'samples/s':>10} {'cpu/wall':>8}  note",
             f"{'':46} {'':>10} {'':>10} {'':>7} {'':>5} {'(wall)':>10}"]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"{name:46} {'skipped':>10}  {r['skipped']}")
            continue
        b = r["basis"]

        def cell(unit, basis=b, width=10, r=r):
            v = r.get(f"{unit}_per_{basis}_s")
            return f"{v:>{width},.0f}" if v is not None else f"{'-':>{width}}"

        lines.append(f"{name:46} {cell('samples')} {cell('rows')} {cell('mb', width=7)} "
                     f"{b:>5} {cell('samples', 'wall')} "
                     f"{r['cpu_seconds'] / r['wall_seconds']:8.2f}  {r.get('note', '')}")
    return "\n".join(lines)


def compare(old: dict, new: dict) -> None:
    print(f"\ncompared with the run of {old.get('when')} (new / old, same basis):")
    for name, r in new["results"].items():
        o = old.get("results", {}).get(name)
        if not o or "skipped" in o or "skipped" in r:
            continue
        unit = "samples" if r.get("samples_per_cpu_s") else "mb"
        b = r["basis"]
        ov = o.get(f"{unit}_per_{b}_s") or o.get(f"{unit}_per_s")
        if ov:
            print(f"  {name:46} {r[f'{unit}_per_{b}_s'] / ov:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
