"""Plain ``torch.distributed`` in two real processes (``torchrun``, gloo, CPU).

One launch of ``rank_worker.py ddp`` on the preview's ``instance_counting`` train rows (199:
odd, so 2 ranks cannot split it evenly; 2 DataLoader workers per rank). Each rank reports
the ids of the rows it got: the default stream (not split: the whole split on every rank,
as ``datasets`` does), ``distributed=True`` from ``RANK``/``WORLD_SIZE`` alone and after
``init_process_group``, ``equalize=True`` with shuffling and a ``DistributedDataParallel``
step per batch (unequal steps would hang gloo: its timeout turns that into a failure), and
``datasets``' ``split_dataset_by_node`` / ``.shard()`` of the default stream. About 15 s.
"""

import collections

import pytest
from two_ranks import WORLD, ident, torchrun

from sarlang_data.adapters.hf import load_dataset, preview_root

CONFIG = "instance_counting"


@pytest.fixture(scope="module")
def expected():
    rows = load_dataset(preview_root(), CONFIG, split="train", streaming=True, decode=False)
    return collections.Counter(ident(r) for r in rows)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    reports = torchrun(out, ["ddp", "--root", preview_root(), "--config", CONFIG,
                             "--workers", "2", "--batch", "4"])
    return [r["ddp"] for r in reports]


def _union(ranks, key):
    return collections.Counter(x for r in ranks for x in r[key])


def test_the_split_does_not_divide_evenly(expected):
    assert expected.total() % WORLD == 1 and len(expected) == expected.total() == 199


def test_the_default_stream_is_not_split(ranks, expected):
    # as datasets: every rank gets the whole split unless asked (accelerate, Trainer, TRL
    # and LLaMA-Factory split it themselves: tests/test_training_stacks.py)
    for rank, r in enumerate(ranks):
        assert collections.Counter(r["default"]) == expected
        assert any(f"rank {rank} of 2: the stream of split 'train' is not split across ranks"
                   in m for m in r["log"])


@pytest.mark.parametrize("how", ["env", "group", "split_dataset_by_node", "shard"])
def test_asked_splits_give_every_row_once_ranks_within_one_row(how, ranks, expected):
    assert _union(ranks, how) == expected  # every row of the split once, none twice
    assert sorted(len(r[how]) for r in ranks) == [99, 100]


def test_distributed_true_is_the_same_with_and_without_a_process_group(ranks):
    for r in ranks:
        assert collections.Counter(r["env"]) == collections.Counter(r["group"])
    for rank, r in enumerate(ranks):
        assert any(f"rank {rank} of 2 reads {len(r['env'])} of the 199 rows of split 'train'"
                   in m for m in r["log"])


def test_equalize_drops_one_row_and_ranks_take_equal_ddp_steps(ranks, expected):
    counts = [len(r["equalized"]) for r in ranks]
    assert counts == [99, 99]  # 100 and 99 before: one row dropped, none repeated
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0
    seen = _union(ranks, "equalized")
    assert max(seen.values()) == 1 and set(seen) <= set(expected)
    assert expected.total() - seen.total() == 1
    message = "equalize: every rank yields 99 rows (1 rows dropped; rows per rank before: " \
              "[100, 99])"
    assert all(any(message in m for m in r["log"]) for r in ranks)
