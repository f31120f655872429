"""Texts of the synthetic release: the questions, answers and captions of one image."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from .scenes import HR_CATS, LINE_CATS, SARDET_CLASSES, SARDET_PLURAL, _Line, _Obj, _Scene

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

