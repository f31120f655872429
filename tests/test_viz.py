"""Pictures: the contact sheet and chart on the card, `show` with its boxes, `stats --plot`.

Every picture written is decoded and measured. `show` is checked on a hand-made release whose
objects sit at known pixels of a non-square image: the drawn boxes must hug them (so the
boxes are COCO [x, y, w, h] from the top-left corner, neither [x1, y1, x2, y2] nor flipped).
Costs about 25 s (two small builds, ~20 matplotlib figures).
"""

from __future__ import annotations

import csv
import io
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sarlang_data import plot, schema
from sarlang_data.cli import main as cli_main
from sarlang_data.configs import CONFIGS
from sarlang_data.errors import ConfigError
from sarlang_data.format import pictures
from sarlang_data.format.manifest import read_manifest
from sarlang_data.format.stats import stats
from sarlang_data.ingest.build import BuildOptions, build
from sarlang_data.schema import text_id
from sarlang_data.stream.lookup import sample_by_key
from sarlang_data.viz import CHARTS, stats_figures
from sarlang_data.viz.figures import PALETTE, position_cell

KEY = "sv_darwin_-12p4278_130p8688"
NAME = "SV_Darwin_-12.4278_130.8688.png"
W, H = 160, 96  # non-square, so a swapped x/y would show
#: objects painted white on a dark image, at these COCO boxes [x, y, w, h]
OBJECTS = {"ship": (12, 50, 30, 10), "tank": (100, 8, 14, 20)}


def _write_release(base: Path) -> Path:
    rel = base / "SARLANG_1M"
    for d in ("SARimages", "Text/VQA", "Text/caption"):
        (rel / d).mkdir(parents=True)
    arr = np.full((H, W), 20, np.uint8)
    for x, y, w, h in OBJECTS.values():
        arr[y:y + h, x:x + w] = 255
    Image.fromarray(arr).save(rel / "SARimages" / NAME)
    with open(rel / "Text/VQA/SARVQA2_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "question", "answer", "type"])
        for name, (x, y, bw, bh) in OBJECTS.items():
            w.writerow([NAME, f"What is the object present in the area [{x:.1f}, {y:.1f}, "
                        f"{bw:.1f}, {bh:.1f}]?", name, "Region Referring"])
        w.writerow([NAME, "Where is the tank positioned within the image?", "Top right",
                    "Object Positioning"])
        w.writerow([NAME, "Is there a ship in the image?", "Yes", "Object Identification"])
    with open(rel / "Text/caption/Caption-training.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "type"])
        w.writerow([NAME, "A ship and a tank on dark water.", "concise"])
    return rel


@pytest.fixture(scope="module")
def known_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("known")
    root = base / "root"
    build(_write_release(base), root, BuildOptions(workers=1), progress=False)
    return root


def _near(a: np.ndarray, color: str, tol: int = 60) -> np.ndarray:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return np.abs(a - rgb).sum(axis=2) < tol


# --------------------------------------------------------------------------- show


def test_show_draws_each_box_around_its_object(known_root, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert cli_main(["show", KEY, "--data", str(known_root), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    im = Image.open(out)
    assert im.format == "PNG" and im.size[0] == 1200 and 350 <= im.size[1] <= 700
    a = np.asarray(im.convert("RGB")).astype(int)
    # the image area: the rows and columns that are mostly the (stretched) black background
    dark = a.sum(axis=2) == 0
    rows = np.nonzero(dark.sum(axis=1) > 200)[0]
    cols = np.nonzero(dark.sum(axis=0) > 60)[0]
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    s = (right - left) / W
    assert abs((bottom - top) / H - s) < 0.02 * s  # aspect kept
    assert s > 3

    def px(x: float, y: float) -> tuple[float, float]:
        return left + x * s, top + y * s

    # the objects land where the image has them (not flipped, not transposed)
    white = a.min(axis=2) >= 200  # white, or white under the light positioning shade
    white[:top], white[bottom:], white[:, :left], white[:, right:] = False, False, False, False
    for x, y, w, h in OBJECTS.values():
        x0, y0 = px(x, y)
        x1, y1 = px(x + w, y + h)
        inside = white[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2]
        assert inside.mean() > 0.9
    # each box is drawn on its object's outline, in its colour, and nowhere else near it
    for n, (x, y, w, h) in enumerate(OBJECTS.values()):
        m = _near(a, PALETTE[n])
        x0, y0 = (round(v) for v in px(x, y))
        x1, y1 = (round(v) for v in px(x + w, y + h))
        band = slice(y0 + 4, y1 - 4)
        assert m[band, x0 - 2:x0 + 3].any(axis=1).mean() > 0.9  # left edge
        assert m[band, x1 - 2:x1 + 3].any(axis=1).mean() > 0.9  # right edge
        span = slice(x0 + 4, x1 - 4)
        assert m[y1 - 2:y1 + 3, span].any(axis=0).mean() > 0.9  # bottom edge
        assert m[y0 - 2:y0 + 3, (x0 + x1) // 2:x1 - 4].any(axis=0).mean() > 0.9  # top edge
        assert not m[y0 + 4:y1 - 4, x0 + 4:x1 - 4].any()  # inside: the object, not the box
        assert not m[y0 + 4:y1 + 6, x1 + 5:x1 + 15].any()  # right of it
        assert not m[y1 + 5:y1 + 15, x0:x1].any()  # below it
    # "Top right": the right third of the top third, dashed, in the third colour
    m = _near(a, PALETTE[2], tol=40)
    m[:top], m[bottom:], m[:, :left], m[:, right:] = False, False, False, False
    ys, xs = np.nonzero(m)
    assert xs.min() >= px(2 * W / 3, 0)[0] - 3 and ys.max() <= px(0, H / 3)[1] + 3
    assert xs.max() >= right - 4 and ys.min() <= top + 4


def test_show_unknown_key_names_the_closest(known_root, tmp_path, capsys):
    assert cli_main(["show", KEY[:-1] + "9", "--data", str(known_root),
                     "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no such sample" in err and KEY in err
    assert not (tmp_path / "x.png").exists()


def test_positions_name_parts_of_the_image():
    assert position_cell("Top left") == (0, 0)
    assert position_cell("bottom") == (None, 2)
    assert position_cell("Near center.") == (1, 1)
    assert position_cell("Top center") == (1, 0)
    assert position_cell("right") == (2, None)
    assert position_cell("Upper side") == (None, 0)
    assert position_cell("Diagonal") is None


def _boxes(fig) -> list[tuple[float, float, float, float]]:
    from matplotlib.patches import Rectangle

    ax = fig.axes[0]
    return sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches
                  if isinstance(p, Rectangle) and not p.get_fill()
                  and p.get_linestyle() in ("-", "solid"))


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


@pytest.mark.parametrize("decode", [True, False])
def test_plot_takes_a_row_of_every_config(tiny_root, decode):
    from sarlang_data import load_dataset

    names = list(CONFIGS) if decode else ["images", "vqa", "captions", "chat"]
    for name in names:
        cfg = CONFIGS[name]
        split = "train" if cfg.tier != "mr" else "test"
        ds = load_dataset(str(tiny_root), name, split=split, streaming=True, decode=decode)
        row = next(r for r in ds if cfg.unit != "qa" or r["question"])
        fig = plot(row)
        text = _texts(fig)
        if "question" in row:
            assert row["question"][:40] in text and row["answer"] in text
            want = [tuple(row["bbox"])] if row["bbox"] else []
        elif "caption" in row:
            assert row["caption"][:40] in text
            want = []
        elif "messages" in row:  # one text per chat row: its own box, if any
            rec = sample_by_key(tiny_root, row["key"])["json"]
            (t,) = [x for x in [*rec["captions"], *rec["qa"]]
                    if text_id(row["key"], x) == row["id"]]
            want = [tuple(t["bbox_xywh"])] if t.get("bbox_xywh") else []
            assert row["messages"][-1]["content"][0]["text"][:30] in text
        else:
            want = sorted({tuple(q["bbox"]) for q in row["qa"] if q["bbox"]})
            for c in row["captions"]:
                assert c["text"][:40] in text
        assert _boxes(fig) == sorted(want), name
        png = pictures.png_bytes(fig)
        im = Image.open(io.BytesIO(png))
        assert im.format == "PNG" and im.size[0] == 1200 and im.size[1] > 300, name
        if name == "images":
            assert png == pictures.png_bytes(plot(row))  # stable bytes


# --------------------------------------------------------------------------- the card's


def _tile(sheet: Image.Image, i: int) -> Image.Image:
    x = 6 + (i % 6) * (pictures.TILE + 6)
    y = 34 + (i // 6) * (pictures.TILE + 30 + 6)
    return sheet.crop((x, y, x + pictures.TILE, y + pictures.TILE))


def test_the_build_writes_a_contact_sheet_the_card_shows(tiny_root):
    data = (tiny_root / pictures.CONTACT_SHEET).read_bytes()
    assert 20_000 < len(data) < 600_000
    sheet = Image.open(io.BytesIO(data))
    n = min(pictures.SHEET_TILES, read_manifest(tiny_root)["counts"]["samples"])
    assert sheet.format == "JPEG" and sheet.size == (6 * 150 + 6, 34 + -(-n // 6) * 180 + 6)
    assert pictures.contact_sheet(tiny_root) == data  # same root, same bytes
    card = (tiny_root / "README.md").read_text()
    assert f"]({pictures.CONTACT_SHEET})" in card and f"]({pictures.STATS_CHART})" in card
    # the tiles: sources take turns (a source with fewer images leaves its turns to the
    # others), grouped in source order; every tier of a source shows
    table = pq.read_table(tiny_root / "index.parquet")
    rows = pictures.sheet_rows(table.to_pylist())
    have = {s: sum(1 for x in table["source"].to_pylist() if x == s) for s in schema.SOURCES}
    share = dict.fromkeys(schema.SOURCES, 0)
    while sum(share.values()) < n:
        for s in schema.SOURCES:
            if share[s] < have[s] and sum(share.values()) < n:
                share[s] += 1
    assert [r["source"] for r in rows] == [s for s in schema.SOURCES for _ in range(share[s])]
    assert share["spacenet6"] == have["spacenet6"] < share["oem_sar"]
    for s in schema.SOURCES:
        tiers = {r["tier"] for r in table.to_pylist() if r["source"] == s}
        assert {r["tier"] for r in rows if r["source"] == s} == tiers
    shuffled = table.to_pylist()
    random.Random(1).shuffle(shuffled)
    assert [r["key"] for r in pictures.sheet_rows(shuffled)] == [r["key"] for r in rows]
    rgb = np.asarray(sheet.convert("RGB")).astype(int)
    for i, r in enumerate(rows):  # each tile is its sample's image, gray, stretched
        tile = np.asarray(_tile(sheet, i).convert("RGB")).astype(int)
        assert np.abs(tile[..., 0] - tile[..., 1]).mean() < 3  # grayscale
        with open(tiny_root / r["shard"], "rb") as f:
            f.seek(r["image_offset"])
            src = np.asarray(Image.open(io.BytesIO(f.read(r["image_size"]))).convert("L"))
        lo, hi = np.percentile(src, (2, 98))
        want = np.clip((src - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        thumb = np.asarray(Image.fromarray(want.astype(np.uint8)).resize(
            (pictures.TILE, round(pictures.TILE * src.shape[0] / src.shape[1])),
            Image.Resampling.BICUBIC)).astype(float)
        got = tile[:thumb.shape[0], :, 0] if src.shape[0] == src.shape[1] else None
        if got is not None:
            assert np.corrcoef(got.ravel(), thumb.ravel())[0, 1] > 0.9, r["key"]
    assert rgb.shape[0] == sheet.size[1]
    assert pictures.tile_label({"source": "sardet100k", "city": "unlocated", "tier": "mr",
                                "gsd_m": 10.0}) == ("SARDet-100K", "no city · mr · 10 m")
    assert pictures.tile_label({"source": "spacenet6", "city": "rotterdam", "tier": "vhr",
                                "gsd_m": 0.5}) == ("SpaceNet 6", "rotterdam · vhr · 0.5 m")


def test_stretch_spreads_the_2_to_98_percentiles():
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    out = pictures.stretch(a)
    lo, hi = 1.98, 97.02  # numpy's linear percentiles of 0..99
    assert out[0, 0] == 0 and out[-1, -1] == 255
    assert out[5, 0] == int((50 - lo) / (hi - lo) * 255 + 0.5)
    assert (pictures.stretch(np.full((4, 4), 7)) == 7).all()  # a flat image keeps its value
    rgb = np.stack([a, a, a], axis=2)
    assert (pictures.stretch(rgb) == out).all()


def test_a_compressed_root_gets_the_same_pictures(synth_tiny, tiny_root, tmp_path):
    root = tmp_path / "zst"
    build(synth_tiny / "SARLANG_1M", root, BuildOptions(gsd_table=synth_tiny / "gsd_table.csv",
          workers=1, compress="archive"), progress=False)
    assert all(s["path"].endswith(".tar.zst") for s in read_manifest(root)["shards"])
    for rel in (pictures.CONTACT_SHEET, pictures.STATS_CHART):
        assert (root / rel).read_bytes() == (tiny_root / rel).read_bytes(), rel


def test_card_command_rewrites_the_pictures(tiny_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    before = {p: (root / p).read_bytes() for p in (pictures.CONTACT_SHEET, pictures.STATS_CHART)}
    shutil.rmtree(root / "assets")
    assert cli_main(["card", str(root)]) == 0
    out = capsys.readouterr().out
    for rel, data in before.items():
        assert f"wrote {root / rel}" in out
        assert (root / rel).read_bytes() == data


# --------------------------------------------------------------------------- stats --plot


def test_stats_plot_writes_every_chart(tiny_root, tmp_path, capsys):
    out = tmp_path / "charts"
    assert cli_main(["stats", str(tiny_root), "--plot", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(CHARTS)
    for name in CHARTS:
        assert f"wrote {out / name}" in printed
        im = Image.open(out / name)
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 240, name
    # the card shows the overview: the same bytes
    assert (out / "overview.png").read_bytes() == (tiny_root / pictures.STATS_CHART).read_bytes()


def _bar_totals(ax) -> list[float]:
    """Bar lengths per row of a (possibly stacked) horizontal bar panel, top to bottom."""
    per_y: dict[float, float] = {}
    for p in ax.patches:
        y = round(p.get_y() + p.get_height() / 2, 3)
        per_y[y] = per_y.get(y, 0) + p.get_width()
    return [per_y[y] for y in sorted(per_y)]


def test_charts_show_the_index_numbers(tiny_root):
    st = stats(tiny_root)
    figs = stats_figures(tiny_root)
    src, tiers, caps, tasks = figs["overview.png"].axes
    assert _bar_totals(src) == [st["by_source"][s]["samples"] for s in schema.SOURCES]
    assert _bar_totals(tiers) == [st["by_tier"][t]["samples"] for t in schema.TIERS]
    assert _bar_totals(caps) == [sum(st["tasks"][t].values()) for t in schema.TASKS]
    assert _bar_totals(tasks) == [sum(st["caption_kinds"][k].values())
                                  for k in schema.CAPTION_KINDS]
    city = figs["images_by_city.png"].axes[0]
    counts = sorted((v["samples"] for v in st["by_city"].values()), reverse=True)
    assert _bar_totals(city) == counts
    hist = figs["caption_lengths.png"].axes[0]
    assert sum(p.get_height() for p in hist.patches) == st["captions"]
    words = [len(c["text"].split()) for caps in pq.read_table(
        tiny_root / "index.parquet", columns=["captions"])["captions"].to_pylist() for c in caps]
    tallest = max(p.get_height() for p in hist.patches)
    assert tallest <= max(words.count(n) for n in set(words))


def test_show_and_plot_errors_are_clear(known_root):
    with pytest.raises(ConfigError, match="no such sample"):
        sample_by_key(known_root, "nope")
    with pytest.raises(TypeError, match="no 'image'"):
        plot({"key": "x", "question": "q?", "answer": "a", "bbox": None})
