"""Paraphrase generator: an instruction-tuned causal LM rewrites each text (few-shot chat prompts, sampled)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import torch

from embedexp.core.errors import ConfigError
from embedexp.synthesis.generators.base import Generator, OutputCheck, Progress, clean_output, run_with_retries
from embedexp.synthesis.generators.chat import ChatLM, Message


def load_lm(model: Mapping | ChatLM) -> ChatLM:
    """A ChatLM from a config mapping (`ChatLM.load` arguments), or the given instance."""
    if hasattr(model, "complete"):
        return model
    return ChatLM.load(**dict(model))


def few_shot(system_prompt: str | None, examples: list, template: str, text: str, field: str = "text") -> list[Message]:
    """A chat: optional system prompt, one user/assistant turn per example, then the user turn for `text`."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for source, target in examples:
        messages += [
            {"role": "user", "content": template.format(**{field: source})},
            {"role": "assistant", "content": target},
        ]
    return messages + [{"role": "user", "content": template.format(**{field: text})}]


class ParaphraseGenerator(Generator):
    """Rewrites each text with a chat LM; each prompt uses one of `templates` at random; bad outputs are retried."""

    name = "paraphrase"

    def __init__(
        self,
        model: Mapping | ChatLM,
        templates: list[str],
        system_prompt: str | None = None,
        examples: list | None = None,
        max_new_tokens: int = 48,
        new_tokens_ratio: float | None = 1.5,
        temperature: float = 0.7,
        top_p: float = 0.9,
        batch_size: int = 64,
        max_retries: int = 2,
        check: Mapping | OutputCheck | None = None,
    ) -> None:
        """`model`: ChatLM.load arguments (loaded on first use) or a ChatLM; `templates` contain `{text}`."""
        super().__init__()
        templates = list(templates)
        if not templates or any("{text}" not in t for t in templates):
            raise ConfigError(
                f"generator.templates: need at least one template, each with a {{text}} slot: {templates}"
            )
        self._model, self._lm = model, model if hasattr(model, "complete") else None
        self.templates, self.system_prompt = templates, system_prompt
        self.examples = [tuple(e) for e in (examples or [])]
        self.sampling = dict(temperature=temperature, top_p=top_p)
        self.max_new_tokens, self.new_tokens_ratio = max_new_tokens, new_tokens_ratio
        self.batch_size, self.max_retries = batch_size, max_retries
        self.check = check if isinstance(check, OutputCheck) else OutputCheck(**dict(check or {}))

    @property
    def lm(self) -> ChatLM:
        """The chat model (loaded on first use)."""
        if self._lm is None:
            self._lm = load_lm(self._model)
        return self._lm

    @property
    def model_id(self) -> str:
        """The configured model name."""
        return self._lm.name if self._lm is not None else str(self._model.get("name_or_path"))

    def token_budget(self, batch: list[str]) -> int:
        """New tokens allowed for a batch: `new_tokens_ratio` x its longest text + 6, at most `max_new_tokens`.

        A batch decodes until its longest reply ends, so one rambling row would otherwise cost every row the maximum.
        """
        if not self.new_tokens_ratio:
            return self.max_new_tokens
        longest = max(self.lm.count_tokens(batch), default=0)
        return min(self.max_new_tokens, int(self.new_tokens_ratio * longest) + 6)

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """One paraphrase per text (None after `max_retries` rejected retries)."""
        torch.manual_seed(seed)
        rng = random.Random(seed)

        def attempt(batch: list[str]) -> list[tuple[str, str | None]]:
            chats = [few_shot(self.system_prompt, self.examples, rng.choice(self.templates), t) for t in batch]
            replies = self.lm.complete(chats, max_new_tokens=self.token_budget(batch), **self.sampling)
            outputs = [(clean_output(reply), finished) for reply, finished in replies]
            return [(out, self.check.reason(text, out, done)) for text, (out, done) in zip(batch, outputs)]

        return run_with_retries(texts, attempt, self.stats, self.batch_size, self.max_retries, progress)
