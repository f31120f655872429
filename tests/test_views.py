import copy

import pytest

from sarlang_data.configs import CONFIGS, get_config
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.stream import reader, views


@pytest.fixture(scope="module")
def samples(tiny_root):
    out = []
    for shard in read_manifest(tiny_root)["shards"]:
        out += list(reader.iter_samples(str(tiny_root / shard["path"])))
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rows_per_config_equal_the_manifest(name, samples, tiny_root):
    cfg = get_config(name)
    per_split = {"train": 0, "test": 0}
    for s in samples:
        before = copy.deepcopy(s)
        got = views.rows(cfg, s)
        assert s == before  # views are pure: the sample is not touched
        assert len(got) == cfg.rows_in(s["json"])
        for row in got:
            assert tuple(row) == views.columns(cfg)
        per_split[s["json"]["split"]] += len(got)
    assert per_split == read_manifest(tiny_root)["configs"][name]
    assert sum(per_split.values()) > 0


def test_common_columns_come_from_the_record(samples):
    for s in samples:
        (row,) = views.rows("images", s)
        rec = s["json"]
        assert row["image"] == {"bytes": s["image"], "path": f"{rec['key']}.{s['image_ext']}"}
        assert [row[c] for c in ("key", "city", "tier", "gsd_m", "source", "split")] == [
            rec[c] for c in ("key", "city", "tier", "gsd_m", "source", "split")]


def test_text_rows_carry_the_record_texts_in_order(samples):
    for s in samples:
        rec = s["json"]
        vqa = views.rows("vqa", s)
        assert [(r["question"], r["answer"], r["task"], r["question_type"], r["bbox"])
                for r in vqa] == [(q["question"], q["answer"], q["task"], q["question_type"],
                                   q["bbox_xywh"]) for q in rec["qa"]]
        caps = views.rows("captions", s)
        assert [(r["caption"], r["kind"]) for r in caps] == [
            (c["text"], c["kind"]) for c in rec["captions"]]
        concise = views.rows("captions_concise", s)
        assert [r["caption"] for r in concise] == [
            c["text"] for c in rec["captions"] if c["kind"] == "concise"]
        for task in ("region_referring", "others"):
            got = views.rows(task, s)
            assert "task" not in (got[0] if got else {"x": 1})
            assert [r["question"] for r in got] == [
                q["question"] for q in rec["qa"] if q["task"] == task]


def test_image_rows_carry_every_caption_and_qa(samples):
    n_boxes = 0
    for s in samples:
        (row,) = views.rows("images", s)
        rec = s["json"]
        assert row["captions"] == rec["captions"]
        assert [{**q, "bbox": q["bbox"]} for q in row["qa"]] == [
            {"task": q["task"], "question_type": q["question_type"], "question": q["question"],
             "answer": q["answer"], "bbox": q["bbox_xywh"], "task_from": q["task_from"],
             "subset": q["subset"]} for q in rec["qa"]]
        n_boxes += sum(q["bbox"] is not None for q in row["qa"])
        tier_rows = views.rows(rec["tier"], s)
        assert tier_rows == [row]
        assert all(views.rows(t, s) == [] for t in ("vhr", "hr", "mr") if t != rec["tier"])
    assert n_boxes > 0  # region_referring boxes made it through


def test_chat_llamafactory_layout(samples):
    for s in samples:
        rec = s["json"]
        (row,) = views.rows("chat", s)
        msgs = row["messages"]
        turns = views.conversation(rec)
        assert len(msgs) == 2 * len(turns) == 2 * (len(rec["captions"]) + len(rec["qa"]))
        assert [m["role"] for m in msgs] == ["user", "assistant"] * len(turns)
        assert msgs[0]["content"] == "<image>" + turns[0][0]
        assert sum(m["content"].count("<image>") for m in msgs) == 1 == len(row["images"])
        assert [m["content"] for m in msgs[3::2]] == [a for _, a in turns[1:]]
        assert row["images"] == [views.image_value(s)]
        assert "image" not in row and row["key"] == rec["key"]


def test_chat_trl_layout(samples):
    for s in samples:
        (row,) = views.rows("chat", s, chat_format="trl")
        msgs = row["messages"]
        assert msgs[0]["content"][0] == {"type": "image", "text": None}
        blocks = [b for m in msgs for b in m["content"]]
        assert sum(b["type"] == "image" for b in blocks) == 1
        assert all(b["type"] == "text" and isinstance(b["text"], str)
                   for b in blocks if b is not msgs[0]["content"][0])
        texts = [b["text"] for m in msgs for b in m["content"] if b["type"] == "text"]
        assert texts == [t for pair in views.conversation(s["json"]) for t in pair]


def test_captions_get_a_prompt_of_their_kind():
    rec = {"captions": [{"kind": "detailed", "text": "D"}, {"kind": "concise", "text": "C"}],
           "qa": [{"question": "Q?", "answer": "A"}]}
    assert views.conversation(rec) == [(views.CAPTION_PROMPTS["detailed"], "D"),
                                       (views.CAPTION_PROMPTS["concise"], "C"), ("Q?", "A")]


def test_unknown_names():
    with pytest.raises(ConfigError, match=r"chat_format='sharegpt'.*llamafactory"):
        views.chat_messages({"captions": [], "qa": []}, "sharegpt")
    with pytest.raises(ConfigError, match=r"name='vqa2': unknown config.*closest first\): vqa"):
        views.rows("vqa2", {})


def test_sample_filter():
    assert views.sample_filter() is None
    keep = views.sample_filter(cities=["nice"], sources=("oem_sar", "dfc2023"))
    assert keep({"city": "nice", "source": "oem_sar", "tier": "vhr", "split": "train"})
    assert not keep({"city": "nice", "source": "spacenet6", "tier": "vhr", "split": "train"})
    assert not keep({"city": "paris", "source": "oem_sar", "tier": "vhr", "split": "train"})
    assert views.sample_filter(splits=["test"])({"split": "test"})
