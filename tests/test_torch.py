"""DataLoader iteration, balanced assignment, equalize, shuffle, exact resume, collate."""

import collections
import io
import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sarlang_data.adapters import hf
from sarlang_data.adapters import torch as st
from sarlang_data.adapters.hf import iterable
from sarlang_data.configs import get_config
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_index, read_manifest
from sarlang_data.schema import text_id
from sarlang_data.stream import partition, shuffle


@pytest.fixture(scope="module")
def index(tiny_root):
    return read_index(tiny_root).to_pylist()


def _load(root, name, tmp_path, **kw):
    kw.setdefault("decode", False)
    return hf.load_dataset(str(root), name, streaming=True, cache_dir=str(tmp_path / "c"), **kw)


def _ident(row):
    """A row's identity: its key and its text's id (or the image-centric row's key)."""
    return (row["key"], row.get("id") or "")


def _expected(name, index, split, keep=lambda r: True):
    cfg = get_config(name)
    out = collections.Counter()
    for r in index:
        if r["split"] != split or not keep(r) or (cfg.tier and r["tier"] != cfg.tier):
            continue
        if cfg.unit == "image":
            out[(r["key"], "")] += 1
        else:
            for t in cfg.select_texts({"captions": r["captions"], "qa": r["qa"]}):
                out[(r["key"], text_id(r["key"], t))] += 1
    return out


def _fake_read(counts):
    """A read(shard, start, end) over synthetic shards: row k of shard s is (s, k)."""

    def read(s, start, end):
        for k in range(start, min(end, counts[s])):
            yield k, (s, k), {"id": (s, k)}

    return read


# --------------------------------------------------------------------------- planning


def test_balanced_bins_are_a_partition_and_even():
    rng = random.Random(5)
    for _ in range(200):
        weights = [rng.choice([0, 1, 3, 50, 200]) + rng.randrange(40)
                   for _ in range(rng.randrange(1, 30))]
        n = rng.randrange(1, 8)
        bins = partition.balanced_bins(weights, n)
        assert len(bins) == n
        assert sorted(i for b in bins for i in b) == list(range(len(weights)))
        loads = [sum(weights[i] for i in b) for b in bins]
        assert max(loads) - min(loads) <= max(weights)
        assert max(loads) <= sum(weights) / n + max(weights)
        assert bins == partition.balanced_bins(weights, n)  # deterministic
        assert all(b == sorted(b) for b in bins)


def _rows_of(part):
    return [(shard, k) for shard, first, end in part.segments for k in range(first, end)]


def test_split_cuts_the_row_stream_into_ranges_within_one_row():
    rng = random.Random(5)
    for _ in range(300):
        counts = [rng.choice([0, 1, 3, 50, 200]) + rng.randrange(40)
                  for _ in range(rng.randrange(1, 30))]
        order = rng.sample(range(len(counts)), len(counts))
        whole = partition.whole(counts, order)
        n = rng.randrange(1, 9)
        parts = [partition.split(whole, n, i) for i in range(n)]
        sizes = [p.rows for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == whole.rows == sum(counts)
        assert sizes == sorted(sizes, reverse=True)  # the first rows % n readers get one more
        # contiguous ranges of the reading order, one after another: together the whole
        assert [r for p in parts for r in _rows_of(p)] == _rows_of(whole)
        for p in parts:
            assert all(0 <= first < end <= counts[s] for s, first, end in p.segments)
            assert len(set(p.shards)) == len(p.shards)
        assert parts == [partition.split(whole, n, i) for i in range(n)]  # deterministic


def test_a_range_may_start_and_end_inside_a_shard():
    whole = partition.whole([5, 7, 2])
    assert whole.segments == ((0, 0, 5), (1, 0, 7), (2, 0, 2))
    parts = [partition.split(whole, 4, i) for i in range(4)]
    assert [p.segments for p in parts] == [((0, 0, 4),), ((0, 4, 5), (1, 0, 3)),
                                           ((1, 3, 6),), ((1, 6, 7), (2, 0, 2))]
    assert [p.rows for p in parts] == [4, 4, 3, 3]
    assert partition.whole([0, 3, 0]).shards == (1,)  # shards without rows are not read at all
    # more readers than rows: the last ones get nothing, the others one row each
    assert [partition.split(partition.whole([2]), 3, i).rows for i in range(3)] == [1, 1, 0]


def test_nested_splits_read_every_row_exactly_once():
    rng = random.Random(11)
    for _ in range(150):
        counts = [rng.randrange(0, 9) for _ in range(rng.randrange(1, 12))]
        order = rng.sample(range(len(counts)), len(counts))
        world = rng.randrange(1, 5)
        workers = rng.randrange(1, 6)
        seen = collections.Counter()
        for rank in range(world):
            node, _ = partition.node_part(counts, order, (rank, world))
            for w in range(workers):
                part = partition.split(node, workers, w)
                got = [key for _, key, _ in shuffle.iter_part(part, _fake_read(counts),
                                                              shuffle.fresh_state(part))]
                assert len(got) == part.rows
                seen.update(got)
        assert seen == collections.Counter((s, k) for s, c in enumerate(counts)
                                           for k in range(c))


@pytest.mark.parametrize("mode", ["auto", "drop", "repeat"])
def test_equalize_gives_every_rank_the_same_rows(mode):
    rng = random.Random(3)
    for _ in range(100):
        counts = [rng.randrange(1, 30) for _ in range(rng.randrange(1, 14))]
        world = rng.randrange(2, 5)
        if sum(counts) < world:
            continue
        plain = [partition.node_part(counts, None, (r, world))[0].rows for r in range(world)]
        lo, hi = min(plain), max(plain)
        assert hi - lo <= 1  # row-level ranges: equalize changes fewer rows than ranks
        parts, eqs = zip(*(partition.node_part(counts, None, (r, world), mode)
                           for r in range(world)), strict=True)
        target = parts[0].target
        expected = {"drop": lo, "repeat": hi}.get(mode) or (
            lo if sum(plain) - world * lo <= world * hi - sum(plain) else hi)
        assert target == expected
        assert eqs[0].dropped == sum(plain) - world * lo if target == lo else eqs[0].dropped == 0
        assert eqs[0].dropped + eqs[0].repeated < world
        for r in range(world):
            workers = rng.randrange(1, 4)
            total = []
            for w in range(workers):
                part = partition.split(parts[r], workers, w)
                total += [k for _, k, _ in shuffle.iter_part(part, _fake_read(counts),
                                                             shuffle.fresh_state(part))]
            assert len(total) == target
            own = collections.Counter(k for _, k, _ in shuffle.iter_part(
                partition.node_part(counts, None, (r, world))[0], _fake_read(counts),
                shuffle.fresh_state(parts[r])))
            got = collections.Counter(total)
            # dropping keeps a subset of the rank's rows; repeating keeps all of them
            assert all(got[k] <= (1 if target <= own.total() else 2 + target // max(1, len(own)))
                       for k in got)
            assert set(got) <= set(own)
            if target >= own.total():
                assert set(got) == set(own)


def test_equalize_refuses_ranks_without_rows():
    with pytest.raises(ConfigError, match=r"rank \d of 4 has no rows \(3 rows in the selection\)"):
        partition.node_part([3], None, (0, 4), "auto")
    with pytest.raises(ConfigError, match="equalize='sideways'"):
        partition.check_equalize("sideways")


def test_apportion():
    assert partition.apportion(10, [3, 3, 4]) == [3, 3, 4]
    assert partition.apportion(7, [3, 3, 4]) == [2, 2, 3]
    assert partition.apportion(13, [3, 3, 4]) == [4, 4, 5]
    assert partition.apportion(5, [0, 4, 4]) == [0, 3, 2]
    assert partition.apportion(0, [0, 0]) == [0, 0]
    with pytest.raises(ConfigError, match="has none to repeat"):
        partition.apportion(2, [0, 0])


def test_node_from_env(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert partition.node_from_env() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert partition.node_from_env() == (1, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert partition.node_from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        partition.node_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match=r"rank must be in 0..world_size-1"):
        partition.node_from_env()


# --------------------------------------------------------------------------- DataLoader


@pytest.mark.parametrize("num_workers", [0, 1, 2, 4])
@pytest.mark.parametrize("name", ["vqa", "captions", "chat"])
def test_dataloader_reads_every_row_once(name, num_workers, tiny_root, index, tmp_path):
    ds = _load(tiny_root, name, tmp_path, split="train")
    loader = DataLoader(ds, batch_size=5, num_workers=num_workers, collate_fn=list)
    got = collections.Counter(_ident(r) for batch in loader for r in batch)
    assert got == _expected(name, index, "train")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_over_a_prepared_dataset(num_workers, tiny_root, index, tmp_path):
    ds = hf.load_dataset(str(tiny_root), "captions", split="test", decode=False,
                         cache_dir=str(tmp_path / "c"))
    loader = DataLoader(ds, batch_size=4, num_workers=num_workers, collate_fn=list)
    assert collections.Counter(_ident(r) for b in loader for r in b) == _expected(
        "captions", index, "test")


def test_workers_read_balanced_shares(tiny_root, tmp_path):
    ds = _load(tiny_root, "vqa", tmp_path, split="train")
    inner = ds._ex_iterable.ex_iterable
    counts = inner.counts
    for n in (2, 4):
        rows = []
        for i in range(n):
            worker = inner.shard_data_sources(n, i)
            got = list(worker)  # what this worker yields, read for real
            assert len(got) == worker.plan()[0].rows
            rows.append(len(got))
        assert sum(rows) == sum(counts)
        assert max(rows) - min(rows) <= max(counts)
        by_count = [sum(counts[i::n]) for i in range(n)]
        assert max(rows) - min(rows) < max(by_count) - min(by_count)


def test_fewer_shards_than_workers_split_rows_and_seek_to_their_sample(
        tiny_root, index, tmp_path, monkeypatch):
    from sarlang_data.stream import reader

    ds = _load(tiny_root, "vqa", tmp_path, split="train", cities=["rotterdam"])
    assert ds.n_shards == 1
    expected = _expected("vqa", index, "train", keep=lambda r: r["city"] == "rotterdam")
    loader = DataLoader(ds, batch_size=None, num_workers=4)
    assert collections.Counter(_ident(r) for r in loader) == expected
    inner = ds._ex_iterable.ex_iterable
    opened = []
    real = reader.open_url
    monkeypatch.setattr(reader, "open_url", lambda url, *a, **k: opened.append(
        k.get("offset", 0)) or real(url, *a, **k))
    parts = [list(inner.split_rows(3, i)) for i in range(3)]
    assert sum(len(p) for p in parts) == expected.total()
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    # readers 1 and 2 start inside the shard: at the byte offset index.parquet gives for
    # the sample their first row is in, not at the shard's start
    shard = inner.urls[inner.plan()[0].shards[0]]
    rel = shard[len(str(tiny_root)) + 1:]
    samples = [r for r in index if r["shard"] == rel]
    rows_before, starts = 0, {}
    for r in samples:
        starts[r["offset"]] = (rows_before, rows_before + len(r["qa"]))
        rows_before += len(r["qa"])
    assert len(opened) == 3 and opened[0] == 0
    firsts = [len(parts[0]), len(parts[0]) + len(parts[1])]
    for offset, first in zip(opened[1:], firsts, strict=True):
        lo, hi = starts[offset]  # the sample holding the reader's first row
        assert offset > 0 and lo <= first < hi


def test_n_shards_counts_only_shards_with_rows(tiny_root, tmp_path, monkeypatch):
    from sarlang_data.stream import reader

    manifest = read_manifest(tiny_root)
    with_captions = [s for s in manifest["shards"] if s["split"] == "train"
                     and s["configs"]["captions"]]
    ds = _load(tiny_root, "captions", tmp_path, split="train")
    assert ds.n_shards == len(with_captions) < sum(
        s["split"] == "train" for s in manifest["shards"])
    opened = []
    real = reader.open_url
    monkeypatch.setattr(reader, "open_url", lambda url, *a, **k: opened.append(url) or real(
        url, *a, **k))
    list(ds)
    assert sorted(opened) == sorted(str(tiny_root / s["path"]) for s in with_captions)


def test_source_filter_counts_rows_from_the_index(tiny_root, index, tmp_path):
    b = hf.SarlangBuilder(cache_dir=str(tmp_path / "c"), config_name="vqa",
                          data_dir=str(tiny_root), decode=False, sources=["dfc2023"])
    urls, counts, _ = b.shard_rows("train")
    per_shard = collections.Counter()
    for r in index:
        if r["split"] == "train" and r["source"] == "dfc2023":
            per_shard[str(tiny_root / r["shard"])] += len(r["qa"])
    assert dict(zip(urls, counts, strict=True)) == {u: per_shard[u] for u in urls}
    ds = b.as_streaming_dataset(split="train")
    assert sum(1 for _ in ds) == sum(counts)


# --------------------------------------------------------------------------- shuffle


def test_shuffle_permutes_rows_by_seed_and_epoch(tiny_root, index, tmp_path):
    ds = _load(tiny_root, "vqa", tmp_path, split="train")
    plain = [_ident(r) for r in ds]
    s1 = ds.shuffle(seed=1, buffer_size=16)
    a = [_ident(r) for r in s1]
    assert collections.Counter(a) == collections.Counter(plain) and a != plain
    assert a == [_ident(r) for r in ds.shuffle(seed=1, buffer_size=16)]
    assert a != [_ident(r) for r in ds.shuffle(seed=2, buffer_size=16)]
    s1.set_epoch(1)
    b = [_ident(r) for r in s1]
    assert collections.Counter(b) == collections.Counter(plain) and b != a
    assert [_ident(r) for r in ds] == plain  # the original is untouched
    # shard order alone (buffer of one row) changes too
    firsts = {_ident(next(iter(ds.shuffle(seed=s, buffer_size=1)))) for s in range(6)}
    assert len(firsts) > 1
    with pytest.raises(ConfigError, match="buffer_size=0"):
        ds.shuffle(seed=1, buffer_size=0)


def test_shuffled_ranks_agree_on_the_shard_order(tiny_root, tmp_path):
    world = 3
    parts = []
    for rank in range(world):
        ds = _load(tiny_root, "vqa", tmp_path, split="train", distributed=(rank, world))
        s = ds.shuffle(seed=7, buffer_size=8)
        s.set_epoch(2)
        parts.append([_ident(r) for r in s])
    everything = [_ident(r) for r in _load(tiny_root, "vqa", tmp_path, split="train")]
    assert collections.Counter(x for p in parts for x in p) == collections.Counter(everything)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    ds = _load(tiny_root, "vqa", tmp_path, split="train", distributed=(0, world))
    with pytest.raises(ConfigError, match="every rank must shuffle alike"):
        ds.shuffle(buffer_size=8)


# --------------------------------------------------------------------------- resume


def _ids(rows):
    return [_ident(r) for r in rows]


@pytest.mark.parametrize("stop", [0, 1, 15, 16, 17, 120, 259, 260])
def test_resume_in_process_is_exact(stop, tiny_root, tmp_path):
    def fresh():
        s = _load(tiny_root, "vqa", tmp_path, split="train").shuffle(seed=5, buffer_size=16)
        s.set_epoch(3)
        return s

    full = _ids(fresh())
    assert len(full) == 260
    ds = fresh()
    it = iter(ds)
    head = [_ident(next(it)) for _ in range(stop)]
    state = ds.state_dict()
    again = fresh()
    again.load_state_dict(state)
    assert head + _ids(again) == full
    again.load_state_dict(state)  # a state is used by one iteration only
    list(again)
    assert _ids(again) == full


def _batches(loader, stop=None):
    out = []
    for i, batch in enumerate(loader):
        out.append([_ident(r) for r in batch])
        if stop is not None and i + 1 == stop:
            break
    return out


@pytest.mark.parametrize("stop", [1, 4, 9, 17])
def test_stateful_dataloader_resumes_exactly_with_two_workers(stop, tiny_root, tmp_path):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def loader():
        s = _load(tiny_root, "vqa", tmp_path, split="train").shuffle(seed=9, buffer_size=20)
        return StatefulDataLoader(s, batch_size=7, num_workers=2, collate_fn=list)

    full = _batches(loader())
    rows = [x for b in full for x in b]
    assert len(rows) == 260 and len(set(rows)) == len(rows)  # vqa rows are distinct
    first = loader()
    head = _batches(first, stop)
    state = first.state_dict()
    second = loader()
    second.load_state_dict(state)
    rest = _batches(second)
    assert head + rest == full  # no row lost or repeated, in the very same order


def test_a_state_of_another_plan_is_refused(tiny_root, tmp_path):
    ds = _load(tiny_root, "vqa", tmp_path, split="train").shuffle(seed=1, buffer_size=4)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    other = _load(tiny_root, "vqa", tmp_path, split="train").shuffle(seed=2, buffer_size=4)
    other.load_state_dict(state)
    with pytest.raises(ConfigError, match="other shards, seed, rank or number of DataLoader"):
        next(iter(other))
    with pytest.raises(ConfigError, match="not a state of a sarlang_data stream"):
        other.load_state_dict({"examples_iterable": {}, "epoch": 0})


def test_equalize_in_process_ranks(tiny_root, index, tmp_path, caplog):
    world = 3
    with caplog.at_level(logging.INFO, logger="sarlang_data.adapters.hf"):
        parts = [_ids(_load(tiny_root, "vqa", tmp_path, split="train", equalize=True,
                            distributed=(r, world))) for r in range(world)]
    assert len({len(p) for p in parts}) == 1
    assert any("equalize: every rank yields" in r.message for r in caplog.records)
    plain = [_ids(_load(tiny_root, "vqa", tmp_path, split="train", distributed=(r, world)))
             for r in range(world)]
    for p, q in zip(parts, plain, strict=True):
        assert set(p) <= set(q)
    with pytest.raises(ConfigError, match="need streaming=True"):
        hf.load_dataset(str(tiny_root), "vqa", split="train", equalize=True,
                        cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match=r"distributed=\(2, 2\)"):
        _load(tiny_root, "vqa", tmp_path, distributed=(2, 2))


# --------------------------------------------------------------------------- collate


def test_collate_images_texts_and_metadata(tiny_root, tmp_path):
    rows = list(_load(tiny_root, "vqa", tmp_path, split="test", decode=True))[:6]
    raw = list(_load(tiny_root, "vqa", tmp_path, split="test"))[:6]
    batch = st.collate(rows)
    assert set(batch) == set(rows[0])
    assert batch["question"] == [r["question"] for r in rows]
    assert batch["key"] == [r["key"] for r in rows] and batch["bbox"] == [r["bbox"] for r in rows]
    assert batch["gsd_m"].dtype == torch.float64
    assert batch["gsd_m"].tolist() == [r["gsd_m"] for r in rows]
    images = batch["image"] if isinstance(batch["image"], list) else list(batch["image"])
    for t, r in zip(images, rows, strict=True):
        pixels = np.asarray(r["image"])
        assert t.dtype == torch.uint8 and t.shape == (1, *pixels.shape)
        assert np.array_equal(t[0].numpy(), pixels)
    from_bytes = st.collate(raw)  # decode=False rows give the same tensors
    other = from_bytes["image"] if isinstance(from_bytes["image"], list) else list(
        from_bytes["image"])
    assert all(torch.equal(a, b) for a, b in zip(images, other, strict=True))


def test_collate_with_a_transform_stacks_and_normalises(tiny_root, tmp_path):
    rows = list(_load(tiny_root, "images", tmp_path, split="train", decode=True))[:8]
    sizes = {r["image"].size for r in rows}
    plain = st.collate(rows)
    if len(sizes) > 1:
        assert isinstance(plain["image"], list)
    tf = st.ResizeNormalize(32, mean=[0.5], std=[0.25])
    batch = st.collate(rows, image_transform=tf)
    assert batch["image"].shape == (8, 1, 32, 32) and batch["image"].dtype == torch.float32
    expect = np.asarray(rows[0]["image"].resize((32, 32), Image.BILINEAR), np.float32)
    assert torch.allclose(batch["image"][0, 0], torch.from_numpy((expect / 255 - 0.5) / 0.25),
                          atol=1e-5)
    rgb = st.collate(rows, image_transform=st.ResizeNormalize((40, 24), mode="RGB"))
    assert rgb["image"].shape == (8, 3, 24, 40)
    assert batch["captions"] == [r["captions"] for r in rows]
    chat = list(_load(tiny_root, "chat", tmp_path, split="test"))[:3]
    c = st.collate(chat, image_transform=st.ResizeNormalize(16))
    assert [len(x) for x in c["images"]] == [1, 1, 1] and c["images"][0][0].shape == (1, 16, 16)
    assert c["messages"] == [r["messages"] for r in chat]
    with pytest.raises(TypeError, match="cannot make an image of a str"):
        st.collate([{"image": "x.png"}])


def test_collate_in_a_dataloader(tiny_root, tmp_path):
    import functools

    ds = _load(tiny_root, "vqa", tmp_path, split="train", decode=True)
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=functools.partial(
        st.collate, image_transform=st.ResizeNormalize(24)))
    batches = list(loader)
    assert sum(len(b["question"]) for b in batches) == 260
    assert all(b["image"].shape[1:] == (1, 24, 24) for b in batches)


def _mixed_rows():
    rng = np.random.default_rng(3)
    shapes = {"a": (5, 7), "b": (9, 4), "c": (6, 6, 3)}
    pixels = {k: rng.integers(0, 256, s, dtype=np.uint8) for k, s in shapes.items()}
    rows = [{"key": k, "image": Image.fromarray(pixels[k]), "question": f"q{i}"}
            for i, k in enumerate("abacbb")]
    return rows, pixels


def _chw(array):
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def test_collate_packs_images_of_mixed_shapes_into_one_buffer(monkeypatch):
    import pickle

    rows, pixels = _mixed_rows()
    images = st.collate(rows)["image"]
    assert isinstance(images, st.ImageList) and isinstance(images, list) and len(images) == 6
    for t, row in zip(images, rows, strict=True):
        assert t.dtype == torch.uint8 and np.array_equal(t.numpy(), _chw(pixels[row["key"]]))
    # one buffer for the batch; rows of one sample share one view of it
    assert len({t.untyped_storage().data_ptr() for t in images}) == 1
    assert images[0] is images[2] and images[1] is images[4] is images[5]
    assert images[0] is not images[1] and images[3] is not images[1]
    assert sum(t.numel() for t in {id(t): t for t in images}.values()) == (
        images[0].untyped_storage().nbytes())
    again = pickle.loads(pickle.dumps(images))
    assert isinstance(again, st.ImageList) and again[1] is again[5]
    assert len({t.untyped_storage().data_ptr() for t in again}) == 1
    assert all(torch.equal(a, b) for a, b in zip(images, again, strict=True))
    # replaced items: it pickles as the list it has become
    images[1] = torch.zeros(1, 2, 2, dtype=torch.uint8)
    changed = pickle.loads(pickle.dumps(images))
    assert torch.equal(changed[1], images[1]) and torch.equal(changed[0], images[0])
    # pin_memory (no CUDA here: a stand-in that copies) pins the one buffer once
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory",
                        lambda self, device=None: pinned.append(self.numel()) or self.clone())
    fresh = st.collate(rows)["image"]
    moved = fresh.pin_memory()
    assert pinned == [fresh[0].untyped_storage().nbytes()] and isinstance(moved, st.ImageList)
    assert all(torch.equal(a, b) for a, b in zip(fresh, moved, strict=True))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "F", "LA", "P", "1"])
def test_pixels_of_every_mode_equal_numpy_s(mode):
    rng = np.random.default_rng(5)
    base = Image.fromarray(rng.integers(0, 256, (7, 11, 3), dtype=np.uint8))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(
        rng.integers(0, 65536, (7, 11), dtype=np.uint16))
    want = np.asarray(image)
    got = st._array_of(image)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    tensor = st.image_tensor(image)
    assert tuple(tensor.shape) == ((1, 7, 11) if want.ndim == 2 else (want.shape[2], 7, 11))


def test_pixels_of_a_large_image_fall_back_to_a_copy():
    # Pillow stores an image this large in several blocks, which its Arrow export refuses
    image = Image.new("L", (4200, 4200), 7)
    image.putpixel((4199, 4199), 9)
    got = st._array_of(image)
    assert got.shape == (4200, 4200) and got[-1, -1] == 9 and got[0, 0] == 7


def test_collate_packs_transformed_tensors_and_keeps_mixed_dtypes_apart():
    rows, pixels = _mixed_rows()

    def to_float(image):  # a transform returning tensors of the image's own shape
        return torch.from_numpy(_chw(np.asarray(image)).astype(np.float32) / 2)

    images = st.collate(rows, image_transform=to_float)["image"]
    assert isinstance(images, st.ImageList) and images[0].dtype == torch.float32
    assert len({t.untyped_storage().data_ptr() for t in images}) == 1
    for t, row in zip(images, rows, strict=True):
        assert np.array_equal(t.numpy(), _chw(pixels[row["key"]]).astype(np.float32) / 2)

    def mixed(image):  # uint8 for some images, float for others: no common buffer
        a = np.asarray(image)
        return a if a.ndim == 3 else a.astype(np.float64)

    out = st.collate(rows, image_transform=mixed)["image"]
    assert type(out) is list and [t.dtype for t in out] == [
        torch.float64, torch.float64, torch.float64, torch.uint8, torch.float64, torch.float64]
    assert all(np.array_equal(t.numpy(), _chw(np.asarray(mixed(r["image"]))))
               for t, r in zip(out, rows, strict=True))


def _memfd_ranges(pid="self"):
    """Address ranges of this process's mappings of the batch pool's memfd segments."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "memfd:sarlang-batch" in line:
                lo, hi = line.split()[0].split("-")
                out.append((int(lo, 16), int(hi, 16)))
    return out


def _in_pool_segment(tensor):
    ptr = tensor.untyped_storage().data_ptr()
    return any(lo <= ptr < hi for lo, hi in _memfd_ranges())


def _crossed_shared(tensor):
    """Did a batch tensor cross in shared memory (a pool segment or torch's own)?"""
    return tensor.is_shared() or _in_pool_segment(tensor)


def _worker_segments(loader_iter):
    """Pool segments (memfd file descriptors) each live DataLoader worker holds."""
    import os

    counts = []
    for w in loader_iter._workers:  # torch's worker processes
        fds = f"/proc/{w.pid}/fd"
        # distinct files: a descriptor duplicated to send it is the same segment
        counts.append(len({os.stat(f"{fds}/{fd}").st_ino for fd in os.listdir(fds)
                           if "memfd:sarlang-batch" in os.readlink(f"{fds}/{fd}")}))
    return counts


@pytest.mark.parametrize("pipe_bytes", [0, 2 << 20])
def test_collate_crosses_from_dataloader_workers_as_one_tensor_per_batch(
        pipe_bytes, tiny_root, tmp_path, monkeypatch):
    # the workers fork after this: 0 sends every batch through shared memory, the default
    # pipes the tiny root's small batches by value
    monkeypatch.setattr(st, "PIPE_BYTES", pipe_bytes)
    ds = _load(tiny_root, "vqa", tmp_path, split="train", decode=True)
    direct = {}
    for row in ds:
        direct.setdefault(row["key"], np.asarray(row["image"]))
    sizes = {a.shape for a in direct.values()}
    assert len(sizes) > 1, "the tiny root should hold images of several sizes"
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=st.collate)
    rows, kinds = 0, set()
    for batch in loader:
        images = batch["image"]
        rows += len(images)
        if isinstance(images, torch.Tensor):  # one shape in this batch: stacked
            assert type(images) is torch.Tensor  # the main process gets a plain tensor
            kinds.add(("stacked", _crossed_shared(images)))
        else:
            assert isinstance(images, st.ImageList)
            assert len({t.untyped_storage().data_ptr() for t in images}) == 1
            kinds.add(("packed", _crossed_shared(images[0])))
            images[0].add_(0)  # writable, as any tensor
        for key, t in zip(batch["key"], images, strict=True):
            assert np.array_equal(t.numpy(), _chw(direct[key]))
    assert rows == read_manifest(tiny_root)["configs"]["vqa"]["train"]
    assert {shared for _, shared in kinds} == {pipe_bytes == 0}


def test_pooled_batches_are_never_overwritten_while_the_main_process_holds_them(
        tiny_root, tmp_path, monkeypatch):
    # every batch goes through shared memory (PIPE_BYTES 0) and all are kept: a worker may
    # reuse a segment only once its batch is dropped, so past MAX_SEGMENTS held batches it
    # falls back to torch's shared memory, and every batch keeps its pixels to the end
    from sarlang_data.adapters import shm_pool

    monkeypatch.setattr(st, "PIPE_BYTES", 0)
    monkeypatch.setattr(shm_pool, "MAX_SEGMENTS", 3)
    ds = _load(tiny_root, "images", tmp_path, split="train", decode=True)
    direct = {row["key"]: _chw(np.asarray(row["image"])) for row in ds}
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=st.collate)
    held = list(loader)
    assert sum(len(b["key"]) for b in held) == len(direct) > 2 * 3 * 2
    pooled = [all(_in_pool_segment(t) for t in _images(b)) for b in held]
    torch_shm = [all(t.is_shared() for t in _images(b)) for b in held]
    assert all(p or s for p, s in zip(pooled, torch_shm, strict=True))
    assert sum(pooled) == 2 * 3  # each worker's 3 segments, each still held
    for batch in held:
        for key, t in zip(batch["key"], _images(batch), strict=True):
            assert np.array_equal(t.numpy(), direct[key]), key


def _images(batch):
    images = batch["image"]
    return list(images) if isinstance(images, torch.Tensor) else images


def test_workers_reuse_pool_segments_once_batches_are_dropped(tiny_root, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(st, "PIPE_BYTES", 0)
    ds = _load(tiny_root, "images", tmp_path, split="train", decode=True)
    direct = {row["key"]: _chw(np.asarray(row["image"])) for row in ds}
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=st.collate,
                        persistent_workers=True)
    def check(batch):  # its locals die with it: nothing keeps the batch's memory
        assert all(_in_pool_segment(t) for t in _images(batch))
        for key, t in zip(batch["key"], _images(batch), strict=True):
            assert np.array_equal(t.numpy(), direct[key]), key

    it = iter(loader)
    batches = 0
    for batch in it:
        batches += 1
        check(batch)
        del batch  # dropped: its segment goes back to its worker
    segments = _worker_segments(it)
    # each worker made a segment for a batch only while its earlier ones were in flight
    # (prefetch_factor 2, the one being read), not one per batch
    assert batches >= 10 and all(1 <= n <= 4 for n in segments), (batches, segments)
    assert sum(segments) < batches


def test_chat_images_cross_from_workers_in_one_buffer_per_batch(tiny_root, tmp_path):
    import pickle

    ds = _load(tiny_root, "chat", tmp_path, split="train", decode=True)
    direct = {row["key"]: [np.asarray(im) for im in row["images"]] for row in ds}
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=st.collate)
    rows = 0
    for batch in loader:
        images = batch["images"]
        assert len(images) == len(batch["key"])
        assert len({t.untyped_storage().data_ptr() for row in images for t in row}) == 1
        for key, row in zip(batch["key"], images, strict=True):
            assert type(row) is list and len(row) == len(direct[key])
            for t, want in zip(row, direct[key], strict=True):
                assert np.array_equal(t.numpy(), _chw(want))
        rows += len(images)
    assert rows == read_manifest(tiny_root)["configs"]["chat"]["train"]
    local = st.collate(list(ds.take(5)))["images"]
    again = pickle.loads(pickle.dumps(local))
    assert [len(r) for r in again] == [len(r) for r in local]
    assert len({t.untyped_storage().data_ptr() for row in again for t in row}) == 1
    assert all(torch.equal(a, b) for ra, rb in zip(local, again, strict=True)
               for a, b in zip(ra, rb, strict=True))
    local[0].append(torch.zeros(1, 2, 2, dtype=torch.uint8))  # changed: pickles as lists
    changed = pickle.loads(pickle.dumps(local))
    assert [len(r) for r in changed] == [len(r) for r in local]
    assert torch.equal(changed[0][-1], local[0][-1])


def test_small_batches_pickle_by_value_in_workers(monkeypatch):
    import pickle

    rows, pixels = _mixed_rows()
    same = [{"key": str(i), "image": Image.fromarray(pixels["a"])} for i in range(3)]
    monkeypatch.setattr(st, "worker_info", lambda: (0, 2))  # as inside a DataLoader worker
    stacked = st.collate(same)["image"]
    assert isinstance(stacked, torch.Tensor) and not stacked.is_shared()
    assert type(stacked) is not torch.Tensor  # the by-value subclass, until pickled
    back = pickle.loads(pickle.dumps(stacked))
    assert type(back) is torch.Tensor and torch.equal(back, stacked.as_subclass(torch.Tensor))
    assert type(stacked.float() / 255) is torch.Tensor  # what a wrapping collate makes of it
    packed = st.collate(rows)["image"]
    assert not packed[0].is_shared()
    again = pickle.loads(pickle.dumps(packed))
    assert isinstance(again, st.ImageList) and again[1] is again[4]
    assert all(torch.equal(a, b) for a, b in zip(packed, again, strict=True))
    monkeypatch.setattr(st, "PIPE_BYTES", 1)  # everything in shared memory: the pool's
    big = st.collate(same)["image"]
    assert _in_pool_segment(big) and type(big) is not torch.Tensor
    back = pickle.loads(pickle.dumps(big))  # maps the segment again, as the main process does
    assert type(back) is torch.Tensor and torch.equal(back, big.as_subclass(torch.Tensor))
    assert back.data_ptr() != big.data_ptr()
    listed = st.collate(rows)["image"]
    assert _in_pool_segment(listed[0])
    again = pickle.loads(pickle.dumps(listed))
    assert isinstance(again, st.ImageList) and again[1] is again[4]
    assert all(torch.equal(a, b) for a, b in zip(listed, again, strict=True))


def test_collate_reads_pixel_members(monkeypatch):
    from sarlang_data.format import codec

    pixels = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)
    member = codec.encode_image(Image.fromarray(pixels)).member
    with monkeypatch.context() as m:  # straight to an array: Pillow never opens the member
        m.setattr(Image, "open", lambda *a, **k: pytest.fail("PIL opened a pixel member"))
        batch = st.collate([{"image": {"bytes": member, "path": "k.npy.zst"}}])
    assert torch.equal(batch["image"][0, 0], torch.from_numpy(pixels))
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    assert torch.equal(st.collate([{"image": {"bytes": png.getvalue(), "path": "k.png"}}])[
        "image"], batch["image"])


# --------------------------------------------------------------------------- datasets methods


@pytest.mark.parametrize("num_workers", [2, 4])
def test_derived_datasets_keep_the_balanced_split(num_workers, tiny_root, index, tmp_path):
    # .map() returns a plain datasets.IterableDataset, iterated by datasets' own worker
    # logic over our examples iterable: still every row once, even with more workers than
    # the selection's single shard
    ds = _load(tiny_root, "vqa", tmp_path, split="train", cities=["rotterdam"])
    mapped = ds.map(lambda r: {"n": len(r["question"])})
    assert type(mapped) is not type(ds)
    loader = DataLoader(mapped, batch_size=None, num_workers=num_workers)
    rows = list(loader)
    assert all(r["n"] == len(r["question"]) for r in rows)
    assert collections.Counter(_ident(r) for r in rows) == _expected(
        "vqa", index, "train", keep=lambda r: r["city"] == "rotterdam")


def test_fewer_shards_than_ranks_split_rows(tiny_root, index, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sarlang_data"):
        parts = [_ids(_load(tiny_root, "vqa", tmp_path, split="train", cities=["rotterdam"],
                            distributed=(r, 2))) for r in range(2)]
    expected = _expected("vqa", index, "train", keep=lambda r: r["city"] == "rotterdam")
    assert collections.Counter(x for p in parts for x in p) == expected
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    total = expected.total()
    assert any(f"rank 1 of 2 reads {total // 2} of the {total} rows" in r.message
               and "from 1 of the 1 shards" in r.message for r in caplog.records)


def test_resume_through_datasets_own_state_after_map(tiny_root, tmp_path):
    # .map() hands iteration and state to datasets' machinery; our rows keep exact resume
    def fresh():
        s = _load(tiny_root, "vqa", tmp_path, split="train").shuffle(seed=2, buffer_size=12)
        return s.map(lambda r: {"n": len(r["question"])})

    full = _ids(fresh())
    ds = fresh()
    it = iter(ds)
    head = [_ident(next(it)) for _ in range(50)]
    state = ds.state_dict()
    assert state["examples_iterable"]  # datasets' own layout
    again = fresh()
    again.load_state_dict(state)
    assert head + _ids(again) == full


# --------------------------------------------------------------------------- plain fast paths


def _fake_samples(sizes):
    """read and read_samples over synthetic shards of samples with ``sizes[s]`` rows each."""

    def read(s, start, end):
        k = 0
        for n in sizes[s]:
            for _ in range(n):
                if start <= k < end:
                    yield k, (s, k), {"id": (s, k)}
                k += 1

    def read_samples(s, start, end):
        k = 0
        for n in sizes[s]:
            made = [{"id": (s, i)} for i in range(k, min(k + n, end))]
            if k + n > start and made and k < end:
                yield max(k, start), made[max(0, start - k):]
            k += n

    return read, read_samples


def _per_row(part, read, read_samples, saved):
    """iter_rows' plain path reading a sample at a time: ids and state after every row."""
    state = dict(saved)
    got = []
    for key, row in shuffle.iter_rows(part, read, state, shuffle_key=None, buffer_size=0,
                                 read_samples=read_samples):
        assert key == row["id"]
        got.append((row["id"], dict(state)))
    return got, state


def _chained(part, read, read_samples, saved):
    """iter_plain_samples with its cursor, as the top-level stream reads."""
    cursor = shuffle.SampleCursor(dict(saved))
    got = [(row["id"], cursor.position())
           for rows in shuffle.iter_plain_samples(part, read_samples, cursor) for row in rows]
    return got, cursor.position()


def test_plain_paths_keep_iter_parts_state_after_every_row_and_resume_exactly():
    rng = random.Random(7)
    resumes = 0
    for _ in range(150):
        sizes = [[rng.choice((0, 1, 1, 2, 3, 5)) for _ in range(rng.randint(0, 4))]
                 for _ in range(rng.randint(1, 5))]
        counts = [sum(s) for s in sizes]
        order = list(range(len(counts)))
        rng.shuffle(order)
        n = rng.randint(1, 3)  # a reader's range may start and end inside a sample
        part = partition.split(partition.whole(counts, order), n, rng.randrange(n))
        read, read_samples = _fake_samples(sizes)
        state = shuffle.fresh_state(part)
        ref = [(row["id"], dict(state)) for _, _, row in shuffle.iter_part(part, read, state)]
        final = dict(state)
        assert [i for i, _ in ref] == _rows_of(part)

        for run in (_per_row, _chained):
            assert run(part, read, read_samples, shuffle.fresh_state(part)) == (ref, final)
            for i, (_, saved) in enumerate(ref):  # resume after every row
                assert run(part, read, read_samples, saved) == (ref[i + 1:], final)
                resumes += 1
    assert resumes > 1000


def test_unshuffled_stream_state_after_every_row_matches_iter_part(tiny_root, tmp_path):
    ds = _load(tiny_root, "vqa", tmp_path, split="train")
    inner = ds._inner().copy()
    part, _ = inner.plan()
    state = shuffle.fresh_state(part)
    ref = [(_ident(row), iterable._copy_state(state))
           for _, _, row in shuffle.iter_part(part, inner._read, state)]
    assert len(ref) == 260
    got = []
    for row in ds:
        assert "cursor" in ds._sarlang_state  # the sample-at-a-time path is the one tested
        got.append((_ident(row), ds.state_dict()["rows"]))
    assert got == ref
    full = [i for i, _ in ref]
    for stop in (0, 1, 2, 3, 50, 129, 258, 259, 260):
        again = _load(tiny_root, "vqa", tmp_path, split="train")
        if stop:
            again.load_state_dict({**ds.state_dict(), "rows": ref[stop - 1][1]})
        assert full[:stop] + _ids(again) == full


# --------------------------------------------------------------------------- starting mid-shard


def _parts(root, tmp_path, n=3, **kw):
    ds = _load(root, "vqa", tmp_path, split="train", **kw)
    inner = ds._ex_iterable.ex_iterable
    return [[_ident(row) for _, row in inner.split_rows(n, i)] for i in range(n)]


def test_archives_cannot_seek_so_readers_skip_to_their_row(synth_tiny, tiny_root, index,
                                                           tmp_path):
    from sarlang_data.ingest.build import BuildOptions, build

    zroot = tmp_path / "zroot"
    build(synth_tiny / "SARLANG_1M", zroot,
          BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=1, compress="archive"),
          progress=False)
    assert all(s["path"].endswith(".tar.zst") for s in read_manifest(zroot)["shards"])
    parts = _parts(zroot, tmp_path, cities=["rotterdam"])
    assert parts == _parts(tiny_root, tmp_path, cities=["rotterdam"])
    assert collections.Counter(x for p in parts for x in p) == _expected(
        "vqa", index, "train", keep=lambda r: r["city"] == "rotterdam")


def test_an_index_that_does_not_match_its_shards_is_an_error(copy_root, tmp_path):
    import pyarrow.parquet as pq

    from sarlang_data.errors import ManifestError

    root = copy_root()
    table = pq.read_table(root / "index.parquet")
    rows = table.to_pylist()
    by_shard = collections.defaultdict(list)
    for i, r in enumerate(rows):
        if r["split"] == "train" and r["qa"]:
            by_shard[r["shard"]].append(i)
    a, b = next(v for v in by_shard.values() if len(v) >= 2)[-2:]
    # two samples of a shard swap their offsets: a reader starting in one of them would
    # read the other's rows
    rows[a]["offset"], rows[b]["offset"] = rows[b]["offset"], rows[a]["offset"]
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), root / "index.parquet")
    total = sum(len(r["qa"]) for r in rows if r["split"] == "train")
    with pytest.raises(ManifestError, match=r"index.parquet puts sample '[^']+' at byte \d+, "
                       r"but sample '[^']+' is there; the index does not match the shards"):
        _parts(root, tmp_path, n=total)  # every row starts a reader


def test_rank_environment_splits_only_when_asked(tiny_root, index, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    everything = _expected("vqa", index, "train")
    assert collections.Counter(_ids(_load(tiny_root, "vqa", tmp_path, split="train"))) == (
        everything)
    assert collections.Counter(_ids(_load(tiny_root, "vqa", tmp_path, split="train",
                                          distributed=False))) == everything
    mine = _ids(_load(tiny_root, "vqa", tmp_path, split="train", distributed=True))
    theirs = _ids(_load(tiny_root, "vqa", tmp_path, split="train", distributed=(0, 2)))
    assert collections.Counter(mine + theirs) == everything
    assert len(theirs) - len(mine) == everything.total() % 2
    with pytest.raises(ConfigError, match=r"equalize=True with distributed=None: equalize "
                       r"balances this package's own split by rank.*pass distributed=True too"):
        _load(tiny_root, "vqa", tmp_path, split="train", equalize=True)


@pytest.mark.parametrize(("name", "keep"), [
    ("vqa", {"sources": ["dfc2023"]}), ("captions_concise", {}), ("object_positioning", {}),
    ("vhr", {}), ("images", {"cities": ["rotterdam", "nice"]})])
def test_row_ranges_count_rows_per_sample_as_the_reader_does(name, keep, tiny_root, index,
                                                            tmp_path):
    # seeks count each sample's rows from the index (filters, kinds, tasks, tiers applied):
    # with a reader per row, every row is some reader's start, reached by a seek
    def kept(r):
        return all(r[{"sources": "source", "cities": "city"}[f]] in v for f, v in keep.items())

    want = _expected(name, index, "train", keep=kept)
    ds = _load(tiny_root, name, tmp_path, split="train", **keep)
    inner = ds._ex_iterable.ex_iterable
    parts = [[_ident(row) for _, row in inner.split_rows(want.total(), i)]
             for i in range(want.total())]
    assert [len(p) for p in parts] == [1] * want.total()
    assert collections.Counter(x for p in parts for x in p) == want
    # the same rows in the same order as one reader gives them
    assert [p[0] for p in parts] == [_ident(r) for r in ds]
