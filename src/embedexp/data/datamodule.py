"""LightningDataModule serving (text, positive) pairs in length-grouped batches."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from embedexp.core.compat import distributed_sampler_requested
from embedexp.core.errors import ConfigError, DataError
from embedexp.data.pairs import Pair

log = logging.getLogger(__name__)


class PairDataset(Dataset):
    """A list of (text, positive) pairs."""

    def __init__(self, pairs: list[Pair]) -> None:
        """Keep the pairs in memory."""
        self.pairs = pairs

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.pairs)

    def __getitem__(self, index: int) -> Pair:
        """One pair."""
        return self.pairs[index]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length pairs: shuffle, sort within mega-batches, shuffle the batches.

    Less padding per batch while every epoch still sees a new random order (as in HF `group_by_length`). With
    `groups` (a group id per pair), every batch holds pairs of one group only (e.g. one source of a mixture).
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        mega_batch: int = 50,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        groups: list[int] | None = None,
    ) -> None:
        """`lengths[i]` is the size of pair i; `mega_batch` batches are sorted together; ranks take every n-th batch."""
        self.lengths, self.batch_size, self.seed, self.groups = lengths, batch_size, seed, groups
        self.mega_batch, self.drop_last, self.epoch = mega_batch, drop_last, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.skip = 0  # batches of the current epoch already trained before a resume

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle for the next epoch."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """All batches of this epoch."""
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.mega_batch
        batches = []
        for members in self._group_members(order):
            group_batches = []
            for start in range(0, len(members), span):
                group = sorted(members[start : start + span], key=lambda i: -self.lengths[i])
                group_batches += [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
            if self.drop_last:
                group_batches = [b for b in group_batches if len(b) == self.batch_size]
            batches += group_batches
        rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank : usable : self.num_replicas]

    def _group_members(self, order: list[int]) -> list[list[int]]:
        """The shuffled indices split by group (in order of group id), or all of them as one group."""
        if self.groups is None:
            return [order]
        members: dict[int, list[int]] = {}
        for index in order:
            members.setdefault(self.groups[index], []).append(index)
        return [members[group] for group in sorted(members)]

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this epoch's batches (minus those already trained when resuming), then advance the epoch."""
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]
        self.epoch += 1

    def __len__(self) -> int:
        """Number of batches per epoch."""
        sizes = Counter(self.groups).values() if self.groups is not None else [len(self.lengths)]
        return batch_count(sizes, self.batch_size, self.drop_last) // self.num_replicas


def batch_count(group_sizes, batch_size: int, drop_last: bool = True) -> int:
    """Batches of `batch_size` made within each group (incomplete ones dropped with `drop_last`)."""
    return sum(n // batch_size if drop_last else -(-n // batch_size) for n in group_sizes)


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside an epoch is saved in Lightning checkpoints and restored on resume.

    Its batch order depends only on (seed, epoch), and creating its iterator draws from its own generator,
    not the global RNG, so a resumed run replays exactly the random numbers of an uninterrupted one.
    """

    def __init__(
        self,
        *args,
        progress: Callable[[], int] | None = None,
        epoch: Callable[[], int] | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        """`progress()`: batches of the current epoch already trained; `epoch()`: the trainer's epoch."""
        super().__init__(*args, generator=torch.Generator().manual_seed(seed), **kwargs)
        self.progress, self.epoch = progress, epoch

    def __iter__(self):
        """Start the trainer's current epoch (Lightning may stop before exhausting the previous iterator)."""
        if self.epoch is not None:
            self.batch_sampler.set_epoch(self.epoch())
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """Epoch and number of trained batches of the length-grouped batch sampler."""
        trained = self.progress() if self.progress else 0
        return {"epoch": self.batch_sampler.epoch, "trained_batches": trained}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the saved epoch after its trained batches."""
        self.batch_sampler.set_epoch(state["epoch"])
        self.batch_sampler.skip = state["trained_batches"] % max(1, len(self.batch_sampler))


def pair_length(pair: Pair) -> int:
    """Characters of a pair's texts, hard negatives included (for length-grouped batches)."""
    return len(pair[0]) + len(pair[1]) + (sum(len(n) for n in pair[2]) if len(pair) > 2 else 0)


def collate_pairs(batch: list[Pair]) -> dict[str, list[str]]:
    """Keep texts as strings: the model applies its prompt and tokenizer; hard negatives of all pairs in one list."""
    collated = {"text": [pair[0] for pair in batch], "text_pos": [pair[1] for pair in batch]}
    if any(len(pair) > 2 for pair in batch):
        collated["text_neg"] = [negative for pair in batch for negative in (pair[2] if len(pair) > 2 else ())]
    return collated


class PairDataModule(L.LightningDataModule):
    """Serves positive pairs from any source with a `load()` method; holds out `val_pairs` for validation loss."""

    def __init__(
        self,
        source,
        batch_size: int = 16,
        val_pairs: int = 0,
        length_grouped: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        """`source` is a pair source (see `embedexp.data.pairs`)."""
        super().__init__()
        if batch_size < 2:
            raise ConfigError(
                f"data.batch_size={batch_size}: in-batch negatives need at least 2 pairs per batch "
                "(the contrastive loss is undefined for one pair)"
            )
        self.source, self.batch_size, self.val_pairs = source, batch_size, val_pairs
        self.length_grouped, self.num_workers, self.seed = length_grouped, num_workers, seed
        self.train_set: PairDataset | None = None
        self.val_set: PairDataset | None = None
        self.train_origins: list[str] = []
        self.val_origins: list[str] = []
        self.dropped: dict[str, dict[str, int]] = {}  # origin -> "<task> <kind>" -> pairs a source dropped

    def load_pairs(self) -> tuple[list[Pair], list[str]]:
        """The source's pairs, and where each comes from (its config key, for messages and per-source batches)."""
        pairs = self.source.load()
        self.record_drops(getattr(self.source, "exclude", None))
        return pairs, ["data.source"] * len(pairs)

    def record_drops(self, texts: object | None) -> None:
        """Keep what an `EvaluationTexts` dropped from a source (pairs repeating evaluation texts), for the run's
        contamination record."""
        for origin, counts in (getattr(texts, "dropped", None) or {}).items():
            self.dropped[origin] = {f"{task} {kind}": int(n) for (task, kind), n in sorted(counts.items())}

    def setup(self, stage: str | None = None) -> None:
        """Load pairs once and split off the validation pairs."""
        if self.train_set is not None:
            return
        pairs, origins = self.load_pairs()
        order = list(range(len(pairs)))
        random.Random(self.seed).shuffle(order)
        pairs, origins = [pairs[i] for i in order], [origins[i] for i in order]
        n_val = min(self.val_pairs, len(pairs) // 5)
        train = pairs[n_val:]
        if len(train) < self.batch_size:
            raise DataError(
                f"only {len(train)} training pairs, fewer than data.batch_size={self.batch_size}; add data or lower it"
            )
        self.train_set = PairDataset(train)
        self.val_set = PairDataset(pairs[:n_val]) if n_val >= 2 else None
        self.train_origins, self.val_origins = origins[n_val:], origins[:n_val] if n_val >= 2 else []
        log.info("pairs: %d train, %d validation", len(train), n_val)

    def batch_groups(self) -> list[int] | None:
        """A group id per training pair when every batch must come from one group (None: batches mix pairs)."""
        return None

    def train_dataloader(self) -> DataLoader:
        """Shuffled (optionally length-grouped) batches; incomplete last batch dropped.

        Under DDP each process gets its own batches (this module shards them itself: a Lightning-injected
        DistributedSampler would break the length-grouped batch sampler, hence `trainer.use_distributed_sampler:
        false`); the global batch is world_size × batch_size pairs.
        """
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if replicas > 1 and distributed_sampler_requested(trainer):
            raise ConfigError(
                "trainer.use_distributed_sampler must be false: PairDataModule already gives each process its own "
                "batches (conf/trainer/default.yaml sets it)"
            )
        groups = self.batch_groups()
        if self.length_grouped or groups is not None:
            # per-group batches go through this sampler too (every pair counts as the same length without grouping)
            lengths = [pair_length(pair) if self.length_grouped else 0 for pair in self.train_set.pairs]
            sampler = LengthGroupedBatchSampler(
                lengths, self.batch_size, self.seed, num_replicas=replicas, rank=rank, groups=groups
            )
            return ResumableDataLoader(
                self.train_set,
                batch_sampler=sampler,
                collate_fn=collate_pairs,
                num_workers=self.num_workers,
                progress=self._trained_batches_this_epoch,
                epoch=lambda: trainer.current_epoch if trainer else sampler.epoch,
                seed=self.seed,
            )
        sampler = None
        if replicas > 1:
            sampler = DistributedSampler(self.train_set, replicas, rank, shuffle=True, seed=self.seed, drop_last=True)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            collate_fn=collate_pairs,
            num_workers=self.num_workers,
        )

    def train_batches_per_epoch(self, world_size: int = 1) -> int:
        """Batches each process trains per epoch (incomplete batches are dropped)."""
        groups = self.batch_groups()
        sizes = Counter(groups).values() if groups is not None else [len(self.train_set)]
        return batch_count(sizes, self.batch_size) // world_size

    def _trained_batches_this_epoch(self) -> int:
        """Batches of the running epoch whose optimizer step is done (read from the Lightning loop)."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def val_dataloader(self) -> DataLoader | list:
        """Held-out pairs in fixed order (empty when `val_pairs` is 0)."""
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set, batch_size=self.batch_size, collate_fn=collate_pairs, num_workers=self.num_workers
        )
