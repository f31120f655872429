"""Two real processes with torch.distributed (gloo on 127.0.0.1): each rank streams its part.

The split (captions, train) has 13 shards with captions, which 2 ranks do not divide. Each
rank loads the dataset three ways with no extra call: with ``RANK``/``WORLD_SIZE`` set, after
``init_process_group`` (through a DataLoader with 2 workers: ranks split first, then
workers), and with ``equalize=True`` and shuffling, where every batch is followed by an
``all_reduce`` as DDP does (unequal row counts would hang it; the gloo timeout turns a hang
into a failure).
"""

import collections
import datetime
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sarlang_data.configs import get_config
from sarlang_data.format.manifest import read_index, read_manifest

WORLD = 2
CONFIG = "captions"


def _ids(rows):
    return [[r["key"], r["caption"]] for r in rows]


def _child(rank, world, port, root, cache, out_dir):
    import logging

    from torch.utils.data import DataLoader

    from sarlang_data.adapters import hf

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("sarlang_data").addHandler(Keep())
    logging.getLogger("sarlang_data").setLevel(logging.INFO)

    def load(**kw):
        return hf.load_dataset(root, CONFIG, streaming=True, split="train", decode=False,
                               cache_dir=cache, **kw)

    import time

    t0 = time.perf_counter()
    out = {}
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    ds = load()
    out["n_shards_env"] = ds.n_shards
    out["env"] = _ids(ds)
    del os.environ["RANK"], os.environ["WORLD_SIZE"]
    out["alone"] = len(list(load()))  # no env, no process group: the whole split

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        loader = DataLoader(load(), batch_size=None, num_workers=2)
        out["dist_workers"] = _ids(loader)
        eq = load(equalize=True).shuffle(seed=4, buffer_size=8)
        eq.set_epoch(1)
        batches = 0
        rows = []
        for batch in DataLoader(eq, batch_size=3, num_workers=2, collate_fn=list):
            rows += _ids(batch)
            step = torch.ones(1)
            dist.all_reduce(step)  # a DDP step: every rank must take the same number
            batches += 1
        out["equalized"] = rows
        out["batches"] = batches
        gathered = [None] * world
        dist.all_gather_object(gathered, len(rows))
        out["gathered_counts"] = gathered
        out["log"] = records
        out["seconds"] = time.perf_counter() - t0
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    cache = str(tmp_path_factory.mktemp("cache"))
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        assert var not in os.environ, f"{var} is set in the test environment"
    mp.spawn(_child, args=(WORLD, _free_port(), str(tiny_root), cache, str(out)),
             nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def expected(tiny_root):
    cfg = get_config(CONFIG)
    out = collections.Counter()
    for r in read_index(tiny_root).to_pylist():
        if r["split"] == "train":
            for c in cfg.select_texts({"captions": r["captions"], "qa": r["qa"]}):
                out[(r["key"], c["text"])] += 1
    return out


def test_the_shard_count_is_not_divisible_by_the_world_size(tiny_root):
    shards = [s for s in read_manifest(tiny_root)["shards"]
              if s["split"] == "train" and s["configs"][CONFIG]]
    assert len(shards) % WORLD != 0


def _check_split(parts, expected):
    keys = [{k for k, _ in p} for p in parts]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # disjoint shards: no shared image
    union = collections.Counter(tuple(x) for p in parts for x in p)
    assert union == expected  # complete, each row once


def test_env_ranks_read_disjoint_shards_covering_the_split(ranks, expected):
    _check_split([r["env"] for r in ranks], expected)
    assert all(r["alone"] == expected.total() for r in ranks)
    assert sum(r["n_shards_env"] for r in ranks) == 13


def test_process_group_ranks_then_workers(ranks, expected):
    _check_split([r["dist_workers"] for r in ranks], expected)
    for r in ranks:  # the same part with 2 DataLoader workers as in one process
        assert collections.Counter(map(tuple, r["dist_workers"])) == collections.Counter(
            map(tuple, r["env"]))
    for rank, r in enumerate(ranks):
        assert any(f"rank {rank} of 2 reads" in m and "of the 13 shards with rows" in m
                   for m in r["log"])


def test_equalize_gives_equal_rows_and_equal_ddp_steps(ranks, expected, tiny_root):
    counts = [len(r["equalized"]) for r in ranks]
    assert counts[0] == counts[1] == ranks[0]["gathered_counts"][1] > 0
    assert ranks[0]["batches"] == ranks[1]["batches"]
    rows = collections.Counter(tuple(x) for r in ranks for x in r["equalized"])
    assert set(rows) <= set(expected)
    largest = max(s["configs"][CONFIG] for s in read_manifest(tiny_root)["shards"])
    changed = WORLD * counts[0] - expected.total()
    if changed <= 0:  # dropped: no row twice, and fewer than a shard's rows
        assert max(rows.values()) == 1 and -changed < largest
    else:  # repeated: every row at least once
        assert set(rows) == set(expected) and changed < largest
    # the load-time log names the rows per rank of the (unshuffled) plan and the target
    plain = [len(r["env"]) for r in ranks]
    assert plain[0] != plain[1]  # equalize had something to do
    messages = [m for r in ranks for m in r["log"] if "equalize: every rank yields" in m]
    assert len(messages) == WORLD and f"rows per rank before: {plain}" in messages[0]
    lo, hi = min(plain), max(plain)
    target = lo if sum(plain) - WORLD * lo <= WORLD * hi - sum(plain) else hi
    assert f"yields {target} rows" in messages[0]

