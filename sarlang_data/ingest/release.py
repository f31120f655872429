"""The authors' release layout -> sample records and a rejects report.

The release is a folder holding ``SARimages/`` (one image per sample, PNG or JPEG) and
``Text/caption/`` plus ``Text/VQA/`` (CSV and/or JSON files). :func:`parse_release` joins texts to
images by file name and returns one :class:`schema.Sample` per image that has at least one usable
text, plus a :class:`Reject` for every text row or file it could not use.

How the unknowns of the release are handled (see DESIGN section 5 and the facts file):

* Column names are not published: columns are found by header synonyms, case, space, hyphen
  and underscore insensitive. A ``label`` or ``category`` column is a task label when its values
  are task names, else the answer. An explicit ``columns`` mapping overrides detection; a mapping
  value of ``none`` (or empty) declares that a role has no column, e.g. ``task=none`` forces
  task inference. When the columns cannot be decided, :class:`ColumnError` lists the headers.
* Text files may be ``.csv``, ``.json`` (a list of flat objects, a wrapper object holding that
  list, an object keyed by image name, JSON Lines, or the LLaMA-Factory ``messages``/``images``
  or ShareGPT ``conversations`` layout) or both. Files are identified by what their names say
  (captions or VQA, subset, split, caption kind); when a CSV and a JSON say the same thing only
  the CSVs are read, so twins never double the texts.
* Split comes from the file name (``train``/``training`` -> train; ``test``, ``test1``, ``val``
  -> test). Subset from ``SARVQA1``/``SARVQA2`` in the name, else from the image's source
  (SARDet-100K images are SARVQA1). Caption kind: a kind column when present, else the file
  (``Caption_test`` detailed, ``Caption_test1`` concise, or a name saying concise/detailed),
  else :func:`infer_caption_kind`. Task: a task column when present, else :func:`infer_task`.
* ``.tif`` files in ``SARimages/`` are originals, not samples: with ``originals=True`` they (and
  those in ``SARimages_original/`` inside or beside the release) are matched to samples by key;
  otherwise they are skipped and counted in :attr:`ParsedRelease.notes`.
* Image files are scanned once (``os.scandir``, recursive) and their first bytes checked once;
  no file system call happens per text row. PNG and JPEG bytes are accepted under either
  extension (decoders sniff the content).

Reject reasons, one :class:`Reject` per text row (``line`` > 0) or per file (``line`` 0):
``missing_image``, ``duplicate_row``, ``empty_text``, ``unknown_file_name``, ``not_an_image``,
``unparseable_row``, ``split_conflict``, ``unused_image``. An image whose every text row was
rejected is also reported as ``unused_image`` (it ends up in no shard).
"""

from __future__ import annotations

import gc
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import schema
from ..errors import ColumnError, ReleaseError
from .infer import (
    _answer_class,
    _clean_question,
    _clean_text,
    _core_question,
    _infer,
    _kind_label,
    _task_label,
    infer_caption_kind,
    infer_task,
    parse_bbox,
)
from .names import (
    _ORIGINAL_EXTS,
    _REF_EXTS,
    CITY_COUNTRIES,
    Place,
    _decode,
    _ref_key,
    _walk,
    parse_file_name,
    read_gsd_table,
)
from .textfiles import (
    _SNIFF_ROWS,
    _detect_columns,
    _find_text_files,
    _read_csv,
    _read_json,
    _Row,
    _TextFile,
)

__all__ = [
    "CITY_COUNTRIES",
    "REJECT_REASONS",
    "ROLES",
    "ParsedRelease",
    "Place",
    "Reject",
    "infer_caption_kind",
    "infer_task",
    "parse_bbox",
    "parse_file_name",
    "parse_release",
    "read_gsd_table",
]

log = logging.getLogger(__name__)

REJECT_REASONS = (
    "missing_image",
    "duplicate_row",
    "empty_text",
    "unknown_file_name",
    "not_an_image",
    "unparseable_row",
    "split_conflict",
    "unused_image",
    "empty_file",
    "control_characters",
    "too_many_pixels",
)
#: Roles a text column can play, as accepted by the ``columns`` mapping.
ROLES = ("image", "question", "answer", "caption", "task", "kind")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class Reject:
    """A text row or file of the release that could not be used.

    Attributes:
        file: path relative to the release root, e.g. ``Text/VQA/SARVQA2_train.csv``.
        line: CSV: physical line where the record starts (the header is line 1); JSON: 1-based
            item index (JSON Lines: physical line); 0 for a whole file (an image).
        reason: one of :data:`REJECT_REASONS`.
        detail: what was wrong, in words.

    """

    file: str
    line: int
    reason: str
    detail: str


@dataclass
class ParsedRelease:
    """Everything :func:`parse_release` learnt from a release.

    Attributes:
        samples: one record per usable image, ``width``/``height`` 0 and ``image_sha256`` empty
            (the build fills them), sorted by (split, tier, city, key).
        image_paths: sample key -> image file.
        original_paths: sample key -> original ``.tif`` (only with ``originals=True``).
        rejects: sorted by (file, line, reason, detail).
        text_rows: text rows read, usable plus rejected (the reject-rate denominator; file-level
            rejects such as ``unused_image`` are not rows).
        files: rows read per text file (relative path).
        notes: things worth telling the user that are not rejects (skipped JSON twins, ignored
            ``.tif`` files, task or kind labels that were not understood and were inferred).

    """

    samples: list[schema.Sample]
    image_paths: dict[str, Path]
    original_paths: dict[str, Path]
    rejects: list[Reject]
    text_rows: int
    files: dict[str, int]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- images


@dataclass
class _Image:
    """One file found under SARimages/ (or an originals folder)."""

    path: Path
    rel: str
    key: str | None
    problem: str | None = None  # a reject reason when the file cannot be a sample
    detail: str = ""
    place: Place | None = None
    referenced: int = 0  # text rows naming it


def _magic_ok(path: str) -> bool:
    """Return whether a file starts with PNG or JPEG magic bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC)


def _scan_images(release: Path, originals: bool) -> tuple[dict[str, _Image], list[_Image],
                                                          list[Path], list[str]]:
    """Scan SARimages/ once; return usable-or-not images by key, bad files, originals, notes."""
    img_dir = release / "SARimages"
    by_key: dict[str, _Image] = {}
    bad: list[_Image] = []
    tifs: list[Path] = []
    notes: list[str] = []
    # _walk's paths all start with str(img_dir); cutting that prefix is much cheaper than
    # Path.relative_to on 118K files.
    cut = len(str(img_dir)) + 1
    for e in _walk(img_dir):
        p = Path(e.path)
        rel = "SARimages/" + e.path[cut:].replace(os.sep, "/")
        low = e.name.lower()
        ext = next((x for x in _REF_EXTS if low.endswith(x)), None)
        if ext in _ORIGINAL_EXTS:
            tifs.append(p)
            continue
        # A file with another extension keeps it in its key ("x.bmp" -> "xpbmp"), the same key
        # a text row naming "x.bmp" resolves to, so such rows are rejected as not_an_image.
        key = _ref_key(e.name)
        img = _Image(p, rel, key)
        if ext is None:
            img.problem, img.detail = "not_an_image", (
                f"{e.name!r} is not a .png/.jpg/.jpeg image; move it out of SARimages/")
        elif not _magic_ok(e.path):
            img.problem, img.detail = "not_an_image", (
                f"{e.name!r} does not start with PNG or JPEG bytes (damaged or mislabelled); "
                "replace it with the release's file")
        else:
            try:
                img.place = parse_file_name(e.name)
            except ReleaseError:
                img.problem, img.detail = "unknown_file_name", (
                    f"{e.name!r} matches none of the known source patterns; rename it")
            if img.problem is None and key is None:
                img.problem, img.detail = "unknown_file_name", (
                    f"{e.name!r} is too long to be a sample key (max {schema.MAX_KEY_LEN}); "
                    "rename it")
        if key is None:
            bad.append(img)
            continue
        old = by_key.get(key)
        if old is None:
            by_key[key] = img
        elif old.problem is None and img.problem is None:
            raise ReleaseError(
                f"images {old.rel!r} and {img.rel!r} both map to sample key {key!r} (names "
                "differ only in case, punctuation or extension); keep one of them"
            )
        elif old.problem is not None and img.problem is None:
            by_key[key] = img
            bad.append(old)
        else:
            bad.append(img)
    if tifs and not originals:
        notes.append(
            f"skipped {len(tifs)} .tif file(s) in SARimages/: they are originals, not sample "
            "images; pass originals=True (--originals) to add them to the shards"
        )
    return by_key, bad, tifs, notes


def _find_originals(release: Path, tifs_in_images: list[Path], keys: Iterable[str]
                    ) -> tuple[dict[str, Path], list[str]]:
    """Match original .tif files to sample keys (SARimages_original/ first, then SARimages/)."""
    found: dict[str, Path] = {}
    for p in tifs_in_images:
        k = _ref_key(p.name)
        if k is not None:
            found.setdefault(k, p)
    for folder in (release / "SARimages_original", release.parent / "SARimages_original"):
        if folder.is_dir():
            for e in _walk(folder):
                if e.name.lower().endswith(_ORIGINAL_EXTS):
                    k = _ref_key(e.name)
                    if k is not None:
                        found[k] = Path(e.path)
            break
    keys = set(keys)
    out = {k: p for k, p in found.items() if k in keys}
    notes = []
    if len(out) < len(keys):
        notes.append(f"{len(keys) - len(out)} of {len(keys)} samples have no original .tif")
    if len(found) > len(out):
        notes.append(f"{len(found) - len(out)} original .tif file(s) match no sample; skipped")
    return out, notes


# --------------------------------------------------------------------------- parse


@dataclass
class _Item:
    """A usable text row waiting for its image's other rows (dedup, split check)."""

    split: str
    file: str
    line: int
    text: schema.Caption | schema.QA


def _check_layout(release: Path) -> None:
    missing = [d for d in ("SARimages", "Text") if not (release / d).is_dir()]
    if not missing:
        return
    hint = ""
    for child in ("SARLANG_1M", "SARLANG-1M"):
        if (release / child / "Text").is_dir():
            hint = f" ({str(release / child)!r} looks like the release: pass that)"
    raise ReleaseError(
        f"release {str(release)!r}: no {' and no '.join(d + '/' for d in missing)} folder"
        f"{hint}; expected the authors' layout RELEASE/SARimages/*.png|jpg and "
        "RELEASE/Text/caption/*.csv|json, RELEASE/Text/VQA/*.csv|json (unzip the release's "
        "archives into one folder)"
    )


def parse_release(
    release: str | Path,
    *,
    columns: dict[str, str] | None = None,
    gsd_table: str | Path | None = None,
    originals: bool = False,
) -> ParsedRelease:
    """Parse the authors' release folder into sample records and a rejects report.

    Args:
        release: folder holding ``SARimages/`` and ``Text/`` (``caption/`` and ``VQA/``).
        columns: explicit role -> header mapping for the text files, e.g.
            ``{"image": "img_path", "question": "q"}``; roles are ``image``, ``question``,
            ``answer``, ``caption``, ``task`` and ``kind``; a value ``none`` means the role has
            no column. Applies to every file that has the header; unmapped roles are detected.
        gsd_table: optional CSV of per-image GSD (see :func:`read_gsd_table`).
        originals: also match original ``.tif`` files to samples (``original_paths``).

    Returns:
        The :class:`ParsedRelease`.

    Raises:
        ReleaseError: the layout is wrong, a text file cannot be read (encoding, broken
            quoting, bad JSON), its name tells no split, or two images map to one key.
        ColumnError: the columns of a text file cannot be identified, or the ``columns``
            mapping names an unknown role or a header no file has.

    """
    # The parse allocates millions of small objects that all live until it returns; the
    # cyclic collector would re-scan them again and again for nothing (it doubled the run
    # time on the full release). Garbage made here is freed by reference counting.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_release(Path(release), columns, gsd_table, originals)
    finally:
        if gc_was_enabled:
            gc.enable()


def _parse_release(release: Path, columns: dict[str, str] | None,
                   gsd_table: str | Path | None, originals: bool) -> ParsedRelease:
    """Do the work of :func:`parse_release` (with the cyclic garbage collector paused)."""
    _check_layout(release)
    mapping = dict(columns or {})
    bad_roles = [r for r in mapping if r not in ROLES]
    if bad_roles:
        raise ColumnError(
            f"columns={mapping!r}: unknown role(s) {bad_roles}; valid roles are {list(ROLES)}, "
            "e.g. --columns image=img_path,question=q,answer=a"
        )
    notes: list[str] = []
    gsd_by_key: dict[str, float] = {}
    if gsd_table is not None:
        for name, gsd in read_gsd_table(gsd_table).items():
            k = _ref_key(name)
            if k is None:
                continue
            if k in gsd_by_key and gsd_by_key[k] != gsd:
                raise ReleaseError(
                    f"gsd table {str(gsd_table)!r}: {name!r} and another entry name the same "
                    f"image with GSDs {gsd} and {gsd_by_key[k]}; keep one line per image"
                )
            gsd_by_key[k] = gsd

    images, bad_files, tifs, img_notes = _scan_images(release, originals)
    notes += img_notes
    text_files, text_notes = _find_text_files(release)
    notes += text_notes
    if not text_files:
        raise ReleaseError(
            f"release {str(release)!r}: Text/ holds no .csv or .json text files; expected "
            "Text/caption/Caption-training.csv ... and Text/VQA/SARVQA1_train.csv ..."
        )

    rejects: list[Reject] = []
    groups: dict[str, list[_Item]] = defaultdict(list)
    files_read: dict[str, int] = {}
    used_mapping: set[str] = set()
    ref_cache: dict[str, str | None] = {}
    known_exts = _REF_EXTS

    def resolve(ref: str) -> str | None:
        k = ref_cache.get(ref)
        if k is None and ref not in ref_cache:
            k = _ref_key(ref) if ref.strip() else None
            ref_cache[ref] = k
        return k

    def resolvable(ref: str) -> bool:
        k = resolve(ref)
        return (k is not None and k in images) or ref.lower().endswith(known_exts)

    for tf in text_files:
        data = tf.path.read_bytes()
        text = _decode(data, f"text file {tf.rel!r}")
        del data
        fixed: dict[str, int] = {}
        if tf.rel.lower().endswith(".csv"):
            headers, rows = _read_csv(text, tf.rel)
        else:
            headers, rows, fixed = _read_json(text, tf.rel, tf.category, resolvable)
        # Decide columns on the first rows, then stream the rest.
        head: list[_Row] = []
        for r in rows:
            head.append(r)
            if len(head) >= _SNIFF_ROWS:
                break
        if not head:
            # a text file with nothing to read: its rows (if it had any) are gone, which the
            # build report must say, not an INFO line
            files_read[tf.rel] = 0
            what = ("has a header line and no rows" if headers else "is empty")
            rejects.append(Reject(tf.rel, 0, "empty_file",
                                  f"the text file {what}; if it should hold rows, copy it "
                                  "from the release again"))
            log.warning("%s: the text file %s; it adds no rows (rejects.jsonl lists it)",
                        tf.rel, what)
            continue
        sample = [v for _, v, p in head if p is None]
        cols, extra_task, col_notes = _detect_columns(
            headers, sample, tf.category, tf.rel, mapping, fixed, resolvable, used_mapping)
        notes += col_notes
        n_rows = _parse_rows(
            tf, _chain(head, rows), cols, extra_task, images, resolve, groups, rejects, notes)
        files_read[tf.rel] = n_rows
        del text

    unused_roles = [r for r in mapping if r not in used_mapping]
    if unused_roles:
        raise ColumnError(
            "columns mapping " + ", ".join(f"{r}={mapping[r]!r}" for r in unused_roles)
            + " matches no header of any text file; check the spelling (headers are listed by "
            "the error you get without the mapping, or open the CSVs)"
        )

    samples, image_paths = _assemble(images, groups, gsd_by_key, rejects)
    for img in bad_files + [i for i in images.values() if i.problem is not None]:
        rejects.append(Reject(img.rel, 0, img.problem or "not_an_image", img.detail))
    original_paths: dict[str, Path] = {}
    if originals:
        original_paths, onotes = _find_originals(release, tifs, image_paths)
        notes += onotes
    rejects.sort(key=lambda r: (r.file, r.line, r.reason, r.detail))
    text_rows = sum(files_read.values())
    for n in notes:
        log.info("%s", n)
    return ParsedRelease(samples, image_paths, original_paths, rejects, text_rows, files_read,
                         notes)


#: control characters a text must not hold (tab, newline and carriage return are fine)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_NAMES = {0: "NUL", 7: "BEL", 8: "BS", 27: "ESC", 127: "DEL"}


def _control_chars(text: str) -> str:
    r"""Name the control characters in ``text`` (``'\\x00' (NUL), ...``), or '' if none."""
    if not _CONTROL_RE.search(text):
        return ""
    found = sorted({ord(c) for c in _CONTROL_RE.findall(text)})
    return ", ".join(f"'\\x{c:02x}'" + (f" ({_CONTROL_NAMES[c]})" if c in _CONTROL_NAMES else "")
                     for c in found)


def _chain(head: list[_Row], rest: Iterator[_Row]) -> Iterator[_Row]:
    yield from head
    yield from rest


def _parse_rows(
    tf: _TextFile,
    rows: Iterator[_Row],
    cols: dict[str, int],
    extra_task: list[int],
    images: dict[str, _Image],
    resolve,
    groups: dict[str, list[_Item]],
    rejects: list[Reject],
    notes: list[str],
) -> int:
    """Turn the rows of one text file into items (grouped by key) and rejects; return rows."""
    rel, split = tf.rel, tf.split
    ii = cols["image"]
    unknown_labels: Counter[str] = Counter()
    n = 0
    add_reject = rejects.append
    caption = tf.category == "caption"
    if caption:
        ci = cols["caption"]
        ki = cols.get("kind")
        need = max(ii, ci, -1 if ki is None else ki)
    else:
        qi, ai = cols["question"], cols["answer"]
        ti = cols.get("task")
        need = max(ii, qi, ai, -1 if ti is None else ti, *extra_task)
    label_cache: dict[str, str | tuple[str, str | None] | None] = {}
    intern: dict[str, str] = {}
    for line, vals, problem in rows:
        n += 1
        if problem is None and len(vals) <= need:
            problem = f"{len(vals)} fields, too few for the columns in use"
        if problem is not None:
            add_reject(Reject(rel, line, "unparseable_row", problem))
            continue
        ref = vals[ii].strip()
        key = resolve(ref)
        img = images.get(key) if key is not None else None
        if img is not None:
            img.referenced += 1
        if caption:
            text = _clean_text(vals[ci])
            if not text:
                add_reject(Reject(rel, line, "empty_text", "empty caption"))
                continue
        else:
            q = _clean_question(vals[qi])
            a = _clean_text(vals[ai])
            if not q or not a:
                what = "question and answer" if not q and not a else (
                    "question" if not q else "answer")
                add_reject(Reject(rel, line, "empty_text", f"empty {what}"))
                continue
        bad = _control_chars(text) if caption else (_control_chars(q) or _control_chars(a))
        if bad:
            what = "caption" if caption else ("question" if _control_chars(q) else "answer")
            add_reject(Reject(rel, line, "control_characters",
                              f"the {what} holds control character(s) {bad}, which no text of "
                              "the release should carry (a damaged file?); fix the row"))
            continue
        if img is None:
            add_reject(Reject(rel, line, "missing_image", (
                f"image {ref!r} is not in SARimages/" if ref else "empty image reference")))
            continue
        if img.problem is not None:
            add_reject(Reject(rel, line, img.problem, f"image {ref!r}: {img.detail}"))
            continue
        if caption:
            kind = kind_from = None
            if ki is not None:
                raw = vals[ki]
                kind = _kind_label(raw)
                if kind is not None:
                    kind_from = "label"
                elif raw.strip():
                    unknown_labels[raw.strip()] += 1
            if kind is None and tf.kind is not None:
                kind, kind_from = tf.kind, "label"
            if kind is None:
                kind, kind_from = infer_caption_kind(text), "inferred"
            item: schema.Caption | schema.QA = schema.Caption(kind, text, kind_from)
        else:
            task = qtype = None
            task_from = "label"
            if ti is not None:
                labels = [vals[ti]] + [vals[i] for i in extra_task]
                for raw in labels:
                    hit = label_cache.get(raw, False)
                    if hit is False:
                        hit = _task_label(raw)
                        label_cache[raw] = hit
                    if hit is None:
                        continue
                    if task is None or (hit[0] == task and hit[1] and not qtype):
                        task, qtype = hit
                    elif task == "others" and hit[0] == "others" and hit[1]:
                        qtype = hit[1]
                if task is None and vals[ti].strip():
                    unknown_labels[vals[ti].strip()] += 1
            if task is None:
                task, qtype = _infer(_core_question(q), _answer_class(a))
                task_from = "inferred"
            elif task == "others" and qtype is None:
                t2, q2 = _infer(_core_question(q), _answer_class(a))
                qtype = q2 if t2 == "others" else "reasoning"
            elif task != "others":
                qtype = task
            bbox = parse_bbox(q) if task == "region_referring" else None
            subset = tf.subset or ("SARVQA1" if img.place.source == "sardet100k" else "SARVQA2")
            a = intern.setdefault(a, a) if len(a) < 24 else a
            item = schema.QA(task, qtype, q, a, bbox, task_from, subset)
        groups[key].append(_Item(split, rel, line, item))
    if unknown_labels:
        shown = ", ".join(f"{k!r} x{v}" for k, v in unknown_labels.most_common(8))
        what = "caption kind" if caption else "task"
        notes.append(f"{rel}: {sum(unknown_labels.values())} row(s) with an unknown {what} "
                     f"label ({shown}); their {what} was inferred from the text")
    return n


def _assemble(
    images: dict[str, _Image],
    groups: dict[str, list[_Item]],
    gsd_by_key: dict[str, float],
    rejects: list[Reject],
) -> tuple[list[schema.Sample], dict[str, Path]]:
    """Deduplicate rows, settle split conflicts and build one Sample per image."""
    samples: list[schema.Sample] = []
    paths: dict[str, Path] = {}
    for key, img in images.items():
        if img.problem is not None:
            continue
        items = groups.get(key, [])
        kept: list[_Item] = []
        seen: set[tuple] = set()
        for it in items:
            t = it.text
            ident = (("c", t.kind, t.text) if isinstance(t, schema.Caption)
                     else ("q", t.subset, t.question, t.answer))
            if ident in seen:
                rejects.append(Reject(it.file, it.line, "duplicate_row",
                                      f"same text as an earlier row for image {img.rel!r}"))
                continue
            seen.add(ident)
            kept.append(it)
        splits = Counter(it.split for it in kept)
        if len(splits) > 1:
            # Keep the split most rows agree on; on a tie keep test, so no test image leaks
            # into training.
            split = max(splits, key=lambda s: (splits[s], s == "test"))
            other = [it for it in kept if it.split != split]
            for it in other:
                rejects.append(Reject(
                    it.file, it.line, "split_conflict",
                    f"image {img.rel!r} has {splits[split]} row(s) in {split} and "
                    f"{len(other)} in the other split; kept {split}"))
            kept = [it for it in kept if it.split == split]
        if not kept:
            why = ("no text names it" if not img.referenced else
                   f"all {img.referenced} text row(s) naming it were rejected")
            rejects.append(Reject(img.rel, 0, "unused_image", f"{why}; it is in no shard"))
            continue
        place = img.place
        if key in gsd_by_key:
            gsd, gsd_from = gsd_by_key[key], "table"
        else:
            gsd, gsd_from = schema.SOURCE_DEFAULT_GSD_M[place.source], "source-default"
        samples.append(schema.Sample(
            key=key, file_name=img.path.name, source=place.source, split=kept[0].split,
            city=place.city, country=place.country, region=place.region or None, lat=place.lat,
            lon=place.lon, gsd_m=gsd, gsd_from=gsd_from, tier=schema.tier_for_gsd(gsd),
            width=0, height=0, image_sha256="",
            captions=tuple(it.text for it in kept if isinstance(it.text, schema.Caption)),
            qa=tuple(it.text for it in kept if isinstance(it.text, schema.QA)),
        ))
        paths[key] = img.path
    samples.sort(key=lambda s: (s.split, s.tier, s.city, s.key))
    return samples, paths
