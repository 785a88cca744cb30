"""Fast inference helpers: token-budget batch planning and a cache of the frozen layers' outputs.

With LoRA on the last N decoder layers only, everything below the first adapted layer never changes during
training, so its output for a fixed evaluation text can be computed once and reused at every evaluation.
"""

from __future__ import annotations

import hashlib
import logging

import torch

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


class _StopForward(Exception):
    """Raised by a pre-hook to end a forward pass once the wanted hidden states are captured."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def base_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The bare decoder (e.g. LlamaModel) inside an optional peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def first_trainable_layer(model: torch.nn.Module) -> int | None:
    """Index of the first decoder layer with trainable parameters (None if the embeddings are trainable)."""
    decoder = base_decoder(model)
    if any(p.requires_grad for p in decoder.get_input_embeddings().parameters()):
        return None
    for index, layer in enumerate(decoder.layers):
        if any(p.requires_grad for p in layer.parameters()):
            return index
    return len(decoder.layers)


class FrozenPrefixCache:
    """Caches, per input batch, the hidden states entering the first trainable decoder layer.

    `run(inputs)` returns the final hidden states: the first call for a batch runs the whole model and keeps the
    prefix output; later calls run only the trainable tail. The cache checks itself once against a full forward
    pass and switches itself off for architectures where the split is not exact.
    """

    def __init__(self, model: torch.nn.Module, max_bytes: int = 1 << 30) -> None:
        """`max_bytes` bounds the memory held by cached hidden states."""
        self.model, self.max_bytes = model, max_bytes
        self.entries: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.split = first_trainable_layer(model)
        self.verified = False
        decoder = base_decoder(model)
        self.enabled = self.split is not None and 0 < self.split and hasattr(decoder, "layers")
        self.hits = self.misses = 0

    @staticmethod
    def key(inputs: dict[str, torch.Tensor]) -> str:
        """Identity of a batch: its token ids and mask."""
        digest = hashlib.sha1()
        for name in ("input_ids", "attention_mask"):
            tensor = inputs[name].detach().cpu().contiguous()
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()

    def prefix(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states entering layer `split` (the rest of the forward pass is skipped)."""
        decoder = base_decoder(self.model)

        def stop(_module, args, kwargs):
            raise _StopForward(args[0] if args else kwargs["hidden_states"])

        handle = decoder.layers[self.split].register_forward_pre_hook(stop, with_kwargs=True)
        try:
            decoder(**inputs)
        except _StopForward as captured:
            return captured.hidden
        finally:
            handle.remove()
        raise RuntimeError("the decoder never reached its first trainable layer")

    def tail(self, hidden: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states from the cached prefix output, running layers `split`.. only."""
        decoder = base_decoder(self.model)
        layers = decoder.layers
        decoder.layers = torch.nn.ModuleList(list(layers)[self.split :])
        try:
            tail_inputs = {k: v for k, v in inputs.items() if k != "input_ids"}
            return decoder(inputs_embeds=hidden, **tail_inputs).last_hidden_state
        finally:
            decoder.layers = layers

    def run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states for a batch, reusing its frozen prefix output when cached."""
        if not self.enabled:
            return self.model(**inputs).last_hidden_state
        key = self.key(inputs)
        hidden = self.entries.get(key)
        if hidden is None:
            self.misses += 1
            hidden = self.prefix(inputs)
            if self.bytes + hidden.numel() * hidden.element_size() <= self.max_bytes:
                self.entries[key] = hidden
                self.bytes += hidden.numel() * hidden.element_size()
        else:
            self.hits += 1
        output = self.tail(hidden, inputs)
        if self.verified:
            return output
        full = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].bool()
        if torch.allclose(output[mask].float(), full[mask].float(), atol=1e-3, rtol=1e-3):
            self.verified = True
        else:
            log.warning("frozen-prefix cache disabled: the split forward pass does not match this architecture")
            self.enabled, self.bytes = False, 0
            self.entries.clear()
        return full
