"""One rank of a 2-process run (launched by ``two_ranks.torchrun``): read or train, report rows.

``python rank_worker.py --out DIR --root ROOT --config C STACK...`` under ``torchrun``. Each
stack reads the split the way its users do and records the id (``two_ranks.ident``) of every
row this rank's model or loop was given, in order; the report also has the optimizer steps
taken and, for accelerate, what ``gather_for_metrics`` returned. Stacks:

- ``ddp``: plain ``torch.distributed``: the default stream (whole split), ``distributed=True``
  from ``RANK``/``WORLD_SIZE`` alone and after ``init_process_group``, ``equalize=True``
  with shuffling and one all-reducing ``DistributedDataParallel`` step per batch, and
  ``split_dataset_by_node`` / ``.shard(world, rank)`` of the default stream.
- ``accelerate`` / ``accelerate-dispatch``: ``Accelerator.prepare`` of a DataLoader over the
  default stream, ``dispatch_batches`` off / on.
- ``trainer`` / ``trainer-dispatch``: ``transformers.Trainer`` on the tiny LLaVA (text only).
- ``trl``: TRL's ``SFTTrainer`` on the tiny LLaVA with images (TRL forces dispatch off).
- ``llamafactory``: LLaMA-Factory's ``run_exp`` (sft, streaming) through the loading script;
  rows are identified by their token ids (LLaMA-Factory drops every other column).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_ranks import ident  # noqa: E402


def _rank() -> tuple[int, int]:
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def _load(a, **kw):
    from sarlang_data import load_dataset

    return load_dataset(a.root, a.config, split=a.split, streaming=True,
                        cache_dir=str(Path(a.out) / f"cache{_rank()[0]}"), **kw)


def _ids_of(rows):
    import torch

    return torch.tensor([ident(r) for r in rows], dtype=torch.int64)


def _drain(loader) -> list[int]:
    return [int(x) for batch in loader for x in batch]


def stack_ddp(a) -> dict:
    import datetime
    import logging

    import torch
    import torch.distributed as dist
    from datasets.distributed import split_dataset_by_node
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

    log: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            log.append(record.getMessage())

    logging.getLogger("sarlang_data").addHandler(Keep())
    logging.getLogger("sarlang_data").setLevel(logging.INFO)
    rank, world = _rank()
    loader = {"batch_size": a.batch, "num_workers": a.workers, "collate_fn": _ids_of}
    out: dict = {}
    # no process group yet: the default stream is the whole split; distributed=True reads
    # RANK/WORLD_SIZE (set by torchrun)
    out["default"] = _drain(DataLoader(_load(a, decode=False), **loader))
    out["env"] = _drain(DataLoader(_load(a, decode=False, distributed=True), **loader))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    out["group"] = _drain(DataLoader(_load(a, decode=False, distributed=True), **loader))
    model = DistributedDataParallel(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ds = _load(a, decode=False, distributed=True, equalize=True).shuffle(seed=4, buffer_size=8)
    ds.set_epoch(1)
    seen, steps = [], 0
    for batch in DataLoader(ds, **loader):
        seen += [int(x) for x in batch]
        model(torch.ones(len(batch), 1)).sum().backward()  # DDP all-reduces: equal steps
        opt.step()
        opt.zero_grad()
        steps += 1
    out["equalized"], out["steps"] = seen, steps
    out["split_dataset_by_node"] = _drain(DataLoader(
        split_dataset_by_node(_load(a, decode=False), rank, world), **loader))
    out["shard"] = _drain(DataLoader(_load(a, decode=False).shard(world, rank), **loader))
    out["log"] = log
    dist.barrier()
    dist.destroy_process_group()
    return out


def stack_accelerate(a) -> dict:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
    from torch.utils.data import DataLoader

    acc = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(
        dispatch_batches=bool(a.dispatch)))
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_load(a, decode=False), batch_size=a.batch, num_workers=a.workers,
                        collate_fn=_ids_of)
    model, opt, loader = acc.prepare(model, opt, loader)
    seen, gathered, steps = [], [], 0
    for batch in loader:
        seen += [int(x) for x in batch]
        acc.backward(model(torch.ones(len(batch), 1, dtype=torch.float32)).sum())
        opt.step()
        opt.zero_grad()
        steps += 1
        if a.dispatch:  # gather needs equal shapes; accelerate pads the last batch to them
            gathered += [int(x) for x in acc.gather_for_metrics(batch)]
    acc.wait_for_everyone()
    return {"rows": seen, "steps": steps, "gathered": gathered}


class _Recorder:
    """A forward pre-hook that takes ``row_ids`` out of the model's inputs and keeps them."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.calls = 0

    def __call__(self, module, args, kwargs):
        ids = kwargs.pop("row_ids")
        self.rows += [int(x) for x in ids]
        self.calls += 1
        return args, kwargs


def _stop_at_epoch_end():
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = True
            return control

    return Stop()


def stack_trainer(a) -> dict:
    from transformers import (
        AutoTokenizer,
        LlavaForConditionalGeneration,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(a.model)
    model = LlavaForConditionalGeneration.from_pretrained(a.model)
    rec = _Recorder()
    model.register_forward_pre_hook(rec, with_kwargs=True)

    def collate(rows):
        # fixed length: with dispatch_batches the batches of all ranks are concatenated
        enc = tok([f"{r['question']} {r['answer']}" for r in rows], padding="max_length",
                  truncation=True, max_length=48, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return {**enc, "labels": labels, "row_ids": _ids_of(rows)}

    args = TrainingArguments(
        output_dir=str(Path(a.out) / "trainer"), per_device_train_batch_size=a.batch,
        max_steps=10**6, use_cpu=True, report_to=[], save_strategy="no",
        remove_unused_columns=False, dataloader_num_workers=a.workers, disable_tqdm=True,
        logging_strategy="no", accelerator_config={"dispatch_batches": bool(a.dispatch)},
        ddp_backend="gloo")
    trainer = Trainer(model=model, args=args, train_dataset=_load(a, decode=False),
                      data_collator=collate, callbacks=[_stop_at_epoch_end()])
    trainer.train()
    return {"rows": rec.rows, "steps": trainer.state.global_step, "calls": rec.calls}


def stack_trl(a) -> dict:
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    processor = AutoProcessor.from_pretrained(a.model)
    model = LlavaForConditionalGeneration.from_pretrained(a.model)
    rec = _Recorder()
    model.register_forward_pre_hook(rec, with_kwargs=True)

    def to_trl(row):
        return {"row_id": ident(row),
                "messages": [{"role": "user", "content": [
                    {"type": "image", "text": None},
                    {"type": "text", "text": row["question"]}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": row["answer"]}]}],
                "images": [row["image"]]}

    base = DataCollatorForVisionLanguageModeling(processor)

    def collate(rows):
        ids = [r["row_id"] for r in rows]
        batch = base([{"messages": r["messages"], "images": r["images"]} for r in rows])
        import torch

        batch["row_ids"] = torch.tensor(ids, dtype=torch.int64)
        return batch

    ds = _load(a).map(to_trl)
    args = SFTConfig(
        output_dir=str(Path(a.out) / "trl"), per_device_train_batch_size=a.batch,
        max_steps=10**6, use_cpu=True, report_to=[], save_strategy="no", max_length=None,
        remove_unused_columns=False, dataloader_num_workers=a.workers, disable_tqdm=True,
        logging_strategy="no", ddp_backend="gloo",
        dataset_kwargs={"skip_prepare_dataset": True})
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor,
                         data_collator=collate, callbacks=[_stop_at_epoch_end()])
    dispatch = trainer.args.accelerator_config.dispatch_batches
    trainer.train()
    return {"rows": rec.rows, "steps": trainer.state.global_step, "dispatch": dispatch}


def _lf_args(a, out: Path, ranks: bool = True) -> dict:
    args = {"stage": "sft", "do_train": True, "model_name_or_path": a.model,
            "dataset": "sarlang", "dataset_dir": a.lf_dir, "template": "default",
            "finetuning_type": "full", "output_dir": str(out), "overwrite_output_dir": True,
            "per_device_train_batch_size": a.batch, "max_steps": 10**6, "streaming": True,
            "buffer_size": 16, "cutoff_len": 64, "report_to": "none", "save_strategy": "no",
            "logging_steps": 10**6, "dataloader_num_workers": a.workers, "ddp_backend": "gloo",
            "use_cpu": True, "disable_tqdm": True, "plot_loss": False, "seed": 3,
            # LLaMA-Factory pads each batch to its longest row; accelerate's dispatch mode
            # (its default for streams) cannot concatenate such batches, so streaming
            # multi-process runs need dispatch off (then each rank reads its .shard())
            "accelerator_config": {"dispatch_batches": False}}
    if not ranks:
        del args["ddp_backend"]
    return args


def stack_llamafactory(a) -> dict:
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    seen: list[list[int]] = []

    def record(module, args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
            seen.append([t for t, keep in zip(row, m, strict=True) if keep])
        return args, kwargs

    class Hook(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.register_forward_pre_hook(record, with_kwargs=True)

    steps = []

    class Steps(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    run_exp(_lf_args(a, Path(a.out) / "lf"), callbacks=[Hook(), Steps(), _stop_at_epoch_end()])
    return {"rows": seen, "steps": steps[0]}


def expected_llamafactory(a) -> dict:
    """One process, no training: the token ids of every row LLaMA-Factory's loader makes."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(
        _lf_args(a, Path(a.out) / "e", ranks=False))
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="sft",
                         tokenizer=tokenizer)
    return {"rows": [list(r["input_ids"]) for r in module["train_dataset"]]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stacks", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--config", default="vqa")
    p.add_argument("--split", default="train")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--model", default=None)
    p.add_argument("--lf-dir", default=None)
    a = p.parse_args()
    if a.stacks == ["llamafactory-expected"]:
        report, rank = expected_llamafactory(a), 0
    else:
        report = {}
        for stack in a.stacks:
            name, _, dispatch = stack.partition("-")
            a.dispatch = dispatch == "dispatch"
            report[stack] = globals()[f"stack_{name}"](a)
        rank, _ = _rank()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    path = Path(a.out) / f"rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(path)


if __name__ == "__main__":
    main()
