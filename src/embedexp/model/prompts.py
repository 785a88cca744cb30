"""Prompt templates: a task prompt with `{text}` slots, tokenized so the span of the pooled text copy is known.

One slot is the usual prompt. Several slots repeat the text (echo embeddings, Springer et al. 2024: "Rewrite the
sentence: {text}, rewritten sentence: {text}"); the text mask then marks one copy only (`pool_copy`, default the last,
whose tokens have seen the whole text even under causal attention), so `exclude_prompt` poolings pool over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from embedexp.core.errors import ConfigError

TEXT_SLOT = "{text}"
POOL_COPIES = ("first", "last")


@dataclass(frozen=True)
class TokenizedPrompts:
    """A padded batch of prompted texts and the mask of the tokens that come from the (pooled copy of the) text."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    text_mask: torch.Tensor
    n_truncated: int = 0


@dataclass
class PromptTemplate:
    """A template such as `This sentence: "{text}" means in one word:` wrapped around every input text."""

    name: str
    template: str = TEXT_SLOT
    append_eos: bool = False
    pool_copy: str = "last"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Refuse templates without a `{text}` slot and unknown `pool_copy` values."""
        if TEXT_SLOT not in self.template:
            raise ConfigError(
                f"prompt.template of prompt '{self.name}' must contain a '{TEXT_SLOT}' slot (exactly one "
                f"'{TEXT_SLOT}', or several to repeat the text as echo embeddings do), got: {self.template!r}"
            )
        if self.pool_copy not in POOL_COPIES:
            raise ConfigError(
                f"prompt.pool_copy of prompt '{self.name}' must be one of {POOL_COPIES}, got {self.pool_copy!r}"
            )

    @property
    def n_copies(self) -> int:
        """How many times the text appears in the prompt."""
        return self.template.count(TEXT_SLOT)

    @property
    def pooled_copy(self) -> int:
        """Index of the text copy that the text mask marks."""
        return 0 if self.pool_copy == "first" else self.n_copies - 1

    @property
    def segments(self) -> list[str]:
        """The prompt text around the slots (n_copies + 1 pieces, possibly empty)."""
        return self.template.split(TEXT_SLOT)

    @property
    def joints(self) -> list[str]:
        """Whitespace before each slot, carried with that copy's text tokens (keeps BPE merges natural)."""
        return [segment[len(segment.rstrip()) :] for segment in self.segments[:-1]]

    def format(self, text: str) -> str:
        """Return the prompted string (for display and for libraries that take whole strings)."""
        return self.template.replace(TEXT_SLOT, text)

    def pieces(self, tokenizer) -> tuple[list[int], list[list[int]], list[int]]:
        """Token ids of (special prefix, prompt pieces around the slots, special suffix), cached per tokenizer.

        The pieces before a slot lose their trailing whitespace (it goes onto the text); the last one is kept whole.
        """
        key = id(tokenizer)
        if key not in self._cache:
            specials_head, specials_tail = special_tokens_around(tokenizer)
            texts = [segment.rstrip() for segment in self.segments[:-1]] + [self.segments[-1]]
            pieces = [tokenizer(t, add_special_tokens=False)["input_ids"] if t else [] for t in texts]
            tail = list(specials_tail)
            if self.append_eos and tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in tail:
                tail.append(tokenizer.eos_token_id)
            self._cache[key] = (list(specials_head), pieces, tail)
        return self._cache[key]

    def n_prompt_tokens(self, tokenizer) -> int:
        """Number of tokens the prompt and special tokens add around the text copies."""
        head, pieces, tail = self.pieces(tokenizer)
        return len(head) + sum(len(piece) for piece in pieces) + len(tail)

    def text_budget(self, tokenizer, max_length: int) -> int:
        """Most tokens of text per copy within `max_length` (every copy is truncated to the same length)."""
        n_prompt = self.n_prompt_tokens(tokenizer)
        budget = (max_length - n_prompt) // self.n_copies
        if budget < 1:
            copies = f", the text appearing {self.n_copies} times" if self.n_copies > 1 else ""
            raise ConfigError(
                f"model.max_length={max_length} leaves no room for text inside prompt '{self.name}' "
                f"({n_prompt} prompt tokens{copies})"
            )
        return budget

    def tokenize(
        self,
        texts: list[str],
        tokenizer,
        max_length: int,
        padding_side: str = "right",
    ) -> TokenizedPrompts:
        """Tokenize texts inside the prompt; the text is truncated first so the prompt is never cut off."""
        rows, spans, truncated = self.token_rows(texts, tokenizer, max_length)
        return pad_rows(rows, spans, pad_token_id(tokenizer), padding_side, sum(truncated))

    def token_rows(
        self, texts: list[str], tokenizer, max_length: int
    ) -> tuple[list[list[int]], list[tuple[int, int]], list[bool]]:
        """Unpadded token ids of each prompted text, the (start, end) span of its pooled copy, and whether the text
        was truncated."""
        head, pieces, tail = self.pieces(tokenizer)
        budget = self.text_budget(tokenizer, max_length)
        joints = self.joints
        encoded = {
            joint: tokenizer([joint + t for t in texts], add_special_tokens=False)["input_ids"] for joint in set(joints)
        }
        rows, spans, truncated_rows = [], [], []
        for i in range(len(texts)):
            row, span, truncated = list(head), (0, 0), False
            for copy, joint in enumerate(joints):
                ids = encoded[joint][i]
                if len(ids) > budget:
                    ids, truncated = ids[:budget], True
                row += pieces[copy]
                if copy == self.pooled_copy:
                    span = (len(row), len(row) + len(ids))
                row += ids
            rows.append(row + pieces[-1] + tail)
            spans.append(span)
            truncated_rows.append(truncated)
        return rows, spans, truncated_rows


def pad_rows(
    rows: list[list[int]], spans: list[tuple[int, int]], pad_id: int, side: str = "right", n_truncated: int = 0
) -> TokenizedPrompts:
    """Pad token rows to the longest one on the given side and build the attention and text masks."""
    if side not in ("left", "right"):
        raise ConfigError(f"model.padding_side must be 'left' or 'right', got {side!r}")
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    text_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, (start, end)) in enumerate(zip(rows, spans)):
        offset = width - len(row) if side == "left" else 0
        input_ids[i, offset : offset + len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, offset : offset + len(row)] = 1
        text_mask[i, offset + start : offset + end] = 1
    return TokenizedPrompts(input_ids, attention_mask, text_mask, n_truncated)


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer adds before and after a text (e.g. BOS), found by probing."""
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else EOS, else 0."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
