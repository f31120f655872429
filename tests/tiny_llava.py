"""A tiny randomly initialised LLaVA-style model, tokenizer and processor, built offline.

No weights can be downloaded in tests, so :func:`build` makes everything from configs: a
word-level tokenizer (``tokenizers``) with ``<image>`` and chat special tokens and a chat
template, a 32 px ``CLIPImageProcessor``, a ``LlavaProcessor`` and a
``LlavaForConditionalGeneration`` from a tiny ``CLIPVisionConfig`` + ``LlamaConfig``, saved
with ``save_pretrained`` to a folder, so ``from_pretrained(folder)`` works for every client
(TRL's ``SFTTrainer``, ``transformers.Trainer``, LLaMA-Factory, lmms-eval).

The same file works on transformers 4.5x and 5.x (the LLaMA-Factory side venv pins <= 5.6).
Seeded: the same arguments give the same weights.

:func:`build_causal_lm` makes a text-only ``LlamaForCausalLM`` with the same tokenizer, for
clients that train language models only.

Usage::

    from tiny_llava import build
    folder = build(tmp_path / "tiny-llava", words=["sar", "image", ...])
    model = transformers.LlavaForConditionalGeneration.from_pretrained(folder)
    processor = transformers.AutoProcessor.from_pretrained(folder)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

#: the image placeholder the processor expands to ``IMAGE_TOKENS`` tokens
IMAGE_TOKEN = "<image>"
#: image side the processor resizes to, and the vision tower's patch size
IMAGE_SIZE, PATCH_SIZE = 32, 16
#: placeholder tokens per image: (32 / 16) ** 2 patches (the CLS token is dropped)
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN, "<|user|>", "<|assistant|>",
            "<|system|>", "<|end|>"]
_WORD = re.compile(r"\w+|[^\w\s]")

# Renders string contents and TRL's typed parts ({"type": "image"} / {"type": "text"}) alike;
# {% generation %} marks assistant turns (TRL's assistant_only_loss, transformers >= 5.18).
CHAT_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}"
    "{% if part['type'] == 'image' %}{{ '<image> ' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}{{ ' <|end|> ' + eos_token }}"
    "{% endgeneration %}"
    "{% else %}{{ render(message['content']) }}{{ ' <|end|> ' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)
_BASE_WORDS = ("a the of in on at is are this image sar what how many yes no there "
               "describe content one sentence question answer concisely . , ? : [ ] ( ) "
               "0 1 2 3 4 5 6 7 8 9").split()


def vocabulary(words: Iterable[str] = ()) -> list[str]:
    """Return the tokenizer's vocabulary: special tokens, base words, then ``words``' tokens.

    Args:
        words: texts (or single words) whose word and punctuation tokens join the vocabulary,
            lower-cased, in first-seen order.

    """
    out = list(SPECIALS)
    seen = set(out)
    for text in (*_BASE_WORDS, *words):
        for token in _WORD.findall(str(text).lower()):
            if token not in seen:
                seen.add(token)
                out.append(token)
    return out


def build_tokenizer(words: Iterable[str] = ()):
    """Return a ``PreTrainedTokenizerFast``: word level, lower-cased, ``<image>`` special."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(vocabulary(words))}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    # split on whitespace and punctuation; special tokens are matched before this runs
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>", additional_special_tokens=SPECIALS[4:],
        chat_template=CHAT_TEMPLATE, padding_side="right", model_max_length=512)
    return fast


def build(folder: str | Path, words: Iterable[str] = (), *, seed: int = 0,
          hidden: int = 32, layers: int = 2) -> Path:
    """Build and save the tiny model, tokenizer and processor into ``folder``.

    Args:
        folder: where to save (created); ``from_pretrained(folder)`` loads each part.
        words: texts whose tokens join the vocabulary (say, the dataset's captions and QA),
            so training text is not all ``<unk>``.
        seed: torch seed for the random weights.
        hidden: hidden size of the language model (the vision tower uses 16).
        layers: decoder layers.

    Returns:
        The folder.

    """
    import torch
    import transformers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(words)
    # transformers 5.x: the PIL backend by name (the default one wants torchvision)
    image_cls = getattr(transformers, "CLIPImageProcessorPil", None) or (
        transformers.CLIPImageProcessor)
    image_processor = image_cls(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True, do_resize=True, do_convert_rgb=True)
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=IMAGE_SIZE,
                              patch_size=PATCH_SIZE, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                       intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_select_strategy="default", vision_feature_layer=-1,
                         projector_hidden_act="gelu", image_seq_length=IMAGE_TOKENS,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_causal_lm(folder: str | Path, words: Iterable[str] = (), *, seed: int = 0,
                    hidden: int = 32, layers: int = 2) -> Path:
    """Build and save a tiny text-only ``LlamaForCausalLM`` and its tokenizer into ``folder``.

    Args:
        folder: where to save (created).
        words: texts whose tokens join the vocabulary.
        seed: torch seed for the random weights.
        hidden: hidden size.
        layers: decoder layers.

    Returns:
        The folder.

    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(words)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
