"""`sarlang-data` subcommands: a thin layer over the library functions.

Each subcommand parses its options, calls one library function and prints its result.
Heavy modules are imported inside the handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import SarlangError


def _csv_list(values: list[str] | None) -> list[str] | None:
    """Flatten repeated and comma-separated options (``--city a,b --city c``)."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _cmd_synth(a: argparse.Namespace) -> int:
    from .synth import generate

    summary = generate(
        a.out, preset=a.preset, seed=a.seed, image_size=a.image_size, labels=a.labels,
        originals=a.originals, workers=a.workers, progress=not a.quiet,
    )
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


def _cmd_build(a: argparse.Namespace) -> int:
    from .build import BuildOptions, build

    columns = None
    if a.columns:
        columns = dict(pair.split("=", 1) for pair in _csv_list(a.columns))
    opts = BuildOptions(
        workers=a.workers, shard_size=a.shard_size, originals=a.originals, compress=a.compress,
        gsd_table=a.gsd_table, columns=columns, max_reject_rate=a.max_reject_rate,
        image_codec=a.image_codec,
    )
    manifest = build(a.release, a.out, opts, progress=not a.quiet)
    c = manifest["counts"]
    print(
        f"built {a.out}: {len(manifest['shards'])} shards, {c['samples']} samples, "
        f"{c['captions']} captions, {c['qa']} QA pairs, {c['rejects']} rejects "
        f"({', '.join(f'{k}={v}' for k, v in sorted(manifest['rejects'].items())) or 'none'})"
    )
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from .manifest import verify

    report = verify(a.root, check_images=not a.shards_only)
    print(
        f"ok: {report['shards']} shards, {report['samples']} samples, "
        f"{report['images']} image hashes verified"
    )
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    from .manifest import format_stats, stats

    st = stats(a.root)
    print(json.dumps(st, indent=1, sort_keys=True) if a.json else format_stats(st))
    return 0


def _cmd_card(a: argparse.Namespace) -> int:
    from .card import write_card

    path = write_card(a.root)
    print(f"wrote {path}")
    return 0


def _cmd_stream(a: argparse.Namespace) -> int:
    from .hf import stream_rows

    return stream_rows(
        a.config, data=a.data, limit=a.limit, cities=_csv_list(a.city), tiers=_csv_list(a.tier),
        sources=_csv_list(a.source), split=a.split, decode=not a.no_decode, out=sys.stdout,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``sarlang-data`` command."""
    p = argparse.ArgumentParser(
        prog="sarlang-data",
        description="SARLANG-1M as a streaming dataset: synthesise, build, verify, stream.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "synth", help="write a seeded synthetic release in the authors' layout",
        description="Example: sarlang-data synth --preset preview --seed 0 --out /tmp/syn",
    )
    s.add_argument("--preset", choices=["tiny", "preview", "full"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True,
                   help="folder; gets SARLANG_1M/ (the release), truth/ and gsd_table.csv")
    s.add_argument("--image-size", type=int, default=None,
                   help="square image side in pixels for the high-resolution sources "
                        "(default: per preset)")
    s.add_argument("--labels", choices=["present", "absent"], default="present",
                   help="absent: text files carry no task or caption-kind column")
    s.add_argument("--originals", action="store_true", help="also write float32 .tif originals")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_synth)

    b = sub.add_parser(
        "build", help="turn a release into a dataset root (shards, manifest, index, card)",
        description="Example: sarlang-data build /tmp/syn/SARLANG_1M --out /tmp/root "
                    "--gsd-table /tmp/syn/gsd_table.csv --workers 2",
    )
    b.add_argument("release", type=Path, help="release folder holding SARimages/ and Text/")
    b.add_argument("--out", type=Path, required=True, help="dataset root to write")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--shard-size", type=int, default=256 * 2**20, help="bytes (default 256 MiB)")
    b.add_argument("--originals", action="store_true",
                   help="add {key}.tif.zst from SARimages_original/ or .tif beside the image")
    b.add_argument("--compress", choices=["none", "archive"], default="none")
    b.add_argument("--gsd-table", type=Path, default=None,
                   help="CSV with columns file_name,gsd_m (overrides per-source defaults)")
    b.add_argument("--columns", action="append", default=None,
                   help="explicit column mapping, e.g. image=img_path,question=q,answer=a")
    b.add_argument("--max-reject-rate", type=float, default=0.05,
                   help="fail when more than this fraction of text rows is rejected")
    b.add_argument("--image-codec", choices=["source"], default="source")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=_cmd_build)

    v = sub.add_parser("verify", help="check shards and images against manifest and index")
    v.add_argument("root")
    v.add_argument("--shards-only", action="store_true", help="skip per-image hashes")
    v.set_defaults(func=_cmd_verify)

    st = sub.add_parser("stats", help="counts by split, tier, city, source, task, caption kind")
    st.add_argument("root")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_stats)

    c = sub.add_parser("card", help="write ROOT/README.md (the dataset card) from the manifest")
    c.add_argument("root")
    c.set_defaults(func=_cmd_card)

    r = sub.add_parser(
        "stream", help="print rows of a config and the rows/s",
        description="Example: sarlang-data stream vqa --limit 5 --city rotterdam",
    )
    r.add_argument("config", nargs="?", default="images")
    r.add_argument("--data", default=None,
                   help="dataset root (path or fsspec URL); default $SARLANG_DATA or the preview")
    r.add_argument("--split", default=None)
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--city", action="append")
    r.add_argument("--tier", action="append")
    r.add_argument("--source", action="append")
    r.add_argument("--no-decode", action="store_true", help="keep image bytes undecoded")
    r.set_defaults(func=_cmd_stream)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``sarlang-data`` command; return its exit status."""
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return a.func(a)
    except SarlangError as e:
        print(f"sarlang-data {a.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
