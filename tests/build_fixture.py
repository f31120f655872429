"""A small hand-made release in the authors' layout, with known texts and known bad rows.

Used by tests/test_build.py and tests/test_manifest.py (the seeded synthetic generator covers
the real scale; this one keeps every expected value in plain sight).
"""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

HIGHRES = [
    # (file stem, split)
    ("SV_Darwin_-12.4278_130.8688", "train"),
    ("SV_NewYork_40.7128_-74.0060", "train"),
    ("GF2_NewYork_40.7300_-73.9900", "test"),
    ("France_Alpes-Maritimes_Nice_3", "train"),
    ("France_Alpes-Maritimes_Nice_4", "train"),
    ("France_Alpes-Maritimes_Nice_5", "test"),
    ("SN6_Rotterdam_tile_1", "train"),
    ("SN6_Rotterdam_tile_2", "test"),
]
SARDET = [(f"{i:07d}", "train" if i % 4 else "test") for i in range(1, 15)]
BROKEN = "0000099.jpg"  # JPEG magic, then garbage: Pillow cannot open it
UNUSED = "0000098.jpg"  # a fine image no text names
MISSING = "0099999.jpg"  # named by a text row, not in SARimages/

QUESTIONS = [
    ("Is there a {c} in the image?", "yes"),
    ("How many {c}s are in the image?", "{n}"),
    ("What is the object present in the area [{n}.0, 2.0, 30.0, 40.0]?", "aircraft"),
    ("Where are most {c}s positioned within the image?", "bottom"),
]
CLASSES = ["ship", "car", "tank", "harbor", "bridge", "aircraft"]


def _image(path: Path, i: int, fmt: str) -> None:
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 256, (30 + 2 * i, 40 + i), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)


def make_release(root: Path) -> dict:
    """Write the release under ``root/SARLANG_1M``; return what a build must find.

    Returns:
        ``{"release": Path, "texts": [(file_name, kind, text...)], "images": {file_name: Path},
        "bad_rows": [(file, line, reason)], "bad_files": [(file, reason)], "originals": {...}}``
    """
    rel = root / "SARLANG_1M"
    img_dir = rel / "SARimages"
    cap_dir = rel / "Text" / "caption"
    vqa_dir = rel / "Text" / "VQA"
    for d in (img_dir, cap_dir, vqa_dir):
        d.mkdir(parents=True)
    images: dict[str, Path] = {}
    originals: dict[str, Path] = {}
    for i, (stem, _) in enumerate(HIGHRES):
        p = img_dir / f"{stem}.png"
        _image(p, i, "PNG")
        images[p.name] = p
        tif = img_dir / f"{stem}.tif"
        Image.fromarray(np.random.default_rng(100 + i).random((20, 24)).astype("float32")).save(
            tif, format="TIFF")
        originals[p.name] = tif
    for i, (stem, _) in enumerate(SARDET):
        p = img_dir / f"{stem}.jpg"
        _image(p, 50 + i, "JPEG")
        images[p.name] = p
    _image(img_dir / UNUSED, 99, "JPEG")
    (img_dir / BROKEN).write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)

    texts: list[tuple] = []
    bad_rows: list[tuple[str, int, str]] = []
    rows: dict[str, list[list[str]]] = {}

    def add(file: str, row: list[str], expect: tuple | None, bad: str | None = None) -> None:
        rows.setdefault(file, []).append(row)
        line = len(rows[file]) + 1  # the header is line 1
        if expect is not None:
            texts.append(expect)
        if bad is not None:
            bad_rows.append((file, line, bad))

    for i, (stem, split) in enumerate(HIGHRES):
        name = f"{stem}.png"
        concise = f"Aerial view of area {i} with a river."
        detailed = (f"The image shows an industrial facility number {i} with several circular "
                    "storage tanks, surrounding roads and a long pier along the water.")
        if split == "train":
            f = "Text/caption/Caption-training.csv"
            add(f, [name, concise], (name, "caption", concise))
            add(f, [name, detailed], (name, "caption", detailed))
        else:
            add("Text/caption/Caption_test1.csv", [name, concise], (name, "caption", concise))
            add("Text/caption/Caption_test.csv", [name, detailed], (name, "caption", detailed))
        for q, a in QUESTIONS[: 1 + i % 4]:
            q, a = q.format(c=CLASSES[i % 6], n=i + 1), a.format(n=i + 1)
            add(f"Text/VQA/SARVQA2_{split}.csv", [name, q, a], (name, "qa", q, a))
    for i, (stem, split) in enumerate(SARDET):
        name = f"{stem}.jpg"
        for q, a in QUESTIONS[: 1 + i % 4]:
            q, a = q.format(c=CLASSES[i % 6], n=i + 2), a.format(n=i + 2)
            add(f"Text/VQA/SARVQA1_{split}.csv", [name, q, a], (name, "qa", q, a))
    add("Text/VQA/SARVQA1_train.csv", [MISSING, "Is there a ship in the image?", "no"], None,
        "missing_image")
    for q, a in QUESTIONS[:2]:
        add("Text/VQA/SARVQA1_train.csv", [BROKEN, q.format(c="car", n=1), a.format(n=1)], None)

    for file, body in rows.items():
        header = ["image", "caption"] if "caption" in file else ["image", "question", "answer"]
        with open(rel / file, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(body)
    return {
        "release": rel,
        "texts": texts,
        "images": images,
        "originals": originals,
        "bad_rows": bad_rows,
        "bad_files": [(f"SARimages/{BROKEN}", "not_an_image"),
                      (f"SARimages/{UNUSED}", "unused_image")],
        "text_rows": sum(len(b) for b in rows.values()),
    }


def synth_root(base: Path, *, preset: str, seed: int, image_size: int | None = None,
               **build_options) -> Path:
    """Synthesise ``preset`` into ``base/syn``, build it with its GSD table into ``base/root``.

    Extra keyword arguments go to ``BuildOptions`` (``workers`` defaults to 1).
    """
    from sarlang_data.ingest import synth
    from sarlang_data.ingest.build import BuildOptions, build

    syn = Path(base) / "syn"
    synth.generate(syn, preset=preset, seed=seed, image_size=image_size, progress=False,
                   workers=1)
    root = Path(base) / "root"
    build_options.setdefault("workers", 1)
    build(syn / "SARLANG_1M", root,
          BuildOptions(gsd_table=syn / "gsd_table.csv", **build_options), progress=False)
    return root
