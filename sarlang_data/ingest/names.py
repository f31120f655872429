"""What the release's file names say: image name grammar, places, sample keys, the GSD table."""

from __future__ import annotations

import csv
import errno
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import schema
from ..errors import ColumnError, ReleaseError

_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_ORIGINAL_EXTS = (".tif", ".tiff")
_REF_EXTS = _IMAGE_EXTS + _ORIGINAL_EXTS


@dataclass(frozen=True)
class Place:
    """Where an image comes from, as told by its file name."""

    source: str
    city: str
    country: str | None
    region: str | None
    lat: float | None
    lon: float | None


# --------------------------------------------------------------------------- file names

_DFC_RE = re.compile(r"^(SV|GF2)_(.+)_(-?\d+(?:\.\d+)?)_(-?\d+(?:\.\d+)?)$", re.IGNORECASE)
_SARDET_RE = re.compile(r"^\d{7}$")
_SN6_RE = re.compile(r"^SN6(_|$)", re.IGNORECASE)
_OEM_TOKEN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
#: City slug -> known places of that name: (country slug, lat, lon). DFC2023 names carry
#: coordinates, so a name shared by several cities (Portsmouth) resolves to the nearest one.
#: Cities not listed get country None. Sources: the DFC2023 names seen in the wild (Berlin,
#: Brasilia, Copenhagen, Darwin, NewDelhi, NewYork, Portsmouth, Rio) and other large cities.
CITY_COUNTRIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "addisababa": (("ethiopia", 9.01, 38.76),),
    "amsterdam": (("netherlands", 52.37, 4.90),),
    "atlanta": (("usa", 33.75, -84.39),),
    "bangkok": (("thailand", 13.76, 100.50),),
    "barcelona": (("spain", 41.39, 2.17),),
    "beijing": (("china", 39.90, 116.41),),
    "berlin": (("germany", 52.52, 13.40),),
    "boston": (("usa", 42.36, -71.06),),
    "brasilia": (("brazil", -15.79, -47.88),),
    "buenosaires": (("argentina", -34.60, -58.38),),
    "cairo": (("egypt", 30.04, 31.24),),
    "capetown": (("southafrica", -33.92, 18.42),),
    "chicago": (("usa", 41.88, -87.63),),
    "copenhagen": (("denmark", 55.68, 12.57),),
    "darwin": (("australia", -12.46, 130.85),),
    "delhi": (("india", 28.61, 77.21),),
    "denver": (("usa", 39.74, -104.99),),
    "dubai": (("uae", 25.20, 55.27),),
    "guangzhou": (("china", 23.13, 113.26),),
    "hamburg": (("germany", 53.55, 9.99),),
    "hongkong": (("china", 22.32, 114.17),),
    "houston": (("usa", 29.76, -95.37),),
    "istanbul": (("turkey", 41.01, 28.98),),
    "jakarta": (("indonesia", -6.21, 106.85),),
    "lagos": (("nigeria", 6.52, 3.38),),
    "lima": (("peru", -12.05, -77.04),),
    "london": (("unitedkingdom", 51.51, -0.13),),
    "losangeles": (("usa", 34.05, -118.24),),
    "madrid": (("spain", 40.42, -3.70),),
    "melbourne": (("australia", -37.81, 144.96),),
    "mexicocity": (("mexico", 19.43, -99.13),),
    "miami": (("usa", 25.76, -80.19),),
    "moscow": (("russia", 55.76, 37.62),),
    "mumbai": (("india", 19.08, 72.88),),
    "munich": (("germany", 48.14, 11.58),),
    "nairobi": (("kenya", -1.29, 36.82),),
    "newdelhi": (("india", 28.61, 77.21),),
    "neworleans": (("usa", 29.95, -90.07),),
    "newyork": (("usa", 40.71, -74.01),),
    "osaka": (("japan", 34.69, 135.50),),
    "paris": (("france", 48.86, 2.35),),
    "perth": (("australia", -31.95, 115.86), ("unitedkingdom", 56.40, -3.44)),
    "portland": (("usa", 45.52, -122.68), ("usa", 43.66, -70.26)),
    "portsmouth": (("unitedkingdom", 50.82, -1.09), ("usa", 36.84, -76.30),
                   ("usa", 43.07, -70.76)),
    "rio": (("brazil", -22.91, -43.17),),
    "riodejaneiro": (("brazil", -22.91, -43.17),),
    "rome": (("italy", 41.90, 12.50),),
    "rotterdam": (("netherlands", 51.92, 4.48),),
    "santiago": (("chile", -33.45, -70.67),),
    "saopaulo": (("brazil", -23.55, -46.63),),
    "seattle": (("usa", 47.61, -122.33),),
    "seoul": (("southkorea", 37.57, 126.98),),
    "shanghai": (("china", 31.23, 121.47),),
    "shenzhen": (("china", 22.54, 114.06),),
    "singapore": (("singapore", 1.35, 103.82),),
    "sydney": (("australia", -33.87, 151.21),),
    "tokyo": (("japan", 35.68, 139.69),),
    "toronto": (("canada", 43.65, -79.38),),
    "vancouver": (("canada", 49.28, -123.12),),
    "washington": (("usa", 38.91, -77.04),),
    "wuhan": (("china", 30.59, 114.31),),
}
#: A place of the table farther than this (degrees, either axis) is another city of that name.
_CITY_MAX_DEG = 3.0


def _country_of(city: str, lat: float, lon: float) -> str | None:
    """Return the country slug of a city near (lat, lon), or None when not in the table."""
    best = None
    for country, clat, clon in CITY_COUNTRIES.get(city, ()):
        d = max(abs(clat - lat), abs((clon - lon + 180) % 360 - 180))
        if d <= _CITY_MAX_DEG and (best is None or d < best[0]):
            best = (d, country)
    return best[1] if best else None


def _strip_ext(name: str) -> str:
    """Return the stem of an image reference: directories and a known image extension removed.

    Stems may contain dots (``SV_Darwin_-12.4278_130.8688``), so only the extensions of
    :data:`_REF_EXTS` count as extensions.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    low = base.lower()
    for ext in _REF_EXTS:
        if low.endswith(ext):
            return base[: -len(ext)]
    return base


def parse_file_name(name: str) -> Place:
    """Tell the source and place of an image from its file name.

    Patterns: ``{SV|GF2}_{City}_{lat}_{lon}`` (DFC2023; CamelCase city, WGS84 degrees),
    ``SN6_...`` (SpaceNet6, Rotterdam), seven digits (SARDet-100K, no place: ``unlocated``),
    ``{Country}_{Region...}_{City}_{n}`` (OpenEarthMap-SAR: country first, integer tile index
    last, city just before it, region the tokens between; hyphens allowed inside tokens).

    Args:
        name: file name, with or without directories and extension.

    Returns:
        The :class:`Place`; city, country and region are slugs (:func:`schema.slug`).

    Raises:
        ReleaseError: if the name follows none of the patterns.

    """
    stem = _strip_ext(name)
    if _SARDET_RE.match(stem):
        return Place("sardet100k", schema.UNLOCATED, None, None, None, None)
    if _SN6_RE.match(stem):
        return Place("spacenet6", "rotterdam", "netherlands", None, None, None)
    m = _DFC_RE.match(stem)
    if m:
        lat, lon = float(m.group(3)), float(m.group(4))
        city = schema.slug(m.group(2))
        if -90 <= lat <= 90 and -180 <= lon <= 180 and city != schema.UNLOCATED:
            return Place("dfc2023", city, _country_of(city, lat, lon), None, lat, lon)
    tokens = stem.split("_")
    if (
        len(tokens) >= 4
        and tokens[-1].isdigit()
        and all(_OEM_TOKEN_RE.match(t) for t in tokens[:-1])
        and tokens[0][0].isupper()
    ):
        region = "_".join(tokens[1:-2])
        return Place(
            "oem_sar", schema.slug(tokens[-2]), schema.slug(tokens[0]), schema.slug(region),
            None, None,
        )
    raise ReleaseError(
        f"image file name {name!r}: matches no known pattern ({{SV|GF2}}_{{City}}_{{lat}}_{{lon}} "
        "for DFC2023, {Country}_{Region}_{City}_{n} for OpenEarthMap-SAR, SN6_... for "
        "SpaceNet6, a 7-digit number for SARDet-100K); rename the image to its source's pattern"
    )


def _walk(root: Path, _above: tuple[tuple[int, int], ...] = ()) -> Iterator[os.DirEntry]:
    """Yield the files below ``root`` in sorted order, one ``os.scandir`` per folder.

    Symbolic links are followed (a release assembled from links reads as the real one), but a
    link to a folder that contains it (a loop, which would walk the same files for ever, or
    until the path is too long) stops the walk with an error naming the link.

    Raises:
        ReleaseError: a symbolic link loop, or a folder that cannot be listed.

    """
    try:
        st = os.stat(root)
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise ReleaseError(f"release folder {str(root)!r} cannot be listed ({e.strerror or e}); "
                           "fix its permissions or the link that leads there") from None
    here = (*_above, (st.st_dev, st.st_ino))
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=True)
            is_file = not is_dir and e.is_file(follow_symlinks=True)
            if is_dir:
                target = os.stat(e.path)
                if (target.st_dev, target.st_ino) in here:
                    raise ReleaseError(
                        f"{e.path!r} is a symbolic link loop (it leads back to "
                        f"{os.path.realpath(e.path)!r}, a folder that holds it), so the "
                        "release would be read again and again; remove the link"
                    )
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise ReleaseError(f"{e.path!r} is a symbolic link loop ({err.strerror}); remove "
                               "the link") from None
        if is_dir:
            yield from _walk(Path(e.path), here)
        elif is_file:
            yield e


def _ref_key(ref: str) -> str | None:
    """Map an image reference (path, name or stem) to a sample key, None if it cannot be one."""
    try:
        return schema.key_for_stem(_strip_ext(ref))
    except ValueError:
        return None


# --------------------------------------------------------------------------- GSD table


def _norm(text: str) -> str:
    """Normalise a header or label: lower case, only letters and digits."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


_GSD_NAME_SYNONYMS = ("filename", "file", "image", "imagename", "img", "imgname", "name",
                      "stem", "key", "path", "imagepath", "imageid", "imgpath", "images")
_GSD_VALUE_SYNONYMS = ("gsdm", "gsd", "gsdmeters", "gsdmetres", "resolution", "resolutionm",
                       "res", "resm", "pixelsize", "pixelsizem", "pixelspacing", "spacing",
                       "meterspixel", "meterperpixel", "metersperpixel", "mpp")


def _decode(data: bytes, where: str) -> str:
    """Decode a text file as UTF-8 (a byte-order mark is allowed) or explain how to fix it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.start + 4]
        raise ReleaseError(
            f"{where}: byte {e.start} (line {line}) is {bad!r}, which is not UTF-8; the file "
            "seems to use another encoding; re-save it as UTF-8 (e.g. `iconv -f cp1252 -t "
            "utf-8 FILE > FILE.utf8` and replace the file)"
        ) from None


def read_gsd_table(path: str | Path) -> dict[str, float]:
    """Read a CSV of ground sampling distances per image.

    The file has a header with a file-name column (``file_name``, ``image``, ``name``, ...)
    and a GSD column in metres (``gsd_m``, ``gsd``, ``resolution``, ...).

    Args:
        path: the CSV file.

    Returns:
        file name or stem, as written -> GSD in metres.

    Raises:
        ReleaseError: if the file is missing or unreadable, a GSD is not a positive number, a
            name is empty, or a name is given two different values.
        ColumnError: if the name or GSD column cannot be identified.

    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ReleaseError(
            f"gsd table {str(p)!r}: cannot be read ({e.strerror}); pass the path of a CSV with "
            "columns file_name,gsd_m"
        ) from None
    rows = list(csv.reader(io.StringIO(_decode(data, f"gsd table {str(p)!r}"), newline="")))
    header_at = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if header_at is None:
        raise ReleaseError(f"gsd table {str(p)!r}: is empty; write a header file_name,gsd_m "
                           "and one row per image")
    header = rows[header_at]
    norms = [_norm(h) for h in header]

    def pick(synonyms: tuple[str, ...], what: str) -> int:
        found = [i for i, n in enumerate(norms) if n in synonyms]
        if len(found) != 1:
            why = "no" if not found else "more than one"
            raise ColumnError(
                f"gsd table {str(p)!r}: {why} {what} column among headers {header}; name the "
                "columns file_name and gsd_m"
            )
        return found[0]

    ni = pick(_GSD_NAME_SYNONYMS, "file-name")
    gi = pick(_GSD_VALUE_SYNONYMS, "GSD")
    out: dict[str, float] = {}
    for lineno, row in enumerate(rows[header_at + 1 :], start=header_at + 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(ni, gi):
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno} has {len(row)} fields, the header "
                f"{len(header)}; fix that line"
            )
        name, raw = row[ni].strip(), row[gi].strip()
        if not name:
            raise ReleaseError(f"gsd table {str(p)!r}: line {lineno} has an empty file name; "
                               "fill it in or delete the line")
        try:
            gsd = float(raw)
        except ValueError:
            gsd = float("nan")
        if not (0 < gsd < float("inf")):
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno}: GSD {raw!r} for {name!r} is not a "
                "positive number of metres; fix that cell (e.g. 0.5)"
            )
        if name in out and out[name] != gsd:
            raise ReleaseError(
                f"gsd table {str(p)!r}: line {lineno}: {name!r} is given GSD {gsd} here and "
                f"{out[name]} earlier; keep one line per image"
            )
        out[name] = gsd
    return out
