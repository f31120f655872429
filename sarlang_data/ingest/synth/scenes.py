"""Scenes of the synthetic images (what is in them) and their rendering into pixels."""

from __future__ import annotations

import math
import random
from typing import Any, NamedTuple

import numpy as np

from .plan import _SUBSET_CLASSES, _mix, _Spec

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
# Pixels
# ----------------------------------------------------------------------------------------------

LOOKS = 4


def _cpu_free(fn: Any, x: Any) -> np.ndarray:
    """``fn(x)`` for numpy's exp, log10, sin, cos or power, the same bits on every CPU.

    numpy runs these ufuncs in SIMD code it picks by CPU (AVX2, AVX-512, ...), and the
    results differ in their last bits: the bundled preview rebuilt on another machine then
    had a pixel of another value. Computed in float64 and rounded to float32, the results
    differ only where a value falls within a few float64 units of a float32 rounding midpoint
    (odds ~2^-27 per value), so a seeded release gives the same bytes everywhere.
    """
    return fn(np.asarray(x, np.float64)).astype(np.float32)


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
    tex = _cpu_free(np.exp, 0.35 * _upsample(rng.normal(size=(H // 12 + 2, W // 12 + 2)), H, W))
    sigma = 0.07 * tex  # float32, as tex is
    if scene.fields:
        # agricultural parcels: a patchwork of levels with row texture
        nx, ny = rng.integers(2, 5), rng.integers(2, 5)
        cutx = np.sort(rng.uniform(0.15, 0.85, nx - 1))
        cuty = np.sort(rng.uniform(0.15, 0.85, ny - 1))
        ix, iy = np.searchsorted(cutx, u), np.searchsorted(cuty, v)
        levels = rng.uniform(0.02, 0.25, (ny, nx))
        angle = rng.uniform(0, np.pi, (ny, nx))
        period = rng.uniform(2.5, 6.0, (ny, nx))
        # each parcel's direction, taken once per parcel and spread over its pixels
        cos_a, sin_a = _cpu_free(np.cos, angle)[iy, ix], _cpu_free(np.sin, angle)[iy, ix]
        stripes = 1 + 0.35 * _cpu_free(np.sin, 2 * np.pi * (xx * cos_a + yy * sin_a)
                                       / period[iy, ix])
        sigma = levels[iy, ix] * stripes * np.sqrt(tex)
    elif scene.kind in ("urban", "industrial", "construction", "parking"):
        sigma = sigma * 1.4
    if scene.water is not None:
        side, f = scene.water
        wave = 0.02 * _cpu_free(np.sin, 2 * np.pi * 2 * (v if side in ("left", "right") else u)
                                + rng.uniform(0, 6.28))
        mask = {"all": np.ones_like(u, bool), "left": u < f + wave, "right": u > 1 - f + wave,
                "top": v < f + wave, "bottom": v > 1 - f + wave}[side]
        sigma = np.where(mask, 0.004 * _cpu_free(lambda t: t ** 0.3, tex), sigma)
    for ln in scene.lines:
        if ln.orient == "horizontal":
            d = np.abs(v - ln.offset - ln.curve * _cpu_free(np.sin, 2 * np.pi * u + ln.phase)) * H
        elif ln.orient == "vertical":
            d = np.abs(u - ln.offset - ln.curve * _cpu_free(np.sin, 2 * np.pi * v + ln.phase)) * W
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
        sub[ell < 1.0] = (0.22 * _cpu_free(np.exp, 0.5 * rng.normal(size=(h, w))))[ell < 1.0]
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
    db = 10.0 * _cpu_free(np.log10, np.maximum(intensity, 1e-6))
    lo, hi = np.percentile(db, (1.0, 99.7))
    gray = np.clip((db - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255)
    return np.round(gray).astype(np.uint8), intensity.astype(np.float32)
