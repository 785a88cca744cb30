"""LightningModule: contrastive (InfoNCE) fine-tuning of an `Embedder` with in-batch negatives."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from embedexp.embedder import Embedder
from embedexp.loss import InfoNCELoss


class EmbeddingModule(L.LightningModule):
    """Trains the embedder so each text's vector is closest to its own positive among the batch."""

    def __init__(
        self,
        embedder: Embedder,
        loss: InfoNCELoss | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        warmup_ratio: float = 0.1,
    ) -> None:
        """`optimizer` is a partial taking the parameters (Hydra `_partial_: true`)."""
        super().__init__()
        self.embedder = embedder
        self.loss_fn = loss or InfoNCELoss()
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-4))
        self.warmup_ratio = warmup_ratio
        self.strict_loading = False  # checkpoints hold the trainable weights only

    def embed_pairs(self, batch: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed texts and positives in one forward pass, gathered across processes (with gradients) under DDP."""
        n = len(batch["text"])
        vectors = self.embedder.embed(batch["text"] + batch["text_pos"])
        anchors, positives = vectors[:n], vectors[n:]
        if self.trainer is not None and self.trainer.world_size > 1:
            anchors = self.all_gather(anchors, sync_grads=True).flatten(0, 1)
            positives = self.all_gather(positives, sync_grads=True).flatten(0, 1)
        return anchors, positives

    def shared_step(self, batch: dict[str, list[str]], stage: str) -> torch.Tensor:
        """Loss and in-batch top-1 accuracy, logged under `stage/`."""
        anchors, positives = self.embed_pairs(batch)
        loss = self.loss_fn(anchors, positives)
        with torch.no_grad():
            sims = self.loss_fn.similarities(anchors, positives)
            accuracy = (sims.argmax(dim=1) == torch.arange(len(sims), device=sims.device)).float().mean()
        size = len(batch["text"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=stage != "train")
        self.log(f"{stage}/acc", accuracy, batch_size=size, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> torch.Tensor:
        """One contrastive step; a non-finite loss stops the run with the offending texts named."""
        loss = self.shared_step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step}; "
                f"first texts of the batch: {batch['text'][:3]}"
            )
        return loss

    def validation_step(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        """Contrastive loss on held-out pairs."""
        self.shared_step(batch, "val")

    def configure_optimizers(self):
        """Optimizer over trainable parameters, linear warm-up then linear decay per step."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: enable model.lora or unfreeze the backbone")
        optimizer = self.optimizer_factory(params)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_ratio * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable weights (e.g. LoRA) in checkpoints; the frozen backbone is reloaded from its source."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
