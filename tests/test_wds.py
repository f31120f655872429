"""sarlang_data.wds: the same rows as load_dataset, as a webdataset.DataPipeline."""

import collections

import pytest
import torch
import webdataset as wds

from sarlang_data import torch as st
from sarlang_data.adapters import hf
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.wds import SarlangPipeline, pipeline


def _ident(r):
    return (r["key"], r.get("question") or r.get("caption") or "")


@pytest.mark.parametrize("name", ["vqa", "captions_detailed", "images", "chat"])
def test_pipeline_rows_equal_load_dataset_rows(name, tiny_root, tmp_path):
    pipe = pipeline(str(tiny_root), name, split="test", decode=False)
    assert isinstance(pipe, wds.DataPipeline)
    ds = hf.load_dataset(str(tiny_root), name, split="test", streaming=True, decode=False,
                         cache_dir=str(tmp_path / "c"))
    assert list(pipe) == list(ds)


def test_pipeline_with_stages_in_a_dataloader(tiny_root):
    pipe = pipeline(str(tiny_root), "vqa", split="train",
                    stages=[wds.batched(10, collation_fn=st.collate, partial=True)])
    loader = wds.WebLoader(pipe, batch_size=None, num_workers=2)
    batches = list(loader)
    got = collections.Counter((k, q) for b in batches for k, q in zip(b["key"], b["question"],
                                                                         strict=True))
    total = read_manifest(tiny_root)["configs"]["vqa"]["train"]
    assert got.total() == total and len(got) == total  # every row once
    assert all(isinstance(b["image"], (torch.Tensor, list)) for b in batches)


def test_pipeline_splits_ranks_and_shuffles_like_load_dataset(tiny_root, tmp_path):
    parts = [[_ident(r) for r in pipeline(str(tiny_root), "vqa", decode=False,
                                          distributed=(rank, 3), shuffle_seed=3,
                                          buffer_size=10)]
             for rank in range(3)]
    every = [_ident(r) for r in pipeline(str(tiny_root), "vqa", decode=False)]
    assert collections.Counter(x for p in parts for x in p) == collections.Counter(every)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # row ranges: within one row
    # the default pipeline is not split: every rank would read all of it
    assert [_ident(r) for r in pipeline(str(tiny_root), "vqa", decode=False)] == every
    ds = hf.load_dataset(str(tiny_root), "vqa", split="train", streaming=True, decode=False,
                         distributed=(1, 3), cache_dir=str(tmp_path / "c")).shuffle(
                             seed=3, buffer_size=10)
    assert [_ident(r) for r in ds] == parts[1]


def test_pipeline_epochs_and_resume(tiny_root):
    def fresh():
        p = pipeline(str(tiny_root), "vqa", decode=False, shuffle_seed=1, buffer_size=12)
        p.set_epoch(2)
        return p

    assert isinstance(fresh(), SarlangPipeline)
    full = [_ident(r) for r in fresh()]
    p = fresh()
    it = iter(p)
    head = [_ident(next(it)) for _ in range(40)]
    state = p.state_dict()
    again = fresh()
    again.load_state_dict(state)
    assert head + [_ident(r) for r in again] == full
    p.set_epoch(3)
    assert [_ident(r) for r in p] != full


def test_pipeline_checks_its_arguments(tiny_root):
    with pytest.raises(ConfigError, match="unknown config"):
        pipeline(str(tiny_root), "vqa2")
    with pytest.raises(ConfigError, match="buffer_size=0"):
        pipeline(str(tiny_root), "vqa", shuffle_seed=1, buffer_size=0)


def test_bare_webdataset_reads_our_shards(tiny_root):
    manifest = read_manifest(tiny_root)
    urls = [str(tiny_root / s["path"]) for s in manifest["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == manifest["counts"]["samples"] == sum(
        s["samples"] for s in manifest["shards"])
    assert all("json" in s and ("png" in s or "jpg" in s) for s in samples)
