"""Where the final token looks: attention capture (shared with the `attention` pooling), shares, plots, CLI.

`python -m embedexp.attention` runs the attention-map analysis (see `embedexp.attention.__main__`).
"""

from embedexp.attention.capture import (
    FinalTokenAttention,
    attention_modules,
    final_token_attention,
    uses_eager_attention,
)
from embedexp.attention.shares import SHARE_NAMES, attention_shares, token_kinds

__all__ = [
    "SHARE_NAMES",
    "FinalTokenAttention",
    "attention_modules",
    "attention_shares",
    "final_token_attention",
    "token_kinds",
    "uses_eager_attention",
]
