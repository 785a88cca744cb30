"""Prompt templates: a task prompt with one `{text}` slot, tokenized so the text span is known."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from embedexp.errors import ConfigError

TEXT_SLOT = "{text}"


@dataclass(frozen=True)
class TokenizedPrompts:
    """A padded batch of prompted texts and the mask of the tokens that come from the text itself."""

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
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Refuse templates without exactly one `{text}` slot."""
        if self.template.count(TEXT_SLOT) != 1:
            raise ConfigError(
                f"prompt.template of prompt '{self.name}' must contain exactly one '{TEXT_SLOT}' slot, "
                f"got: {self.template!r}"
            )

    @property
    def prefix(self) -> str:
        """The prompt text before the slot, trailing whitespace moved onto the text (keeps BPE merges natural)."""
        return self.template.split(TEXT_SLOT)[0].rstrip()

    @property
    def suffix(self) -> str:
        """The prompt text after the slot."""
        return self.template.split(TEXT_SLOT)[1]

    def format(self, text: str) -> str:
        """Return the prompted string (for display and for libraries that take whole strings)."""
        return self.template.replace(TEXT_SLOT, text)

    def _joint(self) -> str:
        """Whitespace between the prefix and the text, carried with the text tokens."""
        head = self.template.split(TEXT_SLOT)[0]
        return head[len(head.rstrip()) :]

    def _pieces(self, tokenizer) -> tuple[list[int], list[int], list[int], list[int]]:
        """Token ids of (special prefix, prompt prefix, prompt suffix, special suffix), cached per tokenizer."""
        key = id(tokenizer)
        if key not in self._cache:
            specials_head, specials_tail = special_tokens_around(tokenizer)
            prefix = tokenizer(self.prefix, add_special_tokens=False)["input_ids"] if self.prefix else []
            suffix = tokenizer(self.suffix, add_special_tokens=False)["input_ids"] if self.suffix else []
            tail = list(specials_tail)
            if self.append_eos and tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in tail:
                tail.append(tokenizer.eos_token_id)
            self._cache[key] = (list(specials_head), prefix, suffix, tail)
        return self._cache[key]

    def n_prompt_tokens(self, tokenizer) -> int:
        """Number of tokens the prompt and special tokens add around the text."""
        return sum(len(piece) for piece in self._pieces(tokenizer))

    def tokenize(
        self,
        texts: list[str],
        tokenizer,
        max_length: int,
        padding_side: str = "right",
    ) -> TokenizedPrompts:
        """Tokenize texts inside the prompt; the text is truncated first so the prompt is never cut off."""
        rows, spans, n_truncated = self.token_rows(texts, tokenizer, max_length)
        return pad_rows(rows, spans, pad_token_id(tokenizer), padding_side, n_truncated)

    def token_rows(
        self, texts: list[str], tokenizer, max_length: int
    ) -> tuple[list[list[int]], list[tuple[int, int]], int]:
        """Unpadded token ids of each prompted text, the (start, end) span of its text tokens, and #truncated."""
        head, prefix, suffix, tail = self._pieces(tokenizer)
        budget = max_length - (len(head) + len(prefix) + len(suffix) + len(tail))
        if budget < 1:
            raise ConfigError(
                f"model.max_length={max_length} leaves no room for text inside prompt '{self.name}' "
                f"({max_length - budget} prompt tokens)"
            )
        joint = self._joint()
        encoded = tokenizer([joint + t for t in texts], add_special_tokens=False)["input_ids"]
        rows, spans, n_truncated = [], [], 0
        start = len(head) + len(prefix)
        for ids in encoded:
            if len(ids) > budget:
                ids, n_truncated = ids[:budget], n_truncated + 1
            rows.append(head + prefix + ids + suffix + tail)
            spans.append((start, start + len(ids)))
        return rows, spans, n_truncated


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
