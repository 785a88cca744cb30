"""Fast forward passes: batch planning by length and a per-text cache of the frozen layers' outputs.

With LoRA on the last N decoder layers only, everything below the first adapted layer never changes during
training, so its output for a given text can be computed once and reused: at every evaluation, and in every
training epoch after the first (only the adapted layers then run, forward and backward). With a `PrefixStore` the
outputs also persist on disk, so every later run of a sweep (and every evaluation of the same frozen layers) reads
them instead of computing them.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from embedexp.model.packing import attention_implementation, run_decoder, unpack
from embedexp.model.prefix_store import PrefixStore, hash_module_state

log = logging.getLogger(__name__)


def plan_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Split positions 0..n-1 (sorted by length) into batches of at most `batch_size` rows and, if set, at most
    `max_batch_tokens` padded tokens (rows × longest row in the batch)."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for position, length in enumerate(lengths):
        width = max(longest, length)
        full = len(current) == batch_size
        over_budget = max_batch_tokens is not None and width * (len(current) + 1) > max_batch_tokens
        if current and (full or over_budget):
            batches.append(current)
            current, width = [], length
        current.append(position)
        longest = width
    if current:
        batches.append(current)
    return batches


def base_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The bare decoder (e.g. LlamaModel) inside an optional peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def first_trainable_layer(model: torch.nn.Module) -> int | None:
    """Index of the first decoder layer with trainable parameters or LoRA weights (a loaded adapter is frozen, but
    its layers differ from the base model's), None if the embeddings are trainable."""
    decoder = base_decoder(model)
    if any(p.requires_grad for p in decoder.get_input_embeddings().parameters()):
        return None
    for index, layer in enumerate(decoder.layers):
        if any(p.requires_grad or "lora_" in name for name, p in layer.named_parameters()):
            return index
    return len(decoder.layers)


def row_key(ids: torch.Tensor) -> str:
    """Identity of one text's token ids (padding removed)."""
    return hashlib.sha1(ids.detach().cpu().numpy().tobytes()).hexdigest()


LOW_PRECISION = (torch.bfloat16, torch.float16)
# A split that works matches the full pass to rounding (both computed on one batch): in fp32 ~1e-6 per token; in bf16
# (20+ layers) up to a few 1e-3. A split that does not work (positions or masks lost) is off by O(1).
FP32_TOLERANCE, LOW_PRECISION_TOLERANCE = 1e-3, 5e-2


def largest_relative_error(split: torch.Tensor, full: torch.Tensor) -> float:
    """The largest ||split - full|| / ||full|| over the tokens (rows) of two [N, H] tensors of hidden states."""
    split, full = split.float(), full.float()
    return float(((split - full).norm(dim=-1) / full.norm(dim=-1).clamp_min(1e-6)).max()) if len(full) else 0.0


def autocast_state(device_type: str) -> str:
    """The autocast in force on `device_type` (`off` or its dtype): it changes every hidden state."""
    if not torch.is_autocast_enabled(device_type):
        return "off"
    return str(torch.get_autocast_dtype(device_type))


class FrozenPrefixCache:
    """Caches, per text, the hidden states entering the first trainable decoder layer.

    `run(input_ids, attention_mask)` returns the final hidden states of a padded batch: rows seen before reuse their
    cached prefix output, the others run the frozen layers once (as one sub-batch) and are kept while `max_bytes`
    allows; then only the trainable tail runs, with gradients if the caller enables them. The cache checks itself
    once against a full forward pass and switches itself off for architectures where the split is not exact.
    With a `store`, rows missing in memory are read from disk before they are computed, and computed rows are written
    there under `namespace()`: a hash of everything besides the token ids that decides them.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_bytes: int = 1 << 30,
        packed: bool = False,
        store: PrefixStore | None = None,
        identity: str = "",
        prefix_attention: str | None = None,
    ) -> None:
        """`max_bytes` bounds the memory held by cached hidden states (rows beyond it are recomputed each time);
        `packed`: run the decoder padding-free (`embedexp.model.packing`); `store`: the disk store shared across
        runs; `identity`: what else decides the states that the model's weights do not show (its attention mode);
        `prefix_attention`: a packed attention implementation for the frozen layers alone, where the model runs eager
        attention only so hooks read the weights of layers above them."""
        self.model, self.max_bytes, self.packed = model, max_bytes, packed
        self.prefix_attention = prefix_attention
        self.store, self.identity = (store if store is not None and store.enabled else None), identity
        self._weights_digest: str | None = None
        self.entries: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.split = first_trainable_layer(model)
        self.verified = False
        decoder = base_decoder(model)
        self.enabled = self.split is not None and 0 < self.split and hasattr(decoder, "layers")
        self.hits = self.misses = 0

    def prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Padded hidden states entering layer `split` (the frozen layers only, no final norm, no graph kept)."""
        with torch.no_grad(), attention_implementation(self.model, self.prefix_attention):
            return run_decoder(
                self.model,
                attention_mask,
                input_ids=input_ids,
                packed=self.packed or self.prefix_attention is not None,
                layers=slice(0, self.split),
                final_norm=False,
            )

    def tail(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, stop: int | None = None, final_norm: bool = True
    ) -> torch.Tensor:
        """Hidden states from the padded prefix output after layers `split`..`stop - 1` (None: to the last) and, if
        `final_norm`, the decoder's final norm."""
        return run_decoder(
            self.model,
            attention_mask,
            inputs_embeds=hidden,
            packed=self.packed,
            layers=slice(self.split, stop),
            final_norm=final_norm,
        )

    def serves_attention_of(self, layers: tuple[int, ...] | None) -> bool:
        """Whether hooks can read the attention of decoder `layers` (None: all) while the cache runs: all are above
        the frozen prefix, so they run in every call (the stored prefix states skip only layers below them)."""
        if not self.enabled or layers is None:
            return False
        n_layers = len(base_decoder(self.model).layers)
        return all(layer % n_layers >= self.split for layer in layers)

    def namespace(self) -> str:
        """Hash of what decides the prefix states besides the token ids: the frozen layers' weights (names without
        peft's `base_layer.`), the model config, the split, packing, autocast, attention mode and torch version."""
        if self._weights_digest is None:
            decoder = base_decoder(self.model)
            digest = hashlib.sha1(decoder.config.to_json_string(use_diff=False).encode())
            parts = [decoder.get_input_embeddings(), *decoder.layers[: self.split]]
            rotary = getattr(decoder, "rotary_emb", None)
            for index, module in enumerate([*parts, *([rotary] if rotary is not None else [])]):
                digest.update(f"part{index}".encode())
                hash_module_state(module, digest, strip=".base_layer")
            self._weights_digest = digest.hexdigest()
        device = self.model_device.type
        parts = [self._weights_digest, f"split={self.split}", f"packed={self.packed}", self.identity]
        parts += [f"autocast={autocast_state(device)}", f"torch={torch.__version__}"]
        parts += [f"prefix_attention={self.prefix_attention}"] if self.prefix_attention else []
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]

    @property
    def model_device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def from_store(self, keys: list[str], missing: list[int], computed: dict[int, torch.Tensor]) -> list[int]:
        """Fill `computed` with the stored rows among `missing` (kept in memory too); return the rows still missing."""
        if self.store is None or not missing:
            return missing
        namespace, device, still = self.namespace(), self.model_device, []
        stored = self.store.get_many([f"{namespace}:{keys[index]}" for index in missing])
        for index, states in zip(missing, stored, strict=True):
            if states is None:
                still.append(index)
                continue
            computed[index] = states.to(device)
            self.keep(keys[index], computed[index])
        return still

    def prefix_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Padded [B, T, H] prefix outputs of a batch: rows in memory or in the store reused, the others computed
        together (and kept in both)."""
        mask = attention_mask.bool()
        keys = [row_key(input_ids[i][mask[i]]) for i in range(len(input_ids))]
        computed: dict[int, torch.Tensor] = {}
        missing = self.from_store(keys, [i for i, key in enumerate(keys) if key not in self.entries], computed)
        if missing:
            self.misses += len(missing)
            sub_mask = mask[missing]
            columns = sub_mask.any(dim=0).nonzero().flatten()  # drop the columns only other rows needed
            keep = slice(int(columns[0]), int(columns[-1]) + 1)
            states = self.prefix(input_ids[missing][:, keep], attention_mask[missing][:, keep])
            for row, index in enumerate(missing):
                computed[index] = states[row][sub_mask[row, keep]]
                self.keep(keys[index], computed[index])
            if self.store is not None:
                namespace = self.namespace()
                self.store.put_many([(f"{namespace}:{keys[index]}", computed[index]) for index in missing])
        self.hits += len(keys) - len(missing)
        rows = [computed[i] if i in computed else self.entries[keys[i]] for i in range(len(keys))]
        return unpack(torch.cat(rows), mask)

    def keep(self, key: str, states: torch.Tensor) -> None:
        """Keep one text's prefix output while the memory bound allows."""
        size = states.numel() * states.element_size()
        if self.bytes + size <= self.max_bytes:
            self.entries[key] = states.detach()
            self.bytes += size

    def run(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, stop: int | None = None, final_norm: bool = True
    ) -> torch.Tensor:
        """Hidden states of a padded batch after layers ..`stop - 1` (None: all) and, if `final_norm`, the final norm,
        reusing the frozen prefix outputs of texts seen before."""
        if self.enabled and not self.verified and (stop is None or stop > self.split):
            self.verify(input_ids, attention_mask, stop, final_norm)
        if not self.enabled or (stop is not None and stop <= self.split):  # nothing trainable to run: no split
            span = None if stop is None else slice(0, stop)
            return run_decoder(
                self.model, attention_mask, input_ids=input_ids, packed=self.packed, layers=span, final_norm=final_norm
            )
        return self.tail(self.prefix_states(input_ids, attention_mask), attention_mask, stop, final_norm)

    def verify(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, stop: int | None, final_norm: bool) -> None:
        """Compare the split forward pass with a full one once (eval mode: no dropout); switch off if they differ.

        Both passes run on this batch from scratch: stored states (from another batch composition, rounded by bf16
        differently) would measure that rounding, not whether the split is exact for this architecture."""
        was_training = self.model.training
        self.model.eval()
        layers = None if stop is None else slice(0, stop)
        try:
            with torch.no_grad():
                split = self.tail(self.prefix(input_ids, attention_mask), attention_mask, stop, final_norm)
                full = run_decoder(
                    self.model,
                    attention_mask,
                    input_ids=input_ids,
                    packed=self.packed,
                    layers=layers,
                    final_norm=final_norm,
                )
        finally:
            self.model.train(was_training)
        mask = attention_mask.bool()
        low_precision = split.dtype in LOW_PRECISION or autocast_state(self.model_device.type) != "off"
        error = largest_relative_error(split[mask], full[mask])
        if error <= (LOW_PRECISION_TOLERANCE if low_precision else FP32_TOLERANCE):
            self.verified = True
            return
        log.warning(
            "frozen-prefix cache disabled: the split forward pass does not match this architecture (largest relative "
            "error of a token's state %.3g)",
            error,
        )
        self.enabled, self.bytes, self.store = False, 0, None
        self.entries.clear()
