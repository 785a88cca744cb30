"""Where the final token looks: per-layer attention shares by token kind, tables and plots.

The capture itself (shared with the `attention` pooling) is `embedexp.model.attention_capture`;
`python -m embedexp attention` runs the analysis (`embedexp.cli.attention`, logic in `embedexp.analysis.attention.run`).
"""

from embedexp.analysis.attention.shares import SHARE_NAMES, attention_shares, token_kinds

__all__ = ["SHARE_NAMES", "attention_shares", "token_kinds"]
