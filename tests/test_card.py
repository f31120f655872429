"""The dataset card: Hub metadata, stock-datasets configs, numbers equal to manifest and index."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import yaml
from huggingface_hub import DatasetCard

from sarlang_data import schema
from sarlang_data.cli import main as cli_main
from sarlang_data.configs import CONFIGS
from sarlang_data.format.card import (
    LICENSE_DETAILS,
    card_facts,
    card_text,
    no_code_configs,
    render_card,
    size_category,
    write_card,
)
from sarlang_data.format.manifest import read_manifest
from sarlang_data.format.pictures import CONTACT_SHEET, STATS_CHART
from sarlang_data.format.stats import stats

REPO = Path(__file__).resolve().parent.parent


def _section(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table under ``heading`` (header row excluded)."""
    lines = text.split(heading + "\n", 1)[1].splitlines()
    rows = []
    started = False
    for line in lines:
        if line.startswith("|"):
            started = True
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif started:
            break
    return rows[2:]


def _num(cell: str) -> int:
    return int(cell.replace(",", ""))


def _meta(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


# --------------------------------------------------------------------------- the card of a root


def test_card_parses_and_carries_the_hub_metadata(tiny_root):
    text = (tiny_root / "README.md").read_text()
    m = read_manifest(tiny_root)
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "sarlang-1m-per-source"
    assert data["license_details"] == LICENSE_DETAILS and "CC BY-NC 4.0" in LICENSE_DETAILS
    assert data["pretty_name"] == "SARLANG-1M (streaming shards)"
    assert data["task_categories"] == ["image-to-text", "visual-question-answering"]
    assert data["tags"] == ["sar", "remote-sensing"] and data["language"] == ["en"]
    pairs = m["counts"]["captions"] + m["counts"]["qa"]
    assert data["size_categories"] == [size_category(pairs)] == ["n<1K"]
    assert data["configs"] == no_code_configs(m)
    assert [c["config_name"] for c in data["configs"]] == [
        n for n, c in CONFIGS.items() if c.no_code]
    assert [d["config_name"] for d in data["dataset_info"]] == [
        c["config_name"] for c in data["configs"]]
    assert card.text.lstrip().startswith("# SARLANG-1M")


def test_card_numbers_equal_manifest_and_index(tiny_root):
    text = (tiny_root / "README.md").read_text()
    m = read_manifest(tiny_root)
    st = stats(tiny_root)
    c = m["counts"]
    assert (f"**This root:** {c['samples']:,} images, {c['captions']:,} captions and "
            f"{c['qa']:,} QA pairs in {len(m['shards'])} shards") in text
    configs = {r[0].strip("`"): r for r in _section(text, "## Configs")}
    assert list(configs) == list(CONFIGS)
    for name, row in configs.items():
        want = m["configs"][name]
        assert [_num(x) for x in row[-3:]] == [want["train"] + want["test"], want["train"],
                                               want["test"]], name
        lib = "datasets" if CONFIGS[name].no_code and m.get("stock") else "sarlang_data"
        assert row[2] == f'`{lib}.load_dataset("ORG/NAME", "{name}")`', name
    for heading, dim in (("### By split", "split"), ("### By resolution tier", "tier"),
                         ("### By source", "source"), ("### By city", "city")):
        rows = {r[0].strip("`"): [_num(x) for x in r[-3:]] for r in _section(text, heading)}
        assert rows == {k: [v["samples"], v["captions"], v["qa"]]
                        for k, v in st[f"by_{dim}"].items()}, dim
    for heading, key, names in (("### By VQA task", "tasks", schema.TASKS),
                                ("### By caption kind", "caption_kinds", schema.CAPTION_KINDS)):
        rows = {r[0].strip("`"): [_num(x) for x in r[1:]] for r in _section(text, heading)}
        for n in names:
            per = st[key][n]
            assert rows[n] == [per["train"], per["test"], per["train"] + per["test"]]
        assert rows["**all**"][-1] == (c["qa"] if key == "tasks" else c["captions"])
    for task in schema.TASKS:  # the index's stats and the manifest's rows agree
        assert st["tasks"][task] == m["configs"][task]
    sources = {r[0].strip("`"): r for r in _section(text, "## Sources and licences")}
    assert sources["sardet100k"][-1] == "CC BY-NC 4.0"
    assert _num(sources["sardet100k"][-2]) == st["by_source"]["sardet100k"]["samples"]
    assert "not stated here" in sources["spacenet6"][-1]
    assert "archivePrefix = {arXiv}" in text and "eprint  = {2504.03254}" in text


def test_card_command_writes_the_card_for_a_repo_and_stock_datasets_loads_it(
        tiny_root, tmp_path, capsys):
    import datasets

    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    (root / "README.md").unlink()
    assert cli_main(["card", str(root), "--repo", "me/sar"]) == 0
    assert f"wrote {root / 'README.md'}" in capsys.readouterr().out
    text = (root / "README.md").read_text()
    assert 'datasets.load_dataset("me/sar", "vhr", streaming=True)' in text
    assert "sarlang-data download --repo me/sar --city rotterdam" in text
    m = read_manifest(root)
    for name in ("images", "mr"):
        ds = datasets.load_dataset(str(root), name, streaming=True,
                                   cache_dir=str(tmp_path / "c"))
        counts = {s: sum(1 for _ in part) for s, part in ds.items()}
        assert counts == {s: n for s, n in m["configs"][name].items() if n}, name


def test_write_card_is_what_the_build_wrote_and_survives_a_missing_index(tiny_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    before = (root / "README.md").read_bytes()
    pictures = {p: (root / p).read_bytes() for p in (CONTACT_SHEET, STATS_CHART)}
    write_card(root)
    assert (root / "README.md").read_bytes() == before
    assert {p: (root / p).read_bytes() for p in pictures} == pictures
    m = read_manifest(root)
    assert card_text(m, stats(root), pictures=list(pictures)) == before.decode()
    (root / "index.parquet").unlink()
    text = write_card(root).read_text()
    assert "No `index.parquet` was found" in text and "### By city" not in text
    assert _meta(text)["configs"] == no_code_configs(m)


def test_subset_cards_say_what_was_selected(tiny_root):
    m = read_manifest(tiny_root)
    st = stats(tiny_root)
    n = m["counts"]["samples"]
    sub = {"from": "hf://datasets/me/sar", "revision": "main", "commit": "a" * 40,
           "manifest_sha256": "0" * 64, "mode": "shards",
           "filters": {"cities": None, "tiers": ["vhr"], "splits": None, "sources": None,
                       "tasks": ["others"]},
           "selected": {"samples": n - 3, "captions": 1, "qa": 2, "bytes": 3}}
    text = card_text({**m, "subset": sub}, st)
    assert "## This is a subset" in text and f"commit `{'a' * 40}`" in text
    assert "Filters: tiers: vhr; tasks: others." in text
    assert f"{n - 3:,} of the {n:,} samples here match the filters; the other 3" in text
    text = card_text({**m, "subset": {**sub, "mode": "exact"}}, st)
    assert f"hold exactly the {n - 3:,} matching samples" in text
    assert "## This is a subset" not in card_text(m, st)


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 45_650, 1_126_277, 20_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "10M<n<100M"]


def test_tar_zst_shards_stay_out_of_the_no_code_configs(tiny_root):
    m = read_manifest(tiny_root)
    zm = {**m, "shards": [{**s, "path": s["path"] + ".zst"} if s["tier"] == "mr" else s
                          for s in m["shards"]]}
    facts = card_facts(zm)
    assert facts["shards"]["tar_zst"] == sum(1 for s in m["shards"] if s["tier"] == "mr")
    text = render_card(facts, None)
    assert [c["config_name"] for c in _meta(text)["configs"]] == ["images", "vhr", "hr"]
    assert "whole-archive `.tar.zst`" in text


# --------------------------------------------------------------------------- dataset_card.md


def _script():
    spec = importlib.util.spec_from_file_location("make_dataset_card",
                                                  REPO / "scripts" / "make_dataset_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dataset_card_md_is_rendered_from_its_committed_input():
    mod = _script()
    inp = json.loads(mod.INPUT.read_text())
    assert mod.INPUT.read_bytes() == mod.input_bytes(inp)
    assert mod.CARD.read_text() == mod.render(inp), (
        "dataset_card.md is stale: run `python scripts/make_dataset_card.py --render` (card "
        "code changed) or `python scripts/make_dataset_card.py` (generator changed)")
    meta = DatasetCard(mod.CARD.read_text()).data.to_dict()
    assert meta["size_categories"] == ["1M<n<10M"]
    assert {c["config_name"] for c in meta["configs"]} == {"images", "vhr", "hr", "mr"}


def test_dataset_card_input_matches_the_full_synthetic_plan():
    """The committed input has the counts `synth --preset full` is planned to produce."""
    from sarlang_data.ingest import synth

    mod = _script()
    inp = json.loads(mod.INPUT.read_text())
    assert inp["synth"] == mod.SYNTH
    plan = synth._plan(inp["synth"]["preset"])
    st, facts = inp["stats"], inp["facts"]
    images = Counter()
    for (source, split), n in plan.images.items():
        images[(source, split)] += n
    assert {s: v["samples"] for s, v in st["by_source"].items()} == {
        s: images[(s, "train")] + images[(s, "test")] for s in schema.SOURCES}
    assert {s: v["samples"] for s, v in st["by_split"].items()} == {
        sp: sum(n for (_, s2), n in images.items() if s2 == sp) for sp in schema.SPLITS}
    assert st["caption_kinds"] == {k: {sp: plan.captions[(k, sp)] for sp in schema.SPLITS}
                                   for k in schema.CAPTION_KINDS}
    tasks = {t: dict.fromkeys(schema.SPLITS, 0) for t in schema.TASKS}
    for (_, split, category), n in plan.qa.items():
        task = "others" if category in schema.OTHERS_TYPES else category
        tasks[task][split] += n
    assert st["tasks"] == tasks
    # the published totals (facts file): 118,331 images, 45,650 captions, 1,080,627 QA pairs
    c = facts["counts"]
    assert (c["samples"], c["captions"], c["qa"]) == (118_331, 45_650, 1_080_627)
    assert (st["samples"], st["captions"], st["qa"]) == (c["samples"], c["captions"], c["qa"])
    assert facts["configs"]["images"] == {sp: v["samples"] for sp, v in st["by_split"].items()}
    assert facts["configs"]["vqa"] == {sp: sum(tasks[t][sp] for t in schema.TASKS)
                                       for sp in schema.SPLITS}
