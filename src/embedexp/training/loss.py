"""InfoNCE over cosine similarities with in-batch (and optional hard) negatives, and its Matryoshka wrapper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from embedexp.core.errors import ConfigError


class InfoNCELoss(torch.nn.Module):
    """Contrastive loss: each anchor must pick its own positive among all positives (and negatives) in the batch.

    logits[i, j] = (cos(a_i, c_j) - margin * [i == j]) / temperature over the candidates c = positives, then every
    hard negative of the batch (`negatives`, any number); cross-entropy against the diagonal.
    With `symmetric`, the positive-to-anchor direction (over the anchors only) is averaged in.
    With `false_negative_margin` m (Qwen3-Embedding, arXiv 2506.05176: 0.1), a wrong candidate whose cosine to the
    anchor exceeds the true pair's by more than m is taken for an unlabelled positive (another text of the same
    category, where a source has few labels) and left out of that anchor's softmax.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        margin: float = 0.0,
        symmetric: bool = False,
        false_negative_margin: float | None = None,
    ) -> None:
        """`temperature` scales the logits; `margin` is subtracted from the true pair's cosine."""
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        if false_negative_margin is not None and false_negative_margin < 0:
            raise ConfigError(f"loss.false_negative_margin must be >= 0 or null, got {false_negative_margin}")
        self.temperature = temperature
        self.margin = margin
        self.symmetric = symmetric
        self.false_negative_margin = false_negative_margin

    def mask_false_negatives(self, sims: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """`sims` [N, K] of each anchor to its wrong candidates, -inf where one beats the anchor's true cosine `true`
        [N] by more than `false_negative_margin` (no gradient flows through the choice)."""
        if self.false_negative_margin is None:
            return sims
        beaten = sims.detach() > true.detach()[:, None] + self.false_negative_margin
        return sims.masked_fill(beaten, float("-inf"))

    def similarities(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix [N_anchors, N_positives]."""
        return F.normalize(anchors.float(), dim=-1) @ F.normalize(positives.float(), dim=-1).T

    def forward(
        self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean InfoNCE loss of the batch (anchors[i] pairs with positives[i]; `negatives` [K, H] are extra wrong
        candidates for every anchor)."""
        if anchors.shape[0] < 2:
            raise ValueError(
                "contrastive loss with in-batch negatives needs at least 2 pairs per batch "
                f"(got {anchors.shape[0]}); raise data.batch_size"
            )
        sims = self.similarities(anchors, positives)
        eye = torch.eye(sims.shape[0], device=sims.device, dtype=torch.bool)
        true = sims.diagonal()
        logits = torch.where(eye, sims - self.margin, self.mask_false_negatives(sims, true)) / self.temperature
        labels = torch.arange(sims.shape[0], device=sims.device)
        candidates = logits
        if negatives is not None and len(negatives):
            hard = self.mask_false_negatives(self.similarities(anchors, negatives), true)
            candidates = torch.cat([logits, hard / self.temperature], dim=1)
        loss = F.cross_entropy(candidates, labels)
        if self.symmetric:
            backward = torch.where(eye, sims - self.margin, self.mask_false_negatives(sims.T, true)) / self.temperature
            loss = (loss + F.cross_entropy(backward, labels)) / 2
        return loss


class MatryoshkaLoss(InfoNCELoss):
    """Matryoshka representation learning (Kusupati et al. 2022): InfoNCE on nested prefixes of the embedding.

    loss = sum_d weight_d * InfoNCE(a[:, :d], p[:, :d], n[:, :d]) over `dims` (as sentence-transformers'
    `MatryoshkaLoss`); cosine similarity re-normalises each prefix. `full` (or null) in `dims` is the whole vector.
    """

    def __init__(
        self,
        dims: Sequence[int | str | None] = (64, 128, 256, "full"),
        weights: Sequence[float] | None = None,
        temperature: float = 0.05,
        margin: float = 0.0,
        symmetric: bool = False,
        false_negative_margin: float | None = None,
    ) -> None:
        """`dims`: prefix sizes (ints, `full`); `weights`: one per dim (default 1 each)."""
        super().__init__(temperature, margin, symmetric, false_negative_margin)
        parsed = [None if d in (None, "full") else d for d in dims]
        if not parsed or any(d is not None and (not isinstance(d, int) or d < 1) for d in parsed):
            raise ConfigError(f"loss.dims must be positive integers or 'full', got {list(dims)}")
        weights = [1.0] * len(parsed) if weights is None else [float(w) for w in weights]
        if len(weights) != len(parsed):
            raise ConfigError(f"loss.weights needs one weight per entry of loss.dims ({len(parsed)}), got {weights}")
        self.dims, self.weights = parsed, weights

    def check_dim(self, embed_dim: int) -> None:
        """Every prefix must fit the model's embedding size."""
        too_large = [d for d in self.dims if d is not None and d > embed_dim]
        if too_large:
            raise ConfigError(f"loss.dims {too_large} exceed this model's embedding size {embed_dim}")

    def forward(
        self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted sum of InfoNCE over the prefixes."""
        total = anchors.new_zeros((), dtype=torch.float32)
        for dim, weight in zip(self.dims, self.weights):
            cut = slice(None, dim)
            head = None if negatives is None else negatives[:, cut]
            total = total + weight * super().forward(anchors[:, cut], positives[:, cut], head)
        return total
