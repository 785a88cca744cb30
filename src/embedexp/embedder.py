"""The embedding model: prompt → tokens → decoder → pooling. Used by training, evaluation and export alike."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from embedexp.attention.capture import FinalTokenAttention, final_token_attention
from embedexp.pooling import Pooling
from embedexp.prompts import PromptTemplate, TokenizedPrompts

log = logging.getLogger(__name__)


class Embedder(torch.nn.Module):
    """A decoder LLM turned into a text encoder by a prompt template and a pooling."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        pooling: Pooling,
        prompt: PromptTemplate,
        max_length: int = 256,
        padding_side: str = "right",
        name: str = "embedexp-model",
    ) -> None:
        """`model` is a base decoder (or its peft wrapper) returning `last_hidden_state`; `name` labels results."""
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.prompt = prompt
        self.max_length = max_length
        self.padding_side = padding_side
        self.name = name
        self.n_truncated = 0

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def tokenize(self, texts: list[str]) -> TokenizedPrompts:
        """Wrap texts in the prompt and tokenize them (text truncated before wrapping)."""
        batch = self.prompt.tokenize(texts, self.tokenizer, self.max_length, self.padding_side)
        self.n_truncated += batch.n_truncated
        return batch

    def run(
        self, batch: TokenizedPrompts, with_attention: bool = False, layers: tuple[int, ...] | None = None
    ) -> tuple[torch.Tensor, FinalTokenAttention | None]:
        """Decode a tokenized batch: hidden states [B, T, H] and, if asked, the last token's attention per layer.

        `layers` picks decoder layers (None = all; negative counts from the end). The `attention` pooling and the
        attention-map analysis (`python -m embedexp.attention`) both read attention through this method.
        """
        device = self.device
        input_ids = batch.input_ids.to(device)
        attention_mask = batch.attention_mask.to(device)
        # positions count from the first real token, so left padding gives the same vectors as right padding
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp_min(0)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        if not with_attention:
            return self.model(**inputs).last_hidden_state, None
        with final_token_attention(self.model, attention_mask, layers) as captured:
            hidden = self.model(**inputs).last_hidden_state
        return hidden, FinalTokenAttention.from_captured(captured)

    def forward(self, batch: TokenizedPrompts) -> torch.Tensor:
        """Embed a tokenized batch; gradients flow when the caller allows them."""
        needs_attention = self.pooling.needs_attention
        hidden, attention = self.run(batch, needs_attention, getattr(self.pooling, "layers", None))
        pooled_attention = attention.pooled() if attention is not None else None
        device = hidden.device
        return self.pooling(hidden, batch.attention_mask.to(device), batch.text_mask.to(device), pooled_attention)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Tokenize and embed a list of texts in one batch."""
        return self(self.tokenize(list(texts)))

    @torch.inference_mode()
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
        sort_by_length: bool = True,
    ) -> np.ndarray:
        """Embed many texts in batches (longest first, so padding is small), returned in input order."""
        was_training = self.model.training
        self.model.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable") if sort_by_length else np.arange(len(texts))
        chunks, truncated_before = [], self.n_truncated
        try:
            for start in tqdm(range(0, len(texts), batch_size), disable=not show_progress, desc="encode"):
                chunk = [texts[i] for i in order[start : start + batch_size]]
                vectors = self.embed(chunk).float()
                chunks.append(F.normalize(vectors, dim=-1) if normalize else vectors)
        finally:
            self.model.train(was_training)
        cut, self.n_truncated = self.n_truncated - truncated_before, truncated_before
        if cut:
            log.warning("%d of %d texts truncated to model.max_length=%d", cut, len(texts), self.max_length)
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        stacked = torch.cat(chunks).cpu().numpy()
        result = np.empty_like(stacked)
        result[order] = stacked
        return result
