"""Tiny randomly initialised models built offline for tests (no weights are downloaded).

- :func:`build_llava`: a LLaVA-style image-text-to-text model + processor (tiny CLIP vision
  tower, tiny Llama, word-level tokenizer with an ``<image>`` token and a chat template).
- :func:`build_causal_lm`: a tiny Llama causal LM whose next token after any prompt is "yes"
  (or "no"): every token embeds to one vector, attention and MLP outputs are zero, and the
  output rows of "yes" and "no" are that vector's final-norm image and its negative, so the
  judge's choice is known in advance.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
WORDS = ("yes no one two three four five top bottom left right center ship tank aircraft car "
         "bridge harbor aerial view of a the with image building road river in is are there "
         "describe content this sentence question answer concisely how many what where "
         "ground truth prediction does give same as synonyms count reply").split()


def _tokenizer(extra: tuple[str, ...] = ()):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", *extra]
    words = WORDS + [".", ",", "?", ":", "[", "]"] + [str(i) for i in range(100)] + [
        "user", "assistant", "system"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    kwargs = {"extra_special_tokens": {"image_token": "<image>"}} if "<image>" in extra else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>", **kwargs)
    fast.chat_template = CHAT_TEMPLATE
    return fast, vocab


def build_llava(out: Path, seed: int = 0) -> Path:
    """Write a tiny LLaVA (model + processor) to ``out`` and return it."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok, vocab = _tokenizer(("<image>",))
    image_size, patch = 32, 8
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, image_size=image_size, patch_size=patch,
                              projection_dim=16)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=256, pad_token_id=0, bos_token_id=2,
                       eos_token_id=3)
    cfg = LlavaConfig(vision_config=vision, text_config=text,
                      image_token_index=vocab["<image>"], vision_feature_layer=-1,
                      vision_feature_select_strategy="default",
                      image_seq_length=(image_size // patch) ** 2)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    improc = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
    proc = LlavaProcessor(image_processor=improc, tokenizer=tok, patch_size=patch,
                          vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def build_causal_lm(out: Path, answer: str = "yes", seed: int = 0) -> Path:
    """Write a tiny Llama causal LM (+ tokenizer) that always ranks ``answer`` first."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, vocab = _tokenizer()
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=512, pad_token_id=0, bos_token_id=2,
                      eos_token_id=3, tie_word_embeddings=False)
    torch.manual_seed(seed)
    lm = LlamaForCausalLM(cfg)
    with torch.no_grad():
        e = torch.randn(cfg.hidden_size)
        lm.model.embed_tokens.weight[:] = e
        for layer in lm.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        u = lm.model.norm(e[None, None, :])[0, 0]
        lm.lm_head.weight.zero_()
        other = "no" if answer == "yes" else "yes"
        lm.lm_head.weight[vocab[answer]] = u
        lm.lm_head.weight[vocab[other]] = -u
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    return out
