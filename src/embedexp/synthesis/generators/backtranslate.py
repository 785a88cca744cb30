"""Back-translation: English -> pivot language -> English, with a seq2seq pair (MarianMT) or an instruct LM.

`translator.kind=auto` uses the seq2seq models when they load (hub or local cache) and falls back to the
instruct LM otherwise, so the generator also runs offline with SmolLM2 as translator.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import torch

from embedexp.core.errors import ConfigError
from embedexp.synthesis.generators.base import Generator, OutputCheck, Progress, clean_output, run_with_retries
from embedexp.synthesis.generators.chat import ChatLM, pick_device
from embedexp.synthesis.generators.paraphrase import few_shot, load_lm
from embedexp.synthesis.text import normalise, words

log = logging.getLogger(__name__)
Translation = list[tuple[str, bool]]

# frequent function words, to tell a round trip that came back in the pivot language from one that came back in English
FUNCTION_WORDS = {
    "english": set("the a an and of for to in on with is are from by this that which".split()),
    "german": set("der die das und für mit von zu den des dem ist ein eine einer auf im sich nicht".split()),
    "french": set("le la les et pour avec des du un une est dans sur au aux qui".split()),
    "spanish": set("el la los las y para con del un una es en por que al".split()),
}


def still_in_pivot(text: str, language: str) -> bool:
    """More function words of the pivot language than of English (False for pivots without a word list)."""
    pivot = FUNCTION_WORDS.get(language.lower())
    if not pivot:
        return False
    tokens = words(text)
    return sum(t in pivot for t in tokens) > sum(t in FUNCTION_WORDS["english"] for t in tokens)


class InstructTranslator:
    """Translation by prompting a chat LM (few-shot examples are English/pivot pairs, reversed for the way back)."""

    def __init__(
        self,
        model: Mapping | ChatLM,
        language: str,
        to_pivot: str = "Translate to {language}: {text}",
        from_pivot: str = "Translate to English: {text}",
        system_prompt: str | None = "You are a translator. Reply with the translation only.",
        examples: list | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.7,
        top_p: float = 0.9,
    ) -> None:
        """`examples`: [english, pivot] pairs; templates take `{text}` and may use `{language}`."""
        self._model, self._lm = model, model if hasattr(model, "complete") else None
        self.templates = {
            "to_pivot": to_pivot.replace("{language}", language),
            "from_pivot": from_pivot.replace("{language}", language),
        }
        pairs = [tuple(e) for e in (examples or [])]
        self.examples = {"to_pivot": pairs, "from_pivot": [(b, a) for a, b in pairs]}
        self.system_prompt = system_prompt
        self.sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)

    @property
    def name(self) -> str:
        """The model's name."""
        return self._lm.name if self._lm is not None else str(self._model.get("name_or_path"))

    def translate(self, texts: list[str], direction: str) -> Translation:
        """Translate `to_pivot` or `from_pivot`; returns (text, finished) per input."""
        if self._lm is None:
            self._lm = load_lm(self._model)
        template, examples = self.templates[direction], self.examples[direction]
        chats = [few_shot(self.system_prompt, examples, template, text) for text in texts]
        return [(clean_output(reply), done) for reply, done in self._lm.complete(chats, **self.sampling)]


class Seq2SeqTranslator:
    """Translation with two seq2seq models (e.g. MarianMT `Helsinki-NLP/opus-mt-en-de` and `...-de-en`)."""

    name = "seq2seq"

    def __init__(
        self,
        forward,
        backward,
        max_new_tokens: int = 128,
        num_beams: int = 1,
        do_sample: bool = True,
        temperature: float = 0.8,
        top_p: float = 0.9,
    ) -> None:
        """`forward`/`backward`: (model, tokenizer) pairs for English -> pivot and pivot -> English."""
        self.models = {"to_pivot": forward, "from_pivot": backward}
        self.options = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample)
        if do_sample:
            self.options.update(temperature=temperature, top_p=top_p)

    @classmethod
    def load(cls, forward: str, backward: str, device: str | None = None, **options) -> Seq2SeqTranslator:
        """Load both models by hub id or folder (raises OSError when they are neither cached nor downloadable)."""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        def one(name: str):
            model = AutoModelForSeq2SeqLM.from_pretrained(name).to(pick_device(device)).eval()
            return model, AutoTokenizer.from_pretrained(name)

        translator = cls(one(forward), one(backward), **options)
        translator.name = f"{forward}+{backward}"
        return translator

    def translate(self, texts: list[str], direction: str) -> Translation:
        """Translate a batch in one `generate` call."""
        model, tokenizer = self.models[direction]
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, **self.options)
        return [(clean_output(t), True) for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def build_translator(kind: str, language: str, seq2seq: Mapping | None, instruct: Mapping | None):
    """The translator for `kind` (auto: seq2seq when its models load, else the instruct LM)."""
    if kind not in ("auto", "seq2seq", "instruct"):
        raise ConfigError(f"generator.translator.kind must be auto, seq2seq or instruct, got {kind!r}")
    if kind in ("auto", "seq2seq") and seq2seq:
        try:
            return Seq2SeqTranslator.load(**dict(seq2seq))
        except (OSError, ValueError, ImportError) as err:
            if kind == "seq2seq":
                raise ConfigError(f"generator.translator.seq2seq: cannot load the translation models: {err}") from err
            log.warning("seq2seq translators unavailable (%s); translating with the instruct LM", str(err)[:200])
    if not instruct:
        raise ConfigError("generator.translator.instruct is needed when the seq2seq translators cannot be used")
    return InstructTranslator(language=language, **dict(instruct))


class BackTranslateGenerator(Generator):
    """Round trip through a pivot language; the English that comes back is the positive."""

    name = "backtranslate"

    def __init__(
        self,
        translator,
        pivot_language: str = "German",
        batch_size: int = 32,
        max_retries: int = 2,
        check: Mapping | OutputCheck | None = None,
    ) -> None:
        """`translator`: an object with `translate(texts, direction)`, or a config with kind/seq2seq/instruct."""
        super().__init__()
        self.pivot_language = pivot_language
        self._translator_cfg = None if hasattr(translator, "translate") else dict(translator)
        self._translator = translator if self._translator_cfg is None else None
        self.batch_size, self.max_retries = batch_size, max_retries
        self.check = check if isinstance(check, OutputCheck) else OutputCheck(**dict(check or {}))

    @property
    def translator(self):
        """The translator (built on first use)."""
        if self._translator is None:
            cfg = dict(self._translator_cfg)
            self._translator = build_translator(
                cfg.get("kind", "auto"), self.pivot_language, cfg.get("seq2seq"), cfg.get("instruct")
            )
        return self._translator

    @property
    def model_id(self) -> str | None:
        """The translator's model(s)."""
        if self._translator is not None:
            return getattr(self._translator, "name", None)
        instruct = (self._translator_cfg or {}).get("instruct") or {}
        return str((instruct.get("model") or {}).get("name_or_path", "")) or None

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """One back-translation per text (None after `max_retries` rejected retries)."""
        torch.manual_seed(seed)
        random.seed(seed)

        def attempt(batch: list[str]) -> list[tuple[str, str | None]]:
            pivots = self.translator.translate(batch, "to_pivot")
            results: list[tuple[str, str | None]] = [("", None)] * len(batch)
            good = []
            for i, (text, (pivot, done)) in enumerate(zip(batch, pivots)):
                if not pivot.strip() or not done:
                    results[i] = (pivot, "pivot_empty" if not pivot.strip() else "pivot_truncated")
                elif normalise(pivot) == normalise(text):
                    results[i] = (pivot, "pivot_untranslated")
                else:
                    good.append((i, pivot))
            back = self.translator.translate([p for _, p in good], "from_pivot") if good else []
            for (i, _), (output, done) in zip(good, back):
                reason = "still_in_pivot" if still_in_pivot(output, self.pivot_language) else None
                results[i] = (output, reason or self.check.reason(batch[i], output, done))
            return results

        return run_with_retries(texts, attempt, self.stats, self.batch_size, self.max_retries, progress)
