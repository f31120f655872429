r"""Seeded synthetic SARLANG-1M release in the authors' layout, from a tiny fixture to full size.

The real release cannot be downloaded on our machines, so this generator stands in for it
everywhere: the test fixtures (``tiny``), the bundled preview (``preview``) and the full-size
scale proof (``full``, exactly the published totals). Same seed and options give byte-identical
files, whatever the number of worker processes.

Layout written under ``out/`` (everything a parser may read is inside ``SARLANG_1M/``; the
ground truth is kept outside it)::

    SARLANG_1M/SARimages/                 image files (names below)
    SARLANG_1M/SARimages_original/        {stem}.tif, float32 single band, linear intensity
                                          (originals=True; high-resolution sources only)
    SARLANG_1M/Text/caption/Caption-training.csv  + .json   mixed concise and detailed
    SARLANG_1M/Text/caption/Caption_test.csv      + .json   detailed only
    SARLANG_1M/Text/caption/Caption_test1.csv     + .json   concise only
    SARLANG_1M/Text/VQA/SARVQA1_train.csv, SARVQA1_test.csv + .json   SARDet-100K images
    SARLANG_1M/Text/VQA/SARVQA2_train.csv, SARVQA2_test.csv + .json   SpaceNet6, DFC2023, OEM-SAR
    truth/texts.csv   truth/images.csv   truth/summary.json
    gsd_table.csv                         file_name,gsd_m for every image file

Image file names (the sources' real patterns):

- DFC2023: ``{SV|GF2}_{City}_{lat}_{lon}.png``, CamelCase city, 4-decimal WGS84 coordinates
  near the real city, e.g. ``SV_Darwin_-12.4278_130.8688.png`` (17 cities).
- OpenEarthMap-SAR: ``{Country}_{Region}_{City}_{n}.png`` with Country in France/Japan/USA,
  Region possibly hyphenated, e.g. ``France_Alpes-Maritimes_Nice_3.png`` (35 regions).
- SpaceNet6: ``SN6_Rotterdam_{YYYYMMDDhhmmss}_tile_{n}.png`` (only the ``SN6_`` prefix is real).
- SARDet-100K: 7-digit zero-padded number, ``0009787.jpg``; sizes vary (about 60% square at
  the image size, 25% square at 3/4 of it, 15% non-square).

High-resolution images are 8-bit grayscale PNG (mode L), ``image_size`` square; SARDet images
are 8-bit grayscale JPEG (quality 90). Pixels: a structured scene (water, fields, roads, blocks
with bright double-bounce edges, ships, tanks, aircraft, cars ...) times 4-look gamma speckle,
10*log10, stretched linearly between the 1st and 99.7th percentile. The ``.tif`` original is
the speckled linear intensity before the stretch. Boxes in region-referring questions are the
boxes of objects actually drawn in the image.

CSV files: UTF-8, no BOM, ``csv`` module (excel dialect, minimal quoting, ``\n`` line ends),
one header line, no text contains a newline (so data row ``r`` is physical line ``r + 1``).

=========================  ==========================================  ======================
file                       header (labels="present")                   header (labels="absent")
=========================  ==========================================  ======================
Caption-training.csv       ``image,caption,type``                       ``image,caption``
Caption_test.csv, _test1   ``image,caption``                            ``image,caption``
SARVQA{1,2}_{split}.csv    ``image,question,answer,type``               ``image,question,answer``
=========================  ==========================================  ======================

``image`` is the bare file name (``0009787.jpg``). The caption ``type`` is ``concise`` or
``complex`` (the paper's word for detailed). The VQA ``type`` is the paper's application name:
``Object Identification``, ``Object Classification``, ``Instance Counting``, ``Region
Referring``, ``Object Positioning``, or for the "Others" application its sub-type: ``Object
Shape``, ``Object Direction``, ``Land Cover``, ``Pattern``, ``Reasoning`` (see ``TYPE_LABELS``).

JSON twins (same stem, ``.json``): one JSON list, one object per line, the same rows in the same
order as the CSV, in LLaMA-Factory layout::

    {"messages":[{"role":"user","content":"<image>QUESTION"},
                 {"role":"assistant","content":"ANSWER"}],"images":["SARimages/NAME"]}

Captions use the user content ``"<image>Describe the content of this image in one sentence."``.
With labels="present" the object has the extra key ``"type"`` with the CSV's value.

Answers: SARVQA1 answers are lowercase without a period (``yes``, ``no``, a class of ship,
tank, aircraft, bridge, car, harbor, a position of top, center, bottom, left, right, or an
integer); SARVQA2 answers are capitalised short phrases (``Yes``, ``Grid pattern``, ``Top left``,
one of the 16 land-cover strings), sometimes ending in a period. Region-referring questions hold
a COCO box ``[x, y, w, h]`` in pixels written as floats (``[56.0, 19.0, 12.0, 8.0]``).

Injected defects (what real releases contain; every one is recorded in the truth, and none is
counted in the published totals): ``unused_image`` (a high-resolution image no text names, about
0.7% of them), ``missing_image`` (a text row naming an image file that does not exist),
``duplicate_row`` (an exact copy, label column included, of an earlier row of the same file,
emitted after the next image's rows), ``empty_text`` (a row whose answer or caption is empty).
Missing images carry names of the usual patterns (``GF2_NewYork_...``, ``SN6_Rotterdam_...``,
7-digit ``.jpg``), like the PNGs once missing from the authors' upload.

truth/texts.csv, one line per data row of every CSV (and so of its JSON twin), columns
``file,row,line,image,split,subset,task,question_type,kind,defect,duplicate_of``: ``file`` is
relative to ``SARLANG_1M`` (``Text/VQA/SARVQA1_train.csv``); ``row`` is the 1-based data row (the
1-based position in the JSON list); ``line`` the physical line (header = line 1); ``subset``,
``task`` and ``question_type`` are empty for captions (``question_type`` uses schema's rule: the
task name, or the others sub-type); ``kind`` (concise|detailed) is empty for QA; ``defect`` is
empty or a reason above; ``duplicate_of`` the row a duplicate copies.

truth/images.csv, one line per image file: ``file_name,source,split,city,country,region,lat,lon,
gsd_m,tier,width,height,subdataset,defect`` (city and country are schema slugs, ``unlocated``
and empty for SARDet-100K; region as spelled in the file name; split is empty for unused
images; subdataset is the SARDet-100K sub-dataset that set its GSD).

truth/summary.json is the dict :func:`generate` returns.

Counts (valid rows; defects come on top):

=======  =======  ========  =========  =======================================================
preset   images   captions  QA         notes
=======  =======  ========  =========  =======================================================
tiny     40       75        370        all sources, splits, tiers, tasks, others sub-types and
                                       kinds in both splits; 19 cities; 64 px; ~0.5 s
preview  200      219       2,270      42 cities; 128 px; ~1.8 MB of images
medium   11,833   4,565     108,062    a tenth of full (every count rounded); 64 px; for
                                       benchmarks at the release's 512 px (~2.6 GB)
full     118,331  45,650    1,080,627  the published totals (below); 64 px; texts alone ~20 s,
                                       with images ~2 min on 2 cores
=======  =======  ========  =========  =======================================================

``full`` reproduces every published number: images SpaceNet6 3,311, DFC2023 5,222, OEM-SAR
4,813 (7:3 split: 9,341 train / 4,005 test caption images), SARDet-100K 94,493 train / 10,492
test; captions concise 17,487 / 7,492, detailed 14,481 / 6,190; QA per application
(identification 484,620, classification 132,525, counting 117,382, region referring 221,450,
positioning 106,171, others 18,479 = shape 2,391 + direction 1,103 + land cover 80 + pattern 857
+ reasoning 14,048) and per split (955,372 / 125,255). The per-subset split is not published:
SARVQA2 gets all of "others" and identification 26,000, classification 8,000, counting 7,000,
region referring 12,000, positioning 6,000 (77,479 in all, about 5.8 per image); SARVQA1 the
rest (about 9.6 per image). Every high-resolution image has at least one caption of each kind
and one SARVQA2 QA; every SARDet-100K image at least one SARVQA1 QA. Injected defects in
``full``: 87 unused images, 44 missing-image rows, 58 duplicate rows, 26 empty texts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring as _jstr
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import BuildError, ConfigError, unknown_name
from .schema import OTHERS_TYPES, SOURCES, SPLITS, TASKS, slug, tier_for_gsd

PRESETS = ("tiny", "preview", "medium", "full")
LABEL_MODES = ("present", "absent")
DEFAULT_IMAGE_SIZE = {"tiny": 64, "preview": 128, "medium": 64, "full": 64}
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 4096

CAPTION_PROMPT = "<image>Describe the content of this image in one sentence."
#: The ten fine-grained question categories: five tasks plus the others sub-types.
CATEGORIES = TASKS[:5] + OTHERS_TYPES
#: Value of the ``type`` column per category (the paper's application names).
TYPE_LABELS = {
    "object_identification": "Object Identification",
    "object_classification": "Object Classification",
    "instance_counting": "Instance Counting",
    "region_referring": "Region Referring",
    "object_positioning": "Object Positioning",
    "shape": "Object Shape",
    "direction": "Object Direction",
    "land_cover": "Land Cover",
    "pattern": "Pattern",
    "reasoning": "Reasoning",
}
#: Value of the caption ``type`` column per caption kind.
KIND_LABELS = {"concise": "concise", "detailed": "complex"}

CAPTION_FILES = {
    ("train", None): "Text/caption/Caption-training.csv",
    ("test", "detailed"): "Text/caption/Caption_test.csv",
    ("test", "concise"): "Text/caption/Caption_test1.csv",
}
VQA_FILES = {
    ("SARVQA1", "train"): "Text/VQA/SARVQA1_train.csv",
    ("SARVQA1", "test"): "Text/VQA/SARVQA1_test.csv",
    ("SARVQA2", "train"): "Text/VQA/SARVQA2_train.csv",
    ("SARVQA2", "test"): "Text/VQA/SARVQA2_test.csv",
}
DEFECTS = ("unused_image", "missing_image", "duplicate_row", "empty_text")
HIGH_RES = ("spacenet6", "dfc2023", "oem_sar")
TRUTH_TEXT_HEADER = (
    "file", "row", "line", "image", "split", "subset", "task", "question_type", "kind",
    "defect", "duplicate_of",
)
TRUTH_IMAGE_HEADER = (
    "file_name", "source", "split", "city", "country", "region", "lat", "lon", "gsd_m", "tier",
    "width", "height", "subdataset", "defect",
)

# ----------------------------------------------------------------------------------------------
# Places
# ----------------------------------------------------------------------------------------------

#: DFC2023 cities: (CamelCase name, country, lat, lon, optical sensors, SAR GSD in metres).
#: The first eight are the names seen in the wild; the rest complete the 17 on six continents.
DFC_CITIES = (
    ("Berlin", "Germany", 52.5200, 13.4050, ("SV",), 0.5),
    ("Brasilia", "Brazil", -15.7939, -47.8828, ("SV", "GF2"), 1.0),
    ("Copenhagen", "Denmark", 55.6761, 12.5683, ("SV",), 0.5),
    ("Darwin", "Australia", -12.4634, 130.8456, ("SV",), 1.0),
    ("NewDelhi", "India", 28.6139, 77.2090, ("SV", "GF2"), 2.0),
    ("NewYork", "USA", 40.7128, -74.0060, ("GF2", "SV"), 0.5),
    ("Portsmouth", "USA", 36.8354, -76.2983, ("SV",), 1.0),
    ("Rio", "Brazil", -22.9068, -43.1729, ("SV",), 2.0),
    ("AddisAbaba", "Ethiopia", 9.0054, 38.7636, ("GF2",), 2.0),
    ("Beijing", "China", 39.9042, 116.4074, ("GF2", "SV"), 1.0),
    ("Shanghai", "China", 31.2304, 121.4737, ("GF2",), 1.0),
    ("Guangzhou", "China", 23.1291, 113.2644, ("GF2",), 2.0),
    ("Sydney", "Australia", -33.8688, 151.2093, ("SV",), 0.5),
    ("Mumbai", "India", 19.0760, 72.8777, ("SV",), 1.0),
    ("SaoPaulo", "Brazil", -23.5505, -46.6333, ("SV", "GF2"), 1.0),
    ("Munich", "Germany", 48.1351, 11.5820, ("SV",), 0.5),
    ("LosAngeles", "USA", 34.0522, -118.2437, ("SV",), 0.5),
)
DFC_WEIGHTS = (2, 3, 8, 3, 3, 6, 2, 3, 2, 5, 5, 3, 4, 4, 3, 2, 5)

#: OpenEarthMap-SAR regions: (Country, Region, City); 35 in France, Japan and the USA.
OEM_REGIONS = (
    ("France", "Alpes-Maritimes", "Nice"),
    ("Japan", "Tokyo", "Tokyo"),
    ("USA", "Florida", "Miami"),
    ("France", "Bouches-du-Rhone", "Marseille"),
    ("Japan", "Osaka", "Osaka"),
    ("USA", "Texas", "Houston"),
    ("France", "Gironde", "Bordeaux"),
    ("Japan", "Aichi", "Nagoya"),
    ("USA", "California", "SanDiego"),
    ("France", "Haute-Garonne", "Toulouse"),
    ("Japan", "Fukuoka", "Fukuoka"),
    ("USA", "Washington", "Seattle"),
    ("France", "Loire-Atlantique", "Nantes"),
    ("Japan", "Hokkaido", "Sapporo"),
    ("USA", "Louisiana", "NewOrleans"),
    ("France", "Nord", "Lille"),
    ("Japan", "Hiroshima", "Hiroshima"),
    ("USA", "Massachusetts", "Boston"),
    ("France", "Rhone", "Lyon"),
    ("Japan", "Miyagi", "Sendai"),
    ("USA", "Illinois", "Chicago"),
    ("France", "Bas-Rhin", "Strasbourg"),
    ("Japan", "Kanagawa", "Yokohama"),
    ("USA", "Georgia", "Atlanta"),
    ("France", "Herault", "Montpellier"),
    ("Japan", "Hyogo", "Kobe"),
    ("USA", "Arizona", "Phoenix"),
    ("France", "Ille-et-Vilaine", "Rennes"),
    ("Japan", "Kyoto", "Kyoto"),
    ("USA", "Colorado", "Denver"),
    ("France", "Seine-Maritime", "Rouen"),
    ("Japan", "Niigata", "Niigata"),
    ("USA", "Oregon", "Portland"),
    ("France", "Var", "Toulon"),
    ("Japan", "Okinawa", "Naha"),
)
OEM_GSDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.5)

#: SpaceNet6 acquisition strips over Rotterdam (August 2019).
SN6_STRIPS = (
    "20190804111224", "20190804111851", "20190804113009", "20190806123108",
    "20190806124619", "20190807083608", "20190807092309", "20190822070610",
    "20190822071500", "20190823062143", "20190823064528", "20190823065402",
)

#: SARDet-100K sub-datasets: (name, weight, GSD choices in metres, (class, weight) pairs).
#: GSD ranges follow the SARDet-100K README; the order is the cycle that small presets start
#: with so every split meets the three tiers early (MSAR vhr, OGSOD hr, ShipDataset mr).
SARDET_SUBSETS = (
    ("MSAR", 0.22, (0.5, 0.6, 0.75, 0.9), (("ship", 5), ("tank", 2), ("bridge", 1),
                                            ("aircraft", 1))),
    ("OGSOD", 0.17, (3.0,), (("bridge", 3), ("tank", 3), ("harbor", 2))),
    ("ShipDataset", 0.33, (5.0, 8.0, 10.0, 15.0, 20.0, 25.0), (("ship", 1),)),
    ("SIVED", 0.03, (0.1, 0.3), (("car", 1),)),
    ("HRSID", 0.08, (0.5, 1.0, 2.0, 3.0), (("ship", 1),)),
    ("SSDD", 0.04, (1.0, 3.0, 7.0, 10.0, 15.0), (("ship", 1),)),
    ("SAR-AIRcraft", 0.08, (1.0,), (("aircraft", 1),)),
    ("SADD", 0.03, (0.5, 1.0, 2.0, 3.0), (("aircraft", 1),)),
    ("AIR_SARShip", 0.02, (1.0, 2.0, 3.0), (("ship", 1),)),
)
SARDET_ID_RANGE = 117_000
_SUBSET_CLASSES = {s[0]: (tuple(c for c, _w in s[3]), tuple(w for _c, w in s[3]))
                   for s in SARDET_SUBSETS}

# ----------------------------------------------------------------------------------------------
# Plans: how many of everything
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    images: dict[tuple[str, str], int]  # (source, split) -> images
    captions: dict[tuple[str, str], int]  # (kind, split) -> captions
    qa: dict[tuple[str, str, str], int]  # (subset, split, category) -> QA pairs
    unused: int  # high-resolution images no text names
    #: defect rows: (file, reason) -> rows
    defect_rows: dict[tuple[str, str], int]


def _alloc(total: int, weights: Iterable[float], minimum: int = 0) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    w = [float(x) for x in weights]
    rest = total - minimum * len(w)
    if rest < 0:
        raise RuntimeError(f"cannot give {minimum} to each of {len(w)} parts of {total}")
    s = sum(w)
    raw = [rest * x / s for x in w]
    out = [int(math.floor(r)) for r in raw]
    left = rest - sum(out)
    order = sorted(range(len(w)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[:left]:
        out[i] += 1
    return [o + minimum for o in out]


#: Published per-application QA totals split between the two VQA subsets. Only the totals are
#: published; SARVQA2 carries all "Others" and a share of the rest chosen so that, with the
#: published train/test QA totals, QA per image is about the same in both splits.
_FULL_QA = {
    "SARVQA1": {
        "object_identification": 458_620, "object_classification": 124_525,
        "instance_counting": 110_382, "region_referring": 209_450,
        "object_positioning": 100_171,
    },
    "SARVQA2": {
        "object_identification": 26_000, "object_classification": 8_000,
        "instance_counting": 7_000, "region_referring": 12_000, "object_positioning": 6_000,
        "shape": 2_391, "direction": 1_103, "land_cover": 80, "pattern": 857,
        "reasoning": 14_048,
    },
}
_FULL_QA_TRAIN = 955_372
_FULL_HR_IMAGES = {"spacenet6": 3_311, "dfc2023": 5_222, "oem_sar": 4_813}
_FULL_CAP_IMAGES = {"train": 9_341, "test": 4_005}


def _qa_plan(v1: tuple[int, int], v2: tuple[int, int], minimum: int) -> dict:
    """QA counts per (subset, split, category) for a small preset, shaped like the full set."""
    out = {}
    for subset, (n_train, n_test) in (("SARVQA1", v1), ("SARVQA2", v2)):
        cats = list(_FULL_QA[subset])
        # "Others" is 24% of SARVQA2 in full; small presets keep each sub-type visible.
        weights = [max(_FULL_QA[subset][c], 1500) for c in cats]
        for split, n in (("train", n_train), ("test", n_test)):
            for c, k in zip(cats, _alloc(n, weights, minimum), strict=True):
                out[(subset, split, c)] = k
    return out


def _caption_plan(n_train: int, n_test: int) -> dict:
    """Caption counts per (kind, split) at the full set's rates (1.87 concise, 1.55 detailed)."""
    return {
        ("concise", "train"): round(1.87 * n_train), ("detailed", "train"): round(1.55 * n_train),
        ("concise", "test"): round(1.87 * n_test), ("detailed", "test"): round(1.55 * n_test),
    }


def _plan(preset: str) -> _Plan:
    """Return the counts of a preset."""
    cap_train, cap_test = CAPTION_FILES[("train", None)], CAPTION_FILES[("test", "detailed")]
    cap_test1 = CAPTION_FILES[("test", "concise")]
    v1tr, v1te = VQA_FILES[("SARVQA1", "train")], VQA_FILES[("SARVQA1", "test")]
    v2tr, v2te = VQA_FILES[("SARVQA2", "train")], VQA_FILES[("SARVQA2", "test")]
    if preset == "tiny":
        images = {
            ("spacenet6", "train"): 3, ("spacenet6", "test"): 1,
            ("dfc2023", "train"): 6, ("dfc2023", "test"): 3,
            ("oem_sar", "train"): 6, ("oem_sar", "test"): 3,
            ("sardet100k", "train"): 14, ("sardet100k", "test"): 4,
        }
        return _Plan(
            images=images, captions=_caption_plan(15, 7),
            qa=_qa_plan((130, 40), (130, 70), 2), unused=1,
            defect_rows={(v2tr, "missing_image"): 1, (v1tr, "duplicate_row"): 1,
                         (v2te, "empty_text"): 1},
        )
    if preset == "preview":
        images = {
            ("spacenet6", "train"): 10, ("spacenet6", "test"): 4,
            ("dfc2023", "train"): 18, ("dfc2023", "test"): 8,
            ("oem_sar", "train"): 17, ("oem_sar", "test"): 7,
            ("sardet100k", "train"): 120, ("sardet100k", "test"): 16,
        }
        return _Plan(
            images=images, captions=_caption_plan(45, 19),
            qa=_qa_plan((1420, 190), (460, 200), 3), unused=2,
            defect_rows={
                (v2tr, "missing_image"): 1, (cap_train, "missing_image"): 1,
                (v1tr, "duplicate_row"): 1, (cap_train, "duplicate_row"): 1,
                (v1te, "empty_text"): 1, (v2tr, "empty_text"): 1,
            },
        )
    if preset == "medium":
        # a tenth of full, every count rounded (at least 1): full's per-image rates, sizes of
        # shards and texts, at a size that synthesises at the release's 512 px in minutes
        full = _plan("full")

        def tenth(counts: dict) -> dict:
            return {k: max(1, round(v / 10)) for k, v in counts.items()}

        return _Plan(images=tenth(full.images), captions=tenth(full.captions), qa=tenth(full.qa),
                     unused=9, defect_rows=tenth(full.defect_rows))
    # full: the published totals
    hr = list(_FULL_HR_IMAGES)
    train = _alloc(_FULL_CAP_IMAGES["train"], [_FULL_HR_IMAGES[s] for s in hr])
    images = {}
    for s, n_tr in zip(hr, train, strict=True):
        images[(s, "train")] = n_tr
        images[(s, "test")] = _FULL_HR_IMAGES[s] - n_tr
    images[("sardet100k", "train")] = 94_493
    images[("sardet100k", "test")] = 10_492
    captions = {
        ("concise", "train"): 17_487, ("concise", "test"): 7_492,
        ("detailed", "train"): 14_481, ("detailed", "test"): 6_190,
    }
    qa = {}
    n_hr = sum(_FULL_HR_IMAGES.values())
    v2_total = sum(_FULL_QA["SARVQA2"].values())
    v2_train = round(v2_total * _FULL_CAP_IMAGES["train"] / n_hr)
    for subset, n_train in (("SARVQA1", _FULL_QA_TRAIN - v2_train), ("SARVQA2", v2_train)):
        cats = list(_FULL_QA[subset])
        totals = [_FULL_QA[subset][c] for c in cats]
        for c, tot, k in zip(cats, totals, _alloc(n_train, totals), strict=True):
            qa[(subset, "train", c)] = k
            qa[(subset, "test", c)] = tot - k
    defect_rows = {
        (v2tr, "missing_image"): 20, (v2te, "missing_image"): 6,
        (cap_train, "missing_image"): 10, (v1tr, "missing_image"): 8,
        (v1tr, "duplicate_row"): 30, (v1te, "duplicate_row"): 5, (v2tr, "duplicate_row"): 10,
        (v2te, "duplicate_row"): 3, (cap_train, "duplicate_row"): 6,
        (cap_test, "duplicate_row"): 2, (cap_test1, "duplicate_row"): 2,
        (v1tr, "empty_text"): 12, (v2tr, "empty_text"): 8, (v2te, "empty_text"): 3,
        (cap_train, "empty_text"): 3,
    }
    return _Plan(images=images, captions=captions, qa=qa, unused=87, defect_rows=defect_rows)


# ----------------------------------------------------------------------------------------------
# Image specs: names, places, sizes, GSD
# ----------------------------------------------------------------------------------------------


class _Spec(NamedTuple):
    idx: int  # unique per run; seeds everything about the image
    name: str
    source: str
    split: str  # "" for unused images
    width: int
    height: int
    gsd_m: float
    city: str  # slug
    country: str  # slug or ""
    region: str  # as in the file name, or ""
    lat: float | None
    lon: float | None
    subdataset: str
    role: str  # used | unused | missing


def _mix(seed: int, idx: int, purpose: int) -> int:
    """One integer seed per (run seed, image, purpose), for ``random.Random``."""
    return ((seed * 0x9E3779B97F4A7C15 + idx) << 4) | purpose


def _sardet_size(r: random.Random, size: int) -> tuple[int, int]:
    u = r.random()
    if u < 0.60:
        return size, size
    if u < 0.85:
        s = max(MIN_IMAGE_SIZE, round(size * 0.75))
        return s, s
    w, h = size, max(MIN_IMAGE_SIZE, round(size * r.uniform(0.6, 0.95)))
    return (w, h) if r.random() < 0.5 else (h, w)


class _Namer:
    """Makes unique file names with the sources' patterns."""

    def __init__(self, seed: int):
        self.r = random.Random(_mix(seed, 0, 9))
        self.used: set[str] = set()
        self.oem_next: Counter = Counter()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            name = make()
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("synthetic name space exhausted")  # pragma: no cover

    def dfc(self, city_i: int, sensor: str | None = None) -> tuple[str, float, float]:
        name, _country, lat0, lon0, sensors, _g = DFC_CITIES[city_i]
        r = self.r
        sensor = sensor or (sensors[0] if r.random() < 0.8 else r.choice(sensors))
        box = {}

        def make() -> str:
            lat, lon = lat0 + r.uniform(-0.08, 0.08), lon0 + r.uniform(-0.08, 0.08)
            box["ll"] = (round(lat, 4), round(lon, 4))
            return f"{sensor}_{name}_{lat:.4f}_{lon:.4f}.png"

        fname = self._unique(make)
        return fname, box["ll"][0], box["ll"][1]

    def oem(self, region_i: int) -> str:
        country, region, city = OEM_REGIONS[region_i]

        def make() -> str:
            self.oem_next[region_i] += 1 + (self.r.random() < 0.3)
            return f"{country}_{region}_{city}_{self.oem_next[region_i]}.png"

        return self._unique(make)

    def sn6(self) -> str:
        return self._unique(
            lambda: f"SN6_Rotterdam_{self.r.choice(SN6_STRIPS)}_tile_{self.r.randint(1, 20000)}.png"
        )


def _assign(n: int, k: int, weights: Iterable[float], r: random.Random) -> list[int]:
    """Pick ``n`` of ``k`` options: each option once first (in order), then by weight."""
    first = list(range(min(n, k)))
    rest = r.choices(range(k), weights=list(weights), k=n - len(first))
    return first + rest


def _build_specs(plan: _Plan, seed: int, size: int) -> tuple[list[_Spec], list[_Spec],
                                                              list[_Spec], list[_Spec]]:
    """Return (used, unused, missing high-res, missing SARDet) image specs."""
    namer = _Namer(seed)
    r = random.Random(_mix(seed, 0, 10))
    used: list[_Spec] = []
    counter = iter(range(1, 10**9))

    def dfc_spec(city_i: int, split: str, role: str, sensor: str | None = None) -> _Spec:
        name, lat, lon = namer.dfc(city_i, sensor)
        c = DFC_CITIES[city_i]
        return _Spec(next(counter), name, "dfc2023", split, size, size, c[5], slug(c[0]),
                     slug(c[1]), "", lat, lon, "", role)

    def oem_spec(region_i: int, split: str, role: str) -> _Spec:
        country, region, city = OEM_REGIONS[region_i]
        gsd = OEM_GSDS[region_i % len(OEM_GSDS)]
        return _Spec(next(counter), namer.oem(region_i), "oem_sar", split, size, size, gsd,
                     slug(city), slug(country), region, None, None, "", role)

    def sn6_spec(split: str, role: str) -> _Spec:
        return _Spec(next(counter), namer.sn6(), "spacenet6", split, size, size, 0.5,
                     "rotterdam", "netherlands", "", None, None, "", role)

    # high-resolution sources: split counts exact, places spread over all cities first
    for source in HIGH_RES:
        n_tr, n_te = plan.images[(source, "train")], plan.images[(source, "test")]
        splits = ["train"] * n_tr + ["test"] * n_te
        r.shuffle(splits)
        if source == "dfc2023":
            places = _assign(len(splits), len(DFC_CITIES), DFC_WEIGHTS, r)
            used += [dfc_spec(p, s, "used") for p, s in zip(places, splits, strict=True)]
        elif source == "oem_sar":
            places = _assign(len(splits), len(OEM_REGIONS), [1.0] * len(OEM_REGIONS), r)
            used += [oem_spec(p, s, "used") for p, s in zip(places, splits, strict=True)]
        else:
            used += [sn6_spec(s, "used") for s in splits]

    # SARDet-100K: unique 7-digit ids, sub-dataset -> GSD and classes
    n_sd = {s: plan.images[("sardet100k", s)] for s in SPLITS}
    n_missing_sd = sum(n for (f, why), n in plan.defect_rows.items()
                       if why == "missing_image" and "SARVQA1" in f)
    rng = np.random.default_rng([seed, 0, 11])
    ids = rng.choice(SARDET_ID_RANGE, size=n_sd["train"] + n_sd["test"] + n_missing_sd,
                     replace=False).tolist()
    sub_w = [s[1] for s in SARDET_SUBSETS]
    pos = 0
    sd_specs: list[_Spec] = []
    for split in SPLITS:
        subs = _assign(n_sd[split], len(SARDET_SUBSETS), sub_w, r)
        for sub_i in subs:
            sub = SARDET_SUBSETS[sub_i]
            w, h = _sardet_size(r, size)
            sd_specs.append(_Spec(next(counter), f"{ids[pos]:07d}.jpg", "sardet100k", split, w,
                                  h, r.choice(sub[2]), "unlocated", "", "", None, None, sub[0],
                                  "used"))
            pos += 1
    used += sd_specs

    # unused high-resolution images (like the 87 extra PNGs: GF2_NewYork and SN6_Rotterdam)
    ny = next(i for i, c in enumerate(DFC_CITIES) if c[0] == "NewYork")
    unused = [dfc_spec(ny, "", "unused", "GF2") if i % 2 == 0 else sn6_spec("", "unused")
              for i in range(plan.unused)]

    # phantoms: names that text rows cite but no file has
    n_missing_hr = sum(n for (f, why), n in plan.defect_rows.items()
                       if why == "missing_image" and "SARVQA1" not in f)
    miss_hr = [dfc_spec(ny, "", "missing", "GF2") if i % 2 == 0 else sn6_spec("", "missing")
               for i in range(n_missing_hr)]
    miss_sd = []
    for _ in range(n_missing_sd):
        sub = SARDET_SUBSETS[0]
        miss_sd.append(_Spec(next(counter), f"{ids[pos]:07d}.jpg", "sardet100k", "", size, size,
                             sub[2][0], "unlocated", "", "", None, None, sub[0], "missing"))
        pos += 1
    return used, unused, miss_hr, miss_sd


# ----------------------------------------------------------------------------------------------
# Scenes: what is in an image (drives both the pixels and the texts)
# ----------------------------------------------------------------------------------------------


class _Obj(NamedTuple):
    cat: str
    x: float
    y: float
    w: float
    h: float


class _Line(NamedTuple):
    cat: str  # road | highway | river | canal | railway
    orient: str  # horizontal | vertical | diag_down | diag_up
    offset: float  # position across the band direction, 0..1
    width: float  # pixels
    curve: float  # amplitude of the meander, fraction of the image side
    phase: float


class _Scene(NamedTuple):
    kind: str
    width: int
    height: int
    objects: tuple[_Obj, ...]
    lines: tuple[_Line, ...]
    water: tuple[str, float] | None  # (side | "all", fraction)
    layout: str  # grid | rows | clustered | scattered
    main: str  # the main object category
    land_cover: str
    area: str
    construction: bool
    fields: bool
    variant: int


#: High-resolution object categories: plural, draw style, size range (fraction of the image
#: side), shape answers, natural (for "What natural feature ...").
HR_CATS: dict[str, tuple[str, str, tuple[float, float], tuple[str, ...], bool]] = {
    "building": ("buildings", "block", (0.10, 0.22), ("Rectangular", "Square", "L-shaped"), False),
    "house": ("houses", "block", (0.06, 0.11), ("Rectangular", "Square"), False),
    "industrial building": ("industrial buildings", "block", (0.16, 0.30), ("Rectangular",),
                            False),
    "warehouse": ("warehouses", "block", (0.16, 0.30), ("Rectangular", "Long and rectangular"),
                  False),
    "tree": ("trees", "veg", (0.05, 0.10), ("Round", "Irregular"), True),
    "storage tank": ("storage tanks", "ring", (0.07, 0.13), ("Circular", "Round", "Cylindrical"),
                     False),
    "ship": ("ships", "ship", (0.12, 0.25), ("Elongated", "Long and narrow"), False),
    "boat": ("boats", "ship", (0.05, 0.10), ("Elongated", "Small and narrow"), False),
    "car": ("cars", "dot", (0.03, 0.05), ("Rectangular", "Small and rectangular"), False),
    "truck": ("trucks", "dot", (0.05, 0.08), ("Rectangular", "Long and rectangular"), False),
    "swimming pool": ("swimming pools", "dark", (0.05, 0.09), ("Rectangular", "Oval",
                                                               "Kidney-shaped"), False),
    "pond": ("ponds", "dark", (0.10, 0.20), ("Irregular", "Oval", "Round"), True),
    "shipping container": ("shipping containers", "stripes", (0.05, 0.09),
                           ("Rectangular", "Box-shaped"), False),
    "solar panel": ("solar panels", "stripes", (0.12, 0.25), ("Rectangular", "Long and flat"),
                    False),
    "airplane": ("airplanes", "plane", (0.14, 0.26), ("Cross-shaped", "T-shaped"), False),
    "sports field": ("sports fields", "field", (0.16, 0.30), ("Rectangular", "Oval"), False),
    "playground": ("playgrounds", "field", (0.09, 0.16), ("Rectangular", "Irregular"), False),
    "stadium": ("stadiums", "oval", (0.28, 0.42), ("Oval", "Circular"), False),
    "parking lot": ("parking lots", "lot", (0.18, 0.32), ("Rectangular", "Square"), False),
    "helipad": ("helipads", "ring", (0.06, 0.09), ("Circular", "Square"), False),
    "roundabout": ("roundabouts", "roundabout", (0.12, 0.18), ("Circular", "Round"), False),
    "park": ("parks", "veg", (0.22, 0.40), ("Irregular", "Rectangular"), True),
    "dock": ("docks", "pier", (0.16, 0.32), ("Long and straight", "Rectangular"), False),
    "pier": ("piers", "pier", (0.14, 0.28), ("Long and narrow", "Linear"), False),
    "bridge": ("bridges", "pier", (0.20, 0.35), ("Long and straight", "Straight"), False),
    "grassland": ("grasslands", "veg", (0.25, 0.45), ("Irregular",), True),
}
LINE_CATS = {"road": "roads", "highway": "highways", "river": "rivers", "canal": "canals",
             "railway": "railways"}
SARDET_CLASSES = ("ship", "tank", "aircraft", "bridge", "car", "harbor")
SARDET_PLURAL = {"ship": "ships", "tank": "tanks", "aircraft": "aircraft", "bridge": "bridges",
                 "car": "cars", "harbor": "harbors"}
#: SARDet classes drawn like the high-resolution styles.
SARDET_STYLE = {"ship": "ship", "tank": "ring", "aircraft": "plane", "bridge": "pier",
                "car": "dot", "harbor": "harbor"}
SARDET_SIZE = {"ship": (0.07, 0.2), "tank": (0.07, 0.14), "aircraft": (0.12, 0.24),
               "bridge": (0.3, 0.5), "car": (0.04, 0.07), "harbor": (0.28, 0.45)}

LAND_COVERS = (
    "Residential", "Industrial", "Urban", "Mixed-use", "Park", "Recreational",
    "Residential and construction", "Forest", "Minimal", "Parking area", "commercial",
    "Farming", "Urban development", "Agricultural field", "Energy generation and agriculture",
    "Vegetation",
)

#: Scene kinds of the high-resolution sources: main (category, min, max), extras (category,
#: min, max, probability), lines (category, probability), water (None | "side" | "river"),
#: land covers, area answers, layouts, fields background.
HR_KINDS: dict[str, dict[str, Any]] = {
    "residential": dict(
        main=("house", 8, 30),
        extras=(("tree", 3, 12, 0.9), ("car", 2, 10, 0.6), ("swimming pool", 1, 4, 0.35),
                ("park", 1, 1, 0.2), ("playground", 1, 1, 0.15)),
        lines=(("road", 1.0),), water=None,
        land_cover=("Residential", "Residential and construction", "Urban"),
        area=("Residential area", "Residential neighborhood", "Housing area")),
    "urban": dict(
        main=("building", 5, 14),
        extras=(("car", 3, 12, 0.8), ("parking lot", 1, 2, 0.4), ("park", 1, 1, 0.3),
                ("tree", 2, 8, 0.5), ("roundabout", 1, 1, 0.15)),
        lines=(("road", 1.0), ("highway", 0.3), ("river", 0.2)), water=None,
        land_cover=("Urban", "Mixed-use", "commercial", "Urban development"),
        area=("Urban area", "Commercial area", "City center", "Downtown area")),
    "industrial": dict(
        main=("industrial building", 3, 8),
        extras=(("storage tank", 2, 12, 0.6), ("warehouse", 1, 4, 0.6), ("truck", 2, 8, 0.6),
                ("parking lot", 1, 1, 0.4), ("shipping container", 3, 12, 0.3)),
        lines=(("road", 1.0), ("railway", 0.4)), water=None,
        land_cover=("Industrial",),
        area=("Industrial area", "Industrial facility", "Factory complex")),
    "harbor": dict(
        main=("ship", 2, 8),
        extras=(("boat", 2, 10, 0.6), ("dock", 1, 3, 0.8), ("shipping container", 4, 14, 0.6),
                ("storage tank", 2, 6, 0.4), ("warehouse", 1, 3, 0.5), ("truck", 1, 5, 0.3)),
        lines=(("road", 1.0),), water="side",
        land_cover=("Industrial", "Mixed-use", "Urban"),
        area=("Harbor", "Port area", "Waterfront", "Dock area")),
    "agricultural": dict(
        main=("tree", 4, 14),
        extras=(("house", 1, 4, 0.6), ("pond", 1, 2, 0.3), ("grassland", 1, 1, 0.3)),
        lines=(("road", 1.0), ("canal", 0.4)), water=None, fields=True,
        land_cover=("Farming", "Agricultural field", "Vegetation"),
        area=("Farmland", "Agricultural area", "Cropland")),
    "park": dict(
        main=("tree", 8, 24),
        extras=(("park", 1, 1, 0.7), ("pond", 1, 2, 0.5), ("sports field", 1, 2, 0.4),
                ("playground", 1, 2, 0.3)),
        lines=(("road", 1.0),), water=None,
        land_cover=("Park", "Recreational", "Vegetation"),
        area=("Forest/park", "Park", "Green space")),
    "forest": dict(
        main=("tree", 14, 30), extras=(("grassland", 1, 1, 0.4), ("pond", 1, 1, 0.2)),
        lines=(("road", 1.0), ("river", 0.3)), water=None,
        land_cover=("Forest", "Vegetation", "Minimal"),
        area=("Forest", "Forest/park", "Wooded area")),
    "sports": dict(
        main=("sports field", 2, 4),
        extras=(("stadium", 1, 1, 0.6), ("parking lot", 1, 2, 0.7), ("car", 4, 14, 0.7),
                ("tree", 2, 6, 0.5)),
        lines=(("road", 1.0),), water=None,
        land_cover=("Recreational", "Park"),
        area=("Sports complex", "Recreational area")),
    "airport": dict(
        main=("airplane", 2, 6),
        extras=(("helipad", 1, 2, 0.4), ("building", 1, 4, 0.7), ("parking lot", 1, 1, 0.5),
                ("car", 2, 8, 0.5), ("truck", 1, 3, 0.3)),
        lines=(("road", 1.0), ("highway", 0.3)), water=None,
        land_cover=("Industrial", "Minimal", "Urban development"),
        area=("Airport", "Airfield")),
    "construction": dict(
        main=("building", 3, 8),
        extras=(("truck", 2, 8, 0.8), ("car", 1, 6, 0.5), ("shipping container", 2, 6, 0.3)),
        lines=(("road", 1.0),), water=None,
        land_cover=("Residential and construction", "Urban development"),
        area=("Construction site", "Development area")),
    "energy": dict(
        main=("solar panel", 3, 8),
        extras=(("storage tank", 1, 4, 0.4), ("building", 1, 2, 0.4), ("tree", 2, 6, 0.4)),
        lines=(("road", 1.0),), water=None, fields=True,
        land_cover=("Energy generation and agriculture",),
        area=("Solar farm", "Energy facility")),
    "parking": dict(
        main=("car", 8, 30),
        extras=(("parking lot", 1, 2, 1.0), ("building", 1, 4, 0.8), ("tree", 2, 6, 0.4)),
        lines=(("road", 1.0),), water=None,
        land_cover=("Parking area", "commercial"),
        area=("Parking area", "Commercial area", "Shopping center")),
    "desert": dict(
        main=("house", 2, 5), extras=(("car", 1, 3, 0.4),),
        lines=(("road", 1.0),), water=None,
        land_cover=("Minimal",),
        area=("Desert terrain", "Barren land", "Open land")),
    "riverside": dict(
        main=("building", 4, 10),
        extras=(("tree", 3, 10, 0.8), ("boat", 1, 5, 0.5), ("bridge", 1, 1, 0.6),
                ("car", 2, 8, 0.5), ("pier", 1, 2, 0.3)),
        lines=(("river", 1.0), ("road", 1.0)), water=None,
        land_cover=("Urban", "Mixed-use", "Vegetation"),
        area=("Riverside area", "Urban area", "Waterfront")),
}
SOURCE_KINDS = {
    "spacenet6": {"harbor": 25, "industrial": 20, "urban": 20, "residential": 20,
                  "riverside": 10, "park": 5},
    "dfc2023": {"urban": 28, "residential": 28, "industrial": 12, "construction": 10,
                "sports": 5, "parking": 8, "park": 5, "riverside": 4},
    "oem_sar": {"residential": 20, "urban": 10, "agricultural": 14, "forest": 8, "park": 7,
                "industrial": 8, "harbor": 7, "airport": 5, "energy": 5, "desert": 5,
                "sports": 4, "construction": 3, "parking": 2, "riverside": 2},
}
LAYOUT_OF_MAIN = {"house": ("grid", "rows", "clustered", "scattered"),
                  "building": ("grid", "rows", "clustered", "scattered"),
                  "tree": ("clustered", "scattered", "rows"),
                  "car": ("rows", "grid", "clustered"),
                  "solar panel": ("rows", "grid"),
                  "sports field": ("rows", "scattered"),
                  "industrial building": ("grid", "rows", "scattered"),
                  "airplane": ("rows", "scattered"), "ship": ("scattered", "rows", "clustered")}
_KIND_NAMES = {src: (tuple(d), tuple(d.values())) for src, d in SOURCE_KINDS.items()}
_ORIENTS = ("horizontal", "vertical", "diag_down", "diag_up")


def _band_distance(line: _Line, cx: float, cy: float, W: int, H: int) -> float:
    """Approximate pixel distance of a point from the centre line of a linear feature."""
    u, v = cx / W, cy / H
    s = min(W, H)
    if line.orient == "horizontal":
        return abs(v - line.offset - line.curve * math.sin(2 * math.pi * u + line.phase)) * H
    if line.orient == "vertical":
        return abs(u - line.offset - line.curve * math.sin(2 * math.pi * v + line.phase)) * W
    if line.orient == "diag_down":
        return abs((v - u) - (line.offset - 0.5)) * s / math.sqrt(2)
    return abs((v + u) - (line.offset + 0.5)) * s / math.sqrt(2)


def _in_water(water: tuple[str, float] | None, cx: float, cy: float, W: int, H: int) -> bool:
    if water is None:
        return False
    side, f = water
    if side == "all":
        return True
    u, v = cx / W, cy / H
    return {"left": u < f, "right": u > 1 - f, "top": v < f, "bottom": v > 1 - f}[side]


class _Placer:
    """Places non-overlapping boxes inside the image, on land or water."""

    def __init__(self, r: random.Random, W: int, H: int, water, lines) -> None:
        self.r, self.W, self.H, self.water, self.lines = r, W, H, water, lines
        self.boxes: list[tuple[float, float, float, float]] = []
        # the open water as a rectangle (the drawn coast wiggles by 2% around it)
        self.wrect = None
        if water is not None:
            side, f = water
            self.wrect = {"all": (0, 0, W, H), "left": (0, 0, f * W, H),
                          "right": ((1 - f) * W, 0, W, H), "top": (0, 0, W, f * H),
                          "bottom": (0, (1 - f) * H, W, H)}[side]

    def _free(self, x: float, y: float, w: float, h: float, on: str, cross: bool) -> bool:
        x1, y1 = x + w, y + h
        for bx, by, bw, bh in self.boxes:
            if x < bx + bw + 1 and bx < x1 + 1 and y < by + bh + 1 and by < y1 + 1:
                return False
        wr = self.wrect
        if on == "water":
            if wr is None or not (x >= wr[0] and x1 <= wr[2] and y >= wr[1] and y1 <= wr[3]):
                return False
        elif on == "land" and wr is not None:
            if x < wr[2] and x1 > wr[0] and y < wr[3] and y1 > wr[1]:
                return False
        if not cross and self.lines:
            cx, cy, half = x + w / 2, y + h / 2, max(w, h) / 2 + 1
            for ln in self.lines:
                if _band_distance(ln, cx, cy, self.W, self.H) < ln.width / 2 + half:
                    return False
        return True

    def place(self, size: tuple[float, float], on: str = "land", near: tuple | None = None,
              tries: int = 12, cross: bool = False, elongated: bool = False,
              ) -> tuple[float, float, float, float] | None:
        # hot loop of the full preset (650k calls): plain comparisons instead of min/max
        rnd, W, H = self.r.random, self.W, self.H
        wmax, hmax = W - 1.0, H - 1.0
        side = W if W < H else H
        lo, span = side * size[0], side * (size[1] - size[0])
        for _ in range(tries):
            a = float(round(lo + span * rnd()))
            if a < 2.0:
                a = 2.0
            if elongated:
                b = float(round(a * (0.25 + 0.15 * rnd())))
                if b < 2.0:
                    b = 2.0
                w, h = (a, b) if rnd() < 0.5 else (b, a)
            else:
                w = a
                h = float(round(a * (0.7 + 0.6 * rnd())))
                if h < 2.0:
                    h = 2.0
            if w > wmax:
                w = wmax
            if h > hmax:
                h = hmax
            if near is None:
                x, y = float(int(rnd() * (W - w + 1))), float(int(rnd() * (H - h + 1)))
            else:
                # sum of three uniforms: a cheap bell around the cluster centre
                sd2 = 2.0 * near[2]
                x = near[0] + sd2 * (rnd() + rnd() + rnd() - 1.5) - w / 2
                y = near[1] + sd2 * (rnd() + rnd() + rnd() - 1.5) - h / 2
                x = 0.0 if x < 0 else (W - w if x > W - w else x)
                y = 0.0 if y < 0 else (H - h if y > H - h else y)
                x, y = float(round(x)), float(round(y))
            if self._free(x, y, w, h, on, cross):
                box = (x, y, w, h)
                self.boxes.append(box)
                return box
        return None


def _sardet_scene(spec: _Spec, seed: int) -> _Scene:
    """Scene of a SARDet-100K chip: targets of the sub-dataset's classes."""
    r = random.Random(_mix(seed, spec.idx, 1))
    W, H = spec.width, spec.height
    classes, weights = _SUBSET_CLASSES[spec.subdataset]
    main = r.choices(classes, weights)[0] if len(classes) > 1 else classes[0]
    lines: list[_Line] = []
    water = None
    if main == "ship":
        water = ("all", 1.0) if r.random() < 0.6 else (r.choice(("left", "right", "top",
                                                                   "bottom")), r.uniform(0.5, 0.7))
    elif main == "bridge":
        lines.append(_Line("river", r.choice(("horizontal", "vertical")), r.uniform(0.35, 0.65),
                           max(4.0, 0.22 * min(W, H)), 0.0, 0.0))
    elif main == "harbor":
        water = (r.choice(("left", "right", "top", "bottom")), r.uniform(0.35, 0.5))
    elif main in ("aircraft", "car"):
        lines.append(_Line("road", r.choice(_ORIENTS), r.uniform(0.3, 0.7),
                           max(2.0, 0.06 * min(W, H)), 0.0, r.uniform(0, 6.28)))
    placer = _Placer(r, W, H, water, lines)
    objs: list[_Obj] = []
    n_main = {"ship": r.randint(1, 9), "tank": r.randint(2, 9), "aircraft": r.randint(1, 6),
              "bridge": 1, "car": r.randint(2, 12), "harbor": 1}[main]
    layout = r.choice(("scattered", "rows", "clustered"))
    centre = (r.uniform(0.2, 0.8) * W, r.uniform(0.2, 0.8) * H, 0.15 * min(W, H))
    todo = [main] * n_main
    # mixed chips (MSAR, OGSOD) sometimes hold a second class
    if len(classes) > 1 and r.random() < 0.35:
        other = r.choice([c for c in classes if c != main])
        todo += [other] * (1 if other in ("bridge", "harbor") else r.randint(1, 3))
    for cls in todo:
        on = "water" if cls == "ship" and water is not None else "land"
        if cls == "harbor":
            box = _harbor_box(r, W, H, water, placer)
        elif cls == "bridge" and lines:
            box = _bridge_box(r, W, H, lines[0], placer)
        else:
            near = centre if layout == "clustered" else None
            box = placer.place(SARDET_SIZE[cls], on=on, near=near,
                               elongated=cls in ("ship", "bridge"))
        if box is not None:
            objs.append(_Obj(cls, *box))
    if not objs:  # tiny chips: fall back to one centred target so every chip has one
        cls = main
        w = h = max(2.0, round(0.15 * min(W, H)))
        objs.append(_Obj(cls, float((W - w) // 2), float((H - h) // 2), w, h))
    return _Scene("sardet", W, H, tuple(objs), tuple(lines), water, layout, main, "", "",
                  False, False, r.randrange(1 << 30))


def _harbor_box(r, W, H, water, placer) -> tuple[float, float, float, float] | None:
    side, f = water if water else ("left", 0.4)
    d = 0.12
    if side in ("left", "right"):
        w = round(W * (d * 2))
        h = round(H * r.uniform(0.3, 0.5))
        x = round(W * (f - d)) if side == "left" else round(W * (1 - f - d))
        y = r.randint(0, H - h)
    else:
        h = round(H * (d * 2))
        w = round(W * r.uniform(0.3, 0.5))
        y = round(H * (f - d)) if side == "top" else round(H * (1 - f - d))
        x = r.randint(0, W - w)
    box = (float(max(0, x)), float(max(0, y)), float(max(2, w)), float(max(2, h)))
    placer.boxes.append(box)
    return box


def _bridge_box(r, W, H, river: _Line, placer) -> tuple[float, float, float, float]:
    span = river.width * 1.8
    thick = max(2.0, round(0.06 * min(W, H)))
    if river.orient == "horizontal":
        cy = river.offset * H
        x = float(r.randint(0, int(W - thick)))
        box = (x, float(max(0, round(cy - span / 2))), thick, float(round(min(span, H))))
    else:
        cx = river.offset * W
        y = float(r.randint(0, int(H - thick)))
        box = (float(max(0, round(cx - span / 2))), y, float(round(min(span, W))), thick)
    x, y, w, h = box
    box = (x, y, min(w, W - x), min(h, H - y))
    placer.boxes.append(box)
    return box


def _hr_scene(spec: _Spec, seed: int) -> _Scene:
    """Scene of a high-resolution tile: a kind of place with its objects and lines."""
    r = random.Random(_mix(seed, spec.idx, 1))
    W, H = spec.width, spec.height
    names, weights = _KIND_NAMES[spec.source]
    kind = r.choices(names, weights)[0]
    k = HR_KINDS[kind]
    water = None
    if k["water"] == "side":
        water = (r.choice(("left", "right", "top", "bottom")), r.uniform(0.3, 0.45))
    lines: list[_Line] = []
    for cat, p in k["lines"]:
        if r.random() < p:
            wide = {"road": 0.05, "highway": 0.09, "river": 0.16, "canal": 0.06, "railway": 0.04}
            orient = r.choice(_ORIENTS)
            if water is not None and water[0] in ("left", "right"):
                orient = "vertical"
            elif water is not None:
                orient = "horizontal"
            lo, hi = 0.25, 0.75
            if water is not None:  # keep the road on land
                f = water[1]
                lo, hi = ((f + 0.1, 0.9) if water[0] in ("left", "top") else (0.1, 0.9 - f))
            curve = r.uniform(0.02, 0.06) if cat == "river" and orient in (
                "horizontal", "vertical") and r.random() < 0.6 else 0.0
            lines.append(_Line(cat, orient, r.uniform(lo, hi),
                               max(2.0, round(wide[cat] * min(W, H))), curve,
                               r.uniform(0, 6.28)))
    placer = _Placer(r, W, H, water, lines)
    main, lo_n, hi_n = k["main"]
    layout = r.choice(LAYOUT_OF_MAIN.get(main, ("scattered",)))
    objs: list[_Obj] = []
    size = HR_CATS[main][2]
    on_main = "water" if main in ("ship", "boat") and water else "land"
    n_main = r.randint(lo_n, hi_n)
    if layout in ("grid", "rows"):
        # lattice positions: regular spacing reads as a grid or as parallel rows
        side = min(W, H)
        a = max(2.0, round(side * sum(size) / 2))
        # vessels lie side by side: long boxes in the row direction
        b = max(2.0, round(a * 0.35)) if main in ("ship", "boat") else a
        gap = max(1.0, round(a * (0.5 if layout == "grid" else 0.3)))
        row_gap = gap if layout == "grid" else max(2.0, round(b * 1.2))
        y = float(r.randint(0, 3))
        while y + b <= H and len(objs) < n_main:
            x = float(r.randint(0, 3))
            while x + a <= W and len(objs) < n_main:
                if placer._free(x, y, a, b, on_main, False):
                    placer.boxes.append((x, y, a, b))
                    objs.append(_Obj(main, x, y, a, b))
                x += a + gap
            y += b + row_gap
    else:
        near = None
        if layout == "clustered":
            near = (r.uniform(0.3, 0.7) * W, r.uniform(0.3, 0.7) * H, 0.18 * min(W, H))
        for _ in range(n_main):
            box = placer.place(size, on=on_main, near=near, elongated=main in ("ship", "boat"))
            if box is not None:
                objs.append(_Obj(main, *box))
    for cat, lo_e, hi_e, p in k["extras"]:
        if r.random() >= p:
            continue
        on = "water" if cat in ("ship", "boat") and water else "land"
        for _ in range(r.randint(lo_e, hi_e)):
            if cat == "bridge" and any(ln.cat == "river" for ln in lines):
                river = next(ln for ln in lines if ln.cat == "river")
                if river.orient in ("horizontal", "vertical"):
                    objs.append(_Obj(cat, *_bridge_box(r, W, H, river, placer)))
                continue
            if cat == "dock" and water:
                box = _harbor_box(r, W, H, water, placer)
            else:
                box = placer.place(HR_CATS[cat][2], on=on, elongated=cat in (
                    "ship", "boat", "pier", "dock", "bridge"))
            if box is not None:
                objs.append(_Obj(cat, *box))
    if not any(o.cat == main for o in objs):
        # a tile always shows its main category: put one in the least crowded spot
        box = placer.place(size, on=on_main, tries=200, cross=True)
        if box is None:
            a = max(2.0, round(min(W, H) * size[0]))
            box = (float((W - a) // 2), float((H - a) // 2), a, a)
        objs.append(_Obj(main, *box))
    return _Scene(kind, W, H, tuple(objs), tuple(lines), water, layout, main,
                  r.choice(k["land_cover"]), r.choice(k["area"]),
                  kind == "construction" or (kind in ("residential", "urban") and
                                             r.random() < 0.15),
                  bool(k.get("fields")), r.randrange(1 << 30))


def _scene(spec: _Spec, seed: int, cache: dict[int, _Scene] | None = None) -> _Scene:
    """Return the scene of an image; ``cache`` keeps high-resolution scenes for a second pass."""
    if spec.source == "sardet100k":
        return _sardet_scene(spec, seed)
    if cache is None:
        return _hr_scene(spec, seed)
    sc = cache.get(spec.idx)
    if sc is None:
        sc = cache[spec.idx] = _hr_scene(spec, seed)
    return sc


# ----------------------------------------------------------------------------------------------
# Texts
# ----------------------------------------------------------------------------------------------


def _an(word: str) -> str:
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"


def _box(o: _Obj) -> str:
    return f"[{o.x:.1f}, {o.y:.1f}, {o.w:.1f}, {o.h:.1f}]"


def _where5(cx: float, cy: float, W: int, H: int) -> str:
    """Coarse position with the five SARVQA1 words."""
    dx, dy = cx / W - 0.5, cy / H - 0.5
    if max(abs(dx), abs(dy)) < 0.17:
        return "center"
    if abs(dx) > abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


_GRID9 = {
    (0, 0): ("Top left", "Upper left corner", "Top left corner"),
    (1, 0): ("Top", "Upper side", "Top center"),
    (2, 0): ("Top right", "Upper right corner", "Top right corner"),
    (0, 1): ("Left side", "Left", "On the left"),
    (1, 1): ("Center", "Near center", "In the middle"),
    (2, 1): ("Right side", "Right", "On the right"),
    (0, 2): ("Bottom left", "Lower left corner", "Bottom left corner"),
    (1, 2): ("Bottom", "Lower side", "Bottom center"),
    (2, 2): ("Bottom right", "Lower right corner", "Bottom right corner"),
}
_GRID9_PLAIN = {(0, 0): "top left", (1, 0): "top center", (2, 0): "top right",
                (0, 1): "left side", (1, 1): "center", (2, 1): "right side",
                (0, 2): "bottom left", (1, 2): "bottom center", (2, 2): "bottom right"}


def _cell(cx: float, cy: float, W: int, H: int) -> tuple[int, int]:
    return min(2, int(3 * cx / W)), min(2, int(3 * cy / H))


def _centroid(objs: Iterable[_Obj]) -> tuple[float, float]:
    objs = list(objs)
    return (sum(o.x + o.w / 2 for o in objs) / len(objs),
            sum(o.y + o.h / 2 for o in objs) / len(objs))


def _line_centre(ln: _Line, W: int, H: int) -> tuple[float, float]:
    if ln.orient == "horizontal":
        return W / 2, ln.offset * H
    if ln.orient == "vertical":
        return ln.offset * W, H / 2
    # diagonals through the centre shifted along the normal
    d = (ln.offset - 0.5) / 2
    return (0.5 - d) * W if ln.orient == "diag_down" else (0.5 + d) * W, (0.5 + d) * H


_DIRECTIONS = {
    "horizontal": ("Horizontal", "East-west", "Horizontally across the image"),
    "vertical": ("Vertical", "North-south", "Vertically through the image"),
    "diag_down": ("Diagonal", "Northwest-southeast", "Diagonal, from top left to bottom right"),
    "diag_up": ("Diagonal", "Northeast-southwest", "Diagonal, from bottom left to top right"),
}
_DIR_PHRASE = {"horizontal": "from left to right", "vertical": "from top to bottom",
               "diag_down": "diagonally from the top left", "diag_up": "diagonally from the "
               "bottom left"}
_PATTERNS = {
    "grid": ("Grid pattern", "Regular grid", "In a grid"),
    "rows": ("Parallel rows", "In rows", "Linear rows"),
    "clustered": ("Clustered", "Densely clustered", "In clusters"),
    "scattered": ("Scattered", "Randomly scattered", "Sparse and scattered"),
}
_PATTERN_PHRASE = {"grid": "a regular grid", "rows": "parallel rows",
                   "clustered": "tight clusters", "scattered": "a scattered pattern"}


class _Text:
    """Question and caption writer for one image."""

    def __init__(self, scene: _Scene, r: random.Random) -> None:
        self.s = scene
        self.r = r
        self.seen: set[str] = set()
        by: dict[str, list[_Obj]] = {}
        for o in scene.objects:
            by.setdefault(o.cat, []).append(o)
        self.by = by
        if scene.kind == "sardet":
            self.present = [c for c in SARDET_CLASSES if c in by]
            self.absent = [c for c in SARDET_CLASSES if c not in by]
            # the most frequent class, ties to the earlier class of SARDET_CLASSES
            self.top = max(self.present, key=lambda c: (len(by[c]), -SARDET_CLASSES.index(c)))

    # -- helpers -------------------------------------------------------------------------------
    def _cap(self, ans: str) -> str:
        """SARVQA2 answers: capitalised, now and then closed by a period."""
        ans = ans[:1].upper() + ans[1:]
        return ans + "." if self.r.random() < 0.2 else ans

    def unique(self, make: Callable[[], tuple[str, str]], tries: int = 300,
               ) -> tuple[str, str] | None:
        """Return a (text, answer) whose text this image has not had yet, None if none is left."""
        for _ in range(tries):
            q, a = make()
            if q not in self.seen:
                self.seen.add(q)
                return q, a
        return None

    # -- SARVQA1 (SARDet-100K, six classes) ----------------------------------------------------
    def v1(self, cat: str) -> tuple[str, str]:
        r, by, s = self.r, self.by, self.s
        present = self.present
        if cat == "object_identification":
            if r.random() < 0.5:
                c, ans = r.choice(present), "yes"
            else:
                c, ans = r.choice(self.absent), "no"
            t = r.choice(_V1_IDENT)
            return t.format(c=c, p=SARDET_PLURAL[c], a=_an(c)), ans
        if cat == "object_classification":
            return r.choice(_V1_CLASS), self.top
        if cat == "instance_counting":
            c = r.choice(present) if r.random() < 0.9 else r.choice(SARDET_CLASSES)
            return r.choice(_V1_COUNT).format(p=SARDET_PLURAL[c]), str(len(by.get(c, ())))
        if cat == "region_referring":
            o = r.choice(s.objects)
            return r.choice(_REGION).format(b=_box(o)), o.cat
        if cat == "object_positioning":
            c = r.choice(present)
            where = _where5(*_centroid(by[c]), s.width, s.height)
            if len(by[c]) == 1 and c != "aircraft" and r.random() < 0.7:
                return r.choice(_V1_POS1).format(c=c), where
            return r.choice(_V1_POS).format(p=SARDET_PLURAL[c]), where
        raise ValueError(f"category {cat!r} is not asked of SARDet-100K images")

    # -- SARVQA2 (high-resolution, open vocabulary) -------------------------------------------
    def v2(self, cat: str) -> tuple[str, str]:
        return getattr(self, "_v2_" + cat)()

    def _plural(self, c: str) -> str:
        return HR_CATS[c][0] if c in HR_CATS else LINE_CATS[c]

    def _v2_object_identification(self) -> tuple[str, str]:
        r, by, s = self.r, self.by, self.s
        present = list(by) + [ln.cat for ln in s.lines]
        if r.random() < 0.55:
            c, ans = r.choice(present), "Yes"
        else:
            absent = [c for c in (*HR_CATS, *LINE_CATS) if c not in present]
            c, ans = r.choice(absent), "No"
        if c in ("tree", "building", "house") and r.random() < 0.25:
            return f"Are there any surrounding {self._plural(c)}?", self._cap(ans)
        return r.choice(_V2_IDENT).format(c=c, p=self._plural(c), a=_an(c)), self._cap(ans)

    def _v2_object_classification(self) -> tuple[str, str]:
        r, by, s = self.r, self.by, self.s
        u = r.random()
        natural = [o for o in s.objects if HR_CATS.get(o.cat, ("",) * 5)[4]]
        if u < 0.15 and natural:
            o = r.choice(natural)
            where = _GRID9_PLAIN[_cell(o.x + o.w / 2, o.y + o.h / 2, s.width, s.height)]
            trees = "Dense trees" if len(by.get("tree", ())) > 3 else "Trees"
            ans = {"tree": trees, "park": "Park", "pond": "A pond", "grassland": "Grassland"}[o.cat]
            return f"What natural feature is in the {where}?", self._cap(ans)
        if u < 0.55:
            return r.choice(_V2_CLASS_AREA), self._cap(s.area)
        if u < 0.8:
            return r.choice(_V2_CLASS_MAIN), self._cap(self._plural(s.main))
        vehicles = [c for c in ("car", "truck", "boat", "ship", "airplane") if c in by]
        if vehicles:
            c = max(vehicles, key=lambda v: len(by[v]))
            return r.choice(_V2_CLASS_VEHICLE), self._cap(self._plural(c))
        return r.choice(_V2_CLASS_AREA), self._cap(s.area)

    def _v2_instance_counting(self) -> tuple[str, str]:
        r, by = self.r, self.by
        c = r.choice(list(by))
        return r.choice(_V2_COUNT).format(p=self._plural(c)), str(len(by[c]))

    def _v2_region_referring(self) -> tuple[str, str]:
        o = self.r.choice(self.s.objects)
        return self.r.choice(_REGION).format(b=_box(o)), self._cap(o.cat)

    def _v2_object_positioning(self) -> tuple[str, str]:
        r, by, s = self.r, self.by, self.s
        options = list(by) + [ln.cat for ln in s.lines if ln.cat in ("river", "highway",
                                                                     "canal", "railway")]
        c = r.choice(options)
        if c in by:
            cx, cy = _centroid(by[c])
            many = len(by[c]) > 1
        else:
            cx, cy = _line_centre(next(ln for ln in s.lines if ln.cat == c), s.width, s.height)
            many = False
        ans = r.choice(_GRID9[_cell(cx, cy, s.width, s.height)])
        if many:
            return r.choice(_V2_POS).format(p=self._plural(c)), self._cap(ans)
        return r.choice(_V2_POS1).format(c=c), self._cap(ans)

    def _v2_shape(self) -> tuple[str, str]:
        r, by, s = self.r, self.by, self.s
        options = list(by) + [ln.cat for ln in s.lines if ln.cat in ("river", "road", "canal")]
        c = r.choice(options)
        if c in HR_CATS:
            shapes = HR_CATS[c][3]
            ans = shapes[(s.variant + len(c)) % len(shapes)]
        else:
            ln = next(ln for ln in s.lines if ln.cat == c)
            ans = ("Winding" if ln.cat == "river" else "Curved") if ln.curve else "Straight"
        if c in by and len(by[c]) > 1:
            return r.choice(_V2_SHAPE_MANY).format(p=self._plural(c)), self._cap(ans)
        return r.choice(_V2_SHAPE_ONE).format(c=c), self._cap(ans)

    def _v2_direction(self) -> tuple[str, str]:
        r, s = self.r, self.s
        ln = r.choice(s.lines)
        ans = r.choice(_DIRECTIONS[ln.orient])
        if ln.cat == "road" and r.random() < 0.3:
            return "What direction is the main road?", self._cap(ans)
        if ln.cat in ("river", "canal") and r.random() < 0.3:
            return f"In which direction does the {ln.cat} flow?", self._cap(ans)
        return r.choice(_V2_DIRECTION).format(c=ln.cat), self._cap(ans)

    def _v2_land_cover(self) -> tuple[str, str]:
        # land-cover answers are the 16 exact strings: never re-cased or punctuated
        return self.r.choice(_V2_LAND_COVER), self.s.land_cover

    def _v2_pattern(self) -> tuple[str, str]:
        r, s = self.r, self.s
        if s.main == "building" and r.random() < 0.3:
            q = "How are the buildings arranged?"
        else:
            q = r.choice(_V2_PATTERN).format(p=self._plural(s.main))
        return q, self._cap(r.choice(_PATTERNS[s.layout]))

    def _v2_reasoning(self) -> tuple[str, str]:
        r = self.r
        q, a = r.choice(_REASONING)(self)
        return q, self._cap(a)

    # -- captions -------------------------------------------------------------------------------
    def _qty(self, c: str, concise: bool, adj: str = "") -> str:
        """Return a quantity phrase for one category's objects (``several parked cars``)."""
        n = len(self.by.get(c, ()))
        p = f"{adj} {self._plural(c)}" if adj else self._plural(c)
        r = self.r
        if n <= 1:
            one = f"{adj} {c}" if adj else c
            return f"{_an(one)} {one}"
        if n <= 3:
            q = r.choice(("a few", "some", _NUM[n]))
        elif n <= 9:
            q = r.choice(("several", "many", "a group of"))
        else:
            q = r.choice(("a lot of", "lots of", "many", "dozens of") if concise else
                         ("numerous", "a large number of", "dozens of", "densely packed"))
        return f"{q} {p}"

    def caption(self, kind: str) -> str:
        make = self._concise if kind == "concise" else self._detailed
        got = self.unique(lambda: (make(), ""), tries=2000)
        if got is None:  # pragma: no cover - thousands of combinations per scene
            raise RuntimeError(f"no new {kind} caption left for a {self.s.kind} scene")
        return got[0]

    def _concise(self) -> str:
        r, s = self.r, self.s
        subj = r.choice(_AREA_NOUN[s.kind])
        cats = [s.main] + [c for c in self.by if c != s.main]
        obj = self._qty(r.choice(cats[:3]), True)
        t = r.choice(_CONCISE)
        text = t.format(subj=subj, obj=obj, Subj=subj[0].upper() + subj[1:],
                        Obj=obj[0].upper() + obj[1:])
        if t.startswith("aerial view") or r.random() < 0.08:
            return text.rstrip(".").lower() if t.startswith("aerial view") else text
        return text

    def _detailed(self) -> str:
        r, s, by = self.r, self.s, self.by
        subj = r.choice(_AREA_DETAILED[s.kind])
        cats = [s.main] + [c for c in by if c != s.main]
        picks = [cats[0]] + r.sample(cats[1:], min(len(cats) - 1, r.randint(1, 2)))
        groups = []
        for c in picks:
            adjs = _ADJ.get(c)
            adj = r.choice(adjs) if adjs and r.random() < 0.6 else ""
            groups.append(self._qty(c, False, adj))
        listed = groups[0] if len(groups) == 1 else ", ".join(groups[:-1]) + " and " + groups[-1]
        if r.random() < 0.03:
            # a few GPT-4o captions are one short clause without an opener, like a concise one
            return f"{subj[0].upper()}{subj[1:]} with {listed}."
        text = f"{r.choice(_OPENERS)} {subj} with {listed}"
        clauses = []
        if s.lines:
            ln = r.choice(s.lines)
            clauses.append(f", and {_an(ln.cat)} {ln.cat} running {_DIR_PHRASE[ln.orient]} "
                           "across the scene")
        if s.water and s.water[0] != "all":
            clauses.append(f", bordered by open water on the {s.water[0]} side")
        if "tree" in by and "tree" not in picks:
            clauses.append(", surrounded by scattered trees")
        first = next(iter(by))
        cx, cy = _centroid(by[first])
        clauses.append(f", with the {self._plural(first)} concentrated in the "
                       f"{_GRID9_PLAIN[_cell(cx, cy, s.width, s.height)]} of the image")
        text += r.choice(clauses) + "."
        if r.random() < 0.55 or len(text.split()) < 16:
            land = _LAND_PROSE.get(s.land_cover, s.land_cover.lower())
            second = [
                f" The {self._plural(s.main)} are arranged in {_PATTERN_PHRASE[s.layout]}.",
                f" The overall land use appears to be {land}.",
                f" The scene suggests {_an(s.area)} {s.area.lower()} with a busy layout.",
            ]
            if s.lines:
                ln = r.choice(s.lines)
                second.append(f" A {ln.cat} crosses the image {_DIR_PHRASE[ln.orient]}, "
                              "dividing the area into distinct parts.")
            text += r.choice(second)
        return text


_NUM = {2: "two", 3: "three"}
_LAND_PROSE = {"Minimal": "largely undeveloped", "Residential and construction":
               "residential with ongoing construction", "Parking area": "parking",
               "Park": "parkland", "Energy generation and agriculture":
               "energy generation alongside agriculture"}
_V1_IDENT = (
    "Is there {a} {c} in the image?", "Is there any {c} in the image?",
    "Are there any {p} in the image?", "Are there {p} in this image?",
    "Does the image contain {a} {c}?", "Does the image contain any {p}?",
    "Is {a} {c} present in the image?", "Are any {p} present in the scene?",
    "Can you see any {p} in the image?", "Is there at least one {c} in this SAR image?",
    "Are {p} visible in the image?", "Does this image show any {p}?",
    "Is there {a} {c} visible in this scene?", "Can {a} {c} be found in the image?",
)
_V1_CLASS = (
    "What is the main category of objects in the image?", "What type of object is mostly visible?",
    "What kind of objects appear in this image?",
    "Which category do the objects in the image belong to?",
    "What is the dominant object class in the image?",
    "What object category is present in this SAR image?",
    "What type of target is shown in the image?",
    "Which object class is most common in the scene?", "What are the main objects in this image?",
    "What category of target can be seen?", "What type of objects dominate this scene?",
    "What is the primary object type in this image?", "What is the main object in the image?",
    "Which class of objects is shown in this image?", "What kind of target is in the image?",
    "What type of object appears in this SAR image?", "What object class does this image show?",
    "What is the main target category here?",
)
_V1_COUNT = (
    "How many {p} are in the image?", "How many {p} are there in the image?",
    "How many {p} are located in the image?", "How many {p} can be seen in this image?",
    "How many {p} are visible?", "What is the number of {p} in the image?",
    "Count the {p} in the image.", "What is the total count of {p} in this scene?",
    "How many {p} appear in the SAR image?", "How many {p} does the image contain?",
    "Count the number of {p} visible in the scene.",
)
_REGION = (
    "What is the object present in the area {b}?", "What object is in the area {b}?",
    "What is located in the region {b}?",
    "Which category does the object in the box {b} belong to?",
    "What type of object lies within {b}?", "Identify the object in the region {b}.",
    "What can be seen inside the bounding box {b}?", "What is the category of the object at {b}?",
    "What object occupies the area {b}?", "Which object is shown in the region {b}?",
    "What is inside the area {b}?", "Which object can be found in the region {b}?",
    "What kind of object is located at {b}?", "Name the object in the box {b}.",
    "What is the object in the bounding box {b}?", "What does the region {b} contain?",
)
_V1_POS = (
    "Where are most {p} positioned within the image?", "Where are most {p} located in the image?",
    "In which part of the image are the {p} found?", "Where do the {p} appear in the image?",
    "Which part of the image contains most of the {p}?",
    "What is the location of the {p} in the image?", "Where in the scene are the {p} concentrated?",
    "Where are the {p} mainly located?", "In which region of the image are most {p}?",
)
_V1_POS1 = (
    "Where is the {c} located?", "Where is the {c} positioned in the image?",
    "In which part of the image is the {c}?", "What is the location of the {c} in the image?",
    "Where is the {c} in the image?", "Where can the {c} be found in the image?",
    "In which region of the image is the {c} located?", "Where does the {c} appear?",
    "Which part of the image contains the {c}?", "Where is the {c} situated?",
)
_V2_IDENT = (
    "Is there {a} {c} in the image?", "Are there any {p} in the image?",
    "Are there any {p} visible?", "Does the image contain {a} {c}?", "Can you see any {p}?",
    "Is {a} {c} present in this area?", "Are any {p} visible in the scene?",
    "Are there {p} in this area?", "Does the scene include {a} {c}?",
    "Is there any {c} visible?",
    "Do you see {a} {c} in the scene?", "Is {a} {c} visible in the image?",
)
_V2_CLASS_AREA = (
    "What type of area is mostly visible?", "What kind of area does this image show?",
    "What type of area is shown in the image?", "What kind of place is this?",
    "What type of site is depicted?", "What is the main type of area in this image?",
    "What kind of environment is shown in the scene?", "What type of facility is this?",
)
_V2_CLASS_MAIN = (
    "What is the main type of structure in the image?", "What type of objects dominate the scene?",
    "What is the most common object in the image?", "What kind of structures are most visible?",
    "What objects make up most of this scene?",
)
_V2_CLASS_VEHICLE = (
    "What type of vehicle is visible?", "What kind of vehicles can be seen?",
    "Which type of vehicle is most common here?",
)
_V2_COUNT = (
    "How many {p} are there?", "How many {p} are visible in the image?",
    "How many {p} can be counted?", "What is the number of {p} visible?",
    "Count the number of {p}.", "How many {p} are present in the scene?",
    "How many {p} are located in the image?", "How many {p} are in this area?",
    "What is the total number of {p}?", "How many {p} can you see?",
)
_V2_POS = (
    "Where are most {p} positioned within the image?", "Where are the {p} located?",
    "Where are the {p} concentrated?", "In which part of the image are the {p}?",
    "Which part of the scene contains most of the {p}?", "Where are most {p} found?",
)
_V2_POS1 = (
    "Where is the {c} located?", "In which part of the image is the {c}?",
    "Where is the {c} situated in the image?", "Which part of the scene contains the {c}?",
    "What is the position of the {c} in the image?", "Where can the {c} be found?",
)
_V2_SHAPE_MANY = (
    "What shape are the {p}?", "What shape do the {p} have?",
    "What is the geometric form of the {p}?", "What is the typical shape of the {p}?",
    "Which shape best describes the {p}?",
)
_V2_SHAPE_ONE = (
    "What is the shape of the {c}?", "How would you describe the shape of the {c}?",
    "What shape is the {c}?", "Which shape best describes the {c}?",
    "What is the outline shape of the {c}?",
)
_V2_DIRECTION = (
    "In which direction does the {c} run?", "What is the orientation of the {c}?",
    "How is the {c} oriented?", "Along which direction does the {c} extend?",
    "Which direction does the {c} follow across the image?", "What direction is the {c}?",
    "What direction does the {c} run in?",
)
_V2_LAND_COVER = (
    "What is the predominant land cover?", "What is the dominant land cover in the image?",
    "Which land cover type covers most of the area?", "What is the main land use in this area?",
    "What land cover dominates the scene?", "What kind of land cover is shown?",
    "What is the primary land-cover class here?", "What type of land cover is most prevalent?",
    "Which land use best describes this scene?",
)
_V2_PATTERN = (
    "How are the {p} arranged?", "What pattern do the {p} form?", "How are the {p} distributed?",
    "What is the arrangement of the {p}?", "What is the layout pattern of the {p}?",
    "Describe the spatial pattern of the {p}.", "In what pattern are the {p} laid out?",
    "How are the {p} organized in the scene?",
)
_PURPOSE = {
    "storage tank": ("Fuel storage", "Storing liquids"), "parking lot": ("Parking",),
    "sports field": ("Sports", "Recreation"), "dock": ("Loading ships", "Mooring ships"),
    "shipping container": ("Cargo transport", "Shipping goods"),
    "solar panel": ("Generating electricity", "Solar power"), "warehouse": ("Storage",),
    "helipad": ("Helicopter landing",), "swimming pool": ("Recreation", "Swimming"),
    "bridge": ("Crossing the river",), "pier": ("Mooring boats",),
    "playground": ("Children's play", "Recreation"), "stadium": ("Sports events",),
}
_ACTIVITY = {
    "harbor": "Shipping", "industrial": "Manufacturing", "agricultural": "Farming",
    "construction": "Construction", "sports": "Sports events", "airport": "Air transport",
    "energy": "Power generation", "residential": "Housing", "urban": "Commerce",
    "park": "Recreation", "parking": "Parking", "forest": "Forestry",
    "riverside": "River transport", "desert": "Very little",
}


def _yn(b: bool) -> str:
    return "Yes" if b else "No"


def _reason_construction(t: _Text) -> tuple[str, str]:
    q = t.r.choice(("Any buildings under construction?", "Are any buildings under construction?",
                    "Is any construction work under way in this area?"))
    return q, _yn(t.s.construction)


def _reason_purpose(t: _Text) -> tuple[str, str]:
    cats = [c for c in t.by if c in _PURPOSE]
    if not cats:
        return _reason_activity(t)
    c = t.r.choice(cats)
    p = HR_CATS[c][0] if len(t.by[c]) > 1 else f"the {c}"
    p = p if p.startswith("the ") else f"the {p}"
    return t.r.choice(("What is the likely purpose of {p}?", "What are {p} most likely used "
                       "for?")).format(p=p), t.r.choice(_PURPOSE[c])


def _reason_activity(t: _Text) -> tuple[str, str]:
    return (t.r.choice(("What activity most likely takes place here?",
                        "What is this area most likely used for?")), _ACTIVITY[t.s.kind])


_REASONING: tuple[Callable[[_Text], tuple[str, str]], ...] = (
    _reason_construction, _reason_construction, _reason_purpose, _reason_purpose,
    _reason_activity,
    lambda t: ("Is this area likely residential?", _yn(t.s.kind == "residential")),
    lambda t: ("Is this likely an industrial zone?", _yn(t.s.kind in ("industrial", "harbor"))),
    lambda t: ("Could large ships dock in this area?", _yn("ship" in t.by or "dock" in t.by)),
    lambda t: ("Is the area densely built up?",
               _yn(sum(len(t.by.get(c, ())) for c in ("house", "building")) >= 10)),
    lambda t: ("Does the layout suggest a planned neighborhood?",
               _yn(t.s.layout in ("grid", "rows") and t.s.main in ("house", "building"))),
    lambda t: ("Would this area be prone to flooding?",
               _yn(t.s.water is not None or any(ln.cat == "river" for ln in t.s.lines))),
    lambda t: ("Is there evidence of recent development?", _yn(t.s.construction)),
    lambda t: ("Is the area likely accessible by road?",
               _yn(any(ln.cat in ("road", "highway") for ln in t.s.lines))),
    lambda t: ("Does the scene suggest heavy traffic?",
               _yn(len(t.by.get("car", ())) + len(t.by.get("truck", ())) >= 8
                   or any(ln.cat == "highway" for ln in t.s.lines))),
    lambda t: ("Is this area suitable for agriculture?", _yn(t.s.fields)),
    lambda t: ("Is the area likely used for recreation?", _yn(t.s.kind in ("park", "sports"))),
    lambda t: ("Would a large aircraft be able to land here?", _yn(t.s.kind == "airport")),
)

_AREA_NOUN = {
    "residential": ("a residential neighborhood", "a suburban area", "a housing estate",
                    "a residential area"),
    "urban": ("a city", "a downtown area", "an urban area", "a city center"),
    "industrial": ("a large industrial area", "an industrial park", "a factory complex"),
    "harbor": ("a harbor", "a port", "a busy harbor", "a waterfront"),
    "agricultural": ("farmland", "agricultural fields", "a rural area", "farm fields"),
    "park": ("a park", "a green park", "a public park"),
    "forest": ("a forest", "a wooded area", "dense woodland"),
    "sports": ("a sports complex", "a stadium area", "sports fields"),
    "airport": ("an airport", "an airfield", "an airport apron"),
    "construction": ("a construction site", "a building site", "a development area"),
    "energy": ("a solar farm", "a solar power plant", "an energy facility"),
    "parking": ("a parking lot", "a large parking area", "a shopping center"),
    "desert": ("a desert", "barren land", "open desert terrain"),
    "riverside": ("a river", "a riverside town", "a city by a river"),
}
_AREA_DETAILED = {
    "residential": ("a residential neighborhood", "a densely built residential area",
                    "a suburban housing area"),
    "urban": ("an urban area", "a busy city district", "a dense urban landscape"),
    "industrial": ("an industrial facility", "a large industrial complex", "an industrial zone"),
    "harbor": ("a harbor area", "a busy port", "a coastal port facility"),
    "agricultural": ("an agricultural landscape", "a rural area of cultivated fields",
                     "patchwork farmland"),
    "park": ("a large park", "a green recreational area", "a landscaped park"),
    "forest": ("a forested area", "a densely wooded landscape", "a forest"),
    "sports": ("a sports complex", "a recreational facility", "an athletic venue"),
    "airport": ("an airport", "an airfield", "an airport apron area"),
    "construction": ("a construction site", "an area under development",
                     "a large building site"),
    "energy": ("a solar energy facility", "a solar farm", "an energy generation site"),
    "parking": ("a large parking area", "a commercial area", "a shopping center"),
    "desert": ("an open desert landscape", "a sparsely developed arid area", "barren terrain"),
    "riverside": ("a riverside area", "an urban area along a river", "a river corridor"),
}
_CONCISE = (
    "Aerial view of {subj} with {obj}.", "An aerial view of {subj}.",
    "aerial view of {subj} with {obj}", "An aerial view of {subj} with {obj}.",
    "A satellite image of {subj}.", "Satellite view of {subj} with {obj}.",
    "Top view of {subj}.", "A bird's eye view of {subj}.", "An overhead view of {obj} in {subj}.",
    "{Subj} with {obj}.", "{Obj} in {subj}.", "Aerial photo of {subj} with {obj}.",
    "Aerial view of {obj} in {subj}.",
)
_OPENERS = (
    "The image shows", "This SAR image shows", "The image depicts", "This image captures",
    "The scene shows", "The SAR image reveals", "This radar image depicts", "The image presents",
    "The image features",
)
_ADJ = {
    "storage tank": ("circular", "large circular", "cylindrical"), "house": ("small", "detached"),
    "building": ("large", "tall", "rectangular"), "industrial building": ("large", "long"),
    "warehouse": ("long", "large"), "ship": ("large", "moored"), "boat": ("small", "moored"),
    "car": ("parked",), "tree": ("dense", "tall"), "shipping container": ("stacked",),
    "solar panel": ("tilted",), "airplane": ("parked",), "truck": ("parked",),
}


# ----------------------------------------------------------------------------------------------
# Pixels
# ----------------------------------------------------------------------------------------------

LOOKS = 4


def _upsample(g: np.ndarray, H: int, W: int) -> np.ndarray:
    """Bilinear upsampling of a small grid to H x W (a smooth texture field)."""
    gh, gw = g.shape
    ys, xs = np.linspace(0, gh - 1, H), np.linspace(0, gw - 1, W)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (ys - y0)[:, None], xs - x0
    rows = g[y0] * (1 - fy) + g[y1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def _reflectivity(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Mean backscatter (linear sigma0) of every pixel of a scene, before speckle."""
    W, H = scene.width, scene.height
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    u, v = (xx + 0.5) / W, (yy + 0.5) / H
    tex = np.exp(0.35 * _upsample(rng.normal(size=(H // 12 + 2, W // 12 + 2)), H, W))
    sigma = (0.07 * tex).astype(np.float32)
    if scene.fields:
        # agricultural parcels: a patchwork of levels with row texture
        nx, ny = rng.integers(2, 5), rng.integers(2, 5)
        cutx = np.sort(rng.uniform(0.15, 0.85, nx - 1))
        cuty = np.sort(rng.uniform(0.15, 0.85, ny - 1))
        ix, iy = np.searchsorted(cutx, u), np.searchsorted(cuty, v)
        levels = rng.uniform(0.02, 0.25, (ny, nx))
        angle = rng.uniform(0, np.pi, (ny, nx))
        period = rng.uniform(2.5, 6.0, (ny, nx))
        ph = angle[iy, ix]
        stripes = 1 + 0.35 * np.sin(2 * np.pi * (xx * np.cos(ph) + yy * np.sin(ph))
                                    / period[iy, ix])
        sigma = levels[iy, ix] * stripes * tex ** 0.5
    elif scene.kind in ("urban", "industrial", "construction", "parking"):
        sigma = sigma * 1.4
    if scene.water is not None:
        side, f = scene.water
        wave = 0.02 * np.sin(2 * np.pi * 2 * (v if side in ("left", "right") else u)
                             + rng.uniform(0, 6.28))
        mask = {"all": np.ones_like(u, bool), "left": u < f + wave, "right": u > 1 - f + wave,
                "top": v < f + wave, "bottom": v > 1 - f + wave}[side]
        sigma = np.where(mask, 0.004 * tex ** 0.3, sigma)
    for ln in scene.lines:
        if ln.orient == "horizontal":
            d = np.abs(v - ln.offset - ln.curve * np.sin(2 * np.pi * u + ln.phase)) * H
        elif ln.orient == "vertical":
            d = np.abs(u - ln.offset - ln.curve * np.sin(2 * np.pi * v + ln.phase)) * W
        elif ln.orient == "diag_down":
            d = np.abs((v - u) - (ln.offset - 0.5)) * min(W, H) / np.sqrt(2)
        else:
            d = np.abs((v + u) - (ln.offset + 0.5)) * min(W, H) / np.sqrt(2)
        band = d < ln.width / 2
        if ln.cat in ("river", "canal"):
            sigma = np.where(band, 0.003, sigma)
        elif ln.cat == "railway":
            sigma = np.where(band, 0.03, sigma)
            sigma = np.where(np.abs(d - ln.width / 4) < 0.6, 0.8, sigma)
        else:
            sigma = np.where(band, 0.008, sigma)  # asphalt: specular, dark
            if ln.cat == "highway":
                sigma = np.where(d < 0.6, 0.5, sigma)  # median barrier
    sigma = np.ascontiguousarray(sigma, dtype=np.float32)
    for o in scene.objects:
        _draw(sigma, o, SARDET_STYLE.get(o.cat) or HR_CATS[o.cat][1], rng)
    return sigma


def _draw(sigma: np.ndarray, o: _Obj, style: str, rng: np.random.Generator) -> None:
    """Paint one object's backscatter into its box (in place)."""
    H, W = sigma.shape
    x0, y0 = int(o.x), int(o.y)
    x1, y1 = min(W, max(x0 + 1, int(round(o.x + o.w)))), min(H, max(y0 + 1, int(round(o.y + o.h))))
    sub = sigma[y0:y1, x0:x1]
    h, w = sub.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    ry, rx = max(h / 2, 0.5), max(w / 2, 0.5)
    ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    if style == "block":
        sub[:] = 0.25
        sub[: max(1, h // 8), :] = rng.uniform(4, 12)  # double bounce at the facing walls
        sub[:, : max(1, w // 8)] = rng.uniform(4, 12)
        if y1 < H:
            sigma[y1:min(H, y1 + max(1, h // 6)), x0:x1] *= 0.15  # radar shadow
    elif style == "ring":
        rr = np.sqrt(ell)
        sub[rr < 1.0] = 0.3
        sub[np.abs(rr - 0.85) < 0.2] = rng.uniform(8, 20)
    elif style == "ship":
        sub[ell < 1.0] = rng.uniform(20, 60)
        sub[ell < 0.3] = rng.uniform(60, 120)
    elif style == "plane":
        long_axis_x = w >= h
        body = (np.abs(yy - cy) < max(0.6, h / 8)) if long_axis_x else (np.abs(xx - cx) <
                                                                        max(0.6, w / 8))
        wing = (np.abs(xx - cx * 0.8) < max(0.6, w / 8)) if long_axis_x else (
            np.abs(yy - cy * 0.8) < max(0.6, h / 8))
        sub[body | wing] = rng.uniform(8, 20)
    elif style == "dot":
        sub[:] = rng.uniform(4, 12)
    elif style == "dark":
        sub[ell < 1.0] = 0.004
        sub[np.abs(ell - 1.0) < 0.25] = 0.8
    elif style == "veg":
        sub[ell < 1.0] = (0.22 * np.exp(0.5 * rng.normal(size=(h, w))))[ell < 1.0]
    elif style == "lot":
        sub[:] = 0.02
        sub[1::3, 1::3] = 4.0
    elif style == "stripes":
        sub[:] = 0.05
        sub[::3, :] = 3.0
    elif style == "field":
        sub[:] = 0.03
        sub[0, :], sub[-1, :], sub[:, 0], sub[:, -1] = 1.5, 1.5, 1.5, 1.5
    elif style == "oval":
        sub[ell < 1.0] = 0.05
        sub[np.abs(ell - 0.85) < 0.2] = rng.uniform(5, 10)
    elif style == "roundabout":
        rr = np.sqrt(ell)
        sub[np.abs(rr - 0.8) < 0.2] = 0.008
        sub[rr < 0.55] = 0.2
    elif style == "pier":
        sub[:] = 1.5
        sub[:, : max(1, w // 6)] = rng.uniform(5, 10)
    elif style == "harbor":
        sub[:] = 0.15
        if w >= h:
            sub[::max(2, h // 3), :] = 6.0
        else:
            sub[:, ::max(2, w // 3)] = 6.0
    else:  # pragma: no cover - every style above is used
        raise ValueError(style)


def _render(spec: _Spec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one image: 8-bit preprocessed pixels and the float32 intensity original.

    Args:
        spec: the image spec (from the generator's image list).
        seed: the run seed.

    Returns:
        ``(gray, intensity)``: uint8 H x W log-stretched image, float32 H x W linear intensity.

    """
    scene = _scene(spec, seed)
    rng = np.random.default_rng([seed, spec.idx, 5])
    sigma = _reflectivity(scene, rng)
    speckle = rng.gamma(LOOKS, 1.0 / LOOKS, size=sigma.shape).astype(np.float32)
    intensity = sigma * speckle
    db = 10.0 * np.log10(np.maximum(intensity, 1e-6))
    lo, hi = np.percentile(db, (1.0, 99.7))
    gray = np.clip((db - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255)
    return np.round(gray).astype(np.uint8), intensity.astype(np.float32)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if fmt == "PNG":
        img.save(buf, format="PNG", compress_level=6)
    elif fmt == "JPEG":
        img.save(buf, format="JPEG", quality=90, subsampling=0, optimize=False)
    else:
        img.save(buf, format="TIFF")
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_images(job: tuple[list[_Spec], int, str, bool]) -> tuple[int, int, int]:
    """Render and write a chunk of images; returns (files, image bytes, original bytes)."""
    specs, seed, root, originals = job
    img_dir = Path(root) / "SARimages"
    orig_dir = Path(root) / "SARimages_original"
    n_bytes = n_orig = 0
    for spec in specs:
        gray, intensity = _render(spec, seed)
        data = _encode(gray, "JPEG" if spec.name.endswith(".jpg") else "PNG")
        _write_atomic(img_dir / spec.name, data)
        n_bytes += len(data)
        if originals and spec.source != "sardet100k":
            tif = _encode(intensity, "TIFF")
            _write_atomic(orig_dir / (spec.name.rsplit(".", 1)[0] + ".tif"), tif)
            n_orig += len(tif)
    return len(specs), n_bytes, n_orig


# ----------------------------------------------------------------------------------------------
# Text files
# ----------------------------------------------------------------------------------------------


class _TextFile:
    """One CSV, its JSON twin and its truth rows, written at temporary names."""

    def __init__(self, root: Path, rel: str, columns: tuple[str, ...], labels: bool,
                 truth: Any) -> None:
        self.rel = rel
        self.final_csv = root / rel
        self.final_json = self.final_csv.with_suffix(".json")
        self.final_csv.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_csv = self.final_csv.with_name(f".{self.final_csv.name}.tmp")
        self.tmp_json = self.final_json.with_name(f".{self.final_json.name}.tmp")
        self.fc = open(self.tmp_csv, "w", encoding="utf-8", newline="")
        self.fj = open(self.tmp_json, "w", encoding="utf-8")
        self.csv = csv.writer(self.fc, lineterminator="\n")
        self.labels = labels
        self.csv.writerow(columns + (("type",) if labels else ()))
        self.fj.write("[")
        self.rows = 0
        self.truth = truth
        self.split = "train" if "train" in rel else "test"
        self.is_caption = "caption" in rel
        self.subset = "" if self.is_caption else rel.rsplit("/", 1)[1].split("_")[0]
        self.split_subset = f"{self.split},{self.subset},"
        self.caption_json = _jstr(CAPTION_PROMPT)
        self.last_image = self.last_image_json = ""
        self.defects: Counter = Counter()

    def add(self, image: str, user: str, answer: str, label: str, category: str,
            defect: str = "", duplicate_of: int | str = "") -> int:
        """Write one row (CSV, JSON, truth); returns its 1-based row number."""
        self.rows += 1
        n = self.rows
        if self.is_caption:
            row = [image, answer]
            content = self.caption_json
            tq = ","
            kind = category
        else:
            row = [image, user, answer]
            content = _jstr("<image>" + user)
            tq = _TRUTH_TQ[category]
            kind = ""
        if self.labels:
            row.append(label)
        self.csv.writerow(row)
        if image != self.last_image:
            self.last_image, self.last_image_json = image, _jstr("SARimages/" + image)
        # json's own string encoder (C): same bytes as json.dumps(..., ensure_ascii=False)
        obj = ('{"messages":[{"role":"user","content":' + content
               + '},{"role":"assistant","content":' + _jstr(answer)
               + '}],"images":[' + self.last_image_json + "]")
        if self.labels:
            obj += ',"type":' + _jstr(label)
        self.fj.write(("\n" if n == 1 else ",\n") + obj + "}")
        # truth fields never hold a comma, quote or newline: image names come from our own
        # patterns, the rest from fixed vocabularies
        self.truth.write(f"{self.rel},{n},{n + 1},{image},{self.split_subset}{tq},{kind},"
                         f"{defect},{duplicate_of}\n")
        if defect:
            self.defects[defect] += 1
        return n

    def close(self) -> int:
        """Finish both files and move them to their final names; returns bytes written."""
        self.fj.write("\n]\n")
        self.fc.close()
        self.fj.close()
        os.replace(self.tmp_csv, self.final_csv)
        os.replace(self.tmp_json, self.final_json)
        return self.final_csv.stat().st_size + self.final_json.stat().st_size


class _Defects:
    """Where the injected defect rows of one file go."""

    def __init__(self, plan: _Plan, rel: str, n_images: int, rng: np.random.Generator,
                 phantoms: list[_Spec]) -> None:
        self.at: dict[int, list[str]] = {}
        for why in ("missing_image", "duplicate_row", "empty_text"):
            n = plan.defect_rows.get((rel, why), 0)
            for pos in rng.integers(0, max(n_images, 1), size=n).tolist():
                self.at.setdefault(pos, []).append(why)
        self.phantoms = phantoms

    def take_phantom(self) -> _Spec:
        return self.phantoms.pop()


def _per_image(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` texts over ``n`` images: at least one each, the rest gamma-weighted."""
    if total < n:
        raise RuntimeError(f"{total} texts cannot cover {n} images")
    w = rng.gamma(3.0, size=n)
    w = np.minimum(w, 2.0 * w.mean())  # crowded images exist, but not 5x the mean
    return 1 + rng.multinomial(total - n, w / w.sum())


def _vqa_file(tf: _TextFile, plan: _Plan, subset: str, split: str, images: list[_Spec],
              seed: int, phantoms: list[_Spec], counts: Counter,
              scenes: dict[int, _Scene]) -> None:
    """Write one SARVQA file: every image's QA rows in a seeded order, plus defect rows.

    Each image gets a seeded number of question slots and each slot a category, so the
    category totals are exact. When an image has no new question left for a slot (a chip with
    one target has few distinct positioning questions), the slot moves on to the next image;
    slots still open after the last image go to the most recent images, at the end of the file.
    """
    cats = [c for c in CATEGORIES if plan.qa.get((subset, split, c), 0)]
    rng = np.random.default_rng([seed, SUBSET_ID[subset], SPLITS.index(split), 21])
    n_per = _per_image(sum(plan.qa[(subset, split, c)] for c in cats), len(images), rng)
    slots = np.repeat(np.arange(len(cats)), [plan.qa[(subset, split, c)] for c in cats])
    rng.shuffle(slots)
    order = rng.permutation(len(images)).tolist()
    defects = _Defects(plan, tf.rel, len(images), rng, phantoms)
    ask = "v1" if subset == "SARVQA1" else "v2"
    labels = [TYPE_LABELS[c] for c in cats]
    cursor = 0
    pending: list[tuple[str, str, str, int, int]] = []  # duplicates wait for the next image
    carry: list[int] = []
    recent: list[tuple[_Spec, _Text]] = []

    def ask_slots(spec: _Spec, t: _Text, todo: list[int]) -> tuple[list, list[int]]:
        make = getattr(t, ask)
        done, left = [], []
        for ci in todo:
            got = t.unique(lambda ci=ci: make(cats[ci]), tries=60)
            if got is None:
                left.append(ci)
                continue
            q, a = got
            done.append((spec.name, q, a, ci, tf.add(spec.name, q, a, labels[ci], cats[ci])))
            counts[(cats[ci], split)] += 1
        return done, left

    for pos, i in enumerate(order):
        spec = images[i]
        t = _Text(_scene(spec, seed, scenes), random.Random(_mix(seed, spec.idx, 3)))
        scenes.pop(spec.idx, None)  # the VQA pass is the last user of a scene
        mine = carry + slots[cursor:cursor + n_per[i]].tolist()
        cursor += n_per[i]
        written, carry = ask_slots(spec, t, mine)
        recent = recent[-63:] + [(spec, t)]
        for name, q, a, ci, row in pending:
            tf.add(name, q, a, labels[ci], cats[ci], "duplicate_row", row)
        pending = []
        for why in defects.at.get(pos, ()):
            ci = int(rng.integers(len(cats)))
            if why == "duplicate_row" and written:
                pending.append(written[int(rng.integers(len(written)))])
            elif why == "duplicate_row":
                defects.at.setdefault(pos + 1, []).append(why)
            elif why == "empty_text":
                got = t.unique(lambda ci=ci, t=t: getattr(t, ask)(cats[ci]))
                if got is None:  # pragma: no cover - 300 tries over the whole vocabulary
                    raise RuntimeError(f"no question left for an empty-answer row of {spec}")
                tf.add(spec.name, got[0], "", labels[ci], cats[ci], "empty_text")
            else:
                ph = defects.take_phantom()
                tp = _Text(_scene(ph, seed), random.Random(_mix(seed, ph.idx, 3)))
                got = tp.unique(lambda ci=ci, tp=tp: getattr(tp, ask)(cats[ci]))
                if got is None:  # pragma: no cover - a fresh image always has questions
                    raise RuntimeError(f"no question for the missing-image row of {ph}")
                tf.add(ph.name, got[0], got[1], labels[ci], cats[ci], "missing_image")
    for name, q, a, ci, row in pending:
        tf.add(name, q, a, labels[ci], cats[ci], "duplicate_row", row)
    for spec, t in reversed(recent):
        if not carry:
            break
        _done, carry = ask_slots(spec, t, carry)
    if carry:  # pragma: no cover - needs 64 images all out of questions
        raise RuntimeError(f"{len(carry)} {subset} {split} questions found no image with a new "
                           "question; lower the QA load per image")


SUBSET_ID = {"SARVQA1": 1, "SARVQA2": 2}
#: truth columns ``task,question_type`` per category
_TRUTH_TQ = {c: (f"{c},{c}" if c in TASKS else f"others,{c}") for c in CATEGORIES}


def _caption_files(files: dict[str, _TextFile], plan: _Plan, images: dict[str, list[_Spec]],
                   seed: int, phantoms: list[_Spec], counts: Counter,
                   scenes: dict[int, _Scene]) -> None:
    """Write the three caption files."""
    for split in SPLITS:
        imgs = images[split]
        rng = np.random.default_rng([seed, 0, SPLITS.index(split), 31])
        per = {k: _per_image(plan.captions[(k, split)], len(imgs), rng) for k in
               ("concise", "detailed")}
        texts: dict[int, _Text] = {}

        def text_of(i: int, texts: dict = texts, imgs: list = imgs) -> _Text:
            # one writer per image so its captions never repeat across files
            if i not in texts:
                s = imgs[i]
                texts[i] = _Text(_scene(s, seed, scenes), random.Random(_mix(seed, s.idx, 2)))
            return texts[i]

        if split == "train":
            streams = [(files[CAPTION_FILES[("train", None)]], ("concise", "detailed"))]
        else:
            streams = [(files[CAPTION_FILES[("test", k)]], (k,)) for k in ("detailed", "concise")]
        for tf, kinds in streams:
            order = rng.permutation(len(imgs)).tolist()
            defects = _Defects(plan, tf.rel, len(imgs), rng, phantoms)
            pending: list[tuple] = []
            for pos, i in enumerate(order):
                spec = imgs[i]
                t = text_of(i)
                todo = [k for k in kinds for _ in range(int(per[k][i]))]
                rng.shuffle(todo)
                written = []
                for k in todo:
                    cap = t.caption(k)
                    written.append((spec.name, cap, k, tf.add(spec.name, "", cap,
                                                                KIND_LABELS[k], k)))
                    counts[(k, split)] += 1
                for name, cap, k, row in pending:
                    tf.add(name, "", cap, KIND_LABELS[k], k, "duplicate_row", row)
                pending = []
                for why in defects.at.get(pos, ()):
                    k = kinds[int(rng.integers(len(kinds)))]
                    if why == "duplicate_row":
                        pending.append(written[int(rng.integers(len(written)))])
                    elif why == "empty_text":
                        tf.add(spec.name, "", "", KIND_LABELS[k], k, "empty_text")
                    else:
                        ph = defects.take_phantom()
                        tp = _Text(_scene(ph, seed), random.Random(_mix(seed, ph.idx, 2)))
                        tf.add(ph.name, "", tp.caption(k), KIND_LABELS[k], k, "missing_image")
            for name, cap, k, row in pending:
                tf.add(name, "", cap, KIND_LABELS[k], k, "duplicate_row", row)
        texts.clear()


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def _check_args(out: Any, preset: str, seed: Any, image_size: Any, labels: str,
                workers: Any) -> Path:
    if preset not in PRESETS:
        raise unknown_name("preset", preset, PRESETS, "preset")
    if labels not in LABEL_MODES:
        raise unknown_name("label mode", labels, LABEL_MODES, "labels")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r}: must be a non-negative integer (it seeds numpy's "
                          "SeedSequence); pass e.g. seed=0")
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                   or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
        raise ConfigError(f"image_size={image_size!r}: must be an integer from {MIN_IMAGE_SIZE} "
                          f"to {MAX_IMAGE_SIZE} pixels (boxes and speckle need room); pass e.g. "
                          "image_size=64, or None for the preset's default")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers={workers!r}: must be a positive integer; pass e.g. workers=2")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BuildError(f"out={str(out)!r}: is a file, not a folder; pass a folder path")
    for sub in ("SARLANG_1M", "truth"):
        p = out / sub
        if p.exists() and any(p.iterdir()):
            raise BuildError(
                f"out={str(out)!r}: {p} already holds files, and mixing two synthetic releases "
                "would leave images no truth knows; pass an empty or new folder, or delete it"
            )
    return out


def generate(out: str | os.PathLike, *, preset: str = "tiny", seed: int = 0,
             image_size: int | None = None, labels: str = "present", originals: bool = False,
             workers: int = 2, progress: bool = True, images: bool = True) -> dict[str, Any]:
    """Write a seeded synthetic SARLANG-1M release, its ground truth and a GSD table.

    Args:
        out: folder to write; gets ``SARLANG_1M/`` (the release), ``truth/`` and
            ``gsd_table.csv``. ``SARLANG_1M/`` and ``truth/`` must be absent or empty.
        preset: ``tiny`` (about 40 images, 450 texts: test fixture), ``preview`` (about 200
            images, 2,500 texts), ``medium`` (a tenth of full: 11,833 images, 112,627 texts)
            or ``full`` (the published totals: 118,331 images, 45,650 captions, 1,080,627
            QA pairs).
        seed: run seed; same seed and options give byte-identical files.
        image_size: side in pixels of the high-resolution images (SARDet sizes scale with it);
            None takes the preset's default (tiny 64, preview 128, medium 64, full 64).
        labels: ``present`` writes the task/type and caption kind columns; ``absent`` leaves
            them out of CSV and JSON, so a parser has to infer them.
        originals: also write float32 ``.tif`` originals of the high-resolution images
            (ignored when ``images`` is False; the summary's ``originals`` says what happened).
        workers: processes rendering images (bytes do not depend on it). They are spawned,
            so a script calling this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        progress: show progress bars on stderr.
        images: False writes texts, truth and GSD table but no image files.

    Returns:
        A JSON-able summary: images per source and split, captions per kind and split, QA
        per task (and others sub-type) and split, injected defects, files and bytes written.

    Raises:
        ConfigError: an unknown preset or label mode, or a bad seed, image size or workers.
        BuildError: ``out`` already holds a release or truth.

    """
    out = _check_args(out, preset, seed, image_size, labels, workers)
    size = image_size or DEFAULT_IMAGE_SIZE[preset]
    plan = _plan(preset)
    used, unused, miss_hr, miss_sd = _build_specs(plan, seed, size)
    root = out / "SARLANG_1M"
    truth_dir = out / "truth"
    for d in (root / "SARimages", root / "Text" / "caption", root / "Text" / "VQA", truth_dir):
        d.mkdir(parents=True, exist_ok=True)

    # texts and their truth
    tmp_truth = truth_dir / ".texts.csv.tmp"
    counts: Counter = Counter()
    with open(tmp_truth, "w", encoding="utf-8", newline="") as truth:
        truth.write(",".join(TRUTH_TEXT_HEADER) + "\n")
        lab = labels == "present"
        files: dict[str, _TextFile] = {}
        for key, rel in CAPTION_FILES.items():
            files[rel] = _TextFile(root, rel, ("image", "caption"), lab and key[1] is None, truth)
        for rel in VQA_FILES.values():
            files[rel] = _TextFile(root, rel, ("image", "question", "answer"), lab, truth)
        hr = {s: [x for x in used if x.source != "sardet100k" and x.split == s] for s in SPLITS}
        sd = {s: [x for x in used if x.source == "sardet100k" and x.split == s] for s in SPLITS}
        ph_hr, ph_sd = list(miss_hr), list(miss_sd)
        bar = _bar(progress, len(files), "texts")
        scenes: dict[int, _Scene] = {}
        _caption_files(files, plan, hr, seed, ph_hr, counts, scenes)
        bar.update(3)
        for (subset, split), rel in VQA_FILES.items():
            _vqa_file(files[rel], plan, subset, split, (sd if subset == "SARVQA1" else hr)[split],
                      seed, ph_sd if subset == "SARVQA1" else ph_hr, counts, scenes)
            bar.update(1)
        bar.close()
        text_bytes = 0
        rows_per_file = {}
        defects: Counter = Counter({"unused_image": len(unused)})
        for rel, tf in files.items():
            text_bytes += tf.close()
            rows_per_file[rel] = tf.rows
            defects.update(tf.defects)
    os.replace(tmp_truth, truth_dir / "texts.csv")

    # images
    all_imgs = used + unused
    img_bytes = orig_bytes = 0
    if images:
        if originals:
            (root / "SARimages_original").mkdir(exist_ok=True)
        # chunks small enough to keep every worker busy; bytes never depend on the split
        chunk = min(256, max(8, -(-len(all_imgs) // (workers * 8))))
        jobs = [(all_imgs[i:i + chunk], seed, str(root), originals)
                for i in range(0, len(all_imgs), chunk)]
        bar = _bar(progress, len(all_imgs), "images")
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                for n, b, o in ex.map(_write_images, jobs):
                    img_bytes, orig_bytes = img_bytes + b, orig_bytes + o
                    bar.update(n)
        else:
            for job in jobs:
                n, b, o = _write_images(job)
                img_bytes, orig_bytes = img_bytes + b, orig_bytes + o
                bar.update(n)
        bar.close()

    # image truth and GSD table
    img_rows = []
    for s in sorted(all_imgs, key=lambda x: x.name):
        img_rows.append((s.name, s.source, s.split, s.city, s.country, s.region,
                         "" if s.lat is None else f"{s.lat:.4f}",
                         "" if s.lon is None else f"{s.lon:.4f}", _fmt_gsd(s.gsd_m),
                         tier_for_gsd(s.gsd_m), s.width, s.height, s.subdataset,
                         "unused_image" if s.role == "unused" else ""))
    truth_bytes = _write_csv(truth_dir / "images.csv", TRUTH_IMAGE_HEADER, img_rows)
    gsd_bytes = _write_csv(out / "gsd_table.csv", ("file_name", "gsd_m"),
                           [(r[0], r[8]) for r in img_rows])
    truth_bytes += (truth_dir / "texts.csv").stat().st_size

    summary = _summary(preset, seed, size, labels, originals, images, plan, used, unused,
                       counts, rows_per_file, defects)
    summary["bytes"] = {"images": img_bytes, "originals": orig_bytes, "texts": text_bytes,
                        "truth": truth_bytes, "gsd_table": gsd_bytes}
    data = (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode()
    _write_atomic(truth_dir / "summary.json", data)
    return summary


def _fmt_gsd(g: float) -> str:
    return repr(float(g))


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterable[Iterable]) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    return path.stat().st_size


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, total: int, what: str):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"synth {what}", unit=" " + what.rstrip("s"))


def _summary(preset, seed, size, labels, originals, images, plan, used, unused, counts,
             rows_per_file, defects: Counter) -> dict[str, Any]:
    img_counts = {src: {sp: 0 for sp in SPLITS} for src in SOURCES}
    tiers: Counter = Counter()
    cities = set()
    for s in used:
        img_counts[s.source][s.split] += 1
        tiers[tier_for_gsd(s.gsd_m)] += 1
        cities.add(s.city)
    qa = {t: {sp: 0 for sp in SPLITS} for t in TASKS}
    others = {t: {sp: 0 for sp in SPLITS} for t in OTHERS_TYPES}
    caps = {k: {sp: counts[(k, sp)] for sp in SPLITS} for k in ("concise", "detailed")}
    for (cat, sp), n in counts.items():
        if cat in qa:
            qa[cat][sp] += n
        elif cat in others:
            others[cat][sp] += n
            qa["others"][sp] += n
    qa_subset = {sub: {sp: sum(n for (s2, sp2, _c), n in plan.qa.items() if s2 == sub and
                               sp2 == sp) for sp in SPLITS} for sub in SUBSET_ID}
    return {
        "preset": preset, "seed": seed, "image_size": size, "labels": labels,
        "originals": bool(originals and images), "images_written": bool(images),
        "images": img_counts,
        "images_total": len(used), "image_files": len(used) + len(unused),
        "captions": caps, "captions_total": sum(sum(v.values()) for v in caps.values()),
        "qa": qa, "others": others, "qa_by_subset": qa_subset,
        "qa_total": sum(sum(v.values()) for v in qa.values()),
        "defects": {d: defects.get(d, 0) for d in DEFECTS},
        "text_rows": rows_per_file,
        "tiers": {t: tiers.get(t, 0) for t in ("vhr", "hr", "mr")},
        "cities": sorted(cities),
    }
