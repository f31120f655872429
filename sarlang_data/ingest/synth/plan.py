"""Plans of the synthetic release: presets, counts, places, file names and image specs."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...schema import OTHERS_TYPES, SPLITS, TASKS, slug

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

