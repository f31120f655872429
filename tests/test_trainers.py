"""The real training stacks on our rows: TRL's SFTTrainer and transformers.Trainer train a tiny
randomly initialised LLaVA-style model (tests/tiny_llava.py, built offline) 2 steps on the
default ``chat`` config and on ``vqa`` as chat rows, with 0 and 2 DataLoader workers, and resume
from the step-2 checkpoint with the same rows as an uninterrupted run. About 60-90 s on 2 cores.
"""

from __future__ import annotations

import math

import pytest
import tiny_llava
import torch
import transformers
import trl

from sarlang_data.adapters import hf


@pytest.fixture(scope="module")
def model_dir(tiny_root, tmp_path_factory):
    words = []
    for name in ("vqa", "captions"):
        for r in hf.load_dataset(str(tiny_root), name, split="train", streaming=True,
                                 decode=False):
            words.append(r.get("question", "") + " " + (r.get("answer") or r.get("caption")))
    return tiny_llava.build(tmp_path_factory.mktemp("tiny-llava"), words=words)


def _rows(tiny_root, config):
    # the whole split in this single process; chat rows in TRL's layout (the chat default)
    kw = {} if config == "chat" else {"chat_format": "trl"}
    return hf.load_dataset(str(tiny_root), config, split="train", streaming=True,
                           distributed=False, **kw)


class _WithIds:
    """A collator that also hands the batch's row ids to the trainer (they leave the workers
    with the batch), so the test sees which rows every step trained on."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, rows):
        ids = [r["id"] for r in rows]
        out = self.inner(rows)
        out["row_ids"] = ids
        return out


class _VisionCollator:
    """transformers.Trainer's collator: the processor's chat template over the rows' messages
    and images, labels = input ids with padding masked."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows):
        texts = [self.processor.apply_chat_template(r["messages"], tokenize=False)
                 for r in rows]
        batch = self.processor(text=texts, images=[r["images"] for r in rows],
                               return_tensors="pt", padding=True)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        batch["labels"] = labels
        return batch


def _seen_steps(cls):
    class Recording(cls):
        seen: list

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.seen.append(inputs.pop("row_ids"))
            return super().training_step(model, inputs, num_items_in_batch)

    return Recording


def _train(kind, model_dir, rows, out, workers, resume=None):
    model = transformers.LlavaForConditionalGeneration.from_pretrained(model_dir)
    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    common = dict(output_dir=str(out), max_steps=4, per_device_train_batch_size=2,
                  report_to=[], use_cpu=True, logging_steps=1, save_strategy="steps",
                  save_steps=2, dataloader_num_workers=workers, seed=0,
                  remove_unused_columns=False)
    if kind == "sft":
        args = trl.SFTConfig(**common, max_length=None)
        trainer = _seen_steps(trl.SFTTrainer)(model=model, args=args, train_dataset=rows,
                                              processing_class=processor)
        trainer.data_collator = _WithIds(trainer.data_collator)
    else:
        args = transformers.TrainingArguments(**common)
        trainer = _seen_steps(transformers.Trainer)(
            model=model, args=args, train_dataset=rows,
            data_collator=_WithIds(_VisionCollator(processor)))
    trainer.seen = []
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = trainer.train(resume_from_checkpoint=resume)
    changed = any(not torch.equal(before[k], v) for k, v in model.named_parameters())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer, result, changed, losses


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "trainer"])
@pytest.mark.parametrize("config", ["chat", "vqa"])
@pytest.mark.parametrize("workers", [0, 2])
def test_trains_and_resumes_with_the_same_rows(kind, config, workers, model_dir, tiny_root,
                                                tmp_path):
    rows = _rows(tiny_root, config)
    trainer, result, changed, losses = _train(kind, model_dir, rows, tmp_path / "a", workers)
    assert trainer.state.global_step == 4 and changed
    assert len(losses) == 4 and all(math.isfinite(x) and x > 0 for x in losses)
    seen = trainer.seen
    # every step trained on 2 distinct rows of the split, in the stream's order
    flat = [i for step in seen for i in step]
    assert [len(s) for s in seen] == [2, 2, 2, 2] and len(set(flat)) == 8
    if workers == 0:
        stream = [r["id"] for _, r in zip(range(8), _rows(tiny_root, config), strict=False)]
        assert flat == stream
    # resumed from the step-2 checkpoint: steps 3 and 4 train on the same rows again
    again, _, _, _ = _train(kind, model_dir, _rows(tiny_root, config), tmp_path / "b",
                            workers, resume=str(tmp_path / "a" / "checkpoint-2"))
    assert again.state.global_step == 4
    assert again.seen == seen[2:]


def test_string_content_with_image_placeholders_is_not_trls_layout(model_dir, tiny_root,
                                                                   tmp_path):
    """Why TRL's layout is the default: SFTTrainer adds its own image part to string content,
    so LLaMA-Factory's "<image>" string layout gives twice the image tokens (the issue's
    "Found total 4 <image> tokens and 2 images")."""
    rows = hf.load_dataset(str(tiny_root), "chat", split="train", streaming=True,
                           distributed=False, chat_format="llamafactory")
    with pytest.raises(ValueError, match="image"):
        _train("sft", model_dir, rows, tmp_path / "lf", 0)
