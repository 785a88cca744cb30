"""InfoNCE over cosine similarities with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class InfoNCELoss(torch.nn.Module):
    """Contrastive loss: each anchor must pick its own positive among all positives in the batch.

    logits[i, j] = (cos(a_i, p_j) - margin * [i == j]) / temperature; cross-entropy against the diagonal.
    With `symmetric`, the positive-to-anchor direction is averaged in.
    """

    def __init__(self, temperature: float = 0.05, margin: float = 0.0, symmetric: bool = False) -> None:
        """`temperature` scales the logits; `margin` is subtracted from the true pair's cosine."""
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.margin = margin
        self.symmetric = symmetric

    def similarities(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix [N_anchors, N_positives]."""
        return F.normalize(anchors.float(), dim=-1) @ F.normalize(positives.float(), dim=-1).T

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Mean InfoNCE loss of the batch (anchors[i] pairs with positives[i])."""
        if anchors.shape[0] < 2:
            raise ValueError(
                "contrastive loss with in-batch negatives needs at least 2 pairs per batch "
                f"(got {anchors.shape[0]}); raise data.batch_size"
            )
        sims = self.similarities(anchors, positives)
        eye = torch.eye(sims.shape[0], device=sims.device, dtype=sims.dtype)
        logits = (sims - self.margin * eye) / self.temperature
        labels = torch.arange(sims.shape[0], device=sims.device)
        loss = F.cross_entropy(logits, labels)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        return loss
