"""Where the final token's attention goes: shares on prompt, text, sink and final tokens (pure functions on tensors).

Every real (non-pad) token belongs to exactly one kind:

- `sink`: the first real token of the row (the "attention sink"), whatever it is (a BOS, a prompt word, or, with
  the `none` prompt, the first word of the text);
- `final`: the last real token, the one whose hidden state is pooled and whose attention is measured, so its share
  is its attention to itself (a row of one real token has only the sink);
- `text`: the other tokens that come from the input text (`text_mask`);
- `prompt`: all other real tokens: the template's words and special tokens (BOS/EOS).

Shares are fractions of the attention mass on real tokens, so prompt + text + sink + final = 1 for every row, layer
and head, with left or right padding alike (causal attention already puts 0 on pads; the normalisation only absorbs
rounding). Rows without any real token get shares of 0.
"""

from __future__ import annotations

import torch

SHARE_NAMES = ("prompt", "text", "sink", "final")


def token_kinds(attention_mask: torch.Tensor, text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean [B, T] masks {'prompt', 'text', 'sink', 'final'}: a partition of the real tokens (see module doc)."""
    real = attention_mask.bool()
    first = real.float().argmax(dim=1, keepdim=True)
    last = real.shape[1] - 1 - real.flip(1).float().argmax(dim=1, keepdim=True)
    sink = torch.zeros_like(real).scatter_(1, first, True) & real
    final = torch.zeros_like(real).scatter_(1, last, True) & real & ~sink
    text = real & text_mask.bool() & ~sink & ~final
    prompt = real & ~text_mask.bool() & ~sink & ~final
    return {"prompt": prompt, "text": text, "sink": sink, "final": final}


def _broadcast(mask: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """View a [B, T] mask as [B, 1, ..., 1, T] to match `attention` [B, ..., T]."""
    return mask.view(mask.shape[0], *([1] * (attention.dim() - 2)), mask.shape[1]).to(attention.dtype)


def attention_shares(
    attention: torch.Tensor, attention_mask: torch.Tensor, text_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Shares {'prompt', 'text', 'sink', 'final'} of the final token's attention.

    `attention` is [B, T], [B, L, T] or [B, L, H, T] (last axis: input tokens); each share has the shape without
    the last axis. The four shares sum to 1 wherever a row has real tokens.
    """
    if attention.shape[0] != attention_mask.shape[0] or attention.shape[-1] != attention_mask.shape[-1]:
        raise ValueError(
            f"attention {tuple(attention.shape)} does not match attention_mask {tuple(attention_mask.shape)}"
        )
    weights = attention.float().clamp_min(0.0)
    kinds = token_kinds(attention_mask, text_mask)
    parts = {name: (weights * _broadcast(mask, weights)).sum(dim=-1) for name, mask in kinds.items()}
    total = sum(parts.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return {name: parts[name] / safe for name in SHARE_NAMES}


def top_text_tokens(
    attention: torch.Tensor, attention_mask: torch.Tensor, text_mask: torch.Tensor, k: int
) -> list[list[tuple[int, float]]]:
    """Per row, up to `k` (position, attention) pairs of the `text` tokens (sink and final excluded) by [B, T]
    attention."""
    if attention.dim() != 2:
        raise ValueError(f"top_text_tokens needs [B, T] attention, got {tuple(attention.shape)}")
    text = token_kinds(attention_mask, text_mask)["text"]
    scores = attention.float().masked_fill(~text, float("-inf"))
    n = min(k, scores.shape[1])
    values, indices = scores.topk(n, dim=1) if n > 0 else (scores[:, :0], scores[:, :0].long())
    return [
        [(int(i), float(v)) for v, i in zip(row_values, row_indices) if v != float("-inf")]
        for row_values, row_indices in zip(values.tolist(), indices.tolist())
    ]
