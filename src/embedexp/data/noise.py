"""Text noise for synthetic positives: word deletion, word swap and character swaps (each with its own rate)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TextNoise:
    """Corrupt a text the way the paper's noise augmentation does; deterministic for a given `random.Random`."""

    delete_p: float = 0.1
    swap_p: float = 0.05
    char_swap_p: float = 0.02

    def __post_init__(self) -> None:
        """Refuse probabilities outside [0, 1]."""
        for key in ("delete_p", "swap_p", "char_swap_p"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"noise.{key} must be in [0, 1], got {value}")

    def __call__(self, text: str, rng: random.Random) -> str:
        """Return a noised copy of `text` (never empty: at least one word survives deletion)."""
        words = text.split()
        if not words:
            return text
        kept = [w for w in words if rng.random() >= self.delete_p] or [rng.choice(words)]
        for i in range(len(kept) - 1):
            if rng.random() < self.swap_p:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        return " ".join(self._swap_chars(w, rng) for w in kept)

    def _swap_chars(self, word: str, rng: random.Random) -> str:
        """Swap adjacent characters inside a word with probability `char_swap_p` per position."""
        if len(word) < 2 or self.char_swap_p == 0:
            return word
        chars = list(word)
        for i in range(len(chars) - 1):
            if rng.random() < self.char_swap_p:
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)
