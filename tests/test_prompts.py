"""Prompt wrapping, the text-span mask, truncation before wrapping, padding sides."""

from __future__ import annotations

import pytest
import torch

from embedexp.core.errors import ConfigError
from embedexp.model.prompts import PromptTemplate

EOL = 'This sentence: "{text}" means in one word:'


def decode_span(tokenizer, ids: torch.Tensor, mask: torch.Tensor) -> str:
    """Text of the tokens where mask is 1."""
    return tokenizer.decode(ids[mask.bool()].tolist())


@pytest.mark.parametrize("side", ["left", "right"])
def test_wrapping_and_text_span(tiny_backbone, side):
    tok = tiny_backbone.tokenizer
    prompt = PromptTemplate("eol", EOL)
    texts = ["A fast text editor", "Library for parsing JSON documents in C"]
    batch = prompt.tokenize(texts, tok, max_length=64, padding_side=side)
    for i, text in enumerate(texts):
        assert tok.decode(batch.input_ids[i][batch.attention_mask[i].bool()].tolist()) == prompt.format(text)
        assert decode_span(tok, batch.input_ids[i], batch.text_mask[i]) == text
    assert (batch.text_mask <= batch.attention_mask).all()
    pad_column = 0 if side == "left" else -1
    assert batch.attention_mask[0, pad_column] == 0  # the shorter text is padded on the requested side


def test_prompt_with_space_before_slot_keeps_natural_tokens(tiny_backbone):
    tok = tiny_backbone.tokenizer
    prompt = PromptTemplate("cluster_short", "Cluster the text: {text}")
    batch = prompt.tokenize(["hello world"], tok, max_length=32)
    assert batch.input_ids[0].tolist() == tok("Cluster the text: hello world", add_special_tokens=False)["input_ids"]
    assert decode_span(tok, batch.input_ids[0], batch.text_mask[0]) == " hello world"


def test_truncation_cuts_text_not_prompt(tiny_backbone):
    tok = tiny_backbone.tokenizer
    prompt = PromptTemplate("eol", EOL)
    n_prompt = prompt.n_prompt_tokens(tok)
    long_text = " ".join(["word"] * 200)
    batch = prompt.tokenize([long_text], tok, max_length=n_prompt + 5)
    assert batch.input_ids.shape[1] == n_prompt + 5
    assert int(batch.text_mask.sum()) == 5
    assert batch.n_truncated == 1
    assert tok.decode(batch.input_ids[0].tolist()).endswith('" means in one word:')


def test_append_eos(tiny_backbone):
    tok = tiny_backbone.tokenizer
    batch = PromptTemplate("none", "{text}", append_eos=True).tokenize(["hi there"], tok, max_length=16)
    assert batch.input_ids[0, -1].item() == tok.eos_token_id
    assert batch.text_mask[0, -1].item() == 0


def test_template_without_slot_is_refused():
    with pytest.raises(ConfigError, match="exactly one '\\{text\\}'"):
        PromptTemplate("broken", "Summarize this:")


def test_max_length_too_small_for_prompt(tiny_backbone):
    prompt = PromptTemplate("eol", EOL)
    with pytest.raises(ConfigError, match="model.max_length"):
        prompt.tokenize(["x"], tiny_backbone.tokenizer, max_length=3)


ECHO = "Rewrite the sentence: {text}, rewritten sentence: {text}"


def echo_parts(tok, text: str) -> tuple[list[int], list[int], list[int], list[int]]:
    """Token ids of the echo prompt's pieces (first part, middle part, end) and of the text with its space."""
    first = tok("Rewrite the sentence:", add_special_tokens=False)["input_ids"]
    middle = tok(", rewritten sentence:", add_special_tokens=False)["input_ids"]
    return first, tok(" " + text, add_special_tokens=False)["input_ids"], middle, []


@pytest.mark.parametrize("side", ["left", "right"])
def test_echo_text_mask_marks_exactly_the_second_copy(tiny_backbone, side):
    tok = tiny_backbone.tokenizer
    prompt = PromptTemplate("echo", ECHO)
    texts = ["A fast text editor", "Library for parsing JSON documents in C"]
    batch = prompt.tokenize(texts, tok, max_length=64, padding_side=side)
    for i, text in enumerate(texts):
        first, ids, middle, _ = echo_parts(tok, text)
        real = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert real == first + ids + middle + ids  # the text twice, the second copy right after the middle part
        mask = batch.text_mask[i][batch.attention_mask[i].bool()].tolist()
        assert mask == [0] * (len(first) + len(ids) + len(middle)) + [1] * len(ids)  # first copy excluded
    other = PromptTemplate("echo", ECHO, pool_copy="first").tokenize(texts, tok, max_length=64)
    first, ids, _, _ = echo_parts(tok, texts[0])
    assert other.text_mask[0].tolist()[: len(first) + len(ids) + 1] == [0] * len(first) + [1] * len(ids) + [0]


def test_echo_truncation_cuts_both_copies_equally(tiny_backbone):
    tok = tiny_backbone.tokenizer
    prompt = PromptTemplate("echo", ECHO)
    n_prompt = prompt.n_prompt_tokens(tok)
    long_text = " ".join(["word"] * 200)
    batch = prompt.tokenize([long_text], tok, max_length=n_prompt + 11)
    assert batch.input_ids.shape[1] == n_prompt + 10  # 5 tokens per copy; the odd token left over stays unused
    assert int(batch.text_mask.sum()) == 5 and batch.n_truncated == 1
    first, ids, middle, _ = echo_parts(tok, long_text)
    assert batch.input_ids[0].tolist() == first + ids[:5] + middle + ids[:5]
    with pytest.raises(ConfigError, match="model.max_length.*2 times"):
        prompt.tokenize(["x"], tok, max_length=n_prompt + 1)


def test_echo_pooling_excluding_the_prompt_reads_only_the_second_copy(tiny_backbone):
    from embedexp.model.embedder import Embedder
    from embedexp.model.pooling import MeanPooling

    prompt = PromptTemplate("echo", ECHO)
    embedder = Embedder(tiny_backbone.model, tiny_backbone.tokenizer, MeanPooling(exclude_prompt=True), prompt)
    batch = embedder.tokenize(["A fast text editor"])
    with torch.no_grad():
        states, _ = embedder.run(batch)
        pooled = embedder(batch)[0]
    second = batch.text_mask[0].bool()
    first_start = len(echo_parts(tiny_backbone.tokenizer, "")[0])
    first = torch.zeros_like(second)
    first[first_start : first_start + int(second.sum())] = True
    assert torch.allclose(pooled, states[0][second].mean(dim=0), atol=1e-6)
    assert not torch.allclose(pooled, states[0][first].mean(dim=0), atol=1e-3)  # causal: the copies differ


def test_bad_pool_copy_is_refused():
    with pytest.raises(ConfigError, match="prompt.pool_copy"):
        PromptTemplate("echo", ECHO, pool_copy="middle")
