"""Regenerate the repo's top-level dataset_card.md from a `full` synthetic build.

Usage:
    python scripts/make_dataset_card.py            # synth full + build (~2 min), write both files
    python scripts/make_dataset_card.py --render   # re-render dataset_card.md from the JSON
    python scripts/make_dataset_card.py --check    # rebuild, compare with the committed files

The card is a pure function of two small inputs: ``card_facts(manifest)`` and
``stats(root)`` (see ``sarlang_data/format/card.py``). This script builds the full-size synthetic
release (``synth --preset full --seed 0 --image-size 16``: the published totals, 16-pixel
images so it takes about two minutes), keeps those two inputs in ``dataset_card.json`` beside
the card, and renders ``dataset_card.md`` from them. ``tests/test_card.py`` re-renders the card
from the committed JSON (so a change to the card code shows up as a diff) and checks the JSON's
totals against the synthetic generator's plan for ``full`` (so a change to the generator's
counts does too); ``--check`` is the slow, complete proof that the JSON equals a fresh build.
Once the real release is built, point ``--root`` at it instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "dataset_card.md"
INPUT = REPO / "dataset_card.json"
SYNTH = {"preset": "full", "seed": 0, "image_size": 16}
REPO_ID = "ORG/sarlang-1m"


def note_for(synth: dict | None) -> str | None:
    """Return the card's note on where its numbers come from (None for a real build)."""
    if not synth:
        return None
    return (
        "The numbers on this card come from the seeded synthetic stand-in of the full release "
        f"(`sarlang-data synth --preset {synth['preset']} --seed {synth['seed']} --image-size "
        f"{synth['image_size']}`, then `sarlang-data build`), used until the real release is "
        "built: its counts follow the published totals; its cities, tiers and byte sizes are "
        f"the generator's ({synth['image_size']}-pixel images), not the real data's."
    )


def card_input(root: Path, synth: dict | None) -> dict:
    """Return what the card is rendered from: the manifest's card facts and the index stats."""
    from sarlang_data.format.card import card_facts
    from sarlang_data.format.manifest import read_manifest
    from sarlang_data.format.stats import stats

    return {"synth": synth, "facts": card_facts(read_manifest(root)), "stats": stats(root)}


def render(inp: dict) -> str:
    """Render dataset_card.md from a card input."""
    from sarlang_data.format.card import render_card

    return render_card(inp["facts"], inp["stats"], repo_id=REPO_ID, note=note_for(inp["synth"]))


def input_bytes(inp: dict) -> bytes:
    """Serialise a card input as dataset_card.json holds it."""
    return (json.dumps(inp, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def build_full(workdir: Path, workers: int = 2) -> dict:
    """Generate and build the full synthetic release in ``workdir``; return its card input."""
    from sarlang_data.adapters.stock import write_stock
    from sarlang_data.ingest.build import BuildOptions, build
    from sarlang_data.ingest.synth import generate

    syn = workdir / "syn"
    generate(syn, preset=SYNTH["preset"], seed=SYNTH["seed"], image_size=SYNTH["image_size"],
             workers=workers, progress=True)
    root = workdir / "root"
    build(syn / "SARLANG_1M", root,
          BuildOptions(workers=workers, gsd_table=syn / "gsd_table.csv"), progress=True)
    write_stock(root, progress=True)  # as `sarlang-data build` does
    return card_input(root, SYNTH)


def main() -> int:
    """Command-line entry; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--render", action="store_true",
                      help="re-render dataset_card.md from dataset_card.json (no build)")
    mode.add_argument("--check", action="store_true",
                      help="build afresh and compare with the committed files (exit 1 on a diff)")
    p.add_argument("--root", type=Path, default=None,
                   help="take the inputs from this built root instead of a synthetic build")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    sys.path.insert(0, str(REPO))
    if a.render:
        inp = json.loads(INPUT.read_text())
    elif a.root is not None:
        inp = card_input(a.root, None)
    else:
        with tempfile.TemporaryDirectory(prefix="sarlang-card-") as tmp:
            inp = build_full(Path(tmp), a.workers)
    text = render(inp).encode("utf-8")
    if a.check:
        same = INPUT.read_bytes() == input_bytes(inp) and CARD.read_bytes() == text
        print("dataset_card.json and dataset_card.md match a fresh build" if same else
              "dataset_card.json or dataset_card.md differ from a fresh build: run "
              "python scripts/make_dataset_card.py")
        return 0 if same else 1
    from sarlang_data.format.tar import write_atomic

    if not a.render:
        write_atomic(INPUT, input_bytes(inp))
    write_atomic(CARD, text)
    print(f"wrote {CARD}" + ("" if a.render else f" and {INPUT}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
