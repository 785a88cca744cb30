"""The embedding model: prompt → tokens → decoder → pooling. Used by training, evaluation and export alike."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from embedexp.core.progress import Progress
from embedexp.model.attention_capture import FinalTokenAttention, final_token_attention
from embedexp.model.bidirectional import attention_mode
from embedexp.model.packing import decoder_span, plan_length_groups, run_decoder
from embedexp.model.pooling import Pooling, pooled_layer
from embedexp.model.prefix_cache import FrozenPrefixCache, base_decoder, plan_batches
from embedexp.model.prefix_store import PrefixStore
from embedexp.model.prompts import PromptTemplate, TokenizedPrompts, pad_rows, pad_token_id

TOKEN_CACHE_SIZE = 500_000  # texts whose prompted token ids `token_rows` keeps (int32: ~0.4 kB per text)

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
        packed: bool = False,
    ) -> None:
        """`model` is a base decoder (or its peft wrapper) returning `last_hidden_state`; `name` labels results;
        `packed`: run batches padding-free (`embedexp.model.packing`; the model's attention must be a packed one)."""
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.prompt = prompt
        self.max_length = max_length
        self.padding_side = padding_side
        self.name = name
        self.packed = packed
        self.manifest: dict | None = None  # how it embeds, saved beside its weights (embedexp.model.manifest)
        self.prefix_cache: FrozenPrefixCache | None = None
        self.prefix_store: PrefixStore | None = None  # frozen-layer outputs on disk, across runs (`prefix_store:`)
        self.train_with_prefix_cache = False  # also under autograd (epochs after the first), not only evaluation
        self.prefix_attention: str | None = None  # the frozen layers' packed attention where hooks need eager above
        self.compile_guards = "all"  # model.compile_guards: `skip_after_warmup` skips Dynamo's guards in training steps
        self.n_truncated = 0
        self._token_rows: dict[str, tuple[np.ndarray, tuple[int, int], bool]] = {}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def tokenize(self, texts: list[str]) -> TokenizedPrompts:
        """Wrap texts in the prompt and tokenize them (text truncated before wrapping; counted in `n_truncated`)."""
        rows, spans, truncated = self.token_rows(texts)
        self.n_truncated += sum(truncated)
        return pad_rows(rows, spans, pad_token_id(self.tokenizer), self.padding_side, sum(truncated))

    def token_rows(self, texts: list[str]) -> tuple[list[np.ndarray], list[tuple[int, int]], list[bool]]:
        """Unpadded prompted token ids, pooled-text spans and truncation flags of `texts`, each text tokenized once.

        Training sees every pair once per epoch and evaluation the same texts every time: both reuse the ids.
        """
        new = [text for text in dict.fromkeys(texts) if text not in self._token_rows]
        if new:
            if len(self._token_rows) + len(new) > TOKEN_CACHE_SIZE:
                self._token_rows.clear()
            rows, spans, truncated = self.prompt.token_rows(new, self.tokenizer, self.max_length)
            for text, row, span, cut in zip(new, rows, spans, truncated):
                self._token_rows[text] = (np.asarray(row, dtype=np.int32), span, cut)
        entries = [self._token_rows[text] for text in texts]
        return [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]

    def pad(self, rows: list, spans: list[tuple[int, int]], picked: list[int]) -> TokenizedPrompts:
        """The padded batch of the rows at positions `picked`."""
        return pad_rows(
            [rows[i] for i in picked], [spans[i] for i in picked], pad_token_id(self.tokenizer), self.padding_side
        )

    def run(
        self,
        batch: TokenizedPrompts,
        with_attention: bool = False,
        layers: tuple[int, ...] | None = None,
        stop: int | None = None,
        final_norm: bool = True,
    ) -> tuple[torch.Tensor, FinalTokenAttention | None]:
        """Decode a tokenized batch: hidden states [B, T, H] after decoder layers ..`stop - 1` (None: all) and, if
        `final_norm`, the final norm; and, if asked, the last token's attention per layer.

        `layers` picks the decoder layers whose attention is read (None = all; negative counts from the end). The
        `final_token_attention` pooling and the attention-map analysis (`python -m embedexp attention_maps`) read
        attention here.
        """
        device = self.device
        input_ids = batch.input_ids.to(device)
        attention_mask = batch.attention_mask.to(device)
        span = None if stop is None else slice(0, stop)
        cached = self.prefix_cache is not None and (self.train_with_prefix_cache or not torch.is_grad_enabled())
        if with_attention and cached and self.prefix_cache.serves_attention_of(layers):
            with final_token_attention(self.model, attention_mask, layers) as captured:  # read layers run in the tail
                hidden = self.prefix_cache.run(input_ids, attention_mask, stop, final_norm)
            return hidden, FinalTokenAttention.from_captured(captured)
        if not with_attention:
            if cached:
                return self.prefix_cache.run(input_ids, attention_mask, stop, final_norm), None
            hidden = run_decoder(
                self.model, attention_mask, input_ids=input_ids, packed=self.packed, layers=span, final_norm=final_norm
            )
            return hidden, None
        # positions count from the first real token, so left padding gives the same vectors as right padding
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp_min(0)
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        with (
            final_token_attention(self.model, attention_mask, layers) as captured,
            decoder_span(self.model, span, final_norm),
        ):
            hidden = self.model(**inputs).last_hidden_state
        return hidden, FinalTokenAttention.from_captured(captured)

    def pooled_span(self) -> tuple[int | None, bool]:
        """(stop, final_norm) of the states the pooling reads: layers ..stop - 1 (None: all), then the norm or not."""
        n_layers = len(base_decoder(self.model).layers)
        index = pooled_layer(self.pooling, n_layers)
        return (None if index == n_layers - 1 else index + 1), self.pooling.layer_norm

    def forward(self, batch: TokenizedPrompts) -> torch.Tensor:
        """Embed a tokenized batch; gradients flow when the caller allows them."""
        needs_attention = self.pooling.needs_attention
        stop, final_norm = self.pooled_span()
        layers = getattr(self.pooling, "attention_layers", None)
        hidden, attention = self.run(batch, needs_attention, layers, stop, final_norm)
        pooled_attention = attention.pooled() if attention is not None else None
        device = hidden.device
        return self.pooling.pool_tokens(
            hidden, batch.attention_mask.to(device), batch.text_mask.to(device), pooled_attention
        )

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embed texts in input order (gradients flow when the caller allows them).

        Packed (`packed`), all texts run as one padding-free sequence; otherwise in groups of similar token length
        (`plan_length_groups`), so short anchors are not padded to the length of long positives. Either way the
        forward and backward passes compute on little more than the real tokens.
        """
        rows, spans, truncated = self.token_rows(list(texts))
        self.n_truncated += sum(truncated)
        # packed: one forward pass for all texts; padded: groups of similar length
        groups = [list(range(len(rows)))] if self.packed else plan_length_groups([len(row) for row in rows])
        vectors = [self(self.pad(rows, spans, group)) for group in groups]
        order = torch.tensor([i for group in groups for i in group], device=vectors[0].device)
        return torch.cat(vectors).index_select(0, torch.argsort(order))

    def enable_prefix_cache(self, max_bytes: int = 1 << 30, store: PrefixStore | None = None) -> FrozenPrefixCache:
        """Reuse the frozen layers' outputs of texts seen before (every evaluation; training steps when
        `train_with_prefix_cache` is set), and with `store` those of earlier runs on disk; a cache already enabled is
        kept, its bound raised to `max_bytes` and the store attached."""
        store = store if store is not None else self.prefix_store
        if self.prefix_cache is None:
            identity = f"attention={attention_mode(self.model)}"
            cache = FrozenPrefixCache(self.model, max_bytes, self.packed, store, identity, self.prefix_attention)
            self.prefix_cache = cache
        elif store is not None and store.enabled and self.prefix_cache.store is None and self.prefix_cache.enabled:
            self.prefix_cache.store = store
        self.prefix_cache.max_bytes = max(self.prefix_cache.max_bytes, max_bytes)
        return self.prefix_cache

    @torch.inference_mode()
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
        sort_by_length: bool = True,
        max_batch_tokens: int | None = None,
        progress: str | None = None,
    ) -> np.ndarray:
        """Embed many texts, returned in input order.

        All texts are tokenized once and sorted by token count (longest first), so each batch pads little;
        batches hold at most `batch_size` texts and, if set, `max_batch_tokens` padded tokens. `progress` (or
        `show_progress`) names the phase whose progress is shown (`embedexp.core.progress`).
        """
        was_training = self.model.training
        self.model.eval()
        rows, spans, truncated = self.token_rows(list(texts))
        n_truncated = sum(truncated)
        order = np.argsort([-len(r) for r in rows], kind="stable") if sort_by_length else np.arange(len(rows))
        batches = plan_batches([len(rows[i]) for i in order], batch_size, max_batch_tokens)
        chunks = []
        desc = progress or ("encode" if show_progress else None)
        meter = Progress(len(rows), desc, "texts", mode=None if desc else "off")
        try:
            for positions in batches:
                picked = [int(order[p]) for p in positions]
                vectors = self(self.pad(rows, spans, picked)).float()
                chunks.append(F.normalize(vectors, dim=-1) if normalize else vectors)
                meter.update(len(picked))
        finally:
            meter.close()
            self.model.train(was_training)
        if n_truncated:
            log.warning("%d of %d texts truncated to model.max_length=%d", n_truncated, len(texts), self.max_length)
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        stacked = torch.cat(chunks).cpu().numpy()
        result = np.empty_like(stacked)
        result[order] = stacked
        return result
