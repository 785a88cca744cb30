"""Where the final token looks: per-layer attention shares by token kind, tables and plots.

The capture itself (shared with the `final_token_attention` pooling) is `embedexp.model.attention_capture`;
`python -m embedexp attention_maps` runs the analysis (`embedexp.cli.attention_maps`, logic in
`embedexp.analysis.attention_maps.run`).
"""

from embedexp.analysis.attention_maps.shares import SHARE_NAMES, attention_shares, token_kinds

__all__ = ["SHARE_NAMES", "attention_shares", "token_kinds"]
