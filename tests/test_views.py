import copy

import pytest

from sarlang_data.configs import CONFIGS, get_config
from sarlang_data.errors import ConfigError
from sarlang_data.format.manifest import read_manifest
from sarlang_data.schema import text_id
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
        # image rows keep the captions' columns (the records' stored ids are not a column)
        assert row["captions"] == [{"kind": c["kind"], "text": c["text"],
                                    "kind_from": c["kind_from"]} for c in rec["captions"]]
        assert [{**q, "bbox": q["bbox"]} for q in row["qa"]] == [
            {"task": q["task"], "question_type": q["question_type"], "question": q["question"],
             "answer": q["answer"], "bbox": q["bbox_xywh"], "task_from": q["task_from"],
             "subset": q["subset"]} for q in rec["qa"]]
        n_boxes += sum(q["bbox"] is not None for q in row["qa"])
        tier_rows = views.rows(rec["tier"], s)
        assert tier_rows == [row]
        assert all(views.rows(t, s) == [] for t in ("vhr", "hr", "mr") if t != rec["tier"])
    assert n_boxes > 0  # region_referring boxes made it through


def _texts(rec):
    return [*rec["captions"], *rec["qa"]]


def test_chat_is_one_conversation_per_text_with_the_papers_prompts(samples):
    n = 0
    for s in samples:
        rec = s["json"]
        got = views.rows("chat", s)  # TRL's layout by default
        texts = _texts(rec)
        assert len(got) == len(texts) == get_config("chat").rows_in(rec)
        for row, t in zip(got, texts, strict=True):
            user, assistant = row["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            assert user["content"][0] == {"type": "image", "text": None}
            if "question" in t:
                want = f"Question: {t['question']}. Answer the question concisely."
                assert (row["task"], row["kind"]) == (t["task"], None)
            else:
                want = "Describe the content of this image in one sentence."
                assert (row["task"], row["kind"]) == (None, t["kind"])
            assert user["content"][1] == {"type": "text", "text": want}
            assert assistant["content"] == [{"type": "text", "text": t.get("answer",
                                                                           t.get("text"))}]
            assert row["images"] == [views.image_value(s)]
            assert row["id"] == text_id(rec["key"], t)
            assert tuple(row) == views.columns("chat")
            n += 1
    assert n > 100


def test_chat_llamafactory_layout_has_one_image_placeholder(samples):
    lay = views.layout_for("chat", "llamafactory")
    for s in samples:
        for row, t in zip(views.rows("chat", s, layout=lay), _texts(s["json"]), strict=True):
            user, assistant = row["messages"]
            assert user["content"] == "<image>" + views.prompt(t)
            assert assistant["content"] == views.target(t)
            assert user["content"].count("<image>") == 1 == len(row["images"])


@pytest.mark.parametrize("name", ["vqa", "region_referring", "captions_concise", "captions"])
def test_every_text_config_gives_chat_rows_of_its_own_texts(name, samples):
    cfg = get_config(name)
    lay = views.layout_for(name, "trl")
    for s in samples:
        plain = views.rows(name, s)
        chat = views.rows(name, s, layout=lay)
        assert [r["id"] for r in chat] == [r["id"] for r in plain]
        assert len(chat) == views.row_count(cfg, s["json"], lay) == cfg.rows_in(s["json"])
        for c, p in zip(chat, plain, strict=True):
            text = c["messages"][1]["content"][0]["text"]
            assert text == p.get("answer", p.get("caption"))


def test_image_grouped_chat_rows_keep_every_text(samples):
    lay = views.layout_for("chat", "trl", "image", 4)
    several = 0
    for s in samples:
        rec = s["json"]
        got = views.rows("chat", s, layout=lay)
        texts = _texts(rec)
        assert len(got) == -(-len(texts) // 4) == views.row_count("chat", rec, lay)
        assert [i for r in got for i in r["ids"]] == [text_id(rec["key"], t) for t in texts]
        for r in got:
            assert 1 <= len(r["ids"]) <= 4 and len(r["messages"]) == 2 * len(r["ids"])
            parts = [p for m in r["messages"] for p in m["content"]]
            assert sum(p["type"] == "image" for p in parts) == 1 == len(r["images"])
            assert tuple(r) == views.columns("chat", lay)
        several += len(got) > 1
        (whole,) = views.rows("chat", s, layout=views.layout_for("chat", chat_group="image"))
        assert len(whole["messages"]) == 2 * len(texts)
    assert several > 0


def test_text_ids_are_unique_and_stable(samples, tiny_root):
    ids = [r["id"] for s in samples for r in views.rows("chat", s)]
    assert len(ids) == len(set(ids))
    assert all(r["id"] == text_id(s["json"]["key"], {"question": r["question"],
                                                      "answer": r["answer"]})
               for s in samples for r in views.rows("vqa", s))
    # the ids of a rebuilt root are the same: they hash the texts, not positions
    again = [r["id"] for shard in read_manifest(tiny_root)["shards"]
             for s in reader.iter_samples(str(tiny_root / shard["path"]))
             for r in views.rows("chat", s)]
    assert sorted(again) == sorted(ids)


def test_rows_carry_geo_and_size(samples):
    for s in samples:
        rec = s["json"]
        for name in ("images", "vqa", "captions", "chat"):
            for row in views.rows(name, s):
                assert [row[c] for c in ("lat", "lon", "width", "height")] == [
                    rec[c] for c in ("lat", "lon", "width", "height")]
    assert any(s["json"]["lat"] is not None for s in samples)


def test_layout_options_are_checked():
    assert views.layout_for("vqa") == views.PLAIN
    assert views.layout_for("chat") == views.Layout("trl")
    with pytest.raises(ConfigError, match=r"chat_format='sharegpt'.*trl"):
        views.layout_for("vqa", "sharegpt")
    with pytest.raises(ConfigError, match="image-centric"):
        views.layout_for("images", "trl")
    with pytest.raises(ConfigError, match="chat_format='trl'"):
        views.layout_for("vqa", chat_group="image")
    with pytest.raises(ConfigError, match="chat_group='image'"):
        views.layout_for("chat", max_turns=3)
    with pytest.raises(ConfigError, match="max_turns=0"):
        views.layout_for("chat", chat_group="image", max_turns=0)
    with pytest.raises(ConfigError, match="chat_group='pairs'"):
        views.layout_for("chat", chat_group="pairs")


def test_unknown_names():
    with pytest.raises(ConfigError, match=r"chat_format='sharegpt'.*llamafactory"):
        views.chat_messages([("Q", "A")], "sharegpt")
    with pytest.raises(ConfigError, match=r"name='vqa2': unknown config.*closest first\): vqa"):
        views.rows("vqa2", {})


def test_sample_filter():
    assert views.sample_filter() is None
    keep = views.sample_filter(cities=["nice"], sources=("oem_sar", "dfc2023"))
    assert keep({"city": "nice", "source": "oem_sar", "tier": "vhr", "split": "train"})
    assert not keep({"city": "nice", "source": "spacenet6", "tier": "vhr", "split": "train"})
    assert not keep({"city": "paris", "source": "oem_sar", "tier": "vhr", "split": "train"})
    assert views.sample_filter(splits=["test"])({"split": "test"})


def _without_ids(sample, keep_every=0):
    """The sample as a root built before text ids were stored has it (every ``keep_every``-th
    text keeps its id, for records that carry only some)."""
    out = copy.deepcopy(sample)
    n = 0
    for t in out["json"]["captions"] + out["json"]["qa"]:
        if not keep_every or n % keep_every:
            del t["id"]
        n += 1
    return out


@pytest.mark.parametrize("layout", [None, views.Layout("trl"), views.Layout("llamafactory"),
                                    views.Layout("trl", "image", 3)])
def test_stored_text_ids_give_the_rows_computed_ids_give(samples, layout):
    # every text of a built record stores its id first, equal to text_id of its content
    texts = [(s["json"]["key"], t) for s in samples
             for t in s["json"]["captions"] + s["json"]["qa"]]
    assert texts and all(list(t)[0] == "id" for _, t in texts)
    assert all(t["id"] == text_id(key, t) for key, t in texts)
    # records without ids (older roots), or with some, give the same rows, ids included
    n = 0
    for name in ("vqa", "captions", "captions_concise", "object_positioning", "chat"):
        for s in samples:
            want = views.rows(name, s, layout=layout)
            assert views.rows(name, _without_ids(s), layout=layout) == want
            assert views.rows(name, _without_ids(s, keep_every=2), layout=layout) == want
            n += len(want)
    assert n > 0
