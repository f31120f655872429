"""Rebuild the bundled preview root (`shards/`) from the seeded synthetic release.

Usage: python scripts/build_preview.py [--out shards]

The preview is `synth --preset preview --seed 0`, built with the synth's GSD table, with its
stock-datasets mirror (`stock/`) as `sarlang-data build` writes it. A test
(`tests/test_preview.py`) runs the same function into a temporary folder and checks that every
file is byte-identical to the committed `shards/`, so the preview cannot drift from the code.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

PREVIEW_SEED = 0
PREVIEW_PRESET = "preview"


def build_preview(out: Path, workers: int = 2) -> dict:
    """Generate the preview release in a temporary folder and build it into ``out``.

    Args:
        out: the dataset root to write (replaced if it exists).
        workers: build processes.

    Returns:
        The manifest of the built root.
    """
    from sarlang_data.adapters.stock import write_stock
    from sarlang_data.ingest.build import BuildOptions, build
    from sarlang_data.ingest.synth import generate

    with tempfile.TemporaryDirectory(prefix="sarlang-preview-") as tmp:
        syn = Path(tmp) / "syn"
        generate(syn, preset=PREVIEW_PRESET, seed=PREVIEW_SEED, progress=False)
        staged = Path(tmp) / "root"
        manifest = build(
            syn / "SARLANG_1M", staged,
            BuildOptions(workers=workers, gsd_table=syn / "gsd_table.csv"), progress=False,
        )
        # the stock-datasets mirror (stock/*.parquet), as `sarlang-data build` writes it
        manifest = {**manifest, "stock": write_stock(staged)}
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    return manifest


def main() -> None:
    """Command-line entry: rebuild the preview into --out (default: shards/ of this repo)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "shards")
    a = p.parse_args()
    m = build_preview(a.out)
    size = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file())
    print(f"preview: {m['counts']} in {len(m['shards'])} shards, {size} bytes at {a.out}")


if __name__ == "__main__":
    main()
