"""Model-free generators (noise, dropout) and the composition of generators."""

from __future__ import annotations

import random
from collections.abc import Mapping

from embedexp.core.errors import ConfigError
from embedexp.data.noise import TextNoise
from embedexp.synthesis.generators.base import Generator, Progress
from embedexp.synthesis.text import copy_key


class NoiseGenerator(Generator):
    """Word deletion, word swap and character swaps, each with its own probability (the paper's noise flags).

    A draw that leaves the text unchanged is redrawn up to `max_retries` times.
    """

    name = "noise"

    def __init__(self, delete_p: float = 0.1, swap_p: float = 0.05, char_swap_p: float = 0.02, max_retries: int = 5):
        """Probabilities per word (deletion), per adjacent word pair (swap) and per character position."""
        super().__init__()
        self.noise = TextNoise(delete_p=delete_p, swap_p=swap_p, char_swap_p=char_swap_p)
        self.max_retries = max_retries

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """A noised copy of each text; None when every draw left it unchanged."""
        rng = random.Random(seed)
        results: list[str | None] = []
        for text in texts:
            output = None
            for _ in range(self.max_retries + 1):
                self.stats.attempts += 1
                candidate = self.noise(text, rng)
                if copy_key(candidate) != copy_key(text):
                    output = candidate
                    break
                self.stats.rejected["unchanged"] += 1
            results.append(output)
        self.stats.texts += len(texts)
        self.stats.accepted += sum(r is not None for r in results)
        self.stats.failed += sum(r is None for r in results)
        if progress is not None:
            progress(len(texts))
        return results


class DropoutGenerator(Generator):
    """The text itself as its positive: the two views differ only by dropout inside the model (SimCSE)."""

    name = "dropout"
    allows_copy = True

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """Each text unchanged."""
        self.stats.texts += len(texts)
        self.stats.accepted += len(texts)
        self.stats.attempts += len(texts)
        if progress is not None:
            progress(len(texts))
        return list(texts)


class Compose(Generator):
    """Generators applied in turn (e.g. paraphrase, then noise on the paraphrase); a failed step fails the text."""

    def __init__(self, steps: list[Generator] | Mapping[str, Generator]) -> None:
        """`steps` (a list, or a mapping in config order) run in order; the positive is the last step's output."""
        super().__init__()
        self.steps = list(steps.values()) if isinstance(steps, Mapping) else list(steps)
        if not self.steps:
            raise ConfigError("generator.steps: a composition needs at least one generator")
        self.name = "+".join(step.name for step in self.steps)
        self.allows_copy = all(step.allows_copy for step in self.steps)

    @property
    def model_id(self) -> str | None:
        """The models of the steps that use one, joined by '+'."""
        ids = [step.model_id for step in self.steps if step.model_id]
        return "+".join(ids) if ids else None

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """Run each step on the previous step's successful outputs (progress is reported by the first step)."""
        current: list[str | None] = list(texts)
        for number, step in enumerate(self.steps):
            alive = [i for i, text in enumerate(current) if text is not None]
            outputs = step.generate(
                [current[i] for i in alive], seed + 1000003 * number, progress if number == 0 else None
            )
            current = [None] * len(texts)
            for index, output in zip(alive, outputs):
                current[index] = output
        self.stats.texts += len(texts)
        self.stats.accepted += sum(c is not None for c in current)
        self.stats.failed += sum(c is None for c in current)
        return current

    def stats_dict(self) -> dict:
        """Counters of the composition and of each step."""
        merged = {self.name: self.stats.as_dict()}
        for step in self.steps:
            merged.update(step.stats_dict())
        return merged

    def merge_stats(self, saved: dict) -> None:
        """Add saved counters to the composition and to each step."""
        super().merge_stats(saved)
        for step in self.steps:
            step.merge_stats(saved)
