"""Judges for the VQA pairs the rule leaves undecided: an OpenAI-compatible endpoint or a local LM.

The authors ask GPT-4o-mini whether an open answer means the same as the ground truth
(synonyms count: playground = ground track field, building = rooftop). :class:`OpenAIJudge`
asks any server that speaks the chat-completions protocol (OpenAI, vLLM, llama.cpp, ...):
requests run concurrently, each with a timeout, and are retried with exponential back-off on
timeouts, dropped connections, 429 and 5xx answers. :class:`LocalJudge` asks a transformers
causal LM from a folder, reading its next-token preference between "yes" and "no".

Every verdict goes to an on-disk cache (:class:`VerdictCache`, JSON lines) keyed by the
question, ground truth, prediction, judge model and prompt version, written as each answer
arrives: a rerun asks nothing twice and an interrupted run resumes where it stopped.

The verdict prompt is :data:`SYSTEM_PROMPT` + :data:`USER_TEMPLATE`, versioned by
:data:`PROMPT_VERSION`; reports carry all three. API keys come from the environment only and
never appear in messages, logs, reprs or the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SarlangError

log = logging.getLogger(__name__)

#: bump when the prompt or the verdict parsing changes: cached verdicts of other versions are
#: not reused
PROMPT_VERSION = "sarlang-judge-v1"
SYSTEM_PROMPT = (
    "You grade answers to questions about synthetic aperture radar (SAR) images. "
    "Reply with exactly one word: yes or no."
)
USER_TEMPLATE = (
    "Question: {question}\n"
    "Ground truth: {ground_truth}\n"
    "Prediction: {prediction}\n"
    "Does the prediction give the same answer as the ground truth? Synonyms and equivalent "
    "wordings count as the same (for example playground = ground track field, building = "
    "rooftop). Reply yes or no."
)
#: verdicts a judge gives; ``unparsed`` (a reply that is neither) counts as wrong
VERDICTS = ("yes", "no", "unparsed")
#: default endpoint and model: the authors' judge
DEFAULT_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
#: HTTP statuses worth another try (rate limit, timeouts, server trouble)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class JudgeError(SarlangError):
    """A judge cannot give verdicts (refused request, unreachable endpoint, bad model)."""


@dataclass(frozen=True)
class Pair:
    """One undecided VQA pair as the judge sees it."""

    question: str
    ground_truth: str
    prediction: str


def prompt_messages(pair: Pair) -> list[dict[str, str]]:
    """Return the chat messages that ask for one verdict.

    Args:
        pair: the question, ground truth and prediction.

    Returns:
        A system and a user message (:data:`SYSTEM_PROMPT`, :data:`USER_TEMPLATE`).
    """
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_TEMPLATE.format(
            question=pair.question, ground_truth=pair.ground_truth, prediction=pair.prediction)},
    ]


def parse_verdict(reply: str | None) -> str:
    """Read a judge's reply: its first word, lower-cased, without punctuation.

    Args:
        reply: the reply text.

    Returns:
        ``"yes"``, ``"no"`` or ``"unparsed"``.
    """
    words = (reply or "").strip().lower().split()
    first = words[0].strip(".,!:;\"'*`()[]") if words else ""
    return first if first in ("yes", "no") else "unparsed"


def describe_prompt() -> dict[str, str]:
    """Return the verdict prompt as reports record it."""
    return {"version": PROMPT_VERSION, "system": SYSTEM_PROMPT, "user_template": USER_TEMPLATE}


# --------------------------------------------------------------------------- cache


def default_cache_path() -> Path:
    """Return the default verdict cache: ``$XDG_CACHE_HOME/sarlang-data/judge-verdicts.jsonl``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sarlang-data" / "judge-verdicts.jsonl"


def cache_key(pair: Pair, model: str) -> str:
    """Return the cache key of a verdict: sha256 of prompt version, model and the pair."""
    blob = json.dumps([PROMPT_VERSION, model, pair.question, pair.ground_truth, pair.prediction],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class VerdictCache:
    """Verdicts on disk, one JSON line each, appended as they arrive (safe across threads).

    A line is ``{"key", "model", "prompt_version", "question", "ground_truth", "prediction",
    "verdict", "reply"}``. A torn last line (a run killed mid-write) is ignored on load and
    counted in :attr:`torn`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._verdicts: dict[str, str] = {}
        self.torn = 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self._verdicts[rec["key"]] = rec["verdict"]
                    except (ValueError, KeyError, TypeError):
                        self.torn += 1
            if self.torn:
                log.warning("judge cache %s: %d unreadable line(s) ignored (a run stopped "
                            "mid-write); their pairs are asked again", self.path, self.torn)
            with open(self.path, "rb+") as f:
                # a torn last line must not swallow the next verdict
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, key: str) -> str | None:
        """Return the cached verdict of a key, or None."""
        return self._verdicts.get(key)

    def put(self, key: str, pair: Pair, model: str, verdict: str, reply: str) -> None:
        """Record one verdict (appended and flushed at once)."""
        rec = {"key": key, "model": model, "prompt_version": PROMPT_VERSION,
               "question": pair.question, "ground_truth": pair.ground_truth,
               "prediction": pair.prediction, "verdict": verdict, "reply": reply}
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
            self._verdicts[key] = verdict


# --------------------------------------------------------------------------- judges


class _Judge:
    """What both judges share: the cache walk and the counts."""

    kind = "judge"
    model = ""

    def __init__(self, cache: VerdictCache | str | os.PathLike | None) -> None:
        if cache is None:
            cache = default_cache_path()
        self.cache = cache if isinstance(cache, VerdictCache) else VerdictCache(cache)
        #: pairs answered from the cache and asked, over this judge's life
        self.cached = 0
        self.asked = 0

    def verdicts(self, pairs: Iterable[Pair], *, progress: bool = False) -> dict[Pair, str]:
        """Return a verdict for every pair, asking only those the cache does not hold.

        Args:
            pairs: the undecided pairs (duplicates are asked once).
            progress: show a progress bar while asking.

        Returns:
            pair -> ``"yes"``, ``"no"`` or ``"unparsed"``.

        Raises:
            JudgeError: the judge cannot answer; verdicts given so far stay cached.
        """
        out: dict[Pair, str] = {}
        todo: list[tuple[Pair, str]] = []
        for pair in dict.fromkeys(pairs):
            key = cache_key(pair, self.model)
            hit = self.cache.get(key)
            if hit is None:
                todo.append((pair, key))
            else:
                out[pair] = hit
        self.cached += len(out)
        if todo:
            log.info("judge %s (%s): %d pairs, %d from the cache %s, asking %d", self.kind,
                     self.model, len(out) + len(todo), len(out), self.cache.path, len(todo))
            for pair, verdict in self._ask(todo, progress):
                out[pair] = verdict
        return out

    def _ask(self, todo: list[tuple[Pair, str]], progress: bool) -> Iterable[tuple[Pair, str]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Return what the report says about this judge."""
        return {"kind": self.kind, "model": self.model, "prompt": describe_prompt(),
                "cache": str(self.cache.path), "asked": self.asked, "cached": self.cached}


def chat_completions_url(url: str) -> str:
    """Return the chat-completions endpoint of a base URL (``/v1`` -> ``/v1/chat/completions``).

    Args:
        url: a base URL or the full endpoint.

    Returns:
        The endpoint URL.

    Raises:
        JudgeError: not an http(s) URL.
    """
    if not url.startswith(("http://", "https://")):
        raise JudgeError(f"judge_url={url!r}: not an http(s) URL; pass the server's base URL, "
                         "e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class OpenAIJudge(_Judge):
    """Verdicts from an OpenAI-compatible chat-completions endpoint.

    Args:
        url: base URL (``https://api.openai.com/v1``) or the full endpoint.
        model: model name the server knows.
        key_env: environment variable holding the API key (sent as a Bearer token; when it is
            unset, requests go without one, as a local server may allow).
        concurrency: requests in flight at once.
        retries: further tries of a request after a timeout, a dropped connection, 429 or 5xx.
        timeout: seconds for one request.
        backoff: first wait before a retry, doubled each time (a Retry-After header wins,
            up to ``max_backoff``).
        max_backoff: longest wait between tries.
        cache: a :class:`VerdictCache` or its path (None: :func:`default_cache_path`).
    """

    kind = "openai"

    def __init__(self, url: str = DEFAULT_URL, model: str = DEFAULT_MODEL, *,
                 key_env: str = DEFAULT_KEY_ENV, concurrency: int = 8, retries: int = 5,
                 timeout: float = 60.0, backoff: float = 1.0, max_backoff: float = 30.0,
                 cache: VerdictCache | str | os.PathLike | None = None) -> None:
        if concurrency < 1 or retries < 0 or not timeout > 0:
            raise JudgeError(f"concurrency={concurrency}, retries={retries}, timeout={timeout}: "
                             "need concurrency >= 1, retries >= 0 and timeout > 0")
        super().__init__(cache)
        self.url = chat_completions_url(url)
        self.model = model
        self.key_env = key_env
        self.concurrency = concurrency
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retried = 0
        self._key = os.environ.get(key_env) or None
        if self._key is None:
            log.info("judge: $%s is not set, so requests to %s carry no API key", key_env,
                     self.url)

    def __repr__(self) -> str:
        return f"OpenAIJudge(url={self.url!r}, model={self.model!r}, key_env={self.key_env!r})"

    def describe(self) -> dict[str, Any]:  # noqa: D102 - see _Judge
        return {**super().describe(), "url": self.url, "retried": self.retried}

    def _hide(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _ask(self, todo: list[tuple[Pair, str]], progress: bool) -> Iterable[tuple[Pair, str]]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="judge", unit="pair", disable=not progress)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")
        # at most `concurrency` requests in flight: after a failure nothing more is sent
        queue = iter(todo)
        running: dict[Any, Pair] = {}
        try:
            while True:
                for pair, key in queue:
                    running[pool.submit(self._one, pair, key)] = pair
                    if len(running) >= self.concurrency:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    pair = running.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        raise exc
                    bar.update(1)
                    yield pair, fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def _one(self, pair: Pair, key: str) -> str:
        reply = self.complete(prompt_messages(pair))
        verdict = parse_verdict(reply)
        self.cache.put(key, pair, self.model, verdict, reply)
        self.asked += 1
        return verdict

    def complete(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Send one chat-completions request (with retries) and return the reply text.

        Args:
            messages: the chat messages.

        Returns:
            ``choices[0].message.content`` of the answer.

        Raises:
            JudgeError: a refused request (4xx other than 408/409/429), an answer without a
                reply, or every try failed.
        """
        import urllib.error
        import urllib.request

        body = json.dumps({"model": self.model, "messages": list(messages), "temperature": 0,
                           "max_tokens": 8}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        cause = ""
        for attempt in range(self.retries + 1):
            wait_s = min(self.max_backoff, self.backoff * 2 ** attempt)
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers,
                                             method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    answer = json.loads(resp.read().decode("utf-8"))
                return self._reply(answer)
            except urllib.error.HTTPError as e:
                text = self._hide(e.read().decode("utf-8", "replace")[:300])
                if e.code not in RETRY_STATUSES:
                    raise JudgeError(
                        f"judge {self.url} answered HTTP {e.code} {e.reason}: {text}; "
                        + ("check the key in $" + self.key_env if e.code in (401, 403)
                           else "check --judge-url and --judge-model")) from None
                cause = f"HTTP {e.code} {e.reason}"
                after = e.headers.get("Retry-After") if e.headers else None
                if after and after.strip().isdigit():
                    wait_s = min(self.max_backoff, float(after))
            except (urllib.error.URLError, OSError, ValueError) as e:
                # timeouts, refused or dropped connections, a body that is not JSON
                reason = getattr(e, "reason", e)
                cause = self._hide(f"{type(e).__name__}: {reason}")
            if attempt < self.retries:
                self.retried += 1
                log.debug("judge %s: %s; retry %d of %d in %.1f s", self.url, cause,
                          attempt + 1, self.retries, wait_s)
                time.sleep(wait_s)
        raise JudgeError(f"judge {self.url}: {self.retries + 1} tries failed, last: {cause}; "
                         "check that the server runs, or raise --judge-retries/--judge-timeout; "
                         "verdicts given so far are cached, a rerun asks only the rest")

    def _reply(self, answer: Any) -> str:
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge {self.url}: the answer has no choices[0].message.content "
                             f"({self._hide(json.dumps(answer)[:200])}); is it a "
                             "chat-completions endpoint?") from None
        return content if isinstance(content, str) else json.dumps(content)


class LocalJudge(_Judge):
    """Verdicts from a transformers causal LM in a local folder (or a cached Hub id).

    The prompt of :func:`prompt_messages` goes through the tokenizer's chat template (plain
    text when it has none); the verdict is whichever of "yes" and "no" the model ranks higher
    as its next token (greedy, no sampling, so a verdict is never ``unparsed``; ties say no).

    Args:
        path: model folder (``AutoModelForCausalLM`` + ``AutoTokenizer``).
        batch_size: prompts per forward pass.
        device: torch device (None: ``cuda`` when available, else ``cpu``).
        cache: a :class:`VerdictCache` or its path.
    """

    kind = "local"

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 8,
                 device: str | None = None,
                 cache: VerdictCache | str | os.PathLike | None = None) -> None:
        super().__init__(cache)
        self.path = str(path)
        self.batch_size = batch_size
        self.device = device
        self.model = f"local:{os.path.abspath(self.path)}:{_folder_fingerprint(self.path)}"
        self._lm: Any = None

    def _load(self) -> tuple[Any, Any, list[int], list[int]]:
        if self._lm is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(self.path)
                lm = AutoModelForCausalLM.from_pretrained(self.path)
            except (OSError, ValueError) as e:
                raise JudgeError(f"judge_model={self.path!r}: cannot load a causal LM and its "
                                 f"tokenizer ({e}); pass a folder saved by save_pretrained"
                                 ) from None
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            lm.to(device).eval()
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            yes = _first_tokens(tok, ("yes", "Yes", " yes", " Yes"))
            no = _first_tokens(tok, ("no", "No", " no", " No"))
            if not yes or not no or set(yes) & set(no):
                raise JudgeError(f"judge_model={self.path!r}: its tokenizer has no distinct "
                                 "tokens for 'yes' and 'no'; use another model")
            self._lm = (tok, lm, yes, no)
        return self._lm

    def prompt_text(self, pair: Pair) -> str:
        """Return the text the model reads for one pair."""
        tok = self._load()[0]
        messages = prompt_messages(pair)
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return f"{messages[0]['content']}\n\n{messages[1]['content']}\nAnswer:"

    def _ask(self, todo: list[tuple[Pair, str]], progress: bool) -> Iterable[tuple[Pair, str]]:
        import torch
        from tqdm.auto import tqdm

        tok, lm, yes, no = self._load()
        bar = tqdm(total=len(todo), desc="judge", unit="pair", disable=not progress)
        try:
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                texts = [self.prompt_text(pair) for pair, _ in chunk]
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(lm.device) for k, v in enc.items()}
                with torch.no_grad():
                    logits = lm(**enc).logits[:, -1, :].float()
                score_yes = logits[:, yes].max(dim=1).values
                score_no = logits[:, no].max(dim=1).values
                for (pair, key), y, n in zip(chunk, score_yes.tolist(), score_no.tolist(),
                                             strict=True):
                    verdict = "yes" if y > n else "no"
                    self.cache.put(key, pair, self.model, verdict,
                                   f"logit yes {y:.4f}, no {n:.4f}")
                    self.asked += 1
                    bar.update(1)
                    yield pair, verdict
        finally:
            bar.close()


def _first_tokens(tok: Any, words: Sequence[str]) -> list[int]:
    ids = []
    for w in words:
        enc = tok.encode(w, add_special_tokens=False)
        if enc and enc[0] != tok.unk_token_id and enc[0] not in ids:
            ids.append(enc[0])
    return ids


def _folder_fingerprint(path: str) -> str:
    """Hash of a model folder's config and its weight files' names, sizes and mtimes."""
    h = hashlib.sha256()
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                if f.name == "config.json":
                    h.update(f.read_bytes())
    else:
        h.update(path.encode())
    return h.hexdigest()[:16]


def make_judge(kind: str, *, url: str | None = None, model: str | None = None,
               key_env: str = DEFAULT_KEY_ENV, cache: str | os.PathLike | None = None,
               concurrency: int = 8, retries: int = 5, timeout: float = 60.0
               ) -> _Judge | None:
    """Return the judge a ``--judge`` option names.

    Args:
        kind: ``none``, ``openai`` or ``local``.
        url: the endpoint of ``openai`` (default :data:`DEFAULT_URL`).
        model: the model: a name for ``openai`` (default :data:`DEFAULT_MODEL`), a folder for
            ``local`` (required).
        key_env: environment variable of the API key (``openai``).
        cache: verdict cache path (None: :func:`default_cache_path`).
        concurrency: requests in flight (``openai``) or prompts per batch (``local``).
        retries: retries per request (``openai``).
        timeout: seconds per request (``openai``).

    Returns:
        The judge, or None for ``none``.

    Raises:
        JudgeError: an unknown kind, or ``local`` without a model folder.
    """
    if kind == "none":
        return None
    if kind == "openai":
        return OpenAIJudge(url or DEFAULT_URL, model or DEFAULT_MODEL, key_env=key_env,
                           concurrency=concurrency, retries=retries, timeout=timeout,
                           cache=cache)
    if kind == "local":
        if not model:
            raise JudgeError("judge='local' needs a model folder: pass --judge-model PATH (a "
                             "transformers causal LM saved with save_pretrained)")
        return LocalJudge(model, batch_size=concurrency, cache=cache)
    raise JudgeError(f"judge={kind!r}: unknown; use none, openai or local")
