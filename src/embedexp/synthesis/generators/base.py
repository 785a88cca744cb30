"""The generator interface, its counters, and the cleaning and checks applied to every model output."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from embedexp.synthesis.text import STOPWORDS, copy_key, words

Progress = Callable[[int], None] | None

_OPENERS = re.compile(r"^(sure|certainly|of course|okay|ok|absolutely)\b[,!.]?\s*", re.IGNORECASE)
_LEAD_IN = re.compile(r"^(here is|here's|here are|this is)\b[^:\n]*:\s*", re.IGNORECASE)
_LABEL = re.compile(
    r"^(paraphrased?( text| sentence| version)?|rewritten( text| sentence| version)?|rewrite|rephrased|answer|output"
    r"|result|translation|translated text|text|sentence|in other words|english|german|french|spanish)\s*:\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`«»„"
_CHATTER = re.compile(r"\b(paraphras\w*|rewrit\w*|rephras\w*|original (text|sentence)|translat\w*|as an ai)\b", re.I)


@dataclass
class GenerationStats:
    """What a generator did: texts in, accepted outputs, model calls, rejections by reason, texts given up on."""

    texts: int = 0
    accepted: int = 0
    attempts: int = 0
    failed: int = 0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        """JSON-ready counters."""
        return {
            "texts": self.texts,
            "accepted": self.accepted,
            "attempts": self.attempts,
            "failed": self.failed,
            "rejected": dict(sorted(self.rejected.items())),
        }

    def merge(self, other: dict) -> None:
        """Add counters saved by an earlier (resumed) run."""
        for key in ("texts", "accepted", "attempts", "failed"):
            setattr(self, key, getattr(self, key) + int(other.get(key, 0)))
        self.rejected.update(other.get("rejected", {}))


class Generator:
    """Makes one positive per text (None when it gives up); `allows_copy`: the positive may be the text itself."""

    name = "generator"
    allows_copy = False

    def __init__(self) -> None:
        """Fresh counters."""
        self.stats = GenerationStats()

    @property
    def model_id(self) -> str | None:
        """The model the generator runs, if any."""
        return None

    def generate(self, texts: list[str], seed: int, progress: Progress = None) -> list[str | None]:
        """One positive (or None) per text, reproducible for a given `seed`."""
        raise NotImplementedError

    def stats_dict(self) -> dict:
        """Counters by generator name (a composition reports each step)."""
        return {self.name: self.stats.as_dict()}

    def merge_stats(self, saved: dict) -> None:
        """Add the counters of shards written by an earlier run."""
        if self.name in saved:
            self.stats.merge(saved[self.name])


def clean_output(text: str) -> str:
    """The first non-empty line of a model reply, without chat openers, labels, list marks, markdown or quotes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    for pattern in (_OPENERS, _LEAD_IN, _LABEL):
        line = pattern.sub("", line).strip()
    line = re.sub(r"^([-*•]|\d+[.)])\s+", "", line).replace("**", "").strip()
    if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    elif line and line[0] in _QUOTES and line.count(line[0]) == 1:
        line = line[1:].strip()
    return " ".join(line.split())


def content_stems(text: str) -> set[str]:
    """Content words (not stopwords, 3+ letters) cut to 5 characters, so 'synchronise' meets 'synchronization'."""
    return {w[:5] for w in words(text) if len(w) >= 3 and w not in STOPWORDS}


@dataclass
class OutputCheck:
    """Rules for accepting a rewrite of `source`: not empty, not an echo, sensible length, no chatter, on topic."""

    min_words: int = 2
    min_ratio: float = 0.4  # at least this fraction of the source's word count
    max_ratio: float = 3.0  # at most this multiple of it (plus 3 words)
    min_shared_words: int = 1  # content words shared with the source (checked when the source has that many)
    reject_chatter: bool = True

    def reason(self, source: str, output: str, finished: bool = True) -> str | None:
        """Why `output` is rejected as a rewrite of `source`, or None when it is accepted."""
        if not output.strip():
            return "empty"
        if copy_key(output) == copy_key(source):
            return "echo"
        if not finished:
            return "truncated"
        n_source, n_out = len(source.split()), len(output.split())
        if n_out < max(self.min_words, math.ceil(self.min_ratio * n_source)):
            return "too_short"
        if n_out > self.max_ratio * n_source + 3:
            return "too_long"
        if self.reject_chatter and (output.rstrip().endswith(":") or _chatter(source, output)):
            return "chatter"
        source_stems = content_stems(source)
        if (
            len(source_stems) >= self.min_shared_words
            and len(source_stems & content_stems(output)) < self.min_shared_words
        ):
            return "unrelated"
        return None


def _chatter(source: str, output: str) -> bool:
    """The output talks about the task (paraphrasing, translating, 'the original sentence') and the source does not."""
    found = _CHATTER.search(output)
    return bool(found) and not _CHATTER.search(source)


Attempt = Callable[[list[str]], list[tuple[str, str | None]]]


def run_with_retries(
    texts: list[str],
    attempt: Attempt,
    stats: GenerationStats,
    batch_size: int,
    max_retries: int,
    progress: Progress = None,
) -> list[str | None]:
    """Call `attempt` on batches of texts (similar lengths together); re-run rejected texts up to `max_retries` times.

    `attempt` returns (output, rejection reason or None) per text. Texts still rejected after the last round get None.
    """
    results: list[str | None] = [None] * len(texts)
    pending = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for round_ in range(max_retries + 1):
        retry = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            outcomes = attempt([texts[i] for i in chunk])
            stats.attempts += len(chunk)
            for index, (output, reason) in zip(chunk, outcomes):
                if reason is None:
                    results[index] = output
                else:
                    stats.rejected[reason] += 1
                    retry.append(index)
            if progress is not None and round_ == 0:
                progress(len(chunk))
        pending = retry
        if not pending:
            break
    stats.texts += len(texts)
    stats.accepted += sum(r is not None for r in results)
    stats.failed += len(pending)
    return results
