"""Writing the synthetic release: image files, CSV/JSON text files with their defects, truth/.

:func:`generate` is the entry point.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections import Counter
from collections.abc import Iterable
from json.encoder import encode_basestring as _jstr
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BuildError, ConfigError, unknown_name
from ...schema import OTHERS_TYPES, SOURCES, SPLITS, TASKS, tier_for_gsd
from .plan import (
    CAPTION_FILES,
    CAPTION_PROMPT,
    CATEGORIES,
    DEFAULT_IMAGE_SIZE,
    DEFECTS,
    KIND_LABELS,
    LABEL_MODES,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    PRESETS,
    TRUTH_IMAGE_HEADER,
    TRUTH_TEXT_HEADER,
    TYPE_LABELS,
    VQA_FILES,
    _build_specs,
    _mix,
    _Plan,
    _plan,
    _Spec,
)
from .scenes import _render, _Scene, _scene
from .texts import _Text

# ----------------------------------------------------------------------------------------------
# Image files
# ----------------------------------------------------------------------------------------------


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
