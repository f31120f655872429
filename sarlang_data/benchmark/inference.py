"""Predictions of an image-text-to-text model over a split: one JSONL line per text row.

``sarlang-data predict`` runs a transformers model (``AutoProcessor`` +
``AutoModelForImageTextToText``, the model's own chat template) over the rows of a text config,
with the paper's prompts ("Describe the content of this image in one sentence." for captions,
"Question: {q}. Answer the question concisely." for VQA), batched and greedy. Each row gives
``{"id": ..., "prediction": ...}``, the row's stable ``id`` first, so
:func:`sarlang_data.evaluate` joins it back. Output is appended batch by batch and flushed:
a rerun skips the ids already in the file, so an interrupted run resumes.

Two engines give the same rows: ``local`` streams them with :func:`sarlang_data.load_dataset`
in this process; ``ray`` reads the shards with :func:`sarlang_data.ray.read` and runs the model
in ``map_batches`` actors on every node of a Ray cluster (the path when one machine is too
slow for 125K test questions).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..configs import Config, get_config
from ..errors import ConfigError, SarlangError
from ..stream.views import CAPTION_PROMPT, VQA_PROMPT

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


class PredictError(SarlangError):
    """Predictions cannot be made (a model that does not load, a bad output file)."""


def prompt_for(row: Mapping[str, Any]) -> str:
    """Return the paper's prompt for one text row (caption rows have no ``question``)."""
    if row.get("question") is not None:
        return VQA_PROMPT.format(question=row["question"])
    return CAPTION_PROMPT


def text_config(config: Config | str) -> Config:
    """Return a text config (captions or QA rows), refusing image-centric and chat ones.

    Raises:
        ConfigError: an unknown config, or one whose rows are not single texts.
    """
    cfg = config if isinstance(config, Config) else get_config(config)
    if cfg.unit not in ("caption", "qa") or cfg.layout != "rows":
        raise ConfigError(
            f"config={cfg.name!r}: its rows are "
            f"{'chat conversations' if cfg.layout == 'chat' else cfg.unit + ' rows'}, not "
            "single texts; predict "
            "takes a caption or VQA config: vqa, a task (object_identification, ...), "
            "captions, captions_concise or captions_detailed")
    return cfg


# --------------------------------------------------------------------------- the model


def _pil(image: Any) -> Any:
    """Return an RGB PIL image from a decoded image or a ``{"bytes", "path"}`` dict."""
    from PIL import Image

    if isinstance(image, Mapping):
        from ..format import codec  # noqa: F401 - registers the pixel-member Pillow plugin

        image = Image.open(io.BytesIO(image["bytes"]))
    return image.convert("RGB")


class Generator:
    """A loaded model and processor that turn rows into predictions (greedy decoding).

    Args:
        model: a model folder or Hub id (``AutoModelForImageTextToText`` + ``AutoProcessor``).
        max_new_tokens: tokens generated per row at most.
        device: torch device (None: ``cuda`` when available, else ``cpu``).
        dtype: torch dtype name for the weights (None: as saved).
    """

    def __init__(self, model: str, *, max_new_tokens: int = 32, device: str | None = None,
                 dtype: str | None = None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(model)
            kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
            self.model = AutoModelForImageTextToText.from_pretrained(model, **kwargs)
        except (OSError, ValueError) as e:
            raise PredictError(
                f"model={model!r}: cannot load it as an image-text-to-text model with its "
                f"processor ({e}); pass a folder saved with save_pretrained (model and "
                "processor) or a Hub id of such a model") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            # decoder-only generation in batches needs the padding on the left
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
        self.max_new_tokens = max_new_tokens

    def prompts(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Return the chat-templated prompt text of each row."""
        out = []
        for row in rows:
            messages = [{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": prompt_for(row)}]}]
            out.append(self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False))
        return out

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Return one prediction per row (the generated text, stripped)."""
        import torch

        if not rows:
            return []
        images = [_pil(r["image"]) for r in rows]
        inputs = self.processor(text=self.prompts(rows), images=images, return_tensors="pt",
                                padding=True)
        inputs = inputs.to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]


# --------------------------------------------------------------------------- output file


def done_ids(path: str | os.PathLike) -> set[str]:
    """Return the ids already in a predictions file, dropping a torn last line.

    A run killed while writing can leave a last line without its newline; it is cut off
    (the file is rewritten through a temporary name) so the next line starts clean.

    Args:
        path: the JSONL output of :func:`predict` (need not exist).

    Returns:
        The ids of its complete lines.

    Raises:
        PredictError: a line before the last is not a prediction (not our file?).
    """
    path = Path(path)
    if not path.exists():
        return set()
    ids: set[str] = set()
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            raise PredictError(f"{path}:{n}: not a prediction line ({line[:80]!r}); pass an "
                               "--out file written by predict, or a new one") from None
    if tail.strip():
        log.warning("%s: dropping a torn last line (%d bytes) from an interrupted run", path,
                    len(tail))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data[: len(data) - len(tail)])
        os.replace(tmp, path)
    return ids


class _Writer:
    """Appends prediction lines, flushed per batch."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.n = 0

    def write(self, ids: Iterable[str], predictions: Iterable[str]) -> int:
        k = 0
        for i, p in zip(ids, predictions, strict=True):
            self.f.write(json.dumps({"id": i, "prediction": p}, ensure_ascii=False) + "\n")
            k += 1
        self.f.flush()
        self.n += k
        return k

    def close(self) -> None:
        self.f.close()


# --------------------------------------------------------------------------- predict


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(model: str, *, config: str = "vqa", split: str = "test", data: str | None = None,
            out: str | os.PathLike, batch_size: int = 8, max_new_tokens: int = 32,
            engine: str = "local", ray_address: str | None = None, ray_actors: int | None = None,
            limit: int | None = None, device: str | None = None, dtype: str | None = None,
            threads: int | None = None, storage_options: Mapping[str, Any] | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Predict every row of a split with an image-text-to-text model; append JSONL lines.

    This is ``sarlang-data predict``.

    Args:
        model: model folder or Hub id (on every node of the cluster for ``engine="ray"``).
        config: a text config (``vqa``, a task, ``captions``, ``captions_concise``, ...).
        split: ``test`` or ``train``.
        data: dataset root, URL or Hub id (None: ``$SARLANG_DATA`` or the preview).
        out: JSONL file to append to; ids already in it are skipped.
        batch_size: rows per ``generate`` call.
        max_new_tokens: tokens generated per row at most.
        engine: ``local`` (this process) or ``ray`` (``map_batches`` on a Ray cluster).
        ray_address: cluster to join (None: a running one from ``ray.init``'s rules, else a
            local one).
        ray_actors: model replicas (default: one per GPU of the cluster, else one per CPU
            less one for reading).
        limit: predict at most this many new rows (a slice, for timing).
        device: torch device for ``local`` (None: cuda when available).
        dtype: torch dtype name of the weights (``bfloat16``, ...).
        threads: torch CPU threads of the ``local`` engine (None: torch's default; small
            models on a busy machine often run several times faster with 1). Ray actors use
            one thread per CPU they reserve.
        storage_options: fsspec options for the root.
        progress: show a progress bar.

    Returns:
        ``{"engine", "config", "split", "rows", "done_before", "written", "seconds",
        "rows_per_s", "out"}``.

    Raises:
        ConfigError: a config that is not a text config, an unknown engine or split, bad sizes.
        PredictError: a model that does not load, an output file that is not ours.
    """
    from ..adapters.hf import SarlangBuilder, resolve_root

    cfg = text_config(config)
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: unknown; use local or ray")
    if batch_size < 1 or max_new_tokens < 1 or (limit is not None and limit < 0):
        raise ConfigError(f"batch_size={batch_size}, max_new_tokens={max_new_tokens}, "
                          f"limit={limit}: need batch_size >= 1, max_new_tokens >= 1, limit >= 0")
    root = resolve_root(data or "sarlang-1m")
    out = Path(out)
    done = done_ids(out)
    builder = SarlangBuilder(config_name=cfg.name, data_dir=root, decode=False,
                             distributed=False,
                             storage_options=dict(storage_options) if storage_options else None)
    total = sum(builder.shard_rows(split)[1]) if split in builder.shard_urls() else 0
    if total == 0:
        raise ConfigError(f"split={split!r}: root {root!r} has no {cfg.name} rows in it; "
                          f"splits with rows: {', '.join(builder.shard_urls()) or 'none'}")
    # the file may hold other configs' ids too (captions and VQA in one file): count ours
    from .predictions import text_rows

    done = done & {r["id"] for r in text_rows(root, split, cfg.name, storage_options)}
    todo = max(0, total - len(done))
    if limit is not None:
        todo = min(todo, limit)
    restore = None
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads={threads}: need at least 1, or None for torch's default")
        import torch

        restore = torch.get_num_threads()
        torch.set_num_threads(threads)
    start = time.perf_counter()
    writer = _Writer(out)
    try:
        if todo:
            run = _run_local if engine == "local" else _run_ray
            run(model, cfg.name, split, root, done, writer, batch_size=batch_size,
                max_new_tokens=max_new_tokens, todo=todo, device=device, dtype=dtype,
                ray_address=ray_address, ray_actors=ray_actors, limited=limit is not None,
                storage_options=storage_options, progress=progress)
    finally:
        writer.close()
        if restore is not None:
            import torch

            torch.set_num_threads(restore)
    seconds = time.perf_counter() - start
    result = {"engine": engine, "config": cfg.name, "split": split, "rows": total,
              "done_before": len(done), "written": writer.n, "seconds": round(seconds, 3),
              "rows_per_s": round(writer.n / seconds, 3) if writer.n and seconds > 0 else None,
              "out": str(out)}
    log.info("predict: %d rows written to %s in %.1f s (%s rows/s, engine %s); %d were there",
             writer.n, out, seconds, result["rows_per_s"], engine, len(done))
    return result


def _bar(total: int, progress: bool, engine: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"predict ({engine})", unit="row", disable=not progress)


def _run_local(model: str, config: str, split: str, root: str, done: set[str], writer: _Writer,
               *, batch_size: int, max_new_tokens: int, todo: int, device: str | None,
               dtype: str | None, storage_options: Mapping[str, Any] | None, progress: bool,
               **_: Any) -> None:
    from ..adapters.hf import load_dataset

    gen = Generator(model, max_new_tokens=max_new_tokens, device=device, dtype=dtype)
    ds = load_dataset(root, config, split=split, streaming=True, decode=False,
                      distributed=False, storage_options=storage_options)
    rows = (r for r in ds if r["id"] not in done)
    bar = _bar(todo, progress, "local")
    try:
        left = todo
        for batch in _batches(rows, batch_size):
            batch = batch[:left]
            bar.update(writer.write([r["id"] for r in batch], gen(batch)))
            left -= len(batch)
            if left <= 0:
                break
    finally:
        bar.close()


class _RayPredictor:
    """The ``map_batches`` callable: one model per actor, rows in, ``id`` + ``prediction`` out."""

    def __init__(self, model: str, max_new_tokens: int, dtype: str | None,
                 num_threads: int | None) -> None:
        if num_threads:
            import torch

            torch.set_num_threads(num_threads)
        self.gen = Generator(model, max_new_tokens=max_new_tokens, dtype=dtype)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        return pa.table({"id": pa.array([r["id"] for r in rows], pa.string()),
                         "prediction": pa.array(self.gen(rows), pa.string())})


def _ray_plan(ray: Any, actors: int | None) -> tuple[int, float, float]:
    """Return ``(actors, cpus per actor, gpus per actor)`` for the cluster."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    if gpus:
        return actors or gpus, 1.0, 1.0
    # leave a CPU to the read tasks, or the actors starve the reads
    return actors or max(1, cpus - 1), 1.0, 0.0


def _run_ray(model: str, config: str, split: str, root: str, done: set[str], writer: _Writer,
             *, batch_size: int, max_new_tokens: int, todo: int, dtype: str | None,
             ray_address: str | None, ray_actors: int | None, limited: bool,
             storage_options: Mapping[str, Any] | None, progress: bool, **_: Any) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("engine='ray' needs Ray Data: pip install 'ray[data]'") from None
    from ..adapters.ray import read

    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    actors, cpus, gpus = _ray_plan(ray, ray_actors)
    ds = read(root, config, split=split, storage_options=storage_options)
    if done:
        skip = frozenset(done)
        ds = ds.filter(lambda row: row["id"] not in skip)
    if limited:
        ds = ds.limit(todo)
    preds = ds.map_batches(_RayPredictor, fn_constructor_kwargs={
        "model": model, "max_new_tokens": max_new_tokens, "dtype": dtype,
        "num_threads": int(cpus) if not gpus else None},
        batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus)
    bar = _bar(todo, progress, "ray")
    try:
        for b in preds.iter_batches(batch_size=None, batch_format="pyarrow"):
            bar.update(writer.write(b.column("id").to_pylist(),
                                    b.column("prediction").to_pylist()))
    finally:
        bar.close()

