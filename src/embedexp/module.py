"""LightningModule: contrastive (InfoNCE) fine-tuning of an `Embedder` with in-batch negatives."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states

from embedexp.atomic import atomic_write_text
from embedexp.embedder import Embedder
from embedexp.loss import InfoNCELoss

log = logging.getLogger(__name__)


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
            saved = self.save_failed_batch(batch, float(loss.item()))
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step}; the batch's texts are saved in {saved}"
            )
        return loss

    def save_failed_batch(self, batch: dict[str, list[str]], loss: float) -> Path:
        """Write the texts of a batch that produced a non-finite loss next to the run's outputs."""
        folder = Path(self.trainer.default_root_dir if self._trainer is not None else ".")
        record = {"step": self.global_step, "loss": loss, **batch}
        return atomic_write_text(folder / f"nonfinite_batch_step{self.global_step}.json", json.dumps(record, indent=2))

    def validation_step(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        """Contrastive loss on held-out pairs."""
        self.shared_step(batch, "val")

    def configure_optimizers(self):
        """Optimizer over trainable parameters, linear warm-up then linear decay per step."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: enable model.lora or unfreeze the backbone")
        optimizer = self.optimizer_factory(params)
        total = self.total_training_steps()
        warmup = int(self.warmup_ratio * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def total_training_steps(self) -> int:
        """Optimizer steps of the whole fit, from the DataModule's batch count when it knows it.

        `trainer.estimated_stepping_batches` would build the train dataloader before a checkpoint's data
        position is restored, so a resumed run would replay the start of its epoch.
        """
        trainer = self.trainer
        batches = getattr(trainer.datamodule, "train_batches_per_epoch", None)
        if batches is None:
            return max(1, int(trainer.estimated_stepping_batches))
        per_epoch = max(1, -(-batches(trainer.world_size) // trainer.accumulate_grad_batches))
        total = per_epoch * max(1, trainer.max_epochs or 1)
        return min(total, trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else total

    def on_train_epoch_end(self) -> None:
        """Warn once per epoch about texts cut to `model.max_length`."""
        if self.embedder.n_truncated:
            log.warning(
                "%d texts were truncated to model.max_length=%d", self.embedder.n_truncated, self.embedder.max_length
            )
            self.embedder.n_truncated = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable weights (e.g. LoRA), plus the RNG states so a resumed run continues identically."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["rng_states"] = rng_states_for_checkpoint()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the RNG states saved with the checkpoint."""
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])


def rng_states_for_checkpoint() -> dict:
    """torch / numpy / python RNG states in types that `torch.load(weights_only=True)` accepts."""
    states = _collect_rng_states()
    name, keys, position, has_gauss, cached = states["numpy"]
    states["numpy"] = (name, torch.from_numpy(keys.astype("int64")), position, has_gauss, cached)
    return states


def restore_rng_states(states: dict) -> None:
    """Inverse of `rng_states_for_checkpoint`."""
    states = dict(states)
    name, keys, position, has_gauss, cached = states["numpy"]
    states["numpy"] = (name, keys.numpy().astype("uint32"), position, has_gauss, cached)
    _set_rng_states(states)
