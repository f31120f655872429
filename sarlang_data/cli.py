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
from .ingest.workers import MAX_PIXELS


def _csv_list(values: list[str] | None) -> list[str] | None:
    """Flatten repeated and comma-separated options (``--city a,b --city c``)."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _cmd_synth(a: argparse.Namespace) -> int:
    from .ingest.synth import generate

    summary = generate(
        a.out, preset=a.preset, seed=a.seed, image_size=a.image_size, labels=a.labels,
        originals=a.originals, workers=a.workers, progress=not a.quiet,
    )
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


def _cmd_build(a: argparse.Namespace) -> int:
    from .ingest.build import BuildOptions, build

    columns = None
    if a.columns:
        columns = dict(pair.split("=", 1) for pair in _csv_list(a.columns))
    opts = BuildOptions(
        workers=a.workers, shard_size=a.shard_size, originals=a.originals, compress=a.compress,
        gsd_table=a.gsd_table, columns=columns, max_reject_rate=a.max_reject_rate,
        image_codec=a.image_codec, zstd_jpeg=a.zstd_jpeg, pixel_version=a.pixel_version,
        max_pixels=a.max_pixels, overwrite=a.overwrite,
    )
    manifest = build(a.release, a.out, opts, progress=not a.quiet)
    if not a.no_stock and a.image_codec == "source":
        from .adapters.stock import write_stock

        write_stock(a.out, progress=not a.quiet)
    c = manifest["counts"]
    print(
        f"built {a.out}: {len(manifest['shards'])} shards, {c['samples']} samples, "
        f"{c['captions']} captions, {c['qa']} QA pairs, {c['rejects']} rejects "
        f"({', '.join(f'{k}={v}' for k, v in sorted(manifest['rejects'].items())) or 'none'})"
    )
    return 0


def _cmd_transcode(a: argparse.Namespace) -> int:
    from .format.manifest import read_manifest
    from .ingest.transcode import describe, transcode_root

    before = read_manifest(a.root)["counts"]["bytes"]
    manifest = transcode_root(a.root, a.out, image_codec=a.image_codec, zstd_jpeg=a.zstd_jpeg,
                              pixel_version=a.pixel_version, workers=a.workers,
                              progress=not a.quiet)
    print(f"transcoded {a.root} -> {a.out}: {describe(manifest, before)}")
    return 0


def _add_codec_options(p: argparse.ArgumentParser, default: str) -> None:
    """``--image-codec`` and ``--zstd-jpeg``, shared by build and transcode."""
    p.add_argument("--image-codec", choices=["source", "zstd"], default=default,
                   help="source: images keep the release's PNG/JPEG bytes (the Hub copy); "
                        "zstd: PNG images are stored as their decoded pixels, losslessly, as "
                        "{key}.npy.zst (a training copy that decodes several times faster)")
    p.add_argument("--zstd-jpeg", action="store_true",
                   help="with --image-codec zstd, store JPEG images as pixels too (their "
                        "pixels take several times the JPEG's bytes)")
    p.add_argument("--pixel-version", type=int, choices=[1, 2], default=2,
                   help="with --image-codec zstd, the pixel member version: 2 (a predictor "
                        "per image before zstd; about the PNG's bytes on speckle-filtered "
                        "images) or 1 (the members of roots built before version 2)")


def _cmd_verify(a: argparse.Namespace) -> int:
    from .format.verify import verify

    report = verify(a.root, check_images=not a.shards_only, decode=a.decode)
    print(
        f"ok: {report['shards']} shards, {report['samples']} samples, "
        f"{report['images']} image hashes verified"
        + (", every image decoded" if a.decode and not a.shards_only else "")
    )
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    from .format.stats import format_stats, stats

    if a.plot is not None:
        from .viz.charts import write_stats_plots

        for path in write_stats_plots(a.root, a.plot):
            print(f"wrote {path}")
        return 0
    st = stats(a.root)
    print(json.dumps(st, indent=1, sort_keys=True) if a.json else format_stats(st))
    return 0


def _cmd_card(a: argparse.Namespace) -> int:
    from .format.card import write_card

    path = write_card(a.root, repo_id=a.repo)
    print(f"wrote {path}")
    for picture in sorted((path.parent / "assets").glob("*")):
        print(f"wrote {picture}")
    return 0


def _cmd_show(a: argparse.Namespace) -> int:
    from .viz.figures import show_sample

    path = show_sample(a.key, data=a.data, out=a.out)
    print(f"wrote {path}")
    return 0


def _cmd_publish(a: argparse.Namespace) -> int:
    from .hub import publish

    plan = publish(a.root, a.repo, revision=a.revision, private=a.private or None,
                   dry_run=a.dry_run, endpoint=a.endpoint)
    print(plan.describe())
    if a.dry_run:
        print("dry run: nothing was created or sent")
    else:
        print(f"done: {len(plan.commits)} commits to {a.repo}")
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    from .hub import download

    report = download(
        a.repo, url=a.url, out=a.out, cities=_csv_list(a.city), tiers=_csv_list(a.tier),
        splits=_csv_list(a.split), sources=_csv_list(a.source), tasks=_csv_list(a.task),
        exact=a.exact, revision=a.revision, dry_run=a.dry_run, endpoint=a.endpoint,
        workers=a.workers, progress=not a.quiet, image_codec=a.image_codec,
        zstd_jpeg=a.zstd_jpeg,
    )
    print(report.describe())
    if a.dry_run:
        print("dry run: read manifest.json and index.parquet only; no shard fetched, nothing "
              "written")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .adapters.export import export

    report = export(
        a.config, data=a.data, split=a.split, format=a.format, out=a.out, name=a.name,
        chat_format=a.chat_format, chat_group=a.chat_group, max_turns=a.max_turns,
        cities=_csv_list(a.city), tiers=_csv_list(a.tier), sources=_csv_list(a.source),
        progress=not a.quiet,
    )
    print(report.describe())
    return 0


def _cmd_stock(a: argparse.Namespace) -> int:
    from .adapters.stock import write_stock

    stock = write_stock(a.root, progress=not a.quiet)
    rows = sum(f["rows"] for f in stock["files"])
    size = sum(f["bytes"] for f in stock["files"])
    print(f"wrote {len(stock['files'])} stock parquet files ({rows} rows, {size} bytes) under "
          f"{Path(a.root) / 'stock'}, and the manifest and card that declare them")
    return 0


def _cmd_stream(a: argparse.Namespace) -> int:
    from .adapters.console import stream_rows

    return stream_rows(
        a.config, data=a.data, limit=a.limit, cities=_csv_list(a.city), tiers=_csv_list(a.tier),
        sources=_csv_list(a.source), split=a.split, decode=not a.no_decode, out=sys.stdout,
    )


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from .benchmark import evaluate, format_table

    report = evaluate(
        a.predictions, data=a.data, split=a.split, judge=a.judge, judge_url=a.judge_url,
        judge_model=a.judge_model, judge_key_env=a.judge_key_env, judge_cache=a.judge_cache,
        judge_concurrency=a.judge_concurrency, judge_retries=a.judge_retries,
        judge_timeout=a.judge_timeout, export=a.export,
        sections=_csv_list(a.section), tokenizer=a.tokenizer,
        meteor=False if a.no_meteor else None, out=a.out, markdown=a.markdown,
        progress=not a.quiet,
    )
    print(format_table(report), end="")
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from .benchmark import predict

    result = predict(
        a.model, config=a.config, split=a.split, data=a.data, out=a.out,
        batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, engine=a.engine,
        ray_address=a.ray_address, ray_actors=a.ray_actors, limit=a.limit, device=a.device,
        dtype=a.dtype, threads=a.threads, progress=not a.quiet,
    )
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


def _cmd_lmms_task(a: argparse.Namespace) -> int:
    from .benchmark import write_task

    info = write_task(a.data, a.out, split=a.split, limit=a.limit,
                      max_new_tokens=a.max_new_tokens)
    print(json.dumps(info, indent=1, sort_keys=True))
    return 0


def _add_benchmark_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the benchmark subcommands: evaluate, predict, lmms-eval-task."""
    e = sub.add_parser(
        "evaluate", help="score predictions as the paper does; print its table",
        description="Example: sarlang-data evaluate preds.jsonl --data ./root --split test "
                    "--out report.json. PREDICTIONS: JSON lines {\"id\", \"prediction\"} "
                    "(what `predict` writes), LLaMA-Factory's generated_predictions.jsonl "
                    "(with --export DIR) or the authors' result CSV. VQA by the authors' rule; "
                    "undecided pairs go to --judge (none: counted wrong, with the bounds). "
                    "The judge's API key comes from the environment (--judge-key-env).",
    )
    e.add_argument("predictions", nargs="+", help="prediction file(s)")
    e.add_argument("--data", default=None,
                   help="dataset root (path or fsspec URL); default $SARLANG_DATA or the preview")
    e.add_argument("--split", default="test")
    e.add_argument("--judge", choices=["none", "openai", "local"], default="none")
    e.add_argument("--judge-url", default=None,
                   help="OpenAI-compatible endpoint (default https://api.openai.com/v1)")
    e.add_argument("--judge-model", default=None,
                   help="model name (openai, default gpt-4o-mini) or folder (local)")
    e.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never printed)")
    e.add_argument("--judge-cache", default=None,
                   help="verdict cache file (default ~/.cache/sarlang-data/judge-verdicts.jsonl)")
    e.add_argument("--judge-concurrency", type=int, default=8)
    e.add_argument("--judge-retries", type=int, default=5)
    e.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per request")
    e.add_argument("--export", default=None,
                   help="the `sarlang-data export` folder LLaMA-Factory predicted on")
    e.add_argument("--section", action="append", help="vqa or captions (default: those answered)")
    e.add_argument("--tokenizer", choices=["auto", "ptb", "simple"], default="auto",
                   help="caption tokenizer (auto: PTB when java is on PATH)")
    e.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a JVM)")
    e.add_argument("--out", default=None, help="write the report as JSON")
    e.add_argument("--markdown", default=None, help="write the table as Markdown")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser(
        "predict", help="run an image-text-to-text model over a split (JSONL, resumable)",
        description="Example: sarlang-data predict --model ./my-llava --config vqa --split test "
                    "--data ./root --out preds.jsonl. One line {\"id\", \"prediction\"} per "
                    "row; ids already in --out are skipped. --engine ray reads the shards with "
                    "Ray Data and runs the model with map_batches on every node of a cluster.",
    )
    pr.add_argument("--model", required=True, help="model folder or Hub id")
    pr.add_argument("--config", default="vqa", help="a caption or VQA config")
    pr.add_argument("--split", default="test")
    pr.add_argument("--data", default=None,
                    help="dataset root (path or fsspec URL); default $SARLANG_DATA or the preview")
    pr.add_argument("--out", required=True, help="JSONL file (appended to)")
    pr.add_argument("--batch-size", type=int, default=8)
    pr.add_argument("--max-new-tokens", type=int, default=32)
    pr.add_argument("--engine", choices=["local", "ray"], default="local")
    pr.add_argument("--ray-address", default=None, help="Ray cluster (default: local/auto)")
    pr.add_argument("--ray-actors", type=int, default=None, help="model replicas on the cluster")
    pr.add_argument("--limit", type=int, default=None, help="at most this many new rows")
    pr.add_argument("--device", default=None, help="torch device (local engine)")
    pr.add_argument("--dtype", default=None, help="weights dtype, e.g. bfloat16")
    pr.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (local engine; 1 is often faster for small models)")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_cmd_predict)

    lt = sub.add_parser(
        "lmms-eval-task", help="write lmms-eval tasks sarlang_vqa and sarlang_caption",
        description="Example: sarlang-data lmms-eval-task --data ./root --split test --out "
                    "./tasks; then lmms-eval --include_path ./tasks --tasks "
                    "sarlang_vqa,sarlang_caption ...",
    )
    lt.add_argument("--data", default=None,
                    help="dataset root (path or fsspec URL); default $SARLANG_DATA or the preview")
    lt.add_argument("--split", default="test")
    lt.add_argument("--out", required=True, help="task folder to write")
    lt.add_argument("--limit", type=int, default=None, help="first rows of each task only")
    lt.add_argument("--max-new-tokens", type=int, default=64)
    lt.set_defaults(func=_cmd_lmms_task)


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
    s.add_argument("--preset", choices=["tiny", "preview", "medium", "full"], default="tiny")
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
    b.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="reject images with more pixels than this, width x height (default "
                        f"{MAX_PIXELS}, 4096 x 4096: a guard against decompression bombs)")
    b.add_argument("--overwrite", action="store_true",
                   help="replace a root in --out that was built from another release (only "
                        "files this package wrote are deleted)")
    b.add_argument("--max-reject-rate", type=float, default=0.05,
                   help="fail when more than this fraction of text rows is rejected")
    _add_codec_options(b, "source")
    b.add_argument("--no-stock", action="store_true",
                   help="skip the stock/ parquet mirror (stock datasets and the Hub viewer then "
                        "see raw WebDataset columns)")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=_cmd_build)

    t = sub.add_parser(
        "transcode", help="copy a dataset root with another image codec (a training copy)",
        description="Example: sarlang-data transcode ./sarlang-1m --image-codec zstd --out "
                    "./sarlang-1m-zstd. Reads ROOT (a path or fsspec URL), checks every image "
                    "against its index and writes the root `build --image-codec` would make.",
    )
    t.add_argument("root", help="source dataset root (local path or fsspec URL)")
    t.add_argument("--out", type=Path, required=True, help="new dataset root (new or empty)")
    _add_codec_options(t, "zstd")
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=_cmd_transcode)

    v = sub.add_parser("verify", help="check shards and images against manifest and index")
    v.add_argument("root")
    v.add_argument("--shards-only", action="store_true", help="skip per-image hashes")
    v.add_argument("--decode", action="store_true",
                   help="also decode every image fully (finds images of older builds that hash "
                        "right but do not decode)")
    v.set_defaults(func=_cmd_verify)

    st = sub.add_parser("stats", help="counts by split, tier, city, source, task, caption kind")
    st.add_argument("root")
    st.add_argument("--json", action="store_true")
    st.add_argument("--plot", type=Path, default=None, metavar="DIR",
                    help="write the statistics as bar charts (PNG) into DIR instead of printing")
    st.set_defaults(func=_cmd_stats)

    sh = sub.add_parser(
        "show", help="draw one sample (image, boxes, questions, answers, captions) to a PNG",
        description="Example: sarlang-data show sv_darwin_-12p4278_130p8688 --out s.png. The "
                    "sample is read at the index's offsets (one range read for a remote root).",
    )
    sh.add_argument("key", help="sample key (the index's `key` column)")
    sh.add_argument("--data", default=None,
                    help="dataset root (path or fsspec URL); default $SARLANG_DATA or the preview")
    sh.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sh.set_defaults(func=_cmd_show)

    c = sub.add_parser("card", help="write ROOT/README.md (the dataset card) and the pictures "
                       "it shows (ROOT/assets/) from the manifest, index and shards")
    c.add_argument("root")
    c.add_argument("--repo", default=None, help="Hub repo ORG/NAME the usage examples name")
    c.set_defaults(func=_cmd_card)

    pb = sub.add_parser(
        "publish", help="upload a dataset root to a Hub dataset repo (resumable, card last)",
        description="Example: sarlang-data publish /tmp/root --repo my-org/sarlang-1m --dry-run. "
                    "The token comes from huggingface_hub (HF_TOKEN or `huggingface-cli login`); "
                    "files the repo already holds (same sha256) are not sent again; README.md "
                    "is generated for the repo.",
    )
    pb.add_argument("root", help="local dataset root")
    pb.add_argument("--repo", required=True, help="Hub dataset repo ORG/NAME")
    pb.add_argument("--revision", default=None, help="branch to publish to (default: main)")
    pb.add_argument("--private", action="store_true", help="create the repo private")
    pb.add_argument("--dry-run", action="store_true", help="print the plan and sizes; send nothing")
    pb.add_argument("--endpoint", default=None, help="Hub endpoint (default $HF_ENDPOINT)")
    pb.set_defaults(func=_cmd_publish)

    d = sub.add_parser(
        "download",
        help="download a subset (city, tier, split, source, task) as a dataset root",
        description="Example: sarlang-data download --repo my-org/sarlang-1m --city rotterdam "
                    "--tier vhr --out ./sarlang-rotterdam. Whole shards holding the selected "
                    "samples by default; --exact fetches only their byte ranges and writes new "
                    "shards. Files are verified by sha256; a rerun keeps what verified.",
    )
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo", default=None, help="Hub dataset repo ORG/NAME")
    src.add_argument("--url", default=None,
                     help="dataset root: local path or fsspec URL (https://, s3://, hf://...)")
    d.add_argument("--out", type=Path, required=True, help="folder to write the subset root to")
    for flag, what in (("city", "city slug"), ("tier", "vhr, hr or mr"),
                       ("split", "train or test"),
                       ("source", "sardet100k, spacenet6, dfc2023 or oem_sar"),
                       ("task", "a VQA task, or captions: keeps the samples that have "
                                 "one, each with ALL of its texts")):
        d.add_argument(f"--{flag}", action="append", help=f"{what} (repeat or comma-separate)")
    d.add_argument("--exact", action="store_true",
                   help="fetch only the selected samples' byte ranges, write new shards")
    d.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    d.add_argument("--dry-run", action="store_true", help="print what would be fetched and sizes")
    d.add_argument("--endpoint", default=None, help="Hub endpoint (default $HF_ENDPOINT)")
    d.add_argument("--workers", type=int, default=4, help="parallel fetches")
    d.add_argument("--image-codec", choices=["source", "zstd"], default="source",
                   help="zstd: land the subset with lossless pixel members, ready for fast "
                        "training (downloads as published, then transcodes)")
    d.add_argument("--zstd-jpeg", action="store_true",
                   help="with --image-codec zstd, store JPEG sources as pixels too")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_download)

    e = sub.add_parser(
        "export", help="write a config's rows as a LLaMA-Factory folder or parquet files",
        description="Example: sarlang-data export vqa --data ROOT --split train --format "
                    "llamafactory --out ./sarlang-lf. llamafactory: DIR/dataset_info.json (an "
                    "entry LLaMA-Factory reads as is), DIR/ENTRY.jsonl and DIR/images/; "
                    "parquet: DIR/ENTRY-NNNNN.parquet with embedded images. Both write "
                    "DIR/ENTRY.ids.txt (row ids in row order, to join predictions). Streamed "
                    "and resumable: rerun the same command after an interruption.",
    )
    e.add_argument("config", help="config name (a text config for llamafactory)")
    e.add_argument("--data", default=None,
                   help="dataset root (path or fsspec URL, e.g. hf://datasets/ORG/NAME); "
                        "default $SARLANG_DATA or the preview")
    e.add_argument("--split", default="train", help="train or test (default train)")
    e.add_argument("--format", choices=["llamafactory", "parquet"], default="llamafactory")
    e.add_argument("--out", type=Path, required=True, help="folder to write")
    e.add_argument("--name", default=None,
                   help="the entry's name (default sarlang_CONFIG_SPLIT)")
    e.add_argument("--chat-format", choices=["trl", "llamafactory"], default=None,
                   help="parquet: chat rows in this layout (default: the config's own)")
    e.add_argument("--chat-group", choices=["text", "image"], default=None,
                   help="image: one multi-turn conversation per image")
    e.add_argument("--max-turns", type=int, default=None,
                   help="with --chat-group image: the most turns in one row")
    e.add_argument("--city", action="append")
    e.add_argument("--tier", action="append")
    e.add_argument("--source", action="append")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_export)

    sk = sub.add_parser(
        "stock", help="write ROOT/stock/: the parquet mirror stock datasets and the Hub "
                      "viewer read (one image column)",
        description="Writes the image-centric rows as parquet (the release's image bytes in one "
                    "decoded image column), then the manifest and the card that declare them. "
                    "`build` does this unless --no-stock.",
    )
    sk.add_argument("root", help="local dataset root")
    sk.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sk.set_defaults(func=_cmd_stock)

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
    _add_benchmark_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``sarlang-data`` command; return its exit status."""
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if a.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    from .remote import RedactFilter, guard_logs, redact

    if argv is None:  # the command itself, not a caller embedding it (tests, scripts)
        for library in ("huggingface_hub", "datasets"):
            # each prints its records through a handler of its own: passed on to ours as
            # well, every retry warning would show twice
            logging.getLogger(library).propagate = False
    # every record that reaches a handler is redacted, whichever library logged it (fsspec's
    # own DEBUG lines name URLs with their passwords)
    for name in ("", "huggingface_hub", "datasets"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(RedactFilter())
    guard_logs()
    try:
        return a.func(a)
    except SarlangError as e:
        print(f"sarlang-data {a.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader of our output went away (`sarlang-data stream vqa | head`): stop quietly,
        # as other command-line tools do, with no traceback and no second error at exit
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the signal
    except KeyboardInterrupt:
        print(f"sarlang-data {a.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last guard: no raw traceback, no secret
        import traceback

        if a.verbose:
            print(redact("".join(traceback.format_exception(e))), file=sys.stderr)
        print(f"sarlang-data {a.command}: internal error: {type(e).__name__}: {redact(e)}; "
              "this is a bug of sarlang-data, please report it with the command "
              + ("and the traceback above" if a.verbose else "(rerun with -v for details)"),
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
