"""The benchmark half end to end: ``predict`` with both engines, then ``evaluate``, on one root.

A tiny randomly initialised LLaVA-style model (built offline by ``tests/tiny_models.py``:
no weights can be downloaded here) predicts every ``vqa`` and ``captions`` row of a split,
once with the local engine and once with Ray Data (``map_batches`` actors on a local cluster
of this machine's CPUs); the two prediction files must agree line for line (greedy decoding),
then ``evaluate`` scores them as the paper does and prints the paper-style table.

The model is random, so its scores are near zero: the run measures the pipeline (rows/s of
each engine, every row of the split predicted once, the report's shape), not a model. A second
``evaluate`` scores the ground truth itself, which must give accuracy 1 and BLEU-1 1.

Usage::

    python bench/predict_eval.py --root ROOT                  # test split, both engines
    python bench/predict_eval.py --work /tmp/pe               # synth medium at 512 px first
    python bench/predict_eval.py --root ROOT --engines local --limit 500

Writes ``bench/results/predict_eval-<time>.json`` (rows/s per engine and config, the reports)
and the Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the offline tiny-model builder


def _load():
    return float(open("/proc/loadavg").read().split()[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", help="dataset root (default: synth medium at 512 px in --work)")
    ap.add_argument("--work", help="folder for the synth root, model and predictions "
                                   "(default: a temporary folder)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--configs", nargs="+", default=["vqa", "captions"])
    ap.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--limit", type=int, help="predict at most this many rows per config")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)

    from sarlang_data.benchmark import evaluate, predict
    from sarlang_data.benchmark.predictions import text_rows
    from sarlang_data.benchmark.report import format_table

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="predict-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.root:
        root = args.root
    else:
        from bench_read import make_root

        root = str(make_root(work, "medium", 512, 0))
    from tiny_models import build_llava

    model = work / "tiny-llava"
    if not (model / "config.json").exists():
        build_llava(model)

    runs = {}
    files = {}
    for engine in args.engines:
        out = work / f"preds-{engine}.jsonl"
        if out.exists():
            out.unlink()  # ours, from an earlier run of this script: time the whole split
        for config in args.configs:
            load0 = _load()
            r = predict(str(model), config=config, split=args.split, data=root, out=out,
                        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        engine=engine, limit=args.limit, threads=1 if engine == "local" else None,
                        progress=False)
            r["load_before"], r["load_after"] = load0, _load()
            runs[f"{engine}/{config}"] = r
            print(f"predict {engine:5} {config:9} {r['written']:>7,} rows "
                  f"{r['seconds']:8.1f} s {r['rows_per_s'] or 0:8.1f} rows/s "
                  f"(load {load0:.1f} -> {r['load_after']:.1f})", flush=True)
        files[engine] = out

    lines = {e: {j["id"]: j["prediction"] for j in map(json.loads, f.read_text().splitlines())}
             for e, f in files.items()}
    if len(lines) == 2:
        a, b = lines.values()
        same = sum(a[k] == b.get(k) for k in a)
        print(f"local and ray: {len(a):,} / {len(b):,} ids, {same:,} identical predictions")
        if set(a) != set(b) or same != len(a):
            print("MISMATCH between the engines", file=sys.stderr)
            return 1

    first = next(iter(files.values()))
    report = evaluate(first, data=root, split=args.split, out=work / "report.json",
                      markdown=work / "table.md")
    print(format_table(report))
    # the ground truth as predictions: every VQA row correct, every caption its own reference
    truth = {}
    for config in args.configs:
        for row in text_rows(root, args.split, config, None):
            truth[row["id"]] = row.get("answer", row.get("caption", row.get("text")))
    oracle = evaluate(truth, data=root, split=args.split)
    checks = {"vqa_accuracy": oracle.get("vqa", {}).get("accuracy"),
              "concise_BLEU-1": oracle.get("captions", {}).get("concise", {}).get("BLEU-1"),
              "detailed_BLEU-1": oracle.get("captions", {}).get("detailed", {}).get("BLEU-1")}
    print("ground truth as predictions:", checks)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"root": str(root), "split": args.split, "configs": args.configs,
              "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
              "nproc": os.cpu_count(), "predict": runs, "report": report,
              "ground_truth_checks": checks}
    path = out / f"predict_eval-{stamp}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / f"predict_eval-{stamp}.md").write_text(format_table(report, markdown=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
