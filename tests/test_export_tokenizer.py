"""The exported tokenizer reproduces `PromptTemplate.tokenize` exactly, for every shipped prompt."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from embedexp.core.config import CONFIG_DIR
from embedexp.export.tokenizer import bake_template, original_state, text_mask, unbake

PROMPTS = sorted(path.stem for path in (CONFIG_DIR / "prompt").glob("*.yaml"))
TEXTS = [
    "Chess engine",
    "Does it end with a question?",
    '"Quoted" start.',
    "(brackets) and 'quotes'",
    "  two leading spaces",
    "naïve café — 東京 🙂",
    "line\nbreak",
    "word " * 80,  # truncated at max_length
]


@pytest.mark.parametrize("name", PROMPTS)
def test_baked_tokenizer_gives_the_embedders_token_ids(tiny_backbone, tmp_path, name):
    prompt = instantiate(OmegaConf.load(CONFIG_DIR / "prompt" / f"{name}.yaml"))
    tokenizer = tiny_backbone.tokenizer
    max_length = prompt.n_prompt_tokens(tokenizer) + 12
    baked = bake_template(tokenizer, prompt, max_length)
    if name == "eol":  # serialisation round trip, as sentence-transformers loads it (once: it is slow)
        baked.save_pretrained(tmp_path)
        baked = AutoTokenizer.from_pretrained(tmp_path)
    expected = prompt.tokenize(TEXTS, tokenizer, max_length, "right")
    echo = prompt.n_copies > 1  # the pooled copy is marked by token type ids
    got = baked(
        TEXTS,
        padding=True,
        truncation=True,
        return_tensors="pt",
        return_special_tokens_mask=True,
        return_token_type_ids=echo,
    )
    assert got["input_ids"].tolist() == expected.input_ids.tolist()
    assert got["attention_mask"].tolist() == expected.attention_mask.tolist()
    assert text_mask(got, prompt.n_copies).tolist() == expected.text_mask.tolist()


def test_unbake_restores_the_plain_tokenizer(tiny_backbone):
    tokenizer = tiny_backbone.tokenizer
    prompt = instantiate(OmegaConf.load(CONFIG_DIR / "prompt" / "cluster_short.yaml"))  # normalizer and post-processor
    baked = bake_template(tokenizer, prompt, 64)
    assert baked(TEXTS[:3])["input_ids"] != tokenizer(TEXTS[:3])["input_ids"]
    plain = unbake(baked, original_state(tokenizer))
    assert plain(TEXTS[:3])["input_ids"] == tokenizer(TEXTS[:3])["input_ids"]


def test_string_concatenated_prompts_change_token_ids(tiny_backbone):
    """Why the template is baked into the tokenizer: one-string tokenization merges `?` and the closing quote."""
    prompt = instantiate(OmegaConf.load(CONFIG_DIR / "prompt" / "eol.yaml"))
    tokenizer = tiny_backbone.tokenizer
    text = "Does it end with a question?"
    piecewise = prompt.tokenize([text], tokenizer, 64).input_ids[0].tolist()
    assert tokenizer(prompt.format(text))["input_ids"] != piecewise
