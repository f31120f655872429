"""SARLANG1M, the map-style dataset: the streaming rows by index, locally and over HTTP (nginx).

Costs about 25 s: every row of several configs of the tiny root read both ways, one nginx,
one DataLoader with two workers.
"""

from __future__ import annotations

import random

import pytest
import servers
import torch

from sarlang_data import SARLANG1M, load_dataset, schema
from sarlang_data.adapters.torch import image_tensor
from sarlang_data.adapters.torchgeo import stack_items
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.ingest.build import BuildOptions, build
from sarlang_data.stream.lookup import sample_by_key, samples_at
from sarlang_data.stream.reader import iter_samples

CONFIGS = ["images", "vqa", "captions", "captions_detailed", "region_referring", "others",
           "chat", "mr"]


def _streamed(root, config: str, split: str) -> list[dict]:
    return list(load_dataset(str(root), config, split=split, streaming=True, decode=False))


def _same(item: dict, row: dict) -> None:
    """An item equals a streamed row: every column, and the image's pixels."""
    assert set(item) == set(row) | {"width", "height"}
    for k, v in row.items():
        got = item[k]
        if k == "image":
            assert got.dtype == torch.float32 and got.ndim == 3
            assert torch.equal(got, image_tensor(v).float())
        elif k == "images":
            assert len(got) == len(v) == 1
            assert all(torch.equal(g, image_tensor(x).float()) for g, x in zip(got, v,
                                                                               strict=True))
        elif k == "bbox":
            assert got.shape == (4,)
            assert (got.tolist() == v) if v is not None else bool(torch.isnan(got).all())
        else:
            assert got == v, k


@pytest.mark.parametrize("config", CONFIGS)
def test_items_are_the_streamed_rows_in_order(tiny_root, config):
    m = read_manifest(tiny_root)
    for split in schema.SPLITS:
        ds = SARLANG1M(str(tiny_root), split=split, config=config)
        rows = _streamed(tiny_root, config, split)
        assert len(ds) == len(rows) == m["configs"][config][split]
        order = list(range(len(ds)))
        random.Random(0).shuffle(order)  # random access: any order gives the same rows
        for i in order:
            _same(ds[i], rows[i])
        if len(ds):
            _same(ds[-1], rows[-1])
        with pytest.raises(IndexError, match="out of range"):
            ds[len(ds)]


def test_lookup_equals_the_streamed_sample(tiny_root):
    m = read_manifest(tiny_root)
    streamed = {}
    for shard in m["shards"]:
        for s in iter_samples(str(tiny_root / shard["path"])):
            streamed[s["__key__"]] = s
    for key, s in streamed.items():
        assert sample_by_key(tiny_root, key) == s


def test_filters_transforms_plot_and_a_dataloader(tiny_root):
    ds = SARLANG1M(str(tiny_root), split="train", config="region_referring",
                   sources=["sardet100k"], tiers="mr")
    want = [r for r in _streamed(tiny_root, "region_referring", "train")
            if r["source"] == "sardet100k" and r["tier"] == "mr"]
    assert len(ds) == len(want) > 0
    assert [ds[i]["key"] for i in range(len(ds))] == [r["key"] for r in want]

    def half(item):  # a torchgeo-style transform: the item in, the item out
        c, h, w = item["image"].shape
        item["image"] = torch.nn.functional.interpolate(item["image"][None], size=(h // 2,
                                                        w // 2))[0]
        return item

    small = SARLANG1M(str(tiny_root), split="train", config="region_referring",
                      transforms=half)
    item = small[0]
    assert item["image"].shape[1:] == (item["height"] // 2, item["width"] // 2)
    fig = small.plot(item)
    from matplotlib.patches import Rectangle

    (box,) = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]
    x, y, w, h = item["bbox"].tolist()
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == pytest.approx(
        (x / 2, y / 2, w / 2, h / 2), abs=0.51)  # boxes follow the resize
    vqa = SARLANG1M(str(tiny_root), split="test", config="vqa")
    loader = torch.utils.data.DataLoader(vqa, batch_size=16, num_workers=2,
                                         collate_fn=stack_items)
    keys, boxes = [], []
    for batch in loader:
        keys += batch["key"]
        boxes.append(batch["bbox"])
        assert isinstance(batch["question"], list)
    assert keys == [r["key"] for r in _streamed(tiny_root, "vqa", "test")]
    assert torch.cat(boxes).shape == (len(vqa), 4)


@pytest.fixture(scope="module")
def nginx(tiny_root, tmp_path_factory):
    with servers.start_nginx(tiny_root, tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


def test_over_http_each_sample_is_one_range_request(tiny_root, nginx):
    local = SARLANG1M(str(tiny_root), split="train", config="vqa")
    before = len(nginx.access_entries())
    remote = SARLANG1M(nginx.url, split="train", config="vqa", cache_samples=1)
    assert len(remote) == len(local)
    for i in range(len(remote)):
        a, b = remote[i], local[i]
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], torch.Tensor):
                assert torch.equal(a[k].nan_to_num(-1), b[k].nan_to_num(-1)), k
            else:
                assert a[k] == b[k], k
    gets = [e for e in nginx.wait_for_entries(before + len(remote.keys))[before:]
            if "/data/" in e.uri]
    assert len(gets) == len(remote.keys)  # one request per sample, its rows share it
    assert all(e.status == 206 and e.range for e in gets)
    sizes = {k: r for k, r in zip(remote.keys, remote._rows, strict=True)}
    assert sum(e.body_bytes_sent for e in gets) == sum(r["size"] for r in sizes.values())
    key = remote.keys[0]
    assert samples_at(nginx.url, [remote._rows[0]])[0]["json"] == sample_by_key(
        tiny_root, key)["json"]


def test_refusals_are_clear(synth_tiny, tiny_root, tmp_path):
    with pytest.raises(ConfigError, match="unknown config"):
        SARLANG1M(str(tiny_root), config="vqaa")
    with pytest.raises(ConfigError, match="split='val'"):
        SARLANG1M(str(tiny_root), split="val")
    root = tmp_path / "zst"
    build(synth_tiny / "SARLANG_1M", root, BuildOptions(gsd_table=synth_tiny / "gsd_table.csv",
          workers=1, compress="archive"), progress=False)
    with pytest.raises(ConfigError, match=r"whole-archive zstd.*--compress none"):
        SARLANG1M(str(root), config="vqa")
    # the lookup itself reads a .tar.zst shard through: same sample
    key = read_manifest(root)["shards"][0]["path"]
    assert key.endswith(".tar.zst")
    first = next(iter_samples(str(root / key)))
    assert sample_by_key(root, first["__key__"]) == first


def test_show_over_http_draws_what_it_draws_locally(tiny_root, nginx, tmp_path):
    from sarlang_data.cli import main as cli_main

    key = SARLANG1M(str(tiny_root), split="test", config="region_referring").keys[0]
    before = len(nginx.access_entries())
    for where, out in ((nginx.url, tmp_path / "remote.png"), (str(tiny_root), tmp_path / "l.png")):
        assert cli_main(["show", key, "--data", where, "--out", str(out)]) == 0
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "l.png").read_bytes()
    data = [e for e in nginx.wait_for_entries(before + 1)[before:] if "/data/" in e.uri]
    assert len(data) == 1 and data[0].status == 206  # one range read of the sample
