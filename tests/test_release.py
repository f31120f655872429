"""Tests of sarlang_data.ingest.release: the authors' release layout -> samples + rejects."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from sarlang_data import schema
from sarlang_data.errors import ColumnError, ReleaseError
from sarlang_data.ingest.release import (
    ParsedRelease,
    Place,
    infer_caption_kind,
    infer_task,
    parse_bbox,
    parse_file_name,
    parse_release,
    read_gsd_table,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24
JPG = b"\xff\xd8\xff\xe0" + b"\0" * 24

OEM = "France_Alpes-Maritimes_Nice_3"
DFC = "SV_Darwin_-12.4278_130.8688"
SN6 = "SN6_Rotterdam_0001"
SDT = "0009787"

VQA_HEADER = ["image", "question", "answer"]


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def make_release(
    root: Path,
    images: dict[str, bytes] | None = None,
    files: dict[str, list[list[str]] | str | bytes | list[dict]] | None = None,
) -> Path:
    """Write a release: images by file name, text files by path under Text/.

    A list of lists is written as CSV, a list of dicts as JSON, str/bytes as raw content.
    """
    rel = root / "SARLANG_1M"
    (rel / "SARimages").mkdir(parents=True)
    (rel / "Text" / "caption").mkdir(parents=True)
    (rel / "Text" / "VQA").mkdir(parents=True)
    if images is None:
        images = {f"{OEM}.png": PNG, f"{DFC}.png": PNG, f"{SN6}.png": PNG, f"{SDT}.jpg": JPG}
    for name, data in images.items():
        (rel / "SARimages" / name).write_bytes(data)
    for name, content in (files or {}).items():
        p = rel / "Text" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        elif content and isinstance(content[0], dict):
            p.write_text(json.dumps(content), encoding="utf-8")
        else:
            write_csv(p, content)
    return rel


def basic_files() -> dict[str, list[list[str]]]:
    return {
        "VQA/SARVQA2_train.csv": [
            VQA_HEADER,
            [f"{OEM}.png", "Are there any surrounding trees?", "yes"],
            [f"{OEM}.png", "How many harbors are located in the image?", "2"],
            [f"{DFC}.png", "What is the object present in the area [56.0, 191.0, 112.0, 122.0]?",
             "aircraft"],
            [f"{DFC}.png", "Where are most harbors positioned within the image?", "bottom"],
        ],
        "VQA/SARVQA2_test.csv": [
            VQA_HEADER,
            [f"{SN6}.png", "What shape are the swimming pools?", "Rectangular."],
        ],
        "VQA/SARVQA1_train.csv": [
            VQA_HEADER,
            [f"{SDT}.jpg", "Is there a ship in the image?", "yes"],
        ],
        "caption/Caption-training.csv": [
            ["image", "caption"],
            [f"{OEM}.png", "Aerial view of a large industrial area with a lot of tanks."],
            [f"{OEM}.png", "The image shows an industrial facility with multiple circular storage "
                           "tanks, surrounding roads and a parking lot next to the main building."],
        ],
        "caption/Caption_test.csv": [
            ["image", "caption"],
            [f"{SN6}.png", "The image shows a harbour."],
        ],
        "caption/Caption_test1.csv": [
            ["image", "caption"],
            [f"{SN6}.png", "Aerial view of a harbour with ships and cranes along the quay."],
        ],
    }


def by_key(pr: ParsedRelease) -> dict[str, schema.Sample]:
    return {s.key: s for s in pr.samples}


def reasons(pr: ParsedRelease) -> Counter:
    return Counter(r.reason for r in pr.rejects)


# --------------------------------------------------------------------------- happy path


def test_basic_release_parses_every_text_once(tmp_path):
    rel = make_release(tmp_path, files=basic_files())
    pr = parse_release(rel)
    assert pr.rejects == []
    assert pr.text_rows == 10
    assert pr.files == {
        "Text/VQA/SARVQA1_train.csv": 1, "Text/VQA/SARVQA2_test.csv": 1,
        "Text/VQA/SARVQA2_train.csv": 4, "Text/caption/Caption-training.csv": 2,
        "Text/caption/Caption_test.csv": 1, "Text/caption/Caption_test1.csv": 1,
    }
    s = by_key(pr)
    assert set(s) == {schema.key_for_stem(x) for x in (OEM, DFC, SN6, SDT)}
    oem = s["france_alpes-maritimes_nice_3"]
    assert (oem.source, oem.city, oem.country, oem.region, oem.split) == (
        "oem_sar", "nice", "france", "alpesmaritimes", "train")
    assert [q.task for q in oem.qa] == ["object_identification", "instance_counting"]
    assert all(q.task_from == "inferred" and q.subset == "SARVQA2" for q in oem.qa)
    assert [(c.kind, c.kind_from) for c in oem.captions] == [
        ("concise", "inferred"), ("detailed", "inferred")]
    dfc = s["sv_darwin_-12p4278_130p8688"]
    assert (dfc.lat, dfc.lon, dfc.country, dfc.gsd_from, dfc.tier) == (
        -12.4278, 130.8688, "australia", "source-default", "hr")
    assert dfc.qa[0].bbox_xywh == (56.0, 191.0, 112.0, 122.0)
    assert dfc.qa[1].bbox_xywh is None and dfc.qa[1].task == "object_positioning"
    sn6 = s["sn6_rotterdam_0001"]
    assert sn6.split == "test" and sn6.qa[0].question_type == "shape"
    # The test caption files say the kind: a label, whatever the text looks like.
    assert [(c.kind, c.kind_from) for c in sn6.captions] == [
        ("detailed", "label"), ("concise", "label")]
    sdt = s["0009787"]
    assert (sdt.source, sdt.city, sdt.qa[0].subset, sdt.file_name) == (
        "sardet100k", "unlocated", "SARVQA1", "0009787.jpg")
    assert pr.image_paths[sdt.key] == rel / "SARimages" / "0009787.jpg"
    keys = [(x.split, x.tier, x.city, x.key) for x in pr.samples]
    assert keys == sorted(keys)
    assert all(x.width == 0 and x.height == 0 and x.image_sha256 == "" for x in pr.samples)


def test_relative_release_path(tmp_path, monkeypatch):
    rel = make_release(tmp_path, files=basic_files())
    (rel / "SARimages" / "junk.txt").write_bytes(b"x")
    monkeypatch.chdir(rel)
    pr = parse_release(".")
    assert len(pr.samples) == 4
    assert [(r.file, r.reason) for r in pr.rejects] == [("SARimages/junk.txt", "not_an_image")]
    assert pr.image_paths["0009787"] == Path("SARimages/0009787.jpg")


def test_texts_keep_release_order_across_files(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [VQA_HEADER] + [
            [f"{OEM}.png", f"How many ships are there in zone {i}?", str(i)] for i in range(5)],
        "VQA/SARVQA2_train_extra.csv": [VQA_HEADER] + [
            [f"{OEM}.png", f"Is there a tank number {i}?", "no"] for i in range(3)],
    }
    pr = parse_release(make_release(tmp_path, files=files))
    qs = [q.question for q in pr.samples[0].qa]
    assert qs == [f"How many ships are there in zone {i}?" for i in range(5)] + [
        f"Is there a tank number {i}?" for i in range(3)]


# --------------------------------------------------------------------------- layout errors


def test_missing_text_folder(tmp_path):
    rel = make_release(tmp_path, files=basic_files())
    for p in sorted((rel / "Text").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (rel / "Text").rmdir()
    with pytest.raises(ReleaseError, match=r"no Text/ folder.*expected the authors' layout"):
        parse_release(rel)


def test_missing_sarimages_points_at_the_inner_release(tmp_path):
    make_release(tmp_path, files=basic_files())
    with pytest.raises(ReleaseError, match=r"no SARimages/ and no Text/.*SARLANG_1M.*pass that"):
        parse_release(tmp_path)


def test_empty_text_folder(tmp_path):
    rel = make_release(tmp_path, files={})
    with pytest.raises(ReleaseError, match="no .csv or .json text files"):
        parse_release(rel)


def test_text_file_without_split_in_name(tmp_path):
    rel = make_release(tmp_path, files={"VQA/SARVQA2_all.csv": [VQA_HEADER]})
    with pytest.raises(ReleaseError, match=r"SARVQA2_all.csv.*cannot tell its split"):
        parse_release(rel)


def test_unidentifiable_columns_lists_headers(tmp_path):
    files = {"VQA/SARVQA2_train.csv": [["img_path", "q_txt", "resp"],
                                      [f"{OEM}.png", "Is there a ship?", "yes"]]}
    rel = make_release(tmp_path, files=files)
    with pytest.raises(ColumnError, match=r"SARVQA2_train.csv.*question, answer.*"
                       r"\['img_path', 'q_txt', 'resp'\].*--columns image="):
        parse_release(rel)


def test_two_candidate_columns_is_an_error(tmp_path):
    files = {"VQA/SARVQA2_train.csv": [["image", "question", "answer", "gt"],
                                      [f"{OEM}.png", "Is there a ship?", "yes", "no"]]}
    with pytest.raises(ColumnError, match=r"answer column: \['answer', 'gt'\]"):
        parse_release(make_release(tmp_path, files=files))


def test_explicit_columns_mapping(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [["img_path", "q_txt", "resp", "answer", "kind_of_q"],
                                  [f"{OEM}.png", "Is there a ship?", "yes", "noise", "whatever"]],
        "caption/Caption-training.csv": [["img_path", "sentence"],
                                         [f"{OEM}.png", "Aerial view of a port."]],
    }
    rel = make_release(tmp_path, files=files)
    pr = parse_release(rel, columns={"image": "img_path", "question": "q_txt", "answer": "resp"})
    (s,) = pr.samples
    assert [(q.question, q.answer, q.task) for q in s.qa] == [
        ("Is there a ship?", "yes", "object_identification")]
    assert [c.text for c in s.captions] == ["Aerial view of a port."]
    with pytest.raises(ColumnError, match=r"question column.*question='nope' matches no header"):
        parse_release(rel, columns={"image": "img_path", "question": "nope", "answer": "resp"})
    with pytest.raises(ColumnError, match=r"unknown role\(s\) \['questoin'\]"):
        parse_release(rel, columns={"questoin": "q_txt"})


def test_columns_found_by_synonyms_case_and_spacing(tmp_path):
    files = {"VQA/SARVQA2_train.csv": [[" Image_Name ", "Question Text", "Ground-Truth"],
                                      [f"SARimages/{OEM}.png", "Is there a ship?", "no"],
                                      [OEM, "Is there a tank?", "yes"]]}
    pr = parse_release(make_release(tmp_path, files=files))
    assert [q.answer for q in pr.samples[0].qa] == ["no", "yes"]


def test_label_column_is_task_or_answer_by_content(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [
            ["image", "question", "answer", "label"],
            [f"{OEM}.png", "Any ships?", "no", "Object Identification"],
            [f"{OEM}.png", "How many cars?", "3", "counting"],
            [f"{OEM}.png", "Name the shape.", "round", "shape"],
            [f"{OEM}.png", "Why is it wet?", "rain", "others"],
            [f"{OEM}.png", "Where is it?", "top", "Region Referring"],
            [f"{OEM}.png", "How many boats?", "4", "weird-label"],
        ],
        "VQA/SARVQA2_test.csv": [
            ["image", "question", "label"],
            [f"{DFC}.png", "Is there a ship?", "yes"],
            [f"{DFC}.png", "How many cars?", "3"],
        ],
    }
    pr = parse_release(make_release(tmp_path, files=files))
    s = by_key(pr)
    qa = s["france_alpes-maritimes_nice_3"].qa
    assert [(q.task, q.question_type, q.task_from) for q in qa] == [
        ("object_identification", "object_identification", "label"),
        ("instance_counting", "instance_counting", "label"),
        ("others", "shape", "label"),
        ("others", "reasoning", "label"),
        ("region_referring", "region_referring", "label"),
        ("instance_counting", "instance_counting", "inferred"),
    ]
    assert qa[4].bbox_xywh is None  # labelled region referring, but no box in the question
    assert any("weird-label" in n for n in pr.notes)
    dq = s["sv_darwin_-12p4278_130p8688"].qa
    assert [(q.answer, q.task_from) for q in dq] == [("yes", "inferred"), ("3", "inferred")]


def test_kind_column_and_task_none_override(tmp_path):
    files = {
        "caption/Caption-training.csv": [
            ["image", "caption", "type"],
            [f"{OEM}.png", "Aerial view of a port.", "Complex"],
            [f"{OEM}.png", "The image shows a long pier, with boats.", "short"],
            [f"{OEM}.png", "Aerial view of a quiet harbour.", ""],
        ],
        "VQA/SARVQA2_train.csv": [
            ["image", "question", "answer", "task"],
            [f"{OEM}.png", "How many cars?", "3", "object_identification"],
        ],
    }
    rel = make_release(tmp_path, files=files)
    s = parse_release(rel).samples[0]
    assert [(c.kind, c.kind_from) for c in s.captions] == [
        ("detailed", "label"), ("concise", "label"), ("concise", "inferred")]
    assert s.qa[0].task == "object_identification" and s.qa[0].task_from == "label"
    s2 = parse_release(rel, columns={"task": "none"}).samples[0]
    assert (s2.qa[0].task, s2.qa[0].task_from) == ("instance_counting", "inferred")


# --------------------------------------------------------------------------- file problems


def test_broken_quoting_names_file_and_line(tmp_path):
    lines = ["image,question,answer", f"{OEM}.png,Is there a ship?,yes",
             f'{OEM}.png,"Is there a tank?,yes']
    lines += [f"{OEM}.png,How many cars number {i}?,{i}" for i in range(30)]
    rel = make_release(tmp_path, files={"VQA/SARVQA2_train.csv": "\n".join(lines) + "\n"})
    with pytest.raises(ReleaseError, match=r"SARVQA2_train.csv'?: line 3: .*quote.*line 3"):
        parse_release(rel)


def test_broken_quoting_past_the_field_limit(tmp_path):
    lines = ["image,question,answer", f'{OEM}.png,"Is there a tank?,yes']
    lines += [f"{OEM}.png,How many cars number {i}?,{i}" * 40 for i in range(200)]
    rel = make_release(tmp_path, files={"VQA/SARVQA2_train.csv": "\n".join(lines) + "\n"})
    with pytest.raises(ReleaseError, match=r"line 2: .*never closed"):
        parse_release(rel)


def test_non_utf8_names_byte_offset(tmp_path):
    content = b"image,question,answer\n" + f"{OEM}.png,Is there a caf".encode() + \
        b"\xe9?,yes\n"
    rel = make_release(tmp_path, files={"VQA/SARVQA2_train.csv": content})
    with pytest.raises(ReleaseError, match=r"SARVQA2_train.csv.*byte 70 \(line 2\).*re-save it "
                       r"as UTF-8"):
        parse_release(rel)


def test_utf8_bom_is_accepted(tmp_path):
    content = b"\xef\xbb\xbf" + b"image,question,answer\n" + \
        f"{OEM}.png,Is there a café?,yes\n".encode()
    pr = parse_release(make_release(tmp_path, files={"VQA/SARVQA2_train.csv": content}))
    assert pr.samples[0].qa[0].question == "Is there a café?"


def test_bad_json_names_line(tmp_path):
    rel = make_release(tmp_path, files={"VQA/SARVQA2_train.json": '[{"image": "x.png",\n oops]'})
    with pytest.raises(ReleaseError,
                       match=r"SARVQA2_train.json'?: line 2 column 2: not valid JSON"):
        parse_release(rel)


def test_duplicate_keys_name_both_files(tmp_path):
    images = {f"{OEM}.png": PNG, f"{OEM}.jpg": JPG}
    rel = make_release(tmp_path, images=images, files=basic_files())
    with pytest.raises(ReleaseError, match=rf"{OEM}.jpg.*{OEM}.png.*same|{OEM}.jpg'.*'.*{OEM}.png"):
        parse_release(rel)
    images = {f"{OEM}.png": PNG, f"{OEM.upper()}.png": PNG}
    rel = make_release(tmp_path / "b", images=images, files=basic_files())
    with pytest.raises(ReleaseError,
                       match=r"both map to sample key 'france_alpes-maritimes_nice_3'"):
        parse_release(rel)


# --------------------------------------------------------------------------- counted rejects


def test_missing_image_rows(tmp_path):
    files = {"VQA/SARVQA2_train.csv": [VQA_HEADER,
                                      [f"{OEM}.png", "Is there a ship?", "yes"],
                                      ["France_Var_Toulon_9.png", "Is there a ship?", "yes"],
                                      ["France_Var_Toulon_9.png", "Is there a car?", "no"],
                                      ["", "Is there a car?", "no"]]}
    pr = parse_release(make_release(tmp_path, files=files))
    assert [(r.file, r.line, r.reason) for r in pr.rejects if r.line] == [
        ("Text/VQA/SARVQA2_train.csv", 3, "missing_image"),
        ("Text/VQA/SARVQA2_train.csv", 4, "missing_image"),
        ("Text/VQA/SARVQA2_train.csv", 5, "missing_image"),
    ]
    assert pr.text_rows == 4
    assert sum(len(s.qa) for s in pr.samples) == 1


def test_non_image_files_and_their_rows(tmp_path):
    images = {f"{OEM}.png": PNG, "France_Var_Toulon_9.png": b"<html>not a png</html>",
              "notes.txt": b"hello", f"{DFC}.png": JPG}
    files = {"VQA/SARVQA2_train.csv": [VQA_HEADER,
                                      [f"{OEM}.png", "Is there a ship?", "yes"],
                                      ["France_Var_Toulon_9.png", "Is there a ship?", "yes"],
                                      [f"{DFC}.png", "Is there a ship?", "yes"],
                                      ["notes.txt", "Is there a ship?", "yes"]]}
    pr = parse_release(make_release(tmp_path, images=images, files=files))
    got = sorted((r.file, r.line, r.reason) for r in pr.rejects)
    assert got == [
        ("SARimages/France_Var_Toulon_9.png", 0, "not_an_image"),
        ("SARimages/notes.txt", 0, "not_an_image"),
        ("Text/VQA/SARVQA2_train.csv", 3, "not_an_image"),
        ("Text/VQA/SARVQA2_train.csv", 5, "not_an_image"),
    ]
    # JPEG bytes under .png are still an image (decoders sniff the content).
    assert {s.key for s in pr.samples} == {"france_alpes-maritimes_nice_3",
                                           "sv_darwin_-12p4278_130p8688"}


def test_unknown_file_name_pattern(tmp_path):
    images = {f"{OEM}.png": PNG, "holiday_photo.png": PNG}
    files = {"VQA/SARVQA2_train.csv": [VQA_HEADER,
                                      ["holiday_photo.png", "Is there a ship?", "yes"],
                                      [f"{OEM}.png", "Is there a ship?", "yes"],
                                      ["holiday_photo", "Is there a car?", "no"]]}
    pr = parse_release(make_release(tmp_path, images=images, files=files))
    assert sorted((r.file, r.line, r.reason) for r in pr.rejects) == [
        ("SARimages/holiday_photo.png", 0, "unknown_file_name"),
        ("Text/VQA/SARVQA2_train.csv", 2, "unknown_file_name"),
        ("Text/VQA/SARVQA2_train.csv", 4, "unknown_file_name"),
    ]


def test_duplicate_rows_keep_the_first(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [VQA_HEADER,
                                  [f"{OEM}.png", "Is there a ship?", "yes"],
                                  [f"{OEM}.png", "How many ships?", "2"],
                                  [f"{OEM}.png", "Is there a ship?", "yes"],
                                  [f"{OEM}.png", "Is there a ship?", "no"]],
        "caption/Caption-training.csv": [["image", "caption", "kind"],
                                         [f"{OEM}.png", "Aerial view of a port.", "concise"],
                                         [f"{OEM}.png", "Aerial view of a port.", "concise"],
                                         [f"{OEM}.png", "Aerial view of a port.", "detailed"]],
    }
    pr = parse_release(make_release(tmp_path, images={f"{OEM}.png": PNG}, files=files))
    assert [(r.file, r.line, r.reason) for r in pr.rejects] == [
        ("Text/VQA/SARVQA2_train.csv", 4, "duplicate_row"),
        ("Text/caption/Caption-training.csv", 3, "duplicate_row"),
    ]
    s = pr.samples[0]
    assert [(q.question, q.answer) for q in s.qa] == [
        ("Is there a ship?", "yes"), ("How many ships?", "2"), ("Is there a ship?", "no")]
    assert [c.kind for c in s.captions] == ["concise", "detailed"]


def test_empty_texts(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [VQA_HEADER,
                                  [f"{OEM}.png", "Is there a ship?", ""],
                                  [f"{OEM}.png", "  ", "yes"],
                                  [f"{OEM}.png", "Is there a car?", "no"]],
        "caption/Caption_test.csv": [["image", "caption"], [f"{DFC}.png", " "]],
    }
    images = {f"{OEM}.png": PNG, f"{DFC}.png": PNG}
    pr = parse_release(make_release(tmp_path, images=images, files=files))
    assert [(r.file, r.line, r.reason, r.detail) for r in pr.rejects if r.line] == [
        ("Text/VQA/SARVQA2_train.csv", 2, "empty_text", "empty answer"),
        ("Text/VQA/SARVQA2_train.csv", 3, "empty_text", "empty question"),
        ("Text/caption/Caption_test.csv", 2, "empty_text", "empty caption"),
    ]
    # DFC's only text was rejected: the image ends in no shard and says so.
    unused = [r for r in pr.rejects if r.reason == "unused_image"]
    assert [(r.file, r.line) for r in unused] == [(f"SARimages/{DFC}.png", 0)]
    assert "all 1 text row(s) naming it were rejected" in unused[0].detail


def test_unparseable_rows(tmp_path):
    text = "\n".join([
        "image,question,answer",
        f"{OEM}.png,Is there a ship?,yes",
        f"{OEM}.png,Is there a ship, or a boat?,yes",
        f"{OEM}.png,Is there a car?,no,",
        "",
        f"{OEM}.png,Is there a tank?",
        f'{OEM}.png,"Is there a bridge\nover the river?",yes',
    ]) + "\n"
    pr = parse_release(make_release(tmp_path, files={"VQA/SARVQA2_train.csv": text}))
    assert [(r.line, r.reason) for r in pr.rejects if r.line] == [
        (3, "unparseable_row"), (6, "unparseable_row")]
    assert [q.question for q in pr.samples[0].qa] == [
        "Is there a ship?", "Is there a car?", "Is there a bridge\nover the river?"]
    assert pr.text_rows == 5


def test_split_conflict_rejects_the_minority(tmp_path):
    files = {
        "VQA/SARVQA2_train.csv": [VQA_HEADER,
                                  [f"{OEM}.png", "Is there a ship?", "yes"],
                                  [f"{OEM}.png", "Is there a car?", "no"],
                                  [f"{DFC}.png", "Is there a car?", "no"]],
        "VQA/SARVQA2_test.csv": [VQA_HEADER,
                                 [f"{OEM}.png", "Is there a tank?", "no"],
                                 [f"{DFC}.png", "Is there a tank?", "no"]],
    }
    pr = parse_release(make_release(tmp_path, files=files))
    assert [(r.file, r.line, r.reason) for r in pr.rejects if r.line] == [
        ("Text/VQA/SARVQA2_test.csv", 2, "split_conflict"),
        ("Text/VQA/SARVQA2_train.csv", 4, "split_conflict"),  # a tie keeps test
    ]
    s = by_key(pr)
    assert s["france_alpes-maritimes_nice_3"].split == "train"
    assert len(s["france_alpes-maritimes_nice_3"].qa) == 2
    assert s["sv_darwin_-12p4278_130p8688"].split == "test"


def test_unused_images_and_tif_originals(tmp_path):
    images = {f"{OEM}.png": PNG, f"{DFC}.png": PNG, f"{OEM}.tif": b"II*\0"}
    files = {"VQA/SARVQA2_train.csv": [VQA_HEADER, [f"{OEM}.png", "Is there a ship?", "yes"]]}
    rel = make_release(tmp_path, images=images, files=files)
    pr = parse_release(rel)
    assert [(r.file, r.line, r.reason) for r in pr.rejects] == [
        (f"SARimages/{DFC}.png", 0, "unused_image")]
    assert pr.original_paths == {}
    assert any("skipped 1 .tif" in n for n in pr.notes)
    pr = parse_release(rel, originals=True)
    assert pr.original_paths == {"france_alpes-maritimes_nice_3": rel / "SARimages" / f"{OEM}.tif"}
    (rel / "SARimages_original").mkdir()
    (rel / "SARimages_original" / f"{OEM}.tif").write_bytes(b"II*\0")
    pr = parse_release(rel, originals=True)
    assert pr.original_paths == {
        "france_alpes-maritimes_nice_3": rel / "SARimages_original" / f"{OEM}.tif"}


def test_images_in_subfolders_are_found(tmp_path):
    rel = make_release(tmp_path, images={}, files={
        "VQA/SARVQA1_test.csv": [VQA_HEADER, ["0000001.jpg", "How many ships?", "3"]]})
    (rel / "SARimages" / "JPEGImages" / "val").mkdir(parents=True)
    (rel / "SARimages" / "JPEGImages" / "val" / "0000001.jpg").write_bytes(JPG)
    pr = parse_release(rel)
    assert pr.image_paths == {"0000001": rel / "SARimages" / "JPEGImages" / "val" / "0000001.jpg"}
    assert pr.samples[0].split == "test"


# --------------------------------------------------------------------------- CSV vs JSON


def _records(pr: ParsedRelease) -> list[dict]:
    return [s.to_dict() for s in pr.samples]


def _as_flat_json(files: dict[str, list[list[str]]]) -> dict[str, list[dict]]:
    out = {}
    for name, rows in files.items():
        header, *data = rows
        out[name.replace(".csv", ".json")] = [dict(zip(header, r, strict=True)) for r in data]
    return out


def _as_llama_json(files: dict[str, list[list[str]]]) -> dict[str, list[dict]]:
    out = {}
    for name, rows in files.items():
        header, *data = rows
        items = []
        for r in data:
            d = dict(zip(header, r, strict=True))
            if "question" in d:
                user = f"<image>Question: {d['question']}. Answer the question concisely."
                reply = d["answer"]
            else:
                user = "<image>Describe the content of this image in one sentence."
                reply = d["caption"]
            items.append({"messages": [{"role": "user", "content": user},
                                       {"role": "assistant", "content": reply}],
                          "images": [f"SARimages/{d['image']}"]})
        # JSON twin names are unknown; the underscore spelling must still pair with the CSV.
        out[name.replace(".csv", ".json").replace("Caption-", "Caption_")] = items
    return out


def test_csv_json_twins_give_identical_samples(tmp_path):
    files = basic_files()
    csv_only = parse_release(make_release(tmp_path / "a", files=files))
    flat = parse_release(make_release(tmp_path / "b", files=_as_flat_json(files)))
    llama = parse_release(make_release(tmp_path / "c", files=_as_llama_json(files)))
    both = parse_release(make_release(tmp_path / "d", files={**files, **_as_llama_json(files)}))
    assert _records(flat) == _records(csv_only)
    assert _records(llama) == _records(csv_only)
    assert _records(both) == _records(csv_only)
    assert both.files == csv_only.files  # the JSON twins were not read
    assert any("skipped its JSON twin" in n for n in both.notes)
    assert llama.text_rows == csv_only.text_rows == 10
    assert set(llama.files) == {
        "Text/VQA/SARVQA1_train.json", "Text/VQA/SARVQA2_test.json",
        "Text/VQA/SARVQA2_train.json", "Text/caption/Caption_test.json",
        "Text/caption/Caption_test1.json", "Text/caption/Caption_training.json"}


def test_llama_factory_json_only_release(tmp_path):
    items = [
        {"messages": [
            {"role": "system", "content": "You are a SAR expert."},
            {"role": "user", "content": "<image>Is there a ship in the image?"},
            {"role": "assistant", "content": "yes"},
            {"role": "user", "content": "How many ships are there?"},
            {"role": "assistant", "content": "3"}],
         "images": [f"{OEM}.png"]},
        {"conversations": [{"from": "human", "value": "<image>\nWhere are most ships?"},
                           {"from": "gpt", "value": "top"}],
         "images": [f"{DFC}.png"]},
        {"messages": [{"role": "user", "content": "<image>Any cars?"}],
         "images": [f"{DFC}.png"]},
        {"messages": [{"role": "user", "content": "<image>Any cars?"},
                      {"role": "assistant", "content": "no"}],
         "images": [f"{DFC}.png", f"{OEM}.png"]},
    ]
    caps = [{"messages": [{"role": "user", "content": "<image>Describe the content of this "
                                                      "image in one sentence."},
                          {"role": "assistant", "content": "Aerial view of a port."}],
             "images": [f"{OEM}.png"]}]
    rel = make_release(tmp_path, files={"VQA/sarvqa2_train.json": items,
                                        "caption/caption_test1.json": caps})
    pr = parse_release(rel)
    s = by_key(pr)
    oem = s["france_alpes-maritimes_nice_3"]
    assert [(q.question, q.answer, q.task) for q in oem.qa] == [
        ("Is there a ship in the image?", "yes", "object_identification"),
        ("How many ships are there?", "3", "instance_counting")]
    assert oem.split == "train"  # the test caption is a split conflict (1 vs 2 rows)
    assert oem.captions == ()
    assert [(q.question, q.task) for q in s["sv_darwin_-12p4278_130p8688"].qa] == [
        ("Where are most ships?", "object_positioning")]
    assert [(r.file, r.line, r.reason) for r in pr.rejects if r.line] == [
        ("Text/VQA/sarvqa2_train.json", 3, "unparseable_row"),
        ("Text/VQA/sarvqa2_train.json", 4, "unparseable_row"),
        ("Text/caption/caption_test1.json", 1, "split_conflict"),
    ]
    assert pr.files == {"Text/VQA/sarvqa2_train.json": 5, "Text/caption/caption_test1.json": 1}


def test_json_lines_and_image_keyed_json(tmp_path):
    jsonl = "\n".join(json.dumps({"image": f"{OEM}.png", "question": q, "answer": a})
                      for q, a in [("Is there a ship?", "yes"), ("How many cars?", 4)])
    jsonl = jsonl.replace("\n", "\n[1, 2]\n\n", 1)
    keyed = {f"{DFC}.png": [{"question": "Is there a tank?", "answer": "no"}]}
    rel = make_release(tmp_path, files={"VQA/SARVQA2_train.jsonl": jsonl,
                                        "VQA/SARVQA2_test.json": json.dumps(keyed)})
    pr = parse_release(rel)
    s = by_key(pr)
    assert [(r.file, r.line, r.reason) for r in pr.rejects if r.line] == [
        ("Text/VQA/SARVQA2_train.jsonl", 2, "unparseable_row")]
    assert pr.files == {"Text/VQA/SARVQA2_train.jsonl": 3, "Text/VQA/SARVQA2_test.json": 1}
    assert [q.answer for q in s["france_alpes-maritimes_nice_3"].qa] == ["yes", "4"]
    assert [q.question for q in s["sv_darwin_-12p4278_130p8688"].qa] == ["Is there a tank?"]


# --------------------------------------------------------------------------- GSD


def test_gsd_table_sets_gsd_and_tier(tmp_path):
    rel = make_release(tmp_path, files=basic_files())
    table = tmp_path / "gsd.csv"
    table.write_text(f"File Name,GSD\n{OEM}.png,0.3\n{DFC},2.5\n0009787.jpg,10\nother.png,1\n")
    assert read_gsd_table(table) == {f"{OEM}.png": 0.3, DFC: 2.5, "0009787.jpg": 10.0,
                                     "other.png": 1.0}
    s = by_key(parse_release(rel, gsd_table=table))
    assert (s["france_alpes-maritimes_nice_3"].gsd_m, s["france_alpes-maritimes_nice_3"].tier,
            s["france_alpes-maritimes_nice_3"].gsd_from) == (0.3, "vhr", "table")
    assert (s["sv_darwin_-12p4278_130p8688"].tier, s["0009787"].tier) == ("hr", "mr")
    assert (s["sn6_rotterdam_0001"].gsd_m, s["sn6_rotterdam_0001"].gsd_from) == (
        0.5, "source-default")


@pytest.mark.parametrize(("content", "match"), [
    ("file_name,gsd_m\na.png,abc\n", r"line 2: GSD 'abc' for 'a.png' is not a positive"),
    ("file_name,gsd_m\na.png,0.5\nb.png,-1\n", r"line 3: GSD '-1'"),
    ("file_name,gsd_m\na.png,0.5\na.png,0.7\n", r"line 3: 'a.png' is given GSD 0.7"),
    ("file_name,gsd_m\n,0.5\n", r"line 2 has an empty file name"),
    ("name,metres\na.png,0.5\n", r"no GSD column among headers \['name', 'metres'\]"),
])
def test_gsd_table_errors(tmp_path, content, match):
    p = tmp_path / "gsd.csv"
    p.write_text(content)
    with pytest.raises(ReleaseError, match=match):
        read_gsd_table(p)


def test_gsd_table_missing_file(tmp_path):
    with pytest.raises(ReleaseError, match=r"cannot be read"):
        read_gsd_table(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- names and wording


@pytest.mark.parametrize(("name", "place"), [
    ("France_Alpes-Maritimes_Nice_3.png",
     Place("oem_sar", "nice", "france", "alpesmaritimes", None, None)),
    ("Japan_Tokyo_Setagaya_12", Place("oem_sar", "setagaya", "japan", "tokyo", None, None)),
    ("USA_Florida_Extra_Miami_7.png", Place("oem_sar", "miami", "usa", "floridaextra", None, None)),
    ("SV_Darwin_-12.4278_130.8688.png",
     Place("dfc2023", "darwin", "australia", None, -12.4278, 130.8688)),
    ("GF2_NewYork_40.7128_-74.0060", Place("dfc2023", "newyork", "usa", None, 40.7128, -74.006)),
    ("SV_Rio_-22.9068_-43.1956.png", Place("dfc2023", "rio", "brazil", None, -22.9068, -43.1956)),
    ("SV_Portsmouth_50.8_-1.09.png",
     Place("dfc2023", "portsmouth", "unitedkingdom", None, 50.8, -1.09)),
    ("SV_Portsmouth_36.8354_-76.2983.png",
     Place("dfc2023", "portsmouth", "usa", None, 36.8354, -76.2983)),
    ("SV_Darwin_40.0_-100.0.png", Place("dfc2023", "darwin", None, None, 40.0, -100.0)),
    ("SV_Atlantis_10.0_10.0.png", Place("dfc2023", "atlantis", None, None, 10.0, 10.0)),
    ("SN6_Rotterdam_tile_42.png", Place("spacenet6", "rotterdam", "netherlands", None, None, None)),
    ("0009787.jpg", Place("sardet100k", "unlocated", None, None, None, None)),
    ("SARimages/0000001", Place("sardet100k", "unlocated", None, None, None, None)),
])
def test_parse_file_name(name, place):
    assert parse_file_name(name) == place


@pytest.mark.parametrize("name", [
    "holiday_photo.png", "009787.jpg", "SV_Darwin_north.png", "SV_Darwin_-112.5_10.0.png",
    "france_var_toulon_x.png", "Nice_3.png", "",
])
def test_parse_file_name_unknown(name):
    with pytest.raises(ReleaseError, match="matches no known pattern"):
        parse_file_name(name)


#: The authors' own examples (facts file section 2, Overview.png and the SARDet templates).
FACTS_QUESTIONS = [
    ("Are there any surrounding trees?", "Yes.", "object_identification", "object_identification"),
    ("What type of area is mostly visible?", "Forest/park.", "object_classification",
     "object_classification"),
    ("What natural feature is in the top center?", "Dense trees.", "object_classification",
     "object_classification"),
    ("How many harbors are located in the image?", "2.", "instance_counting", "instance_counting"),
    ("What is the object present in the area [56.0, 191.0, 112.0, 122.0]?", "aircraft.",
     "region_referring", "region_referring"),
    ("Where are most harbors positioned within the image?", "bottom.", "object_positioning",
     "object_positioning"),
    ("What shape are the swimming pools?", "Rectangular.", "others", "shape"),
    ("What direction is the main road?", "Diagonal.", "others", "direction"),
    ("What is the predominant land cover?", "Urban.", "others", "land_cover"),
    ("How are the buildings arranged?", "Grid pattern.", "others", "pattern"),
    ("Any buildings under construction?", "No.", "others", "reasoning"),
    ("Is there a ship in the image?", "yes", "object_identification", "object_identification"),
    ("How many tanks are there in the image?", "3", "instance_counting", "instance_counting"),
    ("Where are most aircraft located?", "center", "object_positioning", "object_positioning"),
    ("What object in area [12, 30, 40, 22]?", "ship", "region_referring", "region_referring"),
]


@pytest.mark.parametrize(("question", "answer", "task", "qtype"), FACTS_QUESTIONS)
def test_facts_file_examples(question, answer, task, qtype):
    assert infer_task(question, answer) == (task, qtype)
    assert infer_task(question) == (task, qtype)  # the wording alone suffices
    wrapped = f"<image>Question: {question}. Answer the question concisely."
    assert infer_task(wrapped) == (task, qtype)


def test_facts_file_captions():
    assert infer_caption_kind("Aerial view of a large industrial area with a lot of tanks.") == \
        "concise"
    assert infer_caption_kind("The image shows an industrial facility with multiple circular "
                              "storage tanks and surrounding roads.") == "detailed"


@pytest.mark.parametrize(("question", "box"), [
    ("What is in the area [56.0, 191.0, 112.0, 122.0]?", (56.0, 191.0, 112.0, 122.0)),
    ("What object in area [12,30,40,22]?", (12.0, 30.0, 40.0, 22.0)),
    ("Box [ 1.5 , 2 , 3 , 4.25 ] holds what?", (1.5, 2.0, 3.0, 4.25)),
    ("Is there a ship?", None),
    ("What is in [1, 2, 3]?", None),
])
def test_parse_bbox(question, box):
    assert parse_bbox(question) == box


@pytest.mark.parametrize(("question", "answer", "task", "qtype"), [
    # Paraphrases beyond the authors' examples, to keep the rules general.
    ("Is the harbor busy?", "yes", "others", "reasoning"),
    ("Which direction are the ships facing?", "North", "others", "direction"),
    ("What is the dominant land use?", "Farming", "others", "land_cover"),
    ("In which part of the image is the bridge?", "left", "object_positioning",
     "object_positioning"),
    ("Does the image contain a storage tank?", "no", "object_identification",
     "object_identification"),
    ("Can a bridge be seen here?", "no", "object_identification", "object_identification"),
    ("Count the cars in the parking lot.", "12", "instance_counting", "instance_counting"),
    ("Why is the river so wide here?", "Flood plain", "others", "reasoning"),
    ("What is this building most likely used for?", "Storage", "others", "reasoning"),
    ("The classes are: top, center, bottom, left, right. Where are most ships?", "top",
     "object_positioning", "object_positioning"),
    ("Name the object in [1.0, 2.0, 3.0, 4.0].", "car", "region_referring", "region_referring"),
])
def test_other_wordings(question, answer, task, qtype):
    assert infer_task(question, answer) == (task, qtype)


# --------------------------------------------------------------------------- synthetic release


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _truth(out: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return _csv_rows(out / "truth" / "texts.csv"), _csv_rows(out / "truth" / "images.csv")


@pytest.fixture(scope="module")
def synth_tiny_originals(tmp_path_factory) -> Path:
    from sarlang_data.ingest.synth import generate

    out = tmp_path_factory.mktemp("rel_synth") / "present"
    generate(out, preset="tiny", seed=5, labels="present", originals=True, workers=1,
             progress=False)
    return out


@pytest.fixture(scope="module")
def synth_tiny_absent(tmp_path_factory) -> Path:
    from sarlang_data.ingest.synth import generate

    out = tmp_path_factory.mktemp("rel_synth") / "absent"
    generate(out, preset="tiny", seed=6, labels="absent", workers=1, progress=False)
    return out


def _expected_texts(out: Path, texts: list[dict[str, str]]) -> dict[str, tuple[list, list]]:
    """Per sample key, the captions and QA the truth says should be there, in release order."""
    content: dict[str, list[dict[str, str]]] = {}
    exp: dict[str, tuple[list, list]] = {}
    for t in sorted(texts, key=lambda t: (t["file"], int(t["row"]))):
        if t["defect"]:
            continue
        if t["file"] not in content:
            content[t["file"]] = _csv_rows(out / "SARLANG_1M" / t["file"])
        row = content[t["file"]][int(t["row"]) - 1]
        key = schema.key_for_stem(t["image"].rsplit(".", 1)[0])
        caps, qas = exp.setdefault(key, ([], []))
        if t["kind"]:
            caps.append((t["kind"], row["caption"]))
        else:
            box = parse_bbox(row["question"]) if t["task"] == "region_referring" else None
            qas.append((t["task"], t["question_type"], row["question"], row["answer"], box,
                        t["subset"]))
    return exp


def test_synth_tiny_every_truth_row_once_and_every_defect_rejected(synth_tiny_originals):
    out = synth_tiny_originals
    texts, imgs = _truth(out)
    pr = parse_release(out / "SARLANG_1M", gsd_table=out / "gsd_table.csv", originals=True)
    assert pr.text_rows == len(texts)
    assert pr.files == dict(Counter(t["file"] for t in texts))
    # every defect, and nothing else, is rejected with the truth's reason
    want_rejects = sorted((t["file"], int(t["line"]), t["defect"]) for t in texts if t["defect"])
    want_rejects += sorted((f"SARimages/{i['file_name']}", 0, i["defect"]) for i in imgs
                           if i["defect"])
    assert sorted((r.file, r.line, r.reason) for r in pr.rejects) == sorted(want_rejects)
    assert {r for _, _, r in want_rejects} >= {"missing_image", "duplicate_row", "empty_text",
                                                "unused_image"}
    # every valid row appears exactly once, in release order, with the truth's labels
    exp = _expected_texts(out, texts)
    got = {s.key: ([(c.kind, c.text) for c in s.captions],
                   [(q.task, q.question_type, q.question, q.answer, q.bbox_xywh, q.subset)
                    for q in s.qa]) for s in pr.samples}
    assert got == exp
    assert all(c.kind_from == "label" for s in pr.samples for c in s.captions)
    assert all(q.task_from == "label" for s in pr.samples for q in s.qa)
    # image metadata matches the truth
    truth_img = {schema.key_for_stem(i["file_name"].rsplit(".", 1)[0]): i for i in imgs}
    for s in pr.samples:
        t = truth_img[s.key]
        assert (s.file_name, s.source, s.split, s.city, s.country or "", s.tier) == (
            t["file_name"], t["source"], t["split"], t["city"], t["country"], t["tier"])
        assert s.region == (schema.slug(t["region"]) if t["region"] else None)
        assert (s.lat, s.lon) == ((float(t["lat"]), float(t["lon"])) if t["lat"] else (None, None))
        assert (s.gsd_m, s.gsd_from) == (float(t["gsd_m"]), "table")
        assert pr.image_paths[s.key] == out / "SARLANG_1M" / "SARimages" / t["file_name"]
    assert set(pr.original_paths) == {s.key for s in pr.samples if s.source != "sardet100k"}
    assert all(p.parent.name == "SARimages_original" and p.stem == pr.image_paths[k].stem
               for k, p in pr.original_paths.items())


def test_synth_tiny_json_twins_equal_csv(synth_tiny_originals, tmp_path):
    import shutil

    src = synth_tiny_originals / "SARLANG_1M"
    rel = tmp_path / "SARLANG_1M"
    shutil.copytree(src / "Text", rel / "Text")
    (rel / "SARimages").symlink_to(src / "SARimages")
    for p in (rel / "Text").rglob("*.csv"):
        p.unlink()
    from_json = parse_release(rel)
    from_csv = parse_release(src)
    assert _records(from_json) == _records(from_csv)
    assert [(r.file.replace(".json", ".csv"), r.reason) for r in from_json.rejects
            if r.line] == [(r.file, r.reason) for r in from_csv.rejects if r.line]
    assert from_json.text_rows == from_csv.text_rows


def test_synth_tiny_labels_absent_inferred(synth_tiny_absent):
    out = synth_tiny_absent
    texts, _ = _truth(out)
    pr = parse_release(out / "SARLANG_1M")
    exp = _expected_texts(out, texts)
    n_qa = agree_qa = n_cap = agree_cap = 0
    for s in pr.samples:
        caps, qas = exp[s.key]
        assert [c.text for c in s.captions] == [c[1] for c in caps]
        assert [q.question for q in s.qa] == [q[2] for q in qas]
        for c, (kind, _) in zip(s.captions, caps, strict=True):
            n_cap += 1
            agree_cap += c.kind == kind
        for q, want in zip(s.qa, qas, strict=True):
            n_qa += 1
            agree_qa += (q.task, q.question_type, q.bbox_xywh) == (want[0], want[1], want[4])
    assert n_qa > 300 and n_cap > 40
    assert agree_qa / n_qa >= 0.99
    assert agree_cap / n_cap >= 0.95
    # test-file captions keep the file's kind as a label; the training file's are inferred
    assert {(c.kind_from, s.split) for s in pr.samples for c in s.captions} == {
        ("inferred", "train"), ("label", "test")}
    assert all(q.task_from == "inferred" for s in pr.samples for q in s.qa)


@pytest.mark.slow
def test_synth_full_text_inference_accuracy(tmp_path):
    """Tasks and caption kinds inferred from wording agree with the truth of the full set."""
    from sarlang_data.ingest.synth import generate

    out = tmp_path / "full"
    generate(out, preset="full", seed=1, labels="absent", images=False, workers=1,
             progress=False)
    truth: dict[tuple[str, int], tuple[str, str, str]] = {}
    with open(out / "truth" / "texts.csv", newline="", encoding="utf-8") as f:
        rd = csv.reader(f)
        col = {c: i for i, c in enumerate(next(rd))}
        for r in rd:
            if not r[col["defect"]]:
                truth[(r[col["file"]], int(r[col["row"]]))] = (
                    r[col["task"]], r[col["question_type"]], r[col["kind"]])
    n_qa = ok_qa = n_cap = ok_cap = 0
    for p in sorted((out / "SARLANG_1M" / "Text").rglob("*.csv")):
        rel = p.relative_to(out / "SARLANG_1M").as_posix()
        with open(p, newline="", encoding="utf-8") as f:
            rd = csv.reader(f)
            header = next(rd)
            assert "type" not in header  # labels really are absent
            for i, row in enumerate(rd, start=1):
                want = truth.get((rel, i))
                if want is None:
                    continue
                if header[1] == "question":
                    n_qa += 1
                    ok_qa += infer_task(row[1], row[2]) == want[:2]
                elif "training" in rel:  # the test files' kinds come from their names
                    n_cap += 1
                    ok_cap += infer_caption_kind(row[1]) == want[2]
    assert n_qa == 1_080_627 and n_cap == 31_968
    assert ok_qa / n_qa >= 0.99, ok_qa / n_qa
    assert ok_cap / n_cap >= 0.95, ok_cap / n_cap
