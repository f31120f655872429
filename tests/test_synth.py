"""Tests of the synthetic release generator (sarlang_data/synth.py)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarlang_data.errors import BuildError, ConfigError
from sarlang_data.ingest import synth
from sarlang_data.schema import OTHERS_TYPES, SOURCES, SPLITS, TASKS, TIERS, tier_for_gsd

NAME_RE = {
    "dfc2023": re.compile(r"^(SV|GF2)_([A-Z][A-Za-z]+)_(-?\d{1,2}\.\d{4})_(-?\d{1,3}\.\d{4})"
                          r"\.png$"),
    "oem_sar": re.compile(r"^(France|Japan|USA)_([A-Z][A-Za-z]*(?:-[A-Za-z]+)*)_([A-Z][A-Za-z]+)"
                          r"_(\d+)\.png$"),
    "spacenet6": re.compile(r"^SN6_Rotterdam_\d{14}_tile_\d+\.png$"),
    "sardet100k": re.compile(r"^\d{7}\.jpg$"),
}
BOX_RE = re.compile(r"\[(-?\d+\.\d), (-?\d+\.\d), (-?\d+\.\d), (-?\d+\.\d)\]")
TEXT_FILES = sorted(list(synth.CAPTION_FILES.values()) + list(synth.VQA_FILES.values()))
LABEL_TO_CAT = {v: k for k, v in synth.TYPE_LABELS.items()}
LABEL_TO_KIND = {v: k for k, v in synth.KIND_LABELS.items()}


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _truth_texts(out: Path) -> list[dict]:
    with open(out / "truth" / "texts.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _truth_images(out: Path) -> dict[str, dict]:
    with open(out / "truth" / "images.csv", encoding="utf-8", newline="") as f:
        return {r["file_name"]: r for r in csv.DictReader(f)}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = synth.generate(out, preset="tiny", seed=0, originals=True, workers=1,
                             progress=False)
    return out, summary


def test_layout_and_file_names(tiny):
    out, summary = tiny
    rel = out / "SARLANG_1M"
    text_files = sorted(str(p.relative_to(rel)) for p in (rel / "Text").rglob("*") if p.is_file())
    assert text_files == sorted(TEXT_FILES + [f[:-4] + ".json" for f in TEXT_FILES])
    # nothing but the release inside SARLANG_1M: truth and the gsd table live beside it
    assert sorted(p.name for p in rel.iterdir()) == ["SARimages", "SARimages_original", "Text"]
    assert sorted(p.name for p in out.iterdir()) == ["SARLANG_1M", "gsd_table.csv", "truth"]
    assert not list(rel.rglob("*.tmp")) and not list(rel.rglob(".*"))

    images = _truth_images(out)
    on_disk = sorted(p.name for p in (rel / "SARimages").iterdir())
    assert on_disk == sorted(images)
    assert len(on_disk) == summary["image_files"] == 41
    cities = {c[0]: c for c in synth.DFC_CITIES}
    for name, row in images.items():
        matches = [src for src, rx in NAME_RE.items() if rx.match(name)]
        assert matches == [row["source"]], name
        m = NAME_RE["dfc2023"].match(name)
        if m:  # coordinates near the real city
            c = cities[m.group(2)]
            assert abs(float(m.group(3)) - c[2]) < 0.1 and abs(float(m.group(4)) - c[3]) < 0.1
        with Image.open(rel / "SARimages" / name) as im:
            assert im.mode == "L"
            assert im.format == ("JPEG" if name.endswith(".jpg") else "PNG")
            assert im.size == (int(row["width"]), int(row["height"]))
        tif = rel / "SARimages_original" / (name.rsplit(".", 1)[0] + ".tif")
        assert tif.exists() == (row["source"] != "sardet100k")
    # OEM-SAR names with hyphenated regions parse into four tokens
    assert any(n.startswith("France_Alpes-Maritimes_Nice_") for n in images)

    header, gsd_rows = _csv(out / "gsd_table.csv")
    assert header == ["file_name", "gsd_m"]
    assert {r[0]: r[1] for r in gsd_rows} == {n: r["gsd_m"] for n, r in images.items()}


def test_truth_matches_every_row_and_json_twin(tiny):
    out, summary = tiny
    rel = out / "SARLANG_1M"
    truth = _truth_texts(out)
    images = _truth_images(out)
    on_disk = {p.name for p in (rel / "SARimages").iterdir()}
    by_file: dict[str, list[dict]] = {}
    for t in truth:
        by_file.setdefault(t["file"], []).append(t)
    assert sorted(by_file) == TEXT_FILES
    named = set()
    for f in TEXT_FILES:
        header, rows = _csv(rel / f)
        ts = by_file[f]
        assert len(rows) == len(ts) == summary["text_rows"][f]
        assert [int(t["row"]) for t in ts] == list(range(1, len(rows) + 1))
        assert [int(t["line"]) for t in ts] == list(range(2, len(rows) + 2))
        twin = json.loads((rel / f).with_suffix(".json").read_text(encoding="utf-8"))
        assert len(twin) == len(rows)
        is_vqa = "VQA" in f
        if is_vqa:
            assert header == ["image", "question", "answer", "type"]
        else:
            assert header == (["image", "caption", "type"] if "training" in f
                              else ["image", "caption"])
        valid_rows = set()
        for row, t, obj in zip(rows, ts, twin, strict=True):
            assert row[0] == t["image"]
            assert t["split"] == ("train" if "train" in f else "test")
            # the JSON twin holds the same row in LLaMA-Factory layout
            assert obj["images"] == ["SARimages/" + row[0]]
            user, assistant = obj["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            if is_vqa:
                assert user["content"] == "<image>" + row[1]
                assert assistant["content"] == row[2]
                cat = LABEL_TO_CAT[row[3]]
                assert obj["type"] == row[3]
                assert t["question_type"] == cat
                assert t["task"] == (cat if cat in TASKS else "others")
                assert t["subset"] == f.split("/")[-1].split("_")[0] and t["kind"] == ""
                answer = row[2]
            else:
                assert user["content"] == synth.CAPTION_PROMPT
                assert assistant["content"] == row[1]
                assert t["task"] == t["question_type"] == t["subset"] == ""
                if "training" in f:
                    assert LABEL_TO_KIND[row[2]] == t["kind"] and obj["type"] == row[2]
                else:
                    assert t["kind"] == ("detailed" if f.endswith("Caption_test.csv")
                                         else "concise")
                    assert "type" not in obj
                answer = row[1]
            defect = t["defect"]
            if defect == "missing_image":
                assert row[0] not in on_disk and row[0] not in images
            else:
                assert row[0] in on_disk and images[row[0]]["defect"] == ""
                named.add(row[0])
            if defect == "duplicate_row":
                assert row == rows[int(t["duplicate_of"]) - 1]
                assert ts[int(t["duplicate_of"]) - 1]["defect"] == ""
            else:
                assert tuple(row) not in valid_rows  # every other row is unique
                valid_rows.add(tuple(row))
            assert (answer == "") == (defect == "empty_text")
    # unused images are named by no text; every used one by at least one
    unused = {n for n, r in images.items() if r["defect"] == "unused_image"}
    assert unused and not unused & named
    assert named == set(images) - unused
    counts = Counter(t["defect"] for t in truth if t["defect"])
    assert dict(counts) == {k: v for k, v in summary["defects"].items() if k != "unused_image"}
    assert summary["defects"]["unused_image"] == len(unused)
    assert json.loads((out / "truth" / "summary.json").read_text()) == summary


def test_tiny_covers_everything(tiny):
    out, summary = tiny
    truth = [t for t in _truth_texts(out) if not t["defect"]]
    images = [r for r in _truth_images(out).values() if not r["defect"]]
    assert 35 <= len(images) <= 45 and 380 <= len(truth) <= 520
    for src in SOURCES:
        for sp in SPLITS:
            assert any(r["source"] == src and r["split"] == sp for r in images), (src, sp)
    # tiers come from the gsd table, consistently with the schema's boundaries
    gsd = {r[0]: float(r[1]) for r in _csv(out / "gsd_table.csv")[1]}
    for r in images:
        assert r["tier"] == tier_for_gsd(gsd[r["file_name"]])
    for sp in SPLITS:
        assert {r["tier"] for r in images if r["split"] == sp} == set(TIERS)
    sardet = [gsd[r["file_name"]] for r in images if r["source"] == "sardet100k"]
    assert min(sardet) < 1 and max(sardet) >= 5
    assert all(0.15 <= gsd[r["file_name"]] <= 0.5 for r in images if r["source"] == "oem_sar")
    assert all(0.5 <= gsd[r["file_name"]] <= 2 for r in images if r["source"] == "dfc2023")
    assert all(gsd[r["file_name"]] == 0.5 for r in images if r["source"] == "spacenet6")
    assert len({r["city"] for r in images} - {"unlocated"}) >= 6
    for sp in SPLITS:
        assert {t["task"] for t in truth if t["split"] == sp and t["task"]} == set(TASKS)
        assert {t["question_type"] for t in truth if t["split"] == sp and
                t["task"] == "others"} == set(OTHERS_TYPES)
        assert {t["kind"] for t in truth if t["split"] == sp and t["kind"]} == {
            "concise", "detailed"}
    # others only in SARVQA2; SARVQA1 only on SARDet-100K images, SARVQA2 never on them
    src = {r["file_name"]: r["source"] for r in images}
    for t in truth:
        if t["subset"] == "SARVQA1":
            assert t["task"] != "others" and src[t["image"]] == "sardet100k"
        elif t["subset"] == "SARVQA2" or t["kind"]:
            assert src[t["image"]] != "sardet100k"
    rows = sum(summary["text_rows"].values())
    defects = sum(v for k, v in summary["defects"].items() if k != "unused_image")
    assert 1 <= summary["defects"]["unused_image"] and defects >= 3
    assert defects / rows < 0.01


def test_region_boxes_are_inside_images(tiny):
    out, _ = tiny
    rel = out / "SARLANG_1M"
    images = _truth_images(out)
    n = 0
    for f in synth.VQA_FILES.values():
        _, rows = _csv(rel / f)
        for row in rows:
            m = BOX_RE.search(row[1])
            assert (m is not None) == (row[3] == "Region Referring"), row
            if m is None or row[0] not in images:
                continue
            x, y, w, h = map(float, m.groups())
            W, H = int(images[row[0]]["width"]), int(images[row[0]]["height"])
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= W and y + h <= H, row
            n += 1
    assert n >= 20


def test_pixels_are_sar_like(tiny):
    out, _ = tiny
    rel = out / "SARLANG_1M"
    images = _truth_images(out)
    cvs, corrs, grain = [], [], []
    for name, r in images.items():
        if r["source"] == "sardet100k":
            continue
        with Image.open(rel / "SARimages_original" / (name[:-4] + ".tif")) as im:
            assert im.mode == "F"
            inten = np.asarray(im, dtype=np.float64)
        gray = np.asarray(Image.open(rel / "SARimages" / name), dtype=np.float64)
        assert (inten > 0).all()
        # speckle: for L-look gamma speckle over a locally constant backscatter, the log ratio
        # of neighbouring pixels has a median magnitude of 1.10 (L=1), 0.73 (2), 0.50 (4),
        # 0.34 (8); edges and slow texture hardly move the median
        cvs.append(np.median(np.abs(np.log(inten[:, 1:] / inten[:, :-1]))))
        # the PNG is a linear stretch of the original in dB
        corrs.append(np.corrcoef(gray.ravel(), 10 * np.log10(inten.ravel()))[0, 1])
        gblocks = gray.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
        grain.append(np.median(gblocks.std(axis=1)))
    assert 0.45 < np.median(cvs) < 0.65, cvs  # about 4 looks
    assert min(corrs) > 0.95
    assert np.median(grain) > 5  # speckle survives the 8-bit stretch: no smooth cartoon
    # targets named by region-referring questions are bright points on a darker background
    _, rows = _csv(rel / "Text/VQA/SARVQA1_train.csv")
    bright = total = 0
    for row in rows:
        m = BOX_RE.search(row[1])
        if not m or row[0] not in images:
            continue
        x, y, w, h = (int(float(v)) for v in m.groups())
        img = np.asarray(Image.open(rel / "SARimages" / row[0]), dtype=np.float64)
        patch = img[y:y + max(h, 1), x:x + max(w, 1)]
        total += 1
        bright += patch.max() >= np.median(img) + 60
    assert total >= 10 and bright / total >= 0.9


def test_labels_absent_has_no_label_column(tmp_path, tiny):
    out_present, _ = tiny
    out = tmp_path / "absent"
    synth.generate(out, preset="tiny", seed=0, labels="absent", progress=False, images=False)
    assert not (out / "SARLANG_1M" / "SARimages").exists() or not any(
        (out / "SARLANG_1M" / "SARimages").iterdir())
    for f in TEXT_FILES:
        header, rows = _csv(out / "SARLANG_1M" / f)
        assert header == (["image", "question", "answer"] if "VQA" in f else ["image", "caption"])
        # same rows as with labels, minus the label column
        _, with_labels = _csv(out_present / "SARLANG_1M" / f)
        width = len(header)
        assert rows == [r[:width] for r in with_labels]
        for obj in json.loads((out / "SARLANG_1M" / f).with_suffix(".json").read_text()):
            assert set(obj) == {"messages", "images"}
    assert (out / "truth" / "texts.csv").read_bytes() == (
        out_present / "truth" / "texts.csv").read_bytes()


def test_deterministic_across_runs_and_workers(tmp_path, tiny):
    out0, _ = tiny
    again = tmp_path / "again"
    synth.generate(again, preset="tiny", seed=0, originals=True, workers=2, progress=False)
    assert _hashes(again) == _hashes(out0)
    other = tmp_path / "other"
    synth.generate(other, preset="tiny", seed=1, originals=True, workers=1, progress=False)
    h0, h1 = _hashes(out0), _hashes(other)
    for f in TEXT_FILES:
        assert h0["SARLANG_1M/" + f] != h1["SARLANG_1M/" + f]
    assert set(h0) != set(h1)  # other seed, other file names


def test_texts_carry_task_and_kind_in_their_wording(tiny):
    """A parser without label columns must infer task and kind: the wording has to allow it."""
    out, _ = tiny
    rel = out / "SARLANG_1M"
    truth = {(t["file"], int(t["row"])): t for t in _truth_texts(out)}
    reason = ("likely", "suggest", "suitable", "under construction", "construction work",
              "purpose", "prone", "evidence", "would", "could", "why")

    def task(q: str) -> str:
        lo = q.lower()
        if BOX_RE.search(q):
            return "region_referring"
        if any(w in lo for w in reason):
            return "reasoning"
        if lo.startswith(("how many", "count ")) or "number of" in lo or "total count" in lo:
            return "instance_counting"
        if "land cover" in lo or "land-cover" in lo or "land use" in lo:
            return "land_cover"
        if "shape" in lo or "geometric form" in lo:
            return "shape"
        if "direction" in lo or "orient" in lo:
            return "direction"
        if any(w in lo for w in ("arranged", "pattern", "distributed", "arrangement", "layout",
                                 "organized")):
            return "pattern"
        if lo.startswith(("where", "which part", "in which part", "in which region")) or \
                "location of" in lo or "position of" in lo:
            return "object_positioning"
        if lo.split()[0] in ("is", "are", "does", "do", "can", "any"):
            return "object_identification"
        return "object_classification"

    ok = total = 0
    for f in synth.VQA_FILES.values():
        for i, row in enumerate(_csv(rel / f)[1], 1):
            total += 1
            ok += task(row[1]) == truth[(f, i)]["question_type"]
    assert ok / total >= 0.98
    f = synth.CAPTION_FILES[("train", None)]
    ok = total = 0
    for i, row in enumerate(_csv(rel / f)[1], 1):
        if not row[1]:
            continue
        guess = "detailed" if len(row[1].split()) >= 16 or row[1].startswith(
            ("The ", "This ")) else "concise"
        total += 1
        ok += guess == truth[(f, i)]["kind"]
    assert ok / total >= 0.95


def test_preview_coverage_and_size(tmp_path):
    out = tmp_path / "preview"
    s = synth.generate(out, preset="preview", seed=0, progress=False)
    assert 190 <= s["images_total"] <= 210
    assert 2300 <= s["captions_total"] + s["qa_total"] <= 2700
    assert len(set(s["cities"]) - {"unlocated"}) >= 8
    assert all(s["tiers"][t] > 0 for t in TIERS)
    assert all(s["images"][src][sp] > 0 for src in SOURCES for sp in SPLITS)
    for sp in SPLITS:
        assert all(s["qa"][t][sp] > 0 for t in TASKS)
        assert all(s["others"][t][sp] > 0 for t in OTHERS_TYPES)
        assert all(s["captions"][k][sp] > 0 for k in ("concise", "detailed"))
    files = list((out / "SARLANG_1M" / "SARimages").iterdir())
    img_bytes = sum(p.stat().st_size for p in files)
    assert img_bytes == s["bytes"]["images"]
    # room for the per-sample JSON, tar headers and index inside a 6 MB built root
    assert img_bytes <= 4_000_000


def _arrow_truth(path: Path):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = pacsv.read_csv(path, read_options=pacsv.ReadOptions(skip_rows_after_names=10**9)
                           ).column_names
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in names}, strings_can_be_null=False))


def _count(table, *cols) -> dict:
    """{(values of cols): rows} of a pyarrow table (a scalar key for one column)."""
    agg = table.group_by(list(cols)).aggregate([([], "count_all")]).to_pylist()
    return {(r[cols[0]] if len(cols) == 1 else tuple(r[c] for c in cols)): r["count_all"]
            for r in agg}


def test_medium_is_a_tenth_of_full(tmp_path):
    import pyarrow.compute as pc

    out = tmp_path / "medium"
    s = synth.generate(out, preset="medium", seed=0, progress=False, images=False)
    truth = _arrow_truth(out / "truth" / "texts.csv")
    valid = truth.filter(pc.equal(truth["defect"], ""))
    vqa = valid.filter(pc.not_equal(valid["task"], ""))
    caps = valid.filter(pc.not_equal(valid["kind"], ""))
    full = synth._plan("full")
    tenth = {k: max(1, round(v / 10)) for k, v in full.qa.items()}
    assert _count(vqa, "subset", "split", "question_type") == tenth
    assert _count(caps, "kind", "split") == {k: max(1, round(v / 10))
                                             for k, v in full.captions.items()}
    images = [r for r in _truth_images(out).values() if not r["defect"]]
    assert dict(Counter((r["source"], r["split"]) for r in images)) == {
        k: round(v / 10) for k, v in full.images.items()}
    assert s["images_total"] == len(images) == 11_833
    assert s["qa_total"] == vqa.num_rows and s["captions_total"] == caps.num_rows == 4_565
    # full's rates: every caption image carries SARVQA2 QA, every SARDet-100K image SARVQA1
    cap_imgs = set(pc.unique(caps["image"]).to_pylist())
    v2 = vqa.filter(pc.equal(vqa["subset"], "SARVQA2"))
    assert cap_imgs == set(pc.unique(v2["image"]).to_pylist())
    assert s["defects"]["unused_image"] == 9


@pytest.mark.slow
def test_full_text_only_has_the_published_totals(tmp_path):
    import pyarrow.compute as pc

    out = tmp_path / "full"
    s = synth.generate(out, preset="full", seed=0, progress=False, images=False)
    assert not any((out / "SARLANG_1M" / "SARimages").iterdir())
    truth = _arrow_truth(out / "truth" / "texts.csv")
    valid = truth.filter(pc.equal(truth["defect"], ""))
    vqa = valid.filter(pc.not_equal(valid["task"], ""))
    caps = valid.filter(pc.not_equal(valid["kind"], ""))
    assert _count(vqa, "task") == {
        "object_identification": 484_620, "object_classification": 132_525,
        "instance_counting": 117_382, "region_referring": 221_450, "object_positioning": 106_171,
        "others": 18_479}
    assert _count(vqa.filter(pc.equal(vqa["task"], "others")), "question_type") == {
        "shape": 2_391, "direction": 1_103, "land_cover": 80, "pattern": 857, "reasoning": 14_048}
    assert _count(vqa, "split") == {"train": 955_372, "test": 125_255}
    assert _count(caps, "kind", "split") == {
        ("concise", "train"): 17_487, ("concise", "test"): 7_492,
        ("detailed", "train"): 14_481, ("detailed", "test"): 6_190}
    images = [r for r in _truth_images(out).values() if not r["defect"]]
    assert dict(Counter(r["source"] for r in images)) == {
        "spacenet6": 3_311, "dfc2023": 5_222, "oem_sar": 4_813, "sardet100k": 104_985}
    assert dict(Counter((r["source"] == "sardet100k", r["split"]) for r in images)) == {
        (True, "train"): 94_493, (True, "test"): 10_492,
        (False, "train"): 9_341, (False, "test"): 4_005}
    # every caption image also carries VQA; every image carries text
    cap_imgs = set(pc.unique(caps["image"]).to_pylist())
    assert len(cap_imgs) == 13_346
    v2 = vqa.filter(pc.equal(vqa["subset"], "SARVQA2"))
    assert cap_imgs == set(pc.unique(v2["image"]).to_pylist())
    v1 = vqa.filter(pc.equal(vqa["subset"], "SARVQA1"))
    assert len(pc.unique(v1["image"])) == 104_985
    # defects: recorded, rare, and exactly the rows beyond the published totals
    assert s["defects"]["unused_image"] == 87
    extra = truth.num_rows - valid.num_rows
    assert _count(truth.filter(pc.not_equal(truth["defect"], "")), "defect") == {
        k: v for k, v in s["defects"].items() if k != "unused_image"}
    assert 0 < extra / truth.num_rows < 0.001
    assert sum(s["text_rows"].values()) == truth.num_rows == 45_650 + 1_080_627 + extra
    # the README's example questions appear verbatim
    questions = set()
    for f in ("Text/VQA/SARVQA2_train.csv", "Text/VQA/SARVQA1_test.csv"):
        questions |= {r[1] for r in _csv(out / "SARLANG_1M" / f)[1]}
    for q in ("Are there any surrounding trees?", "What type of area is mostly visible?",
              "How many harbors are located in the image?",
              "Where are most harbors positioned within the image?",
              "What shape are the swimming pools?", "What direction is the main road?",
              "What is the predominant land cover?", "How are the buildings arranged?",
              "Any buildings under construction?", "What natural feature is in the top center?"):
        assert q in questions, q
    assert any(q.startswith("What is the object present in the area [") for q in questions)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"preset": "huge"}, r"preset='huge'.*tiny"),
    ({"labels": "maybe"}, r"labels='maybe'"),
    ({"image_size": 8}, r"image_size=8.*16"),
    ({"seed": -1}, r"seed=-1"),
    ({"workers": 0}, r"workers=0"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        synth.generate(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_refuses_a_folder_that_holds_a_release(tmp_path):
    (tmp_path / "SARLANG_1M" / "SARimages").mkdir(parents=True)
    (tmp_path / "SARLANG_1M" / "SARimages" / "0000001.jpg").write_bytes(b"x")
    with pytest.raises(BuildError, match="already holds files"):
        synth.generate(tmp_path, preset="tiny", progress=False)
