"""LightningModule: contrastive (InfoNCE) fine-tuning of an `Embedder` with in-batch (and hard) negatives."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from transformers import get_linear_schedule_with_warmup

from embedexp.core.atomic import atomic_write_text
from embedexp.core.compat import collect_rng_states, set_rng_states
from embedexp.core.errors import ConfigError
from embedexp.model.embedder import Embedder
from embedexp.model.manifest import CHECKPOINT_KEY, complete
from embedexp.model.pooling import pooled_dim
from embedexp.training.grad_cache import GradCacheLoss
from embedexp.training.loss import InfoNCELoss

log = logging.getLogger(__name__)
Scheduler = Callable[..., torch.optim.lr_scheduler.LRScheduler]
GUARD_WARMUP_STEPS = 3  # model.compile_guards=skip_after_warmup: steps that compile (and guard) every layer variant


class EmbeddingModule(L.LightningModule):
    """Trains the embedder so each text's vector is closest to its own positive among the batch.

    Under DDP every process embeds its own batch and the embeddings are all-gathered *with gradients*, so each process
    computes the loss over the global batch (in-batch negatives from every rank). The all-gather's backward sums the
    ranks' gradients for each local embedding (each rank holds the same global loss, so that is world_size times the
    gradient of the global loss) and DDP averages parameter gradients over ranks: the two factors cancel and the
    update equals one process training on the whole global batch (tests/test_scaleout.py checks it).

    With `grad_cache_chunk_size` the training loss is a `GradCacheLoss` (Gao et al. 2021): the activation memory of
    one chunk of texts, whatever the batch size, for the loss and gradients of the whole batch. Optimization stays
    Lightning's (automatic) either way: gradient clipping, accumulation, precision and the LR schedule apply.
    Built from config: `objective` (conf/objective/contrastive.yaml) is this class with `_partial_: true`, given the
    embedder by `embedexp.cli.train`.
    """

    def __init__(
        self,
        embedder: Embedder,
        loss: InfoNCELoss | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Scheduler | None = get_linear_schedule_with_warmup,
        warmup_ratio: float = 0.1,
        grad_cache_chunk_size: int | None = None,
        cache_frozen_prefix: bool = True,
        prefix_cache_gb: float = 4.0,
    ) -> None:
        """`optimizer` takes the parameters, `scheduler` (None: constant LR) the optimizer and the keywords
        `num_warmup_steps`, `num_training_steps` (Hydra `_partial_: true`; transformers' schedules fit).

        `grad_cache_chunk_size`: texts per GradCache chunk (anchors, positives and negatives alike), None = plain
        backprop. `cache_frozen_prefix`: when a text is embedded again with the same frozen layers (epochs after the
        first, GradCache's second pass), reuse their output (up to `prefix_cache_gb`): only the adapted layers run.
        """
        super().__init__()
        chunk = grad_cache_chunk_size
        if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
            raise ConfigError(f"grad_cache.chunk_size must be a positive number of texts, got {grad_cache_chunk_size}")
        if not 0 <= warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
        self.embedder = embedder
        self.loss_fn = loss or InfoNCELoss()
        if hasattr(self.loss_fn, "check_dim"):  # Matryoshka prefixes must fit the embedding
            self.loss_fn.check_dim(pooled_dim(embedder.pooling, int(embedder.model.config.hidden_size)))
        self.optimizer_factory = optimizer or functools.partial(torch.optim.AdamW, lr=1e-4)  # picklable (ddp_spawn)
        self.scheduler_factory, self.warmup_ratio = scheduler, warmup_ratio
        self.grad_cache_chunk_size = grad_cache_chunk_size
        self.cache_frozen_prefix, self.prefix_cache_bytes = cache_frozen_prefix, int(prefix_cache_gb * 2**30)
        self.strict_loading = False  # checkpoints hold the trainable weights only

    @property
    def grad_cache(self) -> GradCacheLoss | None:
        """The GradCache loss of `grad_cache_chunk_size` texts per chunk, or None for plain backprop."""
        return GradCacheLoss(self.embedder, self.grad_cache_chunk_size) if self.grad_cache_chunk_size else None

    def gather(self, anchors: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All ranks' anchors and positives, in rank order, differentiable (identity in a single process)."""
        if self._trainer is not None and self.trainer.world_size > 1:
            anchors = self.all_gather(anchors, sync_grads=True).flatten(0, 1)
            positives = self.all_gather(positives, sync_grads=True).flatten(0, 1)
        return anchors, positives

    def gather_negatives(self, negatives: torch.Tensor | None) -> torch.Tensor | None:
        """All ranks' hard negatives, differentiable; ranks may hold different numbers (padded for the all-gather)."""
        if negatives is None or self._trainer is None or self.trainer.world_size == 1:
            return negatives
        counts = self.all_gather(torch.tensor(len(negatives), device=negatives.device))
        width = int(counts.max())
        padded = torch.nn.functional.pad(negatives, (0, 0, 0, width - len(negatives)))
        gathered = self.all_gather(padded, sync_grads=True)
        keep = torch.arange(width, device=negatives.device).unsqueeze(0) < counts.unsqueeze(1)
        return gathered[keep]

    def pair_vectors(
        self, vectors: torch.Tensor, batch: dict[str, list[str]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Anchors, positives and hard negatives of the batch's vectors (in `pair_texts` order), gathered under DDP."""
        n = len(batch["text"])
        anchors, positives = self.gather(vectors[:n], vectors[n : 2 * n])
        return anchors, positives, self.gather_negatives(vectors[2 * n :] if "text_neg" in batch else None)

    def embed_pairs(self, batch: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Embed texts, positives (and hard negatives) in one forward pass, gathered across processes under DDP."""
        return self.pair_vectors(self.embedder.embed(pair_texts(batch)), batch)

    def pair_loss(self, vectors: torch.Tensor, batch: dict[str, list[str]], stage: str) -> torch.Tensor:
        """The loss of the batch's vectors, its loss and in-batch top-1 accuracy logged under `stage/`."""
        anchors, positives, negatives = self.pair_vectors(vectors, batch)
        loss = self.loss_fn(anchors, positives, negatives)
        self.log_step(loss, anchors, positives, len(batch["text"]), stage)
        return loss

    def shared_step(self, batch: dict[str, list[str]], stage: str) -> torch.Tensor:
        """Loss and in-batch top-1 accuracy of one forward pass over the batch, logged under `stage/`."""
        return self.pair_loss(self.embedder.embed(pair_texts(batch)), batch, stage)

    def log_step(
        self, loss: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, size: int, stage: str
    ) -> None:
        """Log the loss and the in-batch top-1 accuracy under `stage/`."""
        with torch.no_grad():
            sims = self.loss_fn.similarities(anchors, positives)
            accuracy = (sims.argmax(dim=1) == torch.arange(len(sims), device=sims.device)).float().mean()
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, batch_size=size, sync_dist=stage != "train")
        self.log(f"{stage}/acc", accuracy, batch_size=size, sync_dist=stage != "train")

    def step_token_lengths(self, batch: dict[str, list[str]]) -> list[int]:
        """Token counts of the prompted texts one training step embeds (for throughput and MFU)."""
        rows, _, _ = self.embedder.token_rows(pair_texts(batch))
        return [len(row) for row in rows]

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> torch.Tensor:
        """One contrastive step (GradCache's when set); a non-finite loss stops the run with the texts named."""
        grad_cache = self.grad_cache
        if grad_cache is None:
            loss = self.shared_step(batch, "train")
        else:
            loss = grad_cache(pair_texts(batch), lambda vectors: self.pair_loss(vectors, batch, "train"))
        self.check_finite(loss, batch)
        return loss

    def on_fit_start(self) -> None:
        """Training mode for the whole embedder (`from_pretrained` returns a model in eval mode, where LoRA dropout
        would be off); GradCache's backward needs DDP without unused-parameter search (the loss it returns has no
        graph); texts embedded more than once (or by an earlier run, with a prefix store) reuse their frozen layers'
        outputs."""
        self.embedder.train()
        wrapped = self.trainer.strategy.model  # DistributedDataParallel under DDP, by now
        if self.grad_cache_chunk_size and getattr(wrapped, "find_unused_parameters", False):
            raise ConfigError("grad_cache.chunk_size is set: trainer.strategy.find_unused_parameters must be false")
        repeats = (self.trainer.max_epochs or 1) > 1 or self.grad_cache_chunk_size
        if self.cache_frozen_prefix and (repeats or self.embedder.prefix_store is not None):
            self.embedder.enable_prefix_cache(self.prefix_cache_bytes)
            self.embedder.train_with_prefix_cache = True

    def on_train_batch_start(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        """With `model.compile_guards=skip_after_warmup`, after GUARD_WARMUP_STEPS steps have compiled every variant
        of the layers, a training step checks only the guards that tell compiled graphs apart (Dynamo's unsafe
        stance: no recompilation is noticed; evaluation, outside the step, keeps every guard)."""
        if self.embedder.compile_guards == "skip_after_warmup" and self.global_step >= GUARD_WARMUP_STEPS:
            torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)

    def on_train_batch_end(self, outputs, batch: dict[str, list[str]], batch_idx: int) -> None:
        """Every Dynamo guard checked again outside the training step."""
        if self.embedder.compile_guards == "skip_after_warmup":
            torch.compiler.set_stance("default")

    def check_finite(self, loss: torch.Tensor, batch: dict[str, list[str]]) -> None:
        """Stop the run on a non-finite loss, saving the batch's texts."""
        if not torch.isfinite(loss):
            saved = self.save_failed_batch(batch, float(loss.item()))
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step}; the batch's texts are saved in {saved}"
            )

    def save_failed_batch(self, batch: dict[str, list[str]], loss: float) -> Path:
        """Write the texts of a batch that produced a non-finite loss next to the run's outputs."""
        folder = Path(self.trainer.default_root_dir if self._trainer is not None else ".")
        record = {"step": self.global_step, "loss": loss, **batch}
        return atomic_write_text(folder / f"nonfinite_batch_step{self.global_step}.json", json.dumps(record, indent=2))

    def validation_step(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        """Contrastive loss on held-out pairs."""
        self.shared_step(batch, "val")

    def configure_optimizers(self):
        """`optimizer` over the trainable parameters; `scheduler` stepped per optimizer step, warm-up steps
        `warmup_ratio` × the fit's steps."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters: enable model.lora or unfreeze the backbone")
        try:
            optimizer = self.optimizer_factory(params)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(f"optimizer: {error}") from error
        if getattr(optimizer, "_step_supports_amp_scaling", False) and not self.grad_scaled():
            # a fused optimizer could unscale fp16 gradients itself; with no grad scaler (fp32, bf16) there is nothing
            # to unscale, and Lightning refuses to clip gradients for optimizers that say they do
            optimizer._step_supports_amp_scaling = False
        if self.scheduler_factory is None:
            return optimizer
        total = self.total_training_steps()
        try:
            scheduler = self.scheduler_factory(
                optimizer, num_warmup_steps=int(self.warmup_ratio * total), num_training_steps=total
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"scheduler: {error}") from error
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def grad_scaled(self) -> bool:
        """Whether the trainer's precision scales the loss (fp16 mixed precision's grad scaler)."""
        return self._trainer is not None and getattr(self.trainer.precision_plugin, "scaler", None) is not None

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
        """Keep only trainable weights (e.g. LoRA), plus the RNG states so a resumed run continues identically, and
        the embedder's manifest (how to rebuild it: `embedexp.model.manifest`)."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["rng_states"] = rng_states_for_checkpoint()
        if self.embedder.manifest is not None:
            checkpoint[CHECKPOINT_KEY] = complete(self.embedder)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the RNG states saved with the checkpoint."""
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])


def pair_texts(batch: dict[str, list[str]]) -> list[str]:
    """The batch's texts in embedding order: anchors, positives, then hard negatives."""
    return batch["text"] + batch["text_pos"] + list(batch.get("text_neg") or [])


def rng_states_for_checkpoint() -> dict:
    """torch / numpy / python RNG states in types that `torch.load(weights_only=True)` accepts."""
    states = collect_rng_states()
    name, keys, position, has_gauss, cached = states["numpy"]
    states["numpy"] = (name, torch.from_numpy(keys.astype("int64")), position, has_gauss, cached)
    return states


def restore_rng_states(states: dict) -> None:
    """Inverse of `rng_states_for_checkpoint`."""
    states = dict(states)
    name, keys, position, has_gauss, cached = states["numpy"]
    states["numpy"] = (name, keys.numpy().astype("uint32"), position, has_gauss, cached)
    set_rng_states(states)
