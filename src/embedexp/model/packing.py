"""Padding-free forward passes: a batch's texts packed into one sequence, attention computed text by text.

A padded batch of short anchors and long positives spends most of its matmuls on padding, and small per-length
sub-batches run the linear layers on small, inefficient matrices. Packed, every linear layer, norm and MLP runs once
per step on exactly the real tokens (one large matmul); only attention needs the texts apart: it gathers each
length group of texts into a small padded block, applies the causal (or bidirectional) and padding mask there, and
scatters the result back. Rotary positions restart at every text through `position_ids`.

`model.attention_groups` picks how attention is batched: `length` (default) runs one small block per length group;
`single` pads all texts of the batch into one block and calls `scaled_dot_product_attention` once with the mask
(CPU's flash kernel takes one): fewer, larger calls, more padded attention work.

The attention function is registered with transformers' `AttentionInterface` as `embedexp_packed_<base>`; without a
packed layout it is exactly `<base>` (sdpa or eager), so the same model also serves padded calls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask
from transformers.models.llama.modeling_llama import eager_attention_forward

from embedexp.core.compat import attn_implementation, swap_attn_implementation
from embedexp.core.errors import ConfigError

log = logging.getLogger(__name__)

PACKED_PREFIX = "embedexp_packed_"
BASES = {"sdpa": (sdpa_attention_forward, sdpa_mask), "eager": (eager_attention_forward, eager_mask)}
# One extra forward pass costs about as much as this many padded tokens (Python dispatch of every layer's ops):
# `plan_length_groups` splits a padded batch only where that saves more padding.
FORWARD_OVERHEAD_TOKENS = 48
# attention blocks: texts grouped by length so short texts are not padded to the longest one (cheap: T <= max_length)
ATTENTION_OVERHEAD_TOKENS = 16
ATTENTION_GROUPS = ("length", "single")  # model.attention_groups: blocks per length group, or one SDPA call per batch
GROUPS_ATTRIBUTE = "embedexp_attention_groups"  # set on the bare decoder by `set_attention_groups`


def plan_length_groups(
    lengths: list[int], overhead_tokens: int = FORWARD_OVERHEAD_TOKENS, min_rows: int = 2
) -> list[list[int]]:
    """Indices of `lengths` in groups of similar length that minimise padded tokens + `overhead_tokens` per group.

    The rows are sorted by length (longest first) and cut into contiguous groups of at least `min_rows` rows (a
    one-row batch would make `torch.compile` specialise and compile again) by dynamic programming, so a batch of
    short anchors and long positives runs as two or three forward passes that pad little instead of one that pads
    every anchor to the longest positive.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of the first j rows (longest first)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end):
            if end - start < min(min_rows, n):
                continue
            cost = best[start] + overhead_tokens + (end - start) * lengths[order[start]]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


@dataclass
class AttentionGroup:
    """Texts attended together: the packed position of each (text, slot), the slots that are real, and mask biases."""

    index: torch.Tensor  # [b * t] long: packed token positions (padding slots repeat a real token, masked out)
    valid: torch.Tensor  # [b, t] bool
    biases: dict = field(default_factory=dict)  # (causal, window, dtype) -> [b, 1, t, t] additive mask

    def bias(self, causal: bool, window: int | None, dtype: torch.dtype) -> torch.Tensor:
        """Additive attention mask (0 where allowed, the dtype's minimum elsewhere), built once for all layers."""
        key = (causal, window, dtype)
        if key not in self.biases:
            b, t = self.valid.shape
            slots = torch.arange(t, device=self.valid.device)
            allowed = self.valid[:, None, None, :].expand(b, 1, t, t)
            if causal:
                allowed = allowed & (slots[None, :] <= slots[:, None])
            if window:
                allowed = allowed & ((slots[:, None] - slots[None, :]).abs() < window)
            bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
            self.biases[key] = bias.masked_fill(~allowed, torch.finfo(dtype).min)
        return self.biases[key]


@dataclass
class PackedLayout:
    """Where each text of a padded batch lies in the packed sequence, and its attention groups."""

    valid: torch.Tensor  # [B, T] bool: real tokens of the padded batch (packed in row-major order)
    groups: list[AttentionGroup]
    gather_back: torch.Tensor  # [N] long: row of each packed token in the groups' concatenated [sum b*t] blocks
    single: bool = False  # one group holding every text: attention by one `scaled_dot_product_attention` call


def set_attention_groups(model: torch.nn.Module, mode: str) -> None:
    """How packed attention is batched (`model.attention_groups`): `length` groups or a `single` padded block."""
    if mode not in ATTENTION_GROUPS:
        raise ConfigError(f"model.attention_groups={mode!r} must be one of {', '.join(ATTENTION_GROUPS)}")
    decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    setattr(decoder, GROUPS_ATTRIBUTE, mode)


def attention_groups(model: torch.nn.Module) -> str:
    """The model's `model.attention_groups` mode (`length` unless set)."""
    decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(decoder, GROUPS_ATTRIBUTE, "length")


def pack_layout(attention_mask: torch.Tensor, single: bool = False) -> tuple[PackedLayout, torch.Tensor]:
    """The layout of a padded batch's real tokens packed row after row, and their positions within each text;
    `single`: all texts in one attention group (padded to the longest) instead of length groups."""
    valid = attention_mask.bool()
    lengths = valid.sum(dim=1)
    starts = torch.cumsum(lengths, 0) - lengths
    positions = (torch.cumsum(valid.long(), dim=1) - 1)[valid]
    groups, back_parts, offset = [], [], 0
    plan = [list(range(len(lengths)))] if single else plan_length_groups(lengths.tolist(), ATTENTION_OVERHEAD_TOKENS, 1)
    for rows in plan:
        rows_t = torch.tensor(rows, device=valid.device)
        width = int(lengths[rows_t].max())
        slots = torch.arange(width, device=valid.device)
        group_valid = slots.unsqueeze(0) < lengths[rows_t].unsqueeze(1)
        index = torch.where(group_valid, starts[rows_t].unsqueeze(1) + slots, starts[rows_t].unsqueeze(1)).flatten()
        real = group_valid.flatten().nonzero().flatten()
        back_parts.append((index[real], real + offset))
        groups.append(AttentionGroup(index, group_valid))
        offset += index.numel()
    gather_back = torch.empty(int(valid.sum()), dtype=torch.long, device=valid.device)
    for packed_positions, block_rows in back_parts:
        gather_back[packed_positions] = block_rows
    return PackedLayout(valid, groups, gather_back, single), positions


@torch.compiler.disable  # data-dependent groups: left to eager; the layer's other ops compile around it
def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    layout: PackedLayout,
    scaling: float,
    dropout: float = 0.0,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """Attention of packed [1, heads, N, d] states, text by text; returns [1, N, heads, d] like transformers' own."""
    heads, head_dim = query.shape[1], query.shape[3]
    groups_of_kv = heads // key.shape[1]
    causal = getattr(getattr(module, "config", None), "is_causal", True) is not False
    tokens_q, tokens_k, tokens_v = (x[0].transpose(0, 1) for x in (query, key, value))  # [N, heads, d]
    if layout.single:
        return single_block_attention(module, tokens_q, tokens_k, tokens_v, layout, scaling, dropout, sliding_window)
    blocks = []
    for group in layout.groups:
        b, t = group.valid.shape
        q = tokens_q.index_select(0, group.index).view(b, t, heads, head_dim).transpose(1, 2)
        k = tokens_k.index_select(0, group.index).view(b, t, -1, head_dim).transpose(1, 2)
        v = tokens_v.index_select(0, group.index).view(b, t, -1, head_dim).transpose(1, 2)
        if groups_of_kv > 1:
            k, v = k.repeat_interleave(groups_of_kv, dim=1), v.repeat_interleave(groups_of_kv, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * scaling
        scores = scores + group.bias(causal, sliding_window, scores.dtype)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
        blocks.append(torch.matmul(weights, v).transpose(1, 2).reshape(b * t, heads, head_dim))
    return torch.cat(blocks).index_select(0, layout.gather_back).unsqueeze(0)


def single_block_attention(
    module: torch.nn.Module,
    tokens_q: torch.Tensor,
    tokens_k: torch.Tensor,
    tokens_v: torch.Tensor,
    layout: PackedLayout,
    scaling: float,
    dropout: float,
    sliding_window: int | None,
) -> torch.Tensor:
    """Attention of packed [N, heads, d] tokens as one padded [B, heads, T, d] block: one SDPA call with the mask."""
    group = layout.groups[0]
    b, t = group.valid.shape
    heads, head_dim = tokens_q.shape[1], tokens_q.shape[2]
    q, k, v = (
        x.index_select(0, group.index).view(b, t, -1, head_dim).transpose(1, 2) for x in (tokens_q, tokens_k, tokens_v)
    )
    if heads // k.shape[1] > 1:
        k, v = k.repeat_interleave(heads // k.shape[1], dim=1), v.repeat_interleave(heads // k.shape[1], dim=1)
    causal = getattr(getattr(module, "config", None), "is_causal", True) is not False
    mask = group.bias(causal, sliding_window, q.dtype)  # additive, never a fully masked row: no NaN in padding slots
    output = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout if module.training else 0.0, scale=scaling
    )
    return output.transpose(1, 2).reshape(b * t, heads, head_dim).index_select(0, layout.gather_back).unsqueeze(0)


def make_attention_forward(base: str):
    """The `embedexp_packed_<base>` attention function: packed when a layout is passed, else `base` itself."""
    base_forward = BASES[base][0]

    def attention_forward(module, query, key, value, attention_mask, *args, packed_layout=None, **kwargs):
        if packed_layout is None:
            return base_forward(module, query, key, value, attention_mask, *args, **kwargs)
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        output = packed_attention(
            module, query, key, value, packed_layout, scaling, kwargs.get("dropout", 0.0), kwargs.get("sliding_window")
        )
        return output, None

    return attention_forward


for _base, (_forward, _mask) in BASES.items():
    AttentionInterface.register(PACKED_PREFIX + _base, make_attention_forward(_base))
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_PREFIX + _base, _mask)


def packed_name(implementation: str | None) -> str | None:
    """The packed variant of an attention implementation (None where there is none, e.g. flash kernels)."""
    if implementation and implementation.startswith(PACKED_PREFIX):
        return implementation
    return PACKED_PREFIX + implementation if implementation in BASES else None


def use_packed_attention(model: torch.nn.Module) -> bool:
    """Switch a decoder to the packed variant of its attention implementation; False where it has none."""
    name = packed_name(attn_implementation(model))
    if name is None:
        log.info("model.packed: attention %r has no packed variant; batches stay padded", attn_implementation(model))
        return False
    if attn_implementation(model) != name:
        model.set_attn_implementation(name)
    return True


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, name: str | None) -> Iterator[None]:
    """Run the decoder with attention implementation `name` inside the block (None: leave it), then restore it."""
    decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = swap_attn_implementation(decoder, name)
    try:
        yield
    finally:
        swap_attn_implementation(decoder, previous)


def unpack(packed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Padded [B, T, H] states from packed [N, H] ones (the real tokens of `valid`, row after row); differentiable."""
    padded = packed.new_zeros((*valid.shape, packed.shape[-1]))
    padded[valid] = packed
    return padded


@contextlib.contextmanager
def decoder_span(model: torch.nn.Module, layers: slice | None, final_norm: bool) -> Iterator[None]:
    """Run only the decoder layers `layers` (a slice; None: all), with or without the final norm, inside the block.

    The decoder's layer list and norm are swapped for the block and restored after it, so a forward pass can start
    from cached states (layers `split:`), stop at an intermediate layer (`:k + 1`) or skip the final norm.
    """
    decoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    all_layers, norm = decoder.layers, decoder.norm
    if layers is not None:
        decoder.layers = torch.nn.ModuleList(list(all_layers)[layers])
    if not final_norm:
        decoder.norm = torch.nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = all_layers, norm


def run_decoder(
    model: torch.nn.Module,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    packed: bool = False,
    layers: slice | None = None,
    final_norm: bool = True,
) -> torch.Tensor:
    """Hidden states [B, T, H] of a right- or left-padded batch after the decoder layers `layers` (default all) and,
    if `final_norm`, the decoder's final norm; `packed` runs it padding-free.

    Positions count from each text's first real token, so left and right padding give the same vectors.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)
    with decoder_span(model, layers, final_norm):
        if not packed:
            inputs = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
            output = model(**inputs, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            return output.last_hidden_state
        layout, positions = pack_layout(attention_mask, attention_groups(model) == "single")
        valid = layout.valid
        inputs = (
            {"input_ids": input_ids[valid][None]}
            if input_ids is not None
            else {"inputs_embeds": inputs_embeds[valid][None]}
        )
        output = model(**inputs, position_ids=positions[None], use_cache=False, packed_layout=layout)
        return unpack(output.last_hidden_state[0], valid)
