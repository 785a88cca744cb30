"""Bake a prompt template into a fast tokenizer, so plain `tokenizer(text)` yields the Embedder's exact token ids.

sentence-transformers can only prepend a prompt string, and tokenizing `prompt + text + suffix` as one string merges
tokens across the boundaries (e.g. `?"` in `..."{text}" means in one word:`), which changes the ids of about 30 % of
real texts. The Embedder tokenizes the pieces separately; this module reproduces that inside the tokenizer: its
post-processor inserts the prompt's prefix and suffix ids (as template pieces, so truncation reserves room for them
and `special_tokens_mask` marks them), and a `Prepend` normalizer carries the whitespace between the prefix and
`{text}` onto the text, as `PromptTemplate.tokenize` does.

A template with several `{text}` slots (echo) repeats the sequence in the post-processor; the pooled copy gets
token type id 1 (`text_mask` reads it), and `model_max_length` is lowered so that truncation leaves each copy
`PromptTemplate.text_budget` tokens, as the Embedder does.
"""

from __future__ import annotations

import copy
import json

import torch
from tokenizers import Tokenizer, normalizers, processors

from embedexp.core.errors import ConfigError
from embedexp.model.prompts import PromptTemplate

SEQUENCE = "$A"


def _backend(tokenizer) -> Tokenizer:
    """The `tokenizers.Tokenizer` behind a transformers tokenizer (fast tokenizers only)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(f"exporting needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
    return backend


def template_processor(tokenizer, prompt: PromptTemplate) -> processors.TemplateProcessing:
    """A post-processor producing [special head] + prompt prefix + text + prompt suffix + [special tail]."""
    head, pieces, tail = prompt.pieces(tokenizer)
    echo = prompt.n_copies > 1
    layout = [("EMBEDEXP_HEAD", head)]
    for index, piece in enumerate(pieces[:-1]):
        layout.append(("EMBEDEXP_PREFIX" if index == 0 else f"EMBEDEXP_PROMPT{index}", piece))
        layout.append((f"{SEQUENCE}:{int(index == prompt.pooled_copy)}" if echo else SEQUENCE, None))
    layout += [("EMBEDEXP_SUFFIX", pieces[-1]), ("EMBEDEXP_TAIL", tail)]
    single, specials = [], []
    for name, ids in layout:
        if ids is None or ids:
            single.append(name)
        if ids:
            specials.append({"id": name, "ids": list(ids), "tokens": tokenizer.convert_ids_to_tokens(list(ids))})
    return processors.TemplateProcessing(single=single, pair=single + ["$B:1"], special_tokens=specials)


def original_state(tokenizer) -> dict:
    """The normalizer and post-processor that baking replaces (JSON), recorded so `unbake` can restore them."""
    state = json.loads(_backend(tokenizer).to_str())
    return {"normalizer": state.get("normalizer"), "post_processor": state.get("post_processor")}


def bake_template(tokenizer, prompt: PromptTemplate, max_length: int):
    """A copy of `tokenizer` whose `tokenizer(texts, truncation=True)` equals `prompt.tokenize(texts, ...)`."""
    if len(set(prompt.joints)) > 1:
        raise ConfigError(
            f"prompt.template of prompt '{prompt.name}': exporting needs the same whitespace before every "
            f"'{{text}}' slot, got {prompt.joints}"
        )
    processor = template_processor(tokenizer, prompt)  # from the unbaked pieces
    baked = copy.deepcopy(tokenizer)
    backend = _backend(baked)
    joint = prompt.joints[0]
    if joint:
        existing = [backend.normalizer] if backend.normalizer is not None else []
        backend.normalizer = normalizers.Sequence([normalizers.Prepend(joint), *existing])
    backend.post_processor = processor
    # truncation reserves room for the template's own tokens, not for the repeated copies of the text
    if prompt.n_copies > 1:
        max_length = prompt.n_prompt_tokens(tokenizer) + prompt.text_budget(tokenizer, max_length)
    baked.model_max_length = max_length
    baked.padding_side = "right"
    return baked


def unbake(tokenizer, original: dict):
    """A copy of a baked tokenizer with its original normalizer and post-processor restored."""
    state = json.loads(_backend(tokenizer).to_str())
    state.update(normalizer=original["normalizer"], post_processor=original["post_processor"])
    restored = Tokenizer.from_str(json.dumps(state))  # parses the saved parts; they may be None (no normalizer)
    plain = copy.deepcopy(tokenizer)
    backend = _backend(plain)
    backend.normalizer, backend.post_processor = restored.normalizer, restored.post_processor
    return plain


def text_mask(features: dict, text_copies: int = 1) -> torch.Tensor:
    """The Embedder's text mask from a baked tokenizer's output: non-special tokens (of the pooled copy, for echo)."""
    mask = features["attention_mask"]
    special = features.get("special_tokens_mask")
    text = mask * (1 - special) if special is not None else mask
    if text_copies > 1:
        text = text * features["token_type_ids"]
    return text
