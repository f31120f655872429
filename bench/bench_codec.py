"""Image codec benchmark: PNG (Pillow) vs pixel members (``--image-codec zstd``), one run.

For each image size (512 and 256 by default) and each kind of image (``raw``: the synthetic
speckle; ``filtered``: the same release with every PNG passed through a speckle filter, median
5x5 by default, as the authors' preprocessed images are smooth) it makes a seeded synthetic
release, builds the source root (the release's PNG/JPEG bytes), transcodes it to a zstd root of
pixel members version 2 (the default) and one of version 1 (``zstd1``: roots built before it),
and measures over the same samples (the PNG images of the high-resolution sources; SARDet JPEGs
stay JPEG):

- decode-only loops: Pillow on the PNG bytes, zlib's inflate of their IDAT alone, the zstd codec
  to a PIL image and to a numpy array, zstd's decompression alone;
- ``sarlang_data.load_dataset(root, "images", streaming=True)`` with ``decode=True`` (PIL
  images), and ``decode=False`` (the cost of everything but decoding);
- a torch ``DataLoader`` over those streams (``split="train"``, ``--passes`` passes per epoch)
  with 0 and 2 workers, in four variants: batches of uint8 tensors made from PIL rows
  (``decode=True``, ``np.asarray`` of each image); made straight from the members
  (``decode=False``; pixel members through ``codec.decode_array``, PNG through Pillow); the
  members handed to the main process, which decodes them into one reused array
  (``codec.decode_into``); and rows only, no decoding (the pipeline's own cost);
- bytes: all shards and the image members of both roots, and the members' bytes on smoother
  images (median 5x5 and box 3x3 filters imitating the speckle-filtered release).

Throughput is images per CPU second of every process involved (per core): single-process
methods by ``time.process_time``, DataLoader runs by this process plus its workers' CPU time
from ``/proc``. Each method runs ``--repeat`` times and the best pass counts; the methods
compared run interleaved, so they share whatever else loads the machine. Results go to
``bench/results/bench_codec-<time>.json`` and ``bench/results/codec_latest.json``.

The synthetic roots hold one shard per (split, tier, city), a few images each, so the
pipeline's per-shard cost weighs more per image here than in 256 MiB shards of real data
(the "decode=False" and "rows only" lines show it); it is the same for both codecs.

Targets (issue 7): at 512x512 the zstd codec gives >= 5x Pillow-on-PNG images per core through
``load_dataset`` and through the DataLoader, at <= 1.1x the PNG root's bytes. Issue 15 (pixel
members version 2): on filtered 512 px images <= 1.05x the PNG members' bytes while decoding
>= 4x Pillow-on-PNG per core through ``load_dataset``; on raw speckle no more bytes than
version 1. The DataLoader variants run on the raw images only (``--kinds``).

Usage::

    python bench/bench_codec.py                  # sizes 512 and 256, raw and filtered
    python bench/bench_codec.py --kinds filtered --sizes 512 --no-dataloader
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sarlang_data.format import codec  # noqa: E402
from sarlang_data.format.manifest import read_index, read_manifest  # noqa: E402
from sarlang_data.remote import read_range  # noqa: E402

#: the sources whose release images are PNG (SARDet-100K's are JPEG and keep their bytes)
PNG_SOURCES = ["dfc2023", "oem_sar", "spacenet6"]
_TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- roots


#: speckle filters of the ``filtered`` kind (Pillow's; the release's exact filter is unknown)
FILTERS = {"median5": ("MedianFilter", 5), "median3": ("MedianFilter", 3),
           "box3": ("BoxBlur", 1)}


def filter_release(release: Path, name: str) -> int:
    """Pass every PNG of a synthetic release through a speckle filter, in place."""
    from PIL import Image, ImageFilter

    cls, arg = FILTERS[name]
    n = 0
    for path in sorted(release.rglob("*.png")):
        with Image.open(path) as im:
            out = im.filter(getattr(ImageFilter, cls)(arg))
        out.save(path, format="PNG", compress_level=6)  # as synth writes its PNGs
        n += 1
    return n


def make_roots(work: Path, preset: str, size: int, seed: int, filt: str | None = None) -> dict:
    """Synthesise a release (filtered if asked), build its source root, transcode it to zstd."""
    from sarlang_data.ingest import synth
    from sarlang_data.ingest.build import BuildOptions, build
    from sarlang_data.ingest.transcode import transcode_root

    syn, src, zst = work / "syn", work / "source", work / "zstd"
    synth.generate(syn, preset=preset, seed=seed, image_size=size, progress=False, workers=2)
    if filt:
        filter_release(syn / "SARLANG_1M", filt)
    t = time.perf_counter()
    build(syn / "SARLANG_1M", src, BuildOptions(gsd_table=syn / "gsd_table.csv", workers=2),
          progress=False)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    transcode_root(src, zst, workers=2, progress=False)
    t_transcode = time.perf_counter() - t
    t = time.perf_counter()
    transcode_root(src, work / "zstd1", workers=2, progress=False, pixel_version=1)
    t_transcode1 = time.perf_counter() - t
    n = read_manifest(src)["counts"]["samples"]
    return {"release": syn / "SARLANG_1M", "source": src, "zstd": zst, "zstd1": work / "zstd1",
            "build_s": t_build, "transcode_s": t_transcode, "transcode_v1_s": t_transcode1,
            "samples": n}


def members(root: Path, keys: list[str] | None = None) -> tuple[list[str], list[bytes]]:
    """The image members of a root's PNG-source samples (in index order)."""
    rows = [r for r in read_index(root, columns=["key", "shard", "source", "image_offset",
                                                 "image_size"]).to_pylist()
            if r["source"] in PNG_SOURCES and (keys is None or r["key"] in keys)]
    data = [read_range(str(root / r["shard"]), r["image_offset"], r["image_size"])
            for r in rows]
    return [r["key"] for r in rows], data


# --------------------------------------------------------------------------- methods


def _summary(images: int, cpu: float, wall: float) -> dict:
    return {"images": images, "cpu_s": cpu, "wall_s": wall,
            "images_per_cpu_s": images / cpu, "images_per_wall_s": images / wall,
            "ms_per_image": 1e3 * cpu / images}


def best_cpu(methods: dict[str, Callable[[], int]], repeat: int) -> dict[str, dict]:
    """Run each method (returns images done) ``repeat`` times, interleaved; best CPU pass.

    Interleaving gives the methods compared the same share of whatever else the machine is
    doing while the benchmark runs.
    """
    for fn in methods.values():
        fn()  # warm caches and imports
    best: dict[str, dict] = {}
    for _ in range(repeat):
        for name, fn in methods.items():
            t, w = time.process_time(), time.perf_counter()
            n = fn()
            cpu, wall = time.process_time() - t, time.perf_counter() - w
            if name not in best or cpu < best[name]["cpu_s"]:
                best[name] = _summary(n, cpu, wall)
    return best


def loop(fn: Callable[[bytes], object], items: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        for b in items:
            fn(b)
        return len(items)

    return run


def pillow_decode(data: bytes) -> object:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def inflate_idat(data: bytes) -> bytes:
    """zlib's part of decoding a PNG: inflate the concatenated IDAT chunks (no unfiltering)."""
    pos, idat = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return zlib.decompress(b"".join(idat))


def through_load_dataset(root: Path, decode: bool) -> Callable[[], int]:
    """A pass over the streams (made once: a real run amortises their setup over many rows)."""
    from sarlang_data import load_dataset

    ds = load_dataset(str(root), "images", streaming=True, sources=PNG_SOURCES, decode=decode)

    def run() -> int:
        n = 0
        for part in ds.values():
            for row in part:
                if decode:
                    row["image"].load()
                n += 1
        return n

    return run


def _batch(arrays: list[np.ndarray]):
    """Stack arrays into one tensor, in shared memory inside a DataLoader worker.

    As torch's ``default_collate`` does: the batch is written once, into the memory the main
    process maps, instead of being copied there after stacking.
    """
    import torch

    shape = (len(arrays), *arrays[0].shape)
    if torch.utils.data.get_worker_info() is not None:
        storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))  # noqa: SLF001
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    np.stack(arrays, out=out.numpy())
    return out


def collate_pil(batch: list[dict]):
    """Rows decoded by datasets (PIL images) -> one uint8 tensor."""
    return _batch([np.asarray(r["image"]) for r in batch])


def _array(value: dict) -> np.ndarray:
    if codec.is_member(value["bytes"]):
        return codec.decode_array(value["bytes"])  # a view of the decompressed pixels
    return np.asarray(pillow_decode(value["bytes"]))


def collate_direct(batch: list[dict]):
    """Undecoded rows -> one uint8 tensor, straight from arrays (no PIL for pixel members)."""
    return _batch([_array(r["image"]) for r in batch])


def collate_count(batch: list[dict]) -> int:
    """Undecoded rows -> their count: the DataLoader's cost without decoding or tensors."""
    return len(batch)


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def collate_members(batch: list[dict]) -> list[bytes]:
    """Undecoded rows -> their image members, to decode in the main process."""
    return [r["image"]["bytes"] for r in batch]


class MainDecoder:
    """Decode batches of members in the main process into one reused array.

    Workers only read; the main process decodes each member straight into its slot of a
    buffer it keeps (no fresh shared memory per batch). Pixel members go through
    ``codec.decode_into``, PNG through Pillow.
    """

    def __init__(self) -> None:
        self.buf: np.ndarray | None = None

    def __call__(self, members: list[bytes]) -> np.ndarray:
        first = (codec.decode_array(members[0]) if codec.is_member(members[0])
                 else np.asarray(pillow_decode(members[0])))
        shape = (len(members), *first.shape)
        if self.buf is None or self.buf.shape[1:] != shape[1:] or len(self.buf) < len(members):
            self.buf = np.empty(shape, first.dtype)
        out = self.buf[:len(members)]
        out[0] = first
        for i, m in enumerate(members[1:], 1):
            if codec.is_member(m):
                codec.decode_into(m, out[i])
            else:
                out[i] = np.asarray(pillow_decode(m))
        return out


#: DataLoader variants: (rows decoded by datasets, collate in the workers, decode in main)
VARIANTS = {
    "PIL rows": (True, collate_pil, False),
    "direct arrays": (False, collate_direct, False),
    "members, decoded in main": (False, collate_members, True),
    "no decode (rows only)": (False, collate_count, False),
}


def _repeated(ds, passes: int):
    """The stream ``passes`` times over in one DataLoader epoch.

    The synthetic roots are small (tens of images per split), so a plain epoch would mostly
    measure the DataLoader's per-epoch handshake; a real epoch runs over many thousands of rows.
    Each pass is a normal iteration of the stream (in a worker: its share of the rows).
    """
    import torch

    class Repeated(torch.utils.data.IterableDataset):
        def __iter__(self):
            for _ in range(passes):
                yield from ds

    return Repeated()


def _loader(root: Path, workers: int, kind: str, batch_size: int, passes: int):
    import torch

    from sarlang_data import load_dataset

    decode, collate, _ = VARIANTS[kind]
    ds = load_dataset(str(root), "images", split="train", streaming=True, sources=PNG_SOURCES,
                      decode=decode)
    return torch.utils.data.DataLoader(
        _repeated(ds, passes), batch_size=batch_size, num_workers=workers,
        persistent_workers=workers > 0, collate_fn=collate)


def through_dataloader(roots: dict[str, Path], workers: int, kind: str, passes: int,
                       batch_size: int, repeat: int) -> dict[str, dict]:
    """Images per CPU second (this process and its workers) over one warm epoch of ``passes``.

    The loaders of the roots compared run side by side (persistent workers) and their passes
    alternate.
    """
    main_decode = VARIANTS[kind][2]
    loaders = {name: _loader(root, workers, kind, batch_size, passes)
               for name, root in roots.items()}
    decoder = MainDecoder()

    def epoch(loader) -> int:
        n = 0
        for b in loader:
            if main_decode:
                b = decoder(b)
            n += b if isinstance(b, int) else len(b)
        return n

    pids = {}
    for name, loader in loaders.items():
        epoch(loader)  # start the workers, warm caches
        pids[name] = [w.pid for w in loader._iterator._workers] if workers else []  # noqa: SLF001
    best: dict[str, dict] = {}
    for _ in range(repeat):
        for name, loader in loaders.items():
            cpu0 = time.process_time() + sum(_proc_cpu(p) for p in pids[name])
            wall0 = time.perf_counter()
            n = epoch(loader)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() + sum(_proc_cpu(p) for p in pids[name]) - cpu0
            if name not in best or cpu < best[name]["cpu_s"]:
                best[name] = _summary(n, cpu, wall)
    return best


# --------------------------------------------------------------------------- bytes


def smoothed_bytes(pngs: list[bytes]) -> dict:
    """PNG vs pixel-member bytes (both versions) of the images after other smoothing filters."""
    from PIL import Image, ImageFilter

    out = {}
    for name, filt in (("median 5x5", ImageFilter.MedianFilter(5)),
                       ("median 3x3", ImageFilter.MedianFilter(3)),
                       ("box 3x3", ImageFilter.BoxBlur(1))):
        png_b = v1_b = v2_b = 0
        smooth_png, smooth_v2 = [], []
        for data in pngs:
            im = Image.open(io.BytesIO(data)).filter(filt)
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=6)  # as the synthetic release's PNGs
            v2 = codec.encode_image(im, version=2).member
            png_b += buf.tell()
            v1_b += len(codec.encode_image(im, version=1).member)
            v2_b += len(v2)
            smooth_png.append(buf.getvalue())
            smooth_v2.append(v2)
        out[name] = {"png_bytes": png_b, "v1_bytes": v1_b, "v2_bytes": v2_b,
                     "v1_ratio": v1_b / png_b, "v2_ratio": v2_b / png_b,
                     **{k: v["ms_per_image"] for k, v in best_cpu({
                         "pillow_png_ms": loop(pillow_decode, smooth_png),
                         "zstd_v2_ms": loop(codec.decode_image, smooth_v2)}, 3).items()}}
    return out


# --------------------------------------------------------------------------- main


def bench_size(work: Path, preset: str, size: int, seed: int, repeat: int, passes: int,
               batch_size: int, filt: str | None, dataloader: bool) -> dict:
    roots = make_roots(work, preset, size, seed, filt)
    keys, pngs = members(roots["source"])
    zkeys, zsts = members(roots["zstd"], set(keys))
    z1keys, z1s = members(roots["zstd1"], set(keys))
    assert zkeys == keys == z1keys and all(codec.is_member(m) for m in zsts + z1s), "roots differ"
    kind = filt or "raw"
    log = lambda msg: print(f"  [{size} {kind}] {msg}", file=sys.stderr)  # noqa: E731
    log(f"{len(keys)} PNG images; build {roots['build_s']:.1f} s, transcode "
        f"{roots['transcode_s']:.1f} s (v1 {roots['transcode_v1_s']:.1f} s)")
    predictors = [0] * len(codec.PREDICTORS)
    for m in zsts:
        raw = codec._dctx().decompress(m)  # noqa: SLF001
        predictors[raw[7]] += 1

    dctx = codec._dctx()  # noqa: SLF001 - the codec's own decompressor, for the bare cost
    decode = best_cpu({
        "pillow PNG": loop(pillow_decode, pngs),
        "zlib inflate of PNG IDAT only": loop(inflate_idat, pngs),
        "zstd codec -> PIL (decode_image)": loop(codec.decode_image, zsts),
        "zstd codec -> numpy (decode_array)": loop(codec.decode_array, zsts),
        "zstd decompress only": loop(dctx.decompress, zsts),
        "zstd v1 -> PIL (decode_image)": loop(codec.decode_image, z1s),
        "zstd v1 decompress only": loop(dctx.decompress, z1s),
    }, repeat)
    log("decode-only loops done")
    names = {"source": "PNG", "zstd": "zstd", "zstd1": "zstd v1"}
    load = best_cpu({
        f"{names[c]} root, decode={dec}": through_load_dataset(roots[c], dec)
        for dec in (True, False) for c in ("source", "zstd", "zstd1")
    }, repeat)
    log("load_dataset done")
    loader = {}
    if dataloader:
        for workers in (0, 2):
            for variant in VARIANTS:
                got = through_dataloader({"PNG": roots["source"], "zstd": roots["zstd"]},
                                         workers, variant, passes, batch_size,
                                         max(2, repeat // 2))
                for name, m in got.items():
                    loader[f"{name} root, {workers} workers, {variant}"] = m
        log("DataLoader done")

    src_m, zst_m = read_manifest(roots["source"]), read_manifest(roots["zstd"])
    z1_m = read_manifest(roots["zstd1"])
    sizes = {
        "shards_png_root": src_m["counts"]["bytes"],
        "shards_zstd_root": zst_m["counts"]["bytes"],
        "shards_zstd_v1_root": z1_m["counts"]["bytes"],
        "shards_ratio": zst_m["counts"]["bytes"] / src_m["counts"]["bytes"],
        "shards_v1_ratio": z1_m["counts"]["bytes"] / src_m["counts"]["bytes"],
        "png_members": sum(map(len, pngs)),
        "zstd_members": sum(map(len, zsts)),
        "zstd_v1_members": sum(map(len, z1s)),
        "members_ratio": sum(map(len, zsts)) / sum(map(len, pngs)),
        "members_v1_ratio": sum(map(len, z1s)) / sum(map(len, pngs)),
        "v2_predictors": dict(zip(codec.PREDICTORS, predictors, strict=True)),
    }
    if filt is None:
        sizes["smoothed"] = smoothed_bytes(pngs)
    log("bytes done")

    def ratio(table: dict, a: str, b: str) -> float:
        return table[a]["images_per_cpu_s"] / table[b]["images_per_cpu_s"]

    ratios = {
        "decode-only: zstd codec (PIL) / pillow PNG":
            ratio(decode, "zstd codec -> PIL (decode_image)", "pillow PNG"),
        "decode-only: zstd codec (numpy) / pillow PNG":
            ratio(decode, "zstd codec -> numpy (decode_array)", "pillow PNG"),
        "decode-only: zstd v1 (PIL) / pillow PNG":
            ratio(decode, "zstd v1 -> PIL (decode_image)", "pillow PNG"),
        "load_dataset decode=True: zstd / PNG":
            ratio(load, "zstd root, decode=True", "PNG root, decode=True"),
        "load_dataset decode=True: zstd v1 / PNG":
            ratio(load, "zstd v1 root, decode=True", "PNG root, decode=True"),
    }
    if dataloader:
        for workers in (0, 2):
            for variant in list(VARIANTS)[:3]:
                ratios[f"DataLoader {workers} workers, {variant}: zstd / PNG"] = ratio(
                    loader, f"zstd root, {workers} workers, {variant}",
                    f"PNG root, {workers} workers, {variant}")
    return {"kind": kind, "size": size, "images": len(keys), "samples": roots["samples"],
            "build_s": roots["build_s"], "transcode_s": roots["transcode_s"],
            "transcode_v1_s": roots["transcode_v1_s"], "decode_only": decode,
            "load_dataset": load, "dataloader": loader, "bytes": sizes, "ratios": ratios}


def report(name: str, r: dict) -> None:
    print(f"\n== {name}: {r['images']} PNG images of {r['samples']} samples "
          f"(per CPU second, best pass)")
    for title in ("decode_only", "load_dataset", "dataloader"):
        if not r[title]:
            continue
        print(f"{title}:")
        for label, m in r[title].items():
            extra = (f"  wall {m['images_per_wall_s']:8,.0f}/s" if "images_per_wall_s" in m
                     else "")
            print(f"  {label:50} {m['images_per_cpu_s']:9,.0f} img/s  "
                  f"{m['ms_per_image']:6.3f} ms{extra}")
    b = r["bytes"]
    print(f"bytes: shards PNG root {b['shards_png_root']:,}, zstd root {b['shards_zstd_root']:,} "
          f"({b['shards_ratio']:.3f}x; v1 {b['shards_v1_ratio']:.3f}x); image members "
          f"{b['members_ratio']:.3f}x (v1 {b['members_v1_ratio']:.3f}x); v2 predictors "
          f"{b['v2_predictors']}")
    for label, sm in b.get("smoothed", {}).items():
        print(f"  smoothed ({label}): members v2 {sm['v2_ratio']:.3f}x (v1 {sm['v1_ratio']:.3f}x) "
              f"the PNG bytes; decode {sm['pillow_png_ms']:.3f} ms PNG vs {sm['zstd_v2_ms']:.3f} "
              "ms zstd v2")
    print("ratios:")
    for label, v in r["ratios"].items():
        print(f"  {label:52} {v:6.2f}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--kinds", nargs="+", default=["raw", "filtered"],
                    choices=["raw", "filtered"])
    ap.add_argument("--filter", default="median5", choices=sorted(FILTERS),
                    help="the speckle filter of the filtered kind")
    ap.add_argument("--no-dataloader", action="store_true",
                    help="skip the DataLoader variants (they run on raw images only)")
    ap.add_argument("--preset", default="preview", choices=["tiny", "preview"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--passes", type=int, default=8,
                    help="passes over the stream per measured DataLoader epoch")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work", type=Path, default=None, help="keep the roots here")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    a = ap.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_codec-") as tmp:
        base = a.work or Path(tmp)
        for size in a.sizes:
            for kind in a.kinds:
                filt = a.filter if kind == "filtered" else None
                name = f"{size}" if kind == "raw" else f"{size} {a.filter}"
                results[name] = bench_size(
                    base / f"s{size}-{kind}", a.preset, size, a.seed, a.repeat, a.passes,
                    a.batch_size, filt, kind == "raw" and not a.no_dataloader)
    for name, r in results.items():
        report(name, r)

    targets = {}
    raw, filtered = results.get("512"), results.get(f"512 {a.filter}")
    if raw is not None and raw["dataloader"]:
        r = raw["ratios"]
        targets.update({
            "load_dataset zstd/PNG >= 5 (raw)": r["load_dataset decode=True: zstd / PNG"] >= 5,
            "DataLoader, 0 workers, direct arrays: zstd/PNG >= 5":
                r["DataLoader 0 workers, direct arrays: zstd / PNG"] >= 5,
            "DataLoader, 2 workers, direct arrays: zstd/PNG >= 5":
                r["DataLoader 2 workers, direct arrays: zstd / PNG"] >= 5,
            "DataLoader, 2 workers, members decoded in main: zstd/PNG >= 5":
                r["DataLoader 2 workers, members, decoded in main: zstd / PNG"] >= 5,
        })
    if raw is not None:
        targets.update({
            "zstd root bytes <= 1.1x PNG root (raw)": raw["bytes"]["shards_ratio"] <= 1.1,
            "raw speckle: v2 members <= v1 members":
                raw["bytes"]["zstd_members"] <= raw["bytes"]["zstd_v1_members"],
        })
    if filtered is not None:
        targets.update({
            "filtered: v2 members <= 1.05x PNG": filtered["bytes"]["members_ratio"] <= 1.05,
            "filtered: load_dataset zstd/PNG >= 4":
                filtered["ratios"]["load_dataset decode=True: zstd / PNG"] >= 4,
        })
    if targets:
        print("\ntargets at 512x512:")
        for label, ok in targets.items():
            print(f"  {label:60} {'met' if ok else 'MISSED'}")

    a.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "codec": {"level": codec.LEVEL, "ext": codec.EXT, "pixel_version": codec.PIXEL_VERSION,
                  "v2_params": {k: int(v) for k, v in codec.V2_PARAMS.items()}},
        "synth": {"preset": a.preset, "seed": a.seed, "sizes": a.sizes, "kinds": a.kinds,
                  "filter": a.filter},
        "repeat": a.repeat, "passes": a.passes, "batch_size": a.batch_size,
        "results": results, "targets_512": targets or None,
    }
    text = json.dumps(doc, indent=1) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"bench_codec-{stamp}.json", "codec_latest.json"):
        tmp_path = a.out / (name + ".partial")
        tmp_path.write_text(text)
        os.replace(tmp_path, a.out / name)
    print(f"\nwrote {a.out / f'bench_codec-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
