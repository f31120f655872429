"""The dataset card (ROOT/README.md) from the manifest and the index statistics.

The card is a pure function of two small inputs: :func:`card_facts` of the manifest (counts,
rows per config, which split/tier pairs have plain tar shards, shard count and bytes, the
subset description of a downloaded subset) and :func:`sarlang_data.format.stats.stats` of the
index. :func:`render_card` turns them into the README; :func:`card_text` and
:func:`write_card` compute the inputs from a manifest or a root first. The card shows two
pictures stored beside it, ``assets/contact_sheet.jpg`` and ``assets/stats.png``
(:mod:`sarlang_data.format.pictures`, themselves pure functions of the root): render_card only
links the ones it is told exist; :func:`write_card` writes them first.

The YAML header carries the Hub metadata (pretty name, licence, language, task categories,
size category, tags) and the no-code configs for stock ``datasets`` and the Hub viewer
(``images``, the default, and one per resolution tier, all image-centric) with their
``data_files``, declared features and rows per split. When the root has its stock mirror
(``stock/*.parquet``, listed in the manifest; see :mod:`sarlang_data.adapters.stock`) they read
it: one decoded ``image`` column whatever the source format, rows equal to
``sarlang_data.load_dataset(root, "images")``. Without it they read the tar shards with the
WebDataset builder and every member type declared (its raw columns: ``json``, and ``png`` or
``jpg``): declaring them matters, since the builder otherwise infers the columns from the first
samples of the first shard and drops member types it did not see there. Every other config
needs this package, and the card gives the one line that loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import schema
from ..configs import CONFIGS, DEFAULT_CONFIG
from ..errors import ManifestError
from .manifest import read_manifest
from .tar import write_atomic

PRETTY_NAME = "SARLANG-1M (streaming shards)"
ARXIV_ID = "2504.03254"
UPSTREAM = "https://github.com/Jimmyxichen/SARLANG-1M"
#: the Hub's size buckets, by the number of image-text pairs (captions + QA pairs)
_SIZE_BUCKETS = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
)
#: per source: display name, what it contributes, documented GSD, licence (None: unknown)
SOURCE_INFO: dict[str, dict[str, Any]] = {
    "sardet100k": {
        "name": "SARDet-100K",
        "about": "SAR object-detection chips merged from ten datasets (GF-3, Sentinel-1, "
                 "TerraSAR-X, RadarSat-2, HISEA-1, airborne); VQA only (SARVQA1, six classes)",
        "gsd": "0.1-25 m",
        "license": "CC BY-NC 4.0",
        "license_id": "cc-by-nc-4.0",
    },
    "spacenet6": {
        "name": "SpaceNet 6",
        "about": "airborne X-band SAR tiles of Rotterdam; captions and VQA (SARVQA2)",
        "gsd": "0.5 m",
        "license": None,
        "license_id": None,
    },
    "dfc2023": {
        "name": "IEEE GRSS DFC2023",
        "about": "Gaofen-3 SAR tiles of 17 cities on six continents; captions and VQA (SARVQA2)",
        "gsd": "0.5-2 m",
        "license": None,
        "license_id": None,
    },
    "oem_sar": {
        "name": "OpenEarthMap-SAR",
        "about": "Umbra X-band SAR tiles of regions in Japan, France and the USA; captions and "
                 "VQA (SARVQA2)",
        "gsd": "0.15-0.5 m",
        "license": None,
        "license_id": None,
    },
}
_UNKNOWN_LICENSE = "not stated here: check the source's own terms"
LICENSE_DETAILS = (
    "SARLANG-1M's authors state no licence for the dataset. Each image keeps the licence of "
    "its source dataset: SARDet-100K is CC BY-NC 4.0; the licences of SpaceNet 6, DFC2023 and "
    "OpenEarthMap-SAR data are not stated here (check each source's terms). Use the data only "
    "as every source you use allows; the SARDet-100K part is for non-commercial use only."
)
CITATION = f"""@article{{wei2025sarlang,
  title   = {{SARLANG-1M: A Benchmark for Vision-Language Modeling in SAR Image Understanding}},
  author  = {{Wei, Yimin and Xiao, Aoran and Ren, Yexian and Zhu, Yuting and Chen, Hongruixuan
             and Xia, Junshi and Yokoya, Naoto}},
  journal = {{IEEE Transactions on Geoscience and Remote Sensing}},
  year    = {{2025}},
  eprint  = {{{ARXIV_ID}}},
  archivePrefix = {{arXiv}}
}}"""


# --------------------------------------------------------------------------- YAML parts


def _feature(name: str, spec: Any) -> dict[str, Any]:
    """One entry of a ``features:`` list in the YAML layout ``datasets`` reads."""
    if isinstance(spec, str):
        return {"name": name, "dtype": spec}
    if isinstance(spec, list):  # [inner]: a list of inner
        inner = spec[0]
        if isinstance(inner, str):
            return {"name": name, "list": inner}
        return {"name": name, "list": [_feature(k, v) for k, v in inner.items()]}
    return {"name": name, "struct": [_feature(k, v) for k, v in spec.items()]}


def record_features() -> dict[str, Any]:
    """Return the feature spec of ``{key}.json`` (a nested dict of dtype names)."""
    types = {
        "lat": "float64", "lon": "float64", "gsd_m": "float64", "width": "int32",
        "height": "int32",
    }
    spec: dict[str, Any] = {f: types.get(f, "string") for f in schema.META_FIELDS}
    spec["captions"] = [{f: "string" for f in (schema.TEXT_ID_FIELD, *schema.CAPTION_FIELDS)}]
    spec["qa"] = [{f: (["float64"] if f == "bbox_xywh" else "string")
                   for f in (schema.TEXT_ID_FIELD, *schema.QA_FIELDS)}]
    return spec


def member_features(originals: bool) -> list[dict[str, Any]]:
    """Return the YAML ``features`` list of an image-centric no-code config.

    Every member type a shard may carry is declared (``json``, ``png`` and ``jpg``, and
    ``tif.zst`` for roots built with originals), plus the builder's ``__key__`` and ``__url__``.

    Args:
        originals: whether the root carries ``{key}.tif.zst`` members.

    Returns:
        The list, in the layout of ``datasets``' YAML feature lists.

    """
    spec: dict[str, Any] = {"__key__": "string", "__url__": "string",
                            schema.JSON_EXT: record_features()}
    for ext in schema.IMAGE_EXTS:
        spec[ext] = "image"
    if originals:
        # stock datasets decompresses *.zst members; the GeoTIFF bytes stay undecoded
        spec[schema.ORIGINAL_EXT] = "binary"
    return [_feature(k, v) for k, v in spec.items()]


def _tar_pairs(manifest: Mapping[str, Any]) -> list[list[str]]:
    """(split, tier) pairs that have plain ``.tar`` shards, in schema order."""
    have = {(s["split"], s["tier"]) for s in manifest["shards"] if s["path"].endswith(".tar")}
    return [[sp, t] for sp in schema.SPLITS for t in schema.TIERS if (sp, t) in have]


def _no_code(tar_pairs: Sequence[Sequence[str]], stock: Mapping[str, Any] | None = None
             ) -> list[dict[str, Any]]:
    have = {tuple(p) for p in (tar_pairs if not stock else stock["pairs"])}
    out = []
    for name, cfg in CONFIGS.items():
        if not cfg.no_code:
            continue
        files = []
        for split in schema.SPLITS:
            if not any(sp == split and cfg.tier in (None, t) for sp, t in have):
                continue
            if stock:
                path = f"stock/{split}/{cfg.tier or '*'}/*.parquet"
            else:
                path = f"data/{split}/{cfg.tier or '*'}/*/*.tar"
            files.append({"split": split, "path": path})
        if files:
            entry: dict[str, Any] = {"config_name": name, "data_files": files}
            if name == DEFAULT_CONFIG:
                entry["default"] = True
            out.append(entry)
    return out


def no_code_configs(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the YAML ``configs`` entries: ``images`` and each tier that has plain tar shards.

    Args:
        manifest: the root's manifest.

    Returns:
        One entry per config with ``data_files`` per split (globs over ``.tar`` shards only;
        ``.tar.zst`` is unreadable by stock tools), configs and splits without shards left out.

    """
    return _no_code(_tar_pairs(manifest), _stock_facts(manifest))


def _tar_bytes(manifest: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Bytes of plain ``.tar`` shards per split and tier."""
    out: dict[str, dict[str, int]] = {}
    for s in manifest["shards"]:
        if s["path"].endswith(".tar"):
            per = out.setdefault(s["split"], {})
            per[s["tier"]] = per.get(s["tier"], 0) + int(s["bytes"])
    return out


def _stock_facts(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the stock mirror as the card needs it: features, pairs, rows of each."""
    stock = manifest.get("stock")
    if not stock or not stock.get("files"):
        return None
    rows: dict[str, dict[str, int]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for f in stock["files"]:
        per = rows.setdefault(f["split"], {})
        per[f["tier"]] = per.get(f["tier"], 0) + int(f["rows"])
        per = sizes.setdefault(f["split"], {})
        per[f["tier"]] = per.get(f["tier"], 0) + int(f["bytes"])
    pairs = [[sp, t] for sp in schema.SPLITS for t in schema.TIERS if t in rows.get(sp, {})]
    return {"features": stock["features"], "pairs": pairs, "rows": rows, "sizes": sizes,
            "bytes": sum(int(f["bytes"]) for f in stock["files"]),
            "files": len(stock["files"])}


def size_category(pairs: int) -> str:
    """Return the Hub's ``size_categories`` bucket for a number of image-text pairs."""
    for limit, name in _SIZE_BUCKETS:
        if pairs < limit:
            return name
    return "n>100M"  # pragma: no cover - no SAR dataset is that large yet


# --------------------------------------------------------------------------- inputs


def card_facts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the card needs from a manifest: small and JSON-able.

    Args:
        manifest: a validated manifest.

    Returns:
        ``{"format_version", "counts", "configs", "build", "shards", "tar_pairs", "subset"}``:
        ``build`` keeps the options the card mentions, ``shards`` is ``{"count", "bytes",
        "tar", "tar_zst"}``, ``tar_pairs`` the (split, tier) pairs with plain tar shards and
        ``subset`` the manifest's subset description (None for a built root), ``stock``
        the stock mirror (features, pairs, rows per split and tier; None without one).

    """
    shards = manifest["shards"]
    build = manifest["build"]
    return {
        "format_version": manifest["format_version"],
        "counts": dict(manifest["counts"]),
        "configs": {k: dict(v) for k, v in manifest["configs"].items()},
        "build": {k: build.get(k) for k in ("originals", "compress", "shard_size",
                                            "image_codec")},
        "shards": {
            "count": len(shards),
            "bytes": sum(s["bytes"] for s in shards),
            "tar": sum(1 for s in shards if s["path"].endswith(".tar")),
            "tar_zst": sum(1 for s in shards if s["path"].endswith(".tar.zst")),
        },
        "tar_pairs": _tar_pairs(manifest),
        "tar_bytes": _tar_bytes(manifest),
        "subset": manifest.get("subset"),
        "stock": _stock_facts(manifest),
    }


def root_stats(root: str | Path) -> dict | None:
    """Return :func:`sarlang_data.format.stats.stats` of a root, or None when it has no index."""
    from .stats import stats

    try:
        return stats(root)
    except ManifestError:
        return None


# --------------------------------------------------------------------------- rendering


def _n(v: int) -> str:
    return f"{v:,}"


def _size(b: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:,.1f} {unit}"
    return f"{b} B"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
              right: Sequence[bool]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for row in rows:
        out.append("| " + " | ".join(_n(v) if isinstance(v, int) else str(v) for v in row)
                   + " |")
    return out


def _yaml(header: Mapping[str, Any]) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        # no &anchors/*aliases for the shared feature lists: spell each one out
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(dict(header), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     width=100).rstrip("\n")


def card_header(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Return the YAML metadata of the card as a dict (the part between the ``---`` lines).

    Args:
        facts: :func:`card_facts` of the manifest.

    Returns:
        The metadata, keys in the order they are written.

    """
    stock = facts.get("stock")
    configs = _no_code(facts["tar_pairs"], stock)
    if stock:
        features = stock["features"]
    else:
        features = member_features(bool(facts["build"].get("originals")))
    c = facts["counts"]
    return {
        "pretty_name": PRETTY_NAME,
        "license": "other",
        "license_name": "sarlang-1m-per-source",
        "license_details": LICENSE_DETAILS,
        "language": ["en"],
        "task_categories": ["image-to-text", "visual-question-answering"],
        "size_categories": [size_category(c["captions"] + c["qa"])],
        "tags": ["sar", "remote-sensing"],
        "configs": configs,
        "dataset_info": [{"config_name": cfg["config_name"], "features": features,
                          "splits": _yaml_splits(cfg["config_name"], facts)}
                         for cfg in configs],
    }


def _yaml_splits(name: str, facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the YAML ``splits`` of a no-code config: its rows per split."""
    tier = CONFIGS[name].tier
    stock = facts.get("stock")
    out = []
    for split in schema.SPLITS:
        sizes = (stock["sizes"] if stock else facts.get("tar_bytes", {})).get(split, {})
        size = sum(v for t, v in sizes.items() if tier in (None, t))
        if stock:
            per = stock["rows"].get(split, {})
            n = sum(v for t, v in per.items() if tier in (None, t))
        else:
            n = facts["configs"].get(name, {}).get(split, 0)
        if n:
            out.append({"name": split, "num_bytes": size, "num_examples": n})
    return out


def _subset_lines(sub: Mapping[str, Any], counts: Mapping[str, Any]) -> list[str]:
    filters = {k: v for k, v in (sub.get("filters") or {}).items() if v}
    shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in filters.items()) or "none (everything)"
    where = f"`{sub['from']}`"
    if sub.get("commit"):
        where += f" at commit `{sub['commit']}`"
    elif sub.get("revision"):
        where += f" at revision `{sub['revision']}`"
    sel = sub["selected"]
    lines = ["## This is a subset", "",
             f"Downloaded with `sarlang-data download` from {where}. Filters: {shown}.", ""]
    if sub["mode"] == "exact":
        lines.append(
            f"Mode `exact`: the shards were rewritten locally from byte ranges and hold exactly "
            f"the {_n(sel['samples'])} matching samples ({_n(sel['captions'])} captions, "
            f"{_n(sel['qa'])} QA pairs). A sample is kept with all of its texts.")
    else:
        extra = counts["samples"] - sel["samples"]
        lines.append(
            f"Mode `shards`: the shards holding matching samples were fetched whole and are "
            f"byte-identical to the source (same sha256). {_n(sel['samples'])} of the "
            f"{_n(counts['samples'])} samples here match the filters"
            + (f"; the other {_n(extra)} share a shard with them. Pass the same filters when "
               "loading, or download with `--exact` to keep only the matching samples."
               if extra else "; nothing else was fetched."))
    tasks = filters.get("tasks")
    if tasks:
        config = tasks[0]
        lines.append(
            f"The task filter ({', '.join(tasks)}) selects images that have such texts, and "
            "every image keeps all of its texts, of other tasks too; load the task's config "
            f'(`sarlang_data.load_dataset(ROOT, "{config}")`) for its rows alone.')
    lines.append("")
    return lines


def _stats_lines(st: Mapping[str, Any], chart: str | None = None, alt: str = "") -> list[str]:
    lines = ["## Statistics", "",
             f"From `index.parquet`: {_n(st['samples'])} images, {_n(st['captions'])} captions, "
             f"{_n(st['qa'])} QA pairs.", ""]
    if chart:
        lines += [f"![{alt}]({chart})", "",
                  "`sarlang-data stats ROOT --plot DIR` draws these and more (images per city, "
                  "caption lengths) as PNG files.", ""]
    heads = ("samples", "captions", "QA pairs")

    def dim(title: str, key: str, first: str, extra=None, order=None) -> None:
        groups = st[f"by_{key}"]
        names = [n for n in (order or groups) if n in groups]
        rows = []
        for name in names:
            g = groups[name]
            rows.append((f"`{name}`", *(extra(name) if extra else ()), g["samples"],
                         g["captions"], g["qa"]))
        cols = (first, *(("GSD",) if key == "tier" else ()), *heads)
        if key == "source":
            cols = (first, "dataset", *heads)
        lines.extend([f"### By {title}", ""])
        lines.extend(_md_table(cols, rows, [False] * (len(cols) - 3) + [True] * 3))
        lines.append("")

    dim("split", "split", "split", order=schema.SPLITS)
    dim("resolution tier", "tier", "tier", extra=lambda t: (schema.TIER_RANGES[t],),
        order=schema.TIERS)
    dim("source", "source", "source", extra=lambda s: (SOURCE_INFO[s]["name"],),
        order=schema.SOURCES)
    dim("city", "city", "city")
    for title, key, names in (("VQA task", "tasks", schema.TASKS),
                              ("caption kind", "caption_kinds", schema.CAPTION_KINDS)):
        per = st[key]
        rows = [(f"`{n}`", *(per[n].get(s, 0) for s in schema.SPLITS), sum(per[n].values()))
                for n in names if n in per]
        total = [sum(per[n].get(s, 0) for n in names if n in per) for s in schema.SPLITS]
        rows.append(("**all**", *total, sum(total)))
        cols = (title.split()[-1], *schema.SPLITS, "total")
        lines.extend([f"### By {title}", ""])
        lines.extend(_md_table(cols, rows, [False] + [True] * (len(cols) - 1)))
        lines.append("")
    return lines


def _usage_lines(repo: str, facts: Mapping[str, Any]) -> list[str]:
    cities = facts.get("example_city") or "rotterdam"
    stock = [p[1] for p in (facts.get("stock") or {}).get("pairs") or facts["tar_pairs"]
             ] or ["vhr"]
    tier = "vhr" if "vhr" in stock else stock[0]
    return [
        "## Usage", "",
        "With the `sarlang-data` package, every config, streaming or prepared, with filters by "
        "city, tier, source and split:", "",
        "```python",
        "from sarlang_data import load_dataset",
        "",
        f'ds = load_dataset("{repo}", "vqa", streaming=True)',
        f'test = load_dataset("{repo}", "captions_concise", split="test")',
        f'ds = load_dataset("{repo}", "vqa", streaming=True, cities=["{cities}"], '
        f'tiers=["{tier}"])',
        "```", "",
        "Set `SARLANG_DATA` to this repo (`hf://datasets/" + repo + "`) or a local copy, and "
        '`load_dataset("sarlang-1m", CONFIG)` reads it.', "",
        "With stock `datasets` alone (no code from this package), the image-centric configs "
        "`images` and the tiers:", "",
        "```python",
        "import datasets",
        "",
        f'ds = datasets.load_dataset("{repo}", "{tier}", streaming=True)',
        ('row = next(iter(ds["train"]))   # row["image"]: a PIL image; key, city, ..., '
         'captions, qa' if facts.get("stock") else
         'row = next(iter(ds["train"]))   # row["json"]: metadata, captions, qa; '
         'row["png"] or row["jpg"]: the image'),
        "```", "",
        "LLaMA-Factory: export a config as a dataset folder (its `dataset_info.json` entry, "
        "the data file, the images), straight from this repo:", "",
        "```sh",
        f"sarlang-data export vqa --data hf://datasets/{repo} --split train --format "
        "llamafactory --out ./sarlang-lf",
        "```", "",
        "PyTorch: a streaming dataset goes straight into a `DataLoader`; `datasets` hands "
        "whole shards to the workers.", "",
        "```python",
        "import torch",
        "from sarlang_data import load_dataset",
        "",
        f'ds = load_dataset("{repo}", "vqa", split="train", streaming=True)',
        "loader = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=4,",
        "                                     collate_fn=lambda rows: rows)",
        "for batch in loader:   # a list of 32 rows: image, question, answer, task, ...",
        "    ...",
        "```", "",
        "Subset download: only the shards (or, with `--exact`, only the byte ranges) of the "
        "samples you select, verified by sha256, as a dataset root that loads offline:", "",
        "```sh",
        f"sarlang-data download --repo {repo} --city {cities} --tier {tier} "
        f"--out ./sarlang-{cities}",
        f"sarlang-data download --repo {repo} --task region_referring --exact "
        "--out ./sarlang-rr",
        "```", "",
        "```python",
        "import sarlang_data",
        "",
        f'sarlang_data.download("{repo}", cities=["{cities}"], out="./sarlang-{cities}")',
        f'ds = sarlang_data.load_dataset("./sarlang-{cities}", "vqa", split="train")',
        "```", "",
    ]


def render_card(facts: Mapping[str, Any], stats: Mapping[str, Any] | None = None, *,
                repo_id: str | None = None, note: str | None = None,
                pictures: Sequence[str] = ()) -> str:
    """Return the whole README.md from the card's inputs.

    Args:
        facts: :func:`card_facts` of the manifest.
        stats: :func:`sarlang_data.format.stats.stats` of the index (None leaves the statistics
            out, with a line saying how to get them).
        repo_id: the Hub repo the card is for (``ORG/NAME``), used in the usage code; None
            writes ``ORG/NAME``.
        note: an extra paragraph under the title (e.g. where the numbers come from).
        pictures: the pictures stored beside the card (paths relative to the root, of
            :data:`~sarlang_data.format.pictures.CONTACT_SHEET` and
            :data:`~sarlang_data.format.pictures.STATS_CHART`) to show; others are ignored.

    Returns:
        YAML header between ``---`` lines, then the prose, ending in a newline.

    """
    from .pictures import ALT_TEXT, CONTACT_SHEET, STATS_CHART

    repo = repo_id or "ORG/NAME"
    c = facts["counts"]
    sh = facts["shards"]
    lines = ["---", _yaml(card_header(facts)), "---", "", f"# {PRETTY_NAME}", ""]
    if note:
        lines += [f"> {note}", ""]
    lines += [
        f"SARLANG-1M (Wei et al., [arXiv {ARXIV_ID}](https://arxiv.org/abs/{ARXIV_ID}), IEEE "
        "TGRS) is a million-scale vision-language benchmark for synthetic aperture radar (SAR) "
        "imagery: SAR images from over 59 cities worldwide at ground sampling distances from "
        "0.1 m to 25 m, with concise and detailed captions and question-answer pairs over six "
        "VQA applications (object identification, classification, instance counting, region "
        "referring, object positioning and others). Its authors publish it as zip files of "
        f"images and CSV/JSON texts ({UPSTREAM}).", "",
        "This repository holds it as WebDataset-style tar shards, one sample per SAR image with "
        "all of its texts, plus `manifest.json` (counts, shards, sha256) and `index.parquet` "
        "(one row per sample: where its bytes are, its metadata and its texts), built by "
        "`sarlang-data` (format version " f"{facts['format_version']}).", "",
        f"**This root:** {_n(c['samples'])} images, {_n(c['captions'])} captions and "
        f"{_n(c['qa'])} QA pairs in {_n(sh['count'])} shards ({_size(sh['bytes'])}).", "",
    ]
    if CONTACT_SHEET in pictures:
        lines += [f"![{ALT_TEXT[CONTACT_SHEET]}]({CONTACT_SHEET})", "",
                  "Samples of this root, chosen by source, tier and city. See one with its "
                  "boxes, questions and captions: `sarlang-data show KEY --data ROOT --out "
                  "sample.png`.", ""]
    if facts.get("subset"):
        lines += _subset_lines(facts["subset"], c)
    lines += [
        "## Sources and licences", "",
        "SARLANG-1M's authors state no licence for the dataset, so this card says `other`. "
        "Every image keeps the licence of the dataset it comes from; use the data only as "
        "every source you use allows.", "",
    ]
    by_source = (stats or {}).get("by_source", {})
    rows = []
    for src in schema.SOURCES:
        info = SOURCE_INFO[src]
        rows.append((f"`{src}`", info["name"], info["about"], info["gsd"],
                     by_source.get(src, {}).get("samples", "-") if stats else "-",
                     info["license"] or _UNKNOWN_LICENSE))
    lines += _md_table(("source", "dataset", "what it gives", "GSD", "images here", "licence"),
                       rows, [False, False, False, False, True, False])
    lines += [
        "", "Texts (captions and QA pairs) come from the SARLANG-1M release; their licence is "
        "not stated either.", "",
        "## Files", "",
        "```",
        "README.md        this card",
        "manifest.json    format version, build options, counts, every shard with its sha256",
        "index.parquet    one row per sample: shard, byte offsets, metadata, texts",
        *(["assets/         the pictures on this card (contact sheet, statistics chart)"]
          if pictures else []),
        "data/{split}/{tier}/{city}/{split}-{tier}-{city}-{n:05d}.tar",
        "```", "",
        "Each sample is `{key}.json` (metadata, all captions, all QA pairs) and `{key}.png` or "
        "`{key}.jpg` (the release's image bytes, never re-encoded)"
        + (", plus `{key}.tif.zst` (the original GeoTIFF, zstd)" if facts["build"].get(
            "originals") else "")
        + ". Samples are sorted by split, tier, city and key, so a city or a tier is a few "
        "whole shards. Resolution tiers: "
        + ", ".join(f"`{t}` {schema.TIER_RANGES[t]}" for t in schema.TIERS) + ".", "",
    ]
    if sh.get("tar_zst"):
        lines += [f"{_n(sh['tar_zst'])} shards are whole-archive `.tar.zst`: `sarlang-data` "
                  "reads them, stock tools do not, so the no-code configs leave them out.", ""]
    lines += [
        "## Configs", "",
    ]
    stock = facts.get("stock")
    if stock:
        lines += [
            "`images` (the default) and the tiers load with stock `datasets` alone and show in "
            "the Hub viewer: they read `stock/`, a parquet mirror of the image-centric rows "
            f"({_n(stock['files'])} files, {_size(stock['bytes'])}) with one decoded `image` "
            "column (the release's PNG or JPEG bytes), the same rows as "
            "`sarlang_data.load_dataset`. Every other config needs the `sarlang-data` package "
            "(`pip install sarlang-data`); the table gives the line that loads each.", ""]
    else:
        lines += [
            "This root has no stock mirror (`stock/`; `sarlang-data stock ROOT` writes it), so "
            "stock `datasets` reads `images` and the tiers from the tar shards with its "
            "WebDataset builder: raw columns `json` (metadata and texts) and `png` or `jpg` "
            "(the other one None). Every config loads with the `sarlang-data` package "
            "(`pip install sarlang-data`); the table gives the line that loads each.", ""]
    rows = []
    for name, cfg in CONFIGS.items():
        r = facts["configs"].get(name, {})
        train, test = r.get("train", 0), r.get("test", 0)
        if cfg.no_code and stock:
            line = f'`datasets.load_dataset("{repo}", "{name}")`'
        else:
            line = f'`sarlang_data.load_dataset("{repo}", "{name}")`'
        rows.append((f"`{name}`", cfg.description, line, train + test, train, test))
    lines += _md_table(("config", "rows are", "load with", "rows", "train", "test"),
                       rows, [False, False, False, True, True, True])
    lines += [
        "", "Rows of text configs carry a stable `id` (the sample key and a hash of the text) "
        "to join predictions on; `chat` is one conversation per caption or QA pair with the "
        "paper's prompts, in TRL's layout (`messages` with typed parts, `images`); every text "
        'config gives such rows with `chat_format="trl"` or `"llamafactory"`, and '
        '`chat_group="image", max_turns=N` makes multi-turn conversations per image.', ""]
    if stats:
        lines += _stats_lines(stats, STATS_CHART if STATS_CHART in pictures else None,
                              ALT_TEXT[STATS_CHART])
    else:
        lines += ["## Statistics", "", "No `index.parquet` was found when this card was "
                  "written; `sarlang-data stats ROOT` prints counts by split, tier, city, "
                  "source, task and caption kind.", ""]
    lines += _usage_lines(repo, {**facts, "example_city": _example_city(stats)})
    lines += [
        "Check a copy: `sarlang-data verify ROOT` compares every shard with the sha256 of the "
        "manifest and every image with the sha256 of the index.", "",
        "## Citation", "",
        "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)


def _example_city(stats: Mapping[str, Any] | None) -> str:
    """Pick a city for the usage examples: Rotterdam when present, else the biggest one."""
    cities = (stats or {}).get("by_city") or {}
    if "rotterdam" in cities or not cities:
        return "rotterdam"
    located = {k: v for k, v in cities.items() if k != schema.UNLOCATED} or cities
    return max(sorted(located), key=lambda k: located[k]["samples"])


def card_text(manifest: Mapping[str, Any], stats: Mapping[str, Any] | None = None, *,
              repo_id: str | None = None, note: str | None = None,
              pictures: Sequence[str] = ()) -> str:
    """Return the whole README.md for a manifest.

    Args:
        manifest: the root's manifest.
        stats: the root's :func:`sarlang_data.format.stats.stats` (None leaves them out).
        repo_id: the Hub repo the card is for, used in the usage code.
        note: an extra paragraph under the title.
        pictures: the pictures beside the card to show (see :func:`render_card`).

    Returns:
        YAML header between ``---`` lines, then the prose.

    """
    return render_card(card_facts(manifest), stats, repo_id=repo_id, note=note,
                       pictures=pictures)


def write_card(root: str | Path, manifest: Mapping[str, Any] | None = None, *,
               repo_id: str | None = None) -> Path:
    """Write ``ROOT/README.md`` and the pictures it shows from the root's manifest and index.

    The pictures (:func:`sarlang_data.format.pictures.card_pictures`: the contact sheet and
    the statistics chart, under ``ROOT/assets/``) are written first, then the card; every file
    goes to a temporary name first and is then renamed.

    Args:
        root: a local dataset root.
        manifest: the manifest to describe; read from ``ROOT/manifest.json`` when None (the
            builder passes it because it writes the manifest last).
        repo_id: the Hub repo the card is for, used in the usage code.

    Returns:
        The path of the card.

    Raises:
        ManifestError: if no manifest is given and the root has none.

    """
    root = Path(root)
    if manifest is None:
        manifest = read_manifest(root)
    from .pictures import card_pictures

    path = root / "README.md"
    st = root_stats(root)
    pictures = card_pictures(root, st)
    for rel, data in pictures.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(root / rel, data)
    text = card_text(manifest, st, repo_id=repo_id, pictures=list(pictures))
    write_atomic(path, text.encode("utf-8"))
    return path
