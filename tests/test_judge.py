"""Judges against a real chat-completions server on 127.0.0.1, and a local causal LM.

The server (tests/chat_server.py) answers deterministically from the prompt it gets; scripted
failures prove the retries, the cache file proves that a rerun asks nothing twice and that an
interrupted run resumes, and the key the server checks never shows in logs or messages.
"""

from __future__ import annotations

import json
import logging

import pytest
from chat_server import ChatServer
from tiny_models import build_causal_lm

from sarlang_data.benchmark import judge as J

SYN = {"ground track field": {"playground"}, "building": {"rooftop"}}
PAIRS = [J.Pair("What is in the center?", "ground track field", "playground"),
         J.Pair("What covers the area?", "building", "rooftop"),
         J.Pair("What object is in the box?", "harbor", "bridge"),
         J.Pair("Which shape are the pools?", "rectangular", "round")]
WANT = {PAIRS[0]: "yes", PAIRS[1]: "yes", PAIRS[2]: "no", PAIRS[3]: "no"}


def test_openai_judge_verdicts_prompt_and_cache(tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    with ChatServer(synonyms=SYN) as srv:
        judge = J.OpenAIJudge(srv.url, "judge-model", cache=cache, concurrency=3)
        assert judge.verdicts(PAIRS) == WANT
        assert srv.answered() == 4 and judge.asked == 4
        # the request is the documented prompt, at temperature 0, for the named model
        body = json.loads(srv.requests[0]["body"])
        assert srv.requests[0]["path"] == "/v1/chat/completions"
        assert body["model"] == "judge-model" and body["temperature"] == 0
        asked = {json.loads(r["body"])["messages"][1]["content"] for r in srv.requests}
        assert asked == {J.prompt_messages(p)[1]["content"] for p in PAIRS}
        assert body["messages"][0] == {"role": "system", "content": J.SYSTEM_PROMPT}
        # a rerun asks nothing: every verdict comes from the cache file
        again = J.OpenAIJudge(srv.url, "judge-model", cache=cache)
        assert again.verdicts(PAIRS + PAIRS[:1]) == WANT
        assert srv.answered() == 4 and again.cached == 4 and again.asked == 0
        # the cache is keyed by the model too: another model asks again
        other = J.OpenAIJudge(srv.url, "other-model", cache=cache)
        other.verdicts(PAIRS[:1])
        assert srv.answered() == 5
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    assert len(lines) == 5 and {x["prompt_version"] for x in lines} == {J.PROMPT_VERSION}
    assert {(x["ground_truth"], x["verdict"]) for x in lines if x["model"] == "judge-model"} == {
        ("ground track field", "yes"), ("building", "yes"), ("harbor", "no"),
        ("rectangular", "no")}


def test_interrupted_run_resumes(tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    with ChatServer(synonyms=SYN, script=["ok", "ok", "400"]) as srv:
        judge = J.OpenAIJudge(srv.url, "m", cache=cache, concurrency=1)
        with pytest.raises(J.JudgeError, match="HTTP 400"):
            judge.verdicts(PAIRS)
        assert len(J.VerdictCache(cache)) == 2
        resumed = J.OpenAIJudge(srv.url, "m", cache=cache, concurrency=1)
        assert resumed.verdicts(PAIRS) == WANT
        assert resumed.cached == 2 and resumed.asked == 2
        assert len(srv.requests) == 5  # 2 + the refused one + the 2 left


def test_torn_cache_line_is_ignored_and_healed(tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    with ChatServer(synonyms=SYN) as srv:
        J.OpenAIJudge(srv.url, "m", cache=cache).verdicts(PAIRS[:2])
        with open(cache, "a", encoding="utf-8") as f:
            f.write('{"key": "abc", "verd')  # killed mid-write
        judge = J.OpenAIJudge(srv.url, "m", cache=cache)
        assert judge.cache.torn == 1
        assert judge.verdicts(PAIRS) == WANT and judge.asked == 2
    reread = J.VerdictCache(cache)
    assert len(reread) == 4 and reread.torn == 1


def test_retries_on_5xx_429_dropped_and_slow(tmp_path):
    with ChatServer(synonyms=SYN, script=["500", "429", "drop", "slow"],
                    slow_seconds=1.5) as srv:
        judge = J.OpenAIJudge(srv.url, "m", cache=tmp_path / "c.jsonl", concurrency=1,
                              retries=5, timeout=0.5, backoff=0.01)
        assert judge.verdicts(PAIRS[:1]) == {PAIRS[0]: "yes"}
        assert [r["action"] for r in srv.requests] == ["500", "429", "drop", "slow", "ok"]
        assert judge.retried == 4


def test_retries_run_out(tmp_path):
    with ChatServer(synonyms=SYN, script=["500"] * 3) as srv:
        judge = J.OpenAIJudge(srv.url, "m", cache=tmp_path / "c.jsonl", retries=2,
                              backoff=0.01)
        with pytest.raises(J.JudgeError, match=r"3 tries failed, last: HTTP 500.*cached"):
            judge.verdicts(PAIRS[:1])
        assert len(srv.requests) == 3


def test_unparsed_reply_is_counted(tmp_path):
    with ChatServer(reply="Maybe, hard to say.") as srv:
        judge = J.OpenAIJudge(srv.url, "m", cache=tmp_path / "c.jsonl")
        assert set(judge.verdicts(PAIRS).values()) == {"unparsed"}
    assert J.parse_verdict(" **Yes**, it is.") == "yes"
    assert J.parse_verdict("no.") == "no"
    assert J.parse_verdict("") == "unparsed"


def test_key_is_sent_and_never_shown(tmp_path, monkeypatch, caplog):
    secret = "sk-test-0123456789SECRET"
    monkeypatch.setenv("SARLANG_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with ChatServer(synonyms=SYN, key=secret, script=["500"]) as srv:
        judge = J.OpenAIJudge(srv.url, "m", key_env="SARLANG_TEST_KEY",
                              cache=tmp_path / "c.jsonl", backoff=0.01)
        assert judge.verdicts(PAIRS[:2]) == {PAIRS[0]: "yes", PAIRS[1]: "yes"}
        assert {r["auth"] for r in srv.requests} == {f"Bearer {secret}"}
        shown = repr(judge) + json.dumps(judge.describe())
        monkeypatch.setenv("SARLANG_TEST_KEY", "sk-wrong-key")
        wrong = J.OpenAIJudge(srv.url, "m", key_env="SARLANG_TEST_KEY",
                              cache=tmp_path / "c2.jsonl")
        with pytest.raises(J.JudgeError, match=r"HTTP 401.*\$SARLANG_TEST_KEY") as err:
            wrong.verdicts(PAIRS[:1])
    text = shown + str(err.value) + caplog.text + (tmp_path / "c.jsonl").read_text()
    assert secret not in text and "sk-wrong-key" not in text


def test_judge_arguments_are_checked(tmp_path):
    with pytest.raises(J.JudgeError, match="judge_url='ftp://x': not an http"):
        J.OpenAIJudge("ftp://x", "m", cache=tmp_path / "c")
    with pytest.raises(J.JudgeError, match="judge='gpt': unknown; use none, openai or local"):
        J.make_judge("gpt")
    with pytest.raises(J.JudgeError, match="needs a model folder"):
        J.make_judge("local")
    assert J.make_judge("none") is None
    assert J.chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


def test_local_judge_reads_the_models_yes_or_no(tmp_path):
    yes = build_causal_lm(tmp_path / "yes", "yes")
    no = build_causal_lm(tmp_path / "no", "no")
    cache = tmp_path / "c.jsonl"
    judge = J.LocalJudge(yes, cache=cache, batch_size=3)
    assert set(judge.verdicts(PAIRS).values()) == {"yes"} and judge.asked == 4
    # another model folder is another cache key
    assert set(J.LocalJudge(no, cache=cache).verdicts(PAIRS).values()) == {"no"}
    again = J.LocalJudge(no, cache=cache)
    assert set(again.verdicts(PAIRS).values()) == {"no"} and again.asked == 0
    assert "Ground truth: harbor\nPrediction: bridge" in judge.prompt_text(PAIRS[2])
    with pytest.raises(J.JudgeError, match="cannot load a causal LM"):
        J.LocalJudge(tmp_path / "missing", cache=cache).verdicts(PAIRS[:1])
