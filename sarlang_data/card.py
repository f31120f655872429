"""The dataset card (ROOT/README.md) from the manifest: YAML header + a short prose part.

The YAML carries no-code configs for stock ``datasets`` (``images``, the default, and one per
resolution tier, all image-centric) with their ``data_files`` and declared features. Declaring
the features matters: without them the stock WebDataset builder infers the columns from the
first samples of the first shard and drops member types it did not see there (a root whose first
shard is all PNG would lose every JPEG).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import schema
from .configs import CONFIGS, DEFAULT_CONFIG
from .manifest import read_manifest
from .shards import write_atomic

PRETTY_NAME = "SARLANG-1M (streaming shards)"


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
    spec["captions"] = [{f: "string" for f in schema.CAPTION_FIELDS}]
    spec["qa"] = [{f: (["float64"] if f == "bbox_xywh" else "string") for f in schema.QA_FIELDS}]
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


def no_code_configs(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the YAML ``configs`` entries: ``images`` and each tier that has plain tar shards.

    Args:
        manifest: the root's manifest.

    Returns:
        One entry per config with ``data_files`` per split (globs over ``.tar`` shards only;
        ``.tar.zst`` is unreadable by stock tools), configs and splits without shards left out.

    """
    tars = [s for s in manifest["shards"] if s["path"].endswith(".tar")]
    out = []
    for name, cfg in CONFIGS.items():
        if not cfg.no_code:
            continue
        files = []
        for split in schema.SPLITS:
            if not any(s["split"] == split and cfg.tier in (None, s["tier"]) for s in tars):
                continue
            tier = cfg.tier or "*"
            files.append({"split": split, "path": f"data/{split}/{tier}/*/*.tar"})
        if files:
            entry: dict[str, Any] = {"config_name": name, "data_files": files}
            if name == DEFAULT_CONFIG:
                entry["default"] = True
            out.append(entry)
    return out


def card_text(manifest: Mapping[str, Any]) -> str:
    """Return the whole README.md for a manifest.

    Args:
        manifest: the root's manifest.

    Returns:
        YAML header between ``---`` lines, then the prose.

    """
    import yaml

    configs = no_code_configs(manifest)
    features = member_features(bool(manifest["build"].get("originals")))
    header = {
        "pretty_name": PRETTY_NAME,
        "license": "other",
        "task_categories": ["image-to-text", "visual-question-answering"],
        "tags": ["sar", "remote-sensing"],
        "configs": configs,
        "dataset_info": [{"config_name": c["config_name"], "features": features}
                         for c in configs],
    }
    class _Dumper(yaml.SafeDumper):
        # no &anchors/*aliases for the shared feature lists: spell each one out
        def ignore_aliases(self, data: Any) -> bool:
            return True

    yaml_text = yaml.dump(header, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    c = manifest["counts"]
    lines = [
        "---", yaml_text.rstrip("\n"), "---", "",
        f"# {PRETTY_NAME}", "",
        "SAR images from SARLANG-1M (Wei et al., arXiv 2504.03254) with their captions and "
        "question-answer pairs, as WebDataset tar shards with a manifest and a per-sample index "
        "(format version " f"{manifest['format_version']}).", "",
        f"This root holds {c['samples']:,} images, {c['captions']:,} captions and "
        f"{c['qa']:,} QA pairs in {len(manifest['shards'])} shards "
        f"({c['bytes'] / 2**20:,.1f} MiB).", "",
        "The license of SARLANG-1M is not stated by its authors; each source dataset keeps its "
        "own license (SARDet-100K: CC BY-NC 4.0).", "",
        "## Configs", "",
        "`images` and the tiers load with stock `datasets` "
        "(`datasets.load_dataset(REPO, \"vhr\", streaming=True)`); the others need "
        "`sarlang-data` (`sarlang_data.load_dataset(\"sarlang-1m\", CONFIG)`).", "",
        "| config | rows | train rows | test rows |",
        "|---|---|---:|---:|",
    ]
    for name, cfg in CONFIGS.items():
        rows = manifest["configs"].get(name, {})
        lines.append(f"| `{name}` | {cfg.description} | {rows.get('train', 0):,} | "
                     f"{rows.get('test', 0):,} |")
    lines.append("")
    return "\n".join(lines)


def write_card(root: str | Path, manifest: Mapping[str, Any] | None = None) -> Path:
    """Write ``ROOT/README.md`` from the root's manifest (atomically).

    Args:
        root: a local dataset root.
        manifest: the manifest to describe; read from ``ROOT/manifest.json`` when None (the
            builder passes it because it writes the manifest last).

    Returns:
        The path of the card.

    Raises:
        ManifestError: if no manifest is given and the root has none.

    """
    root = Path(root)
    if manifest is None:
        manifest = read_manifest(root)
    path = root / "README.md"
    write_atomic(path, card_text(manifest).encode("utf-8"))
    return path

