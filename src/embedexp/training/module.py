"""LightningModule: contrastive (InfoNCE) fine-tuning of an `Embedder` with in-batch (and hard) negatives."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch

from embedexp.core.atomic import atomic_write_text
from embedexp.core.compat import collect_rng_states, set_rng_states
from embedexp.core.errors import ConfigError
from embedexp.model.embedder import Embedder
from embedexp.training.loss import InfoNCELoss

log = logging.getLogger(__name__)


class RngState:
    """The torch CPU RNG state (and CUDA's, once CUDA is initialised), captured now and replayable later.

    GradCache embeds each chunk twice (without, then with a graph); replaying the state makes the second forward draw
    the same dropout masks as the first, so the cached embeddings are exactly the ones backpropagated through.
    """

    def __init__(self) -> None:
        """Capture the current states."""
        self.cpu = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the captured states; the global RNG continues afterwards as if it had not run."""
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


class EmbeddingModule(L.LightningModule):
    """Trains the embedder so each text's vector is closest to its own positive among the batch.

    Under DDP every process embeds its own batch and the embeddings are all-gathered *with gradients*, so each process
    computes the loss over the global batch (in-batch negatives from every rank). The all-gather's backward sums the
    ranks' gradients for each local embedding (each rank holds the same global loss, so that is world_size times the
    gradient of the global loss) and DDP averages parameter gradients over ranks: the two factors cancel and the
    update equals one process training on the whole global batch (tests/test_scaleout.py checks it).

    With `grad_cache_chunk_size` the step is GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch
    Size under Memory Limited Setup"): manual optimization that needs the activation memory of one chunk of texts,
    whatever the batch size, for the loss and gradients of the whole batch (see `grad_cache_step`).
    """

    def __init__(
        self,
        embedder: Embedder,
        loss: InfoNCELoss | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        warmup_ratio: float = 0.1,
        grad_cache_chunk_size: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
    ) -> None:
        """`optimizer` is a partial taking the parameters (Hydra `_partial_: true`).

        `grad_cache_chunk_size`: texts per GradCache chunk (anchors and positives count separately), None = plain
        backprop. Lightning does not clip gradients under manual optimization, so with GradCache the module clips
        them itself with `gradient_clip_val` / `gradient_clip_algorithm` (`embedexp.cli.train` moves the trainer's
        values here).
        """
        super().__init__()
        if grad_cache_chunk_size is not None and grad_cache_chunk_size < 1:
            raise ConfigError(f"grad_cache.chunk_size must be a positive number of texts, got {grad_cache_chunk_size}")
        self.embedder = embedder
        self.loss_fn = loss or InfoNCELoss()
        self.optimizer_factory = optimizer or functools.partial(torch.optim.AdamW, lr=1e-4)  # picklable (ddp_spawn)
        self.warmup_ratio = warmup_ratio
        self.grad_cache_chunk_size = grad_cache_chunk_size
        self.gradient_clip_val, self.gradient_clip_algorithm = gradient_clip_val, gradient_clip_algorithm
        self.automatic_optimization = grad_cache_chunk_size is None
        self.strict_loading = False  # checkpoints hold the trainable weights only

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

    def embed_pairs(self, batch: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Embed texts, positives (and hard negatives) in one forward pass, gathered across processes under DDP."""
        n = len(batch["text"])
        negatives = batch.get("text_neg")
        vectors = self.embedder.embed(batch["text"] + batch["text_pos"] + list(negatives or []))
        anchors, positives = self.gather(vectors[:n], vectors[n : 2 * n])
        return anchors, positives, self.gather_negatives(vectors[2 * n :] if negatives is not None else None)

    def shared_step(self, batch: dict[str, list[str]], stage: str) -> torch.Tensor:
        """Loss and in-batch top-1 accuracy, logged under `stage/`."""
        anchors, positives, negatives = self.embed_pairs(batch)
        loss = self.loss_fn(anchors, positives, negatives)
        self.log_step(loss, anchors, positives, len(batch["text"]), stage)
        return loss

    def log_step(
        self, loss: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, size: int, stage: str
    ) -> None:
        """Log the loss and the in-batch top-1 accuracy under `stage/`."""
        with torch.no_grad():
            sims = self.loss_fn.similarities(anchors, positives)
            accuracy = (sims.argmax(dim=1) == torch.arange(len(sims), device=sims.device)).float().mean()
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, batch_size=size, sync_dist=stage != "train")
        self.log(f"{stage}/acc", accuracy, batch_size=size, sync_dist=stage != "train")

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> torch.Tensor:
        """One contrastive step; a non-finite loss stops the run with the offending texts named."""
        if self.grad_cache_chunk_size is not None:
            return self.grad_cache_step(batch)
        loss = self.shared_step(batch, "train")
        self.check_finite(loss, batch)
        return loss

    def check_finite(self, loss: torch.Tensor, batch: dict[str, list[str]]) -> None:
        """Stop the run on a non-finite loss, saving the batch's texts."""
        if not torch.isfinite(loss):
            saved = self.save_failed_batch(batch, float(loss.item()))
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step}; the batch's texts are saved in {saved}"
            )

    def grad_cache_step(self, batch: dict[str, list[str]]) -> torch.Tensor:
        """One GradCache optimizer step over the whole batch: gradients (`grad_cache_backward`), clip, step, schedule.

        Manual optimization does none of clipping, stepping or LR scheduling by itself.
        """
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        optimizer.zero_grad()
        loss, anchors, positives = self.grad_cache_backward(batch)
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        self.log_step(loss, anchors, positives, len(batch["text"]), "train")
        return loss

    def grad_cache_backward(self, batch: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Accumulate the whole batch's loss gradient in the parameters' `.grad`, one chunk's activations at a time.

        1. embed the batch's texts chunk by chunk without a graph, saving each chunk's RNG state first;
        2. the loss of the cached embeddings (all-gathered across ranks under DDP, as in the plain step) and its
           gradient with respect to this rank's embeddings (the all-gather's backward sums the ranks' shares);
        3. re-embed each chunk with a graph under its saved RNG state (same dropout masks, so the same embeddings)
           and backpropagate that chunk's slice of the gradient: the parameter gradients add up to the plain step's.
           Under DDP all chunks but the last accumulate without gradient synchronisation and the last one
           all-reduces the sum once, so DDP's averaging over ranks applies exactly as in the plain step.

        Returns the loss and the (gathered) anchors and positives, detached.
        """
        n, size = len(batch["text"]), self.grad_cache_chunk_size or len(batch["text"]) * 2
        negative_texts = batch.get("text_neg")
        texts = batch["text"] + batch["text_pos"] + list(negative_texts or [])
        chunks = [self.embedder.tokenize(texts[i : i + size]) for i in range(0, len(texts), size)]
        states, cached = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(RngState())
                cached.append(self.embedder(chunk))
        vectors = torch.cat(cached).requires_grad_()
        anchors, positives = self.gather(vectors[:n], vectors[n : 2 * n])
        negatives = self.gather_negatives(vectors[2 * n :] if negative_texts is not None else None)
        loss = self.loss_fn(anchors, positives, negatives)
        self.check_finite(loss, batch)
        (vector_grads,) = torch.autograd.grad(loss, vectors)
        attached = self._trainer is not None
        block_sync = getattr(self.trainer.strategy, "block_backward_sync", None) if attached else None
        start = 0
        for index, (chunk, state) in enumerate(zip(chunks, states)):
            with state.replay():
                chunk_vectors = self.embedder(chunk)
            chunk_grads = vector_grads[start : start + len(chunk_vectors)]
            start += len(chunk_vectors)
            last = index == len(chunks) - 1
            with contextlib.nullcontext() if last or block_sync is None else block_sync():
                if attached:
                    self.manual_backward(chunk_vectors, chunk_grads)
                else:
                    chunk_vectors.backward(chunk_grads)
        return loss.detach(), anchors.detach(), positives.detach()

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
