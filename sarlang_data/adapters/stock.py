"""The stock-datasets mirror of a root: image-centric rows as parquet, one ``image`` column.

Stock ``datasets`` and the Hub's dataset viewer read the tar shards with the WebDataset builder,
which names a column after each member's extension: a root that mixes PNG and JPEG images gets
a ``png`` and a ``jpg`` column, one of them always None, and without declared features the
builder infers the columns from the first shard and loses the other format's images. So a
root also carries ``stock/{split}/{tier}/{split}-{tier}-{n:05d}.parquet``: the rows of the
``images`` config (``sarlang_data.load_dataset(root, "images")``, row for row and in the same
order), the image in one ``datasets.Image`` column holding the release's bytes as they are
(PNG or JPEG, never re-encoded), in row groups of 100 rows. ``manifest.json`` lists them
(``stock``: features as the card's YAML declares them, and per file its split, tier, rows,
bytes and sha256), and the card declares the ``images`` config and one per tier over them, so
``datasets.load_dataset(ROOT_OR_REPO, "vhr")`` works without this package.

The mirror doubles the image bytes of a root; roots without it (subset downloads, transcoded
training copies) keep a card whose no-code configs read the tar shards, and say so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import schema
from ..errors import ConfigError
from ..format.manifest import MANIFEST_NAME, manifest_bytes, read_manifest, validate_manifest
from ..format.tar import write_atomic
from .export import ParquetParts

log = logging.getLogger(__name__)

#: the folder of the mirror in a root
STOCK_DIR = "stock"


def stock_features_yaml() -> list[dict[str, Any]]:
    """Return the features of the mirror's rows as the card's YAML lists them."""
    from .hf.features import features_for

    return features_for("images", decode=True)._to_yaml_list()


def write_stock(root: str | Path, *, progress: bool = False) -> dict:
    """Write the stock-datasets mirror of a local root, then its manifest and card.

    Files of an earlier mirror that the new one does not have are removed; everything else in
    the root is left as it is.

    Args:
        root: a local dataset root whose images are the release's bytes (``--image-codec
            source``).
        progress: show a progress bar per split and tier.

    Returns:
        The manifest's new ``stock`` entry.

    Raises:
        ConfigError: a root whose images are pixel members (stock tools cannot decode them).
        ManifestError: no manifest at ``root``.

    """
    from ..format.card import write_card
    from .hf import load_dataset
    from .hf.features import features_for

    root = Path(root)
    manifest = read_manifest(root)
    codec = manifest["build"].get("image_codec", "source")
    if codec not in (None, "source"):
        raise ConfigError(
            f"root={str(root)!r}: its images are pixel members (image_codec={codec!r}), which "
            "stock tools cannot decode; write the mirror in the root with the source images "
            "(the one you publish)")
    features = features_for("images", decode=True)
    shard_size = int(manifest["build"].get("shard_size") or 256 * 2**20)
    have = {(s["split"], s["tier"]) for s in manifest["shards"]}
    old = {f["path"] for f in (manifest.get("stock") or {}).get("files", [])}
    files = []
    for split in schema.SPLITS:
        for tier in schema.TIERS:
            if (split, tier) not in have:
                continue
            ds = load_dataset(str(root), "images", split=split, tiers=[tier], streaming=True,
                              decode=False, distributed=False)
            folder = root / STOCK_DIR / split / tier
            parts = ParquetParts(folder, f"{split}-{tier}", features, file_bytes=shard_size)
            done = []
            rows = 0
            from tqdm.auto import tqdm

            for row in tqdm(ds, desc=f"stock {split}/{tier}", unit="rows",
                            disable=not progress):
                rows += 1
                closed = parts.add(row, len(row["image"]["bytes"]) + 1024)
                if closed is not None:
                    done.append(closed)
            closed = parts.close_part()
            if closed is not None:
                done.append(closed)
            for part in done:
                files.append({"path": f"{STOCK_DIR}/{split}/{tier}/{part['path']}",
                              "split": split, "tier": tier, "rows": part["rows"],
                              "bytes": part["bytes"], "sha256": part["sha256"]})
            log.info("stock %s/%s: %d rows in %d files", split, tier, rows, len(done))
    for path in sorted(old - {f["path"] for f in files}):
        (root / path).unlink(missing_ok=True)
    stock = {"features": stock_features_yaml(), "files": files}
    manifest = dict(manifest)
    manifest["stock"] = stock
    validate_manifest(manifest, "the manifest with its stock mirror")
    write_card(root, manifest)
    write_atomic(root / MANIFEST_NAME, manifest_bytes(manifest))
    return stock
