"""MNTP (masked next-token prediction), LLM2Vec step 1: adapt a decoder to bidirectional attention with LoRA.

A fraction of each text's tokens is masked (80 % become the mask token, 10 % a random token, 10 % stay, as BERT and
LLM2Vec do) and the token at position i is predicted from the hidden state at i-1 through the LM head, so the
objective stays a next-token one while every token sees the whole (masked) text. Texts are unlabelled: the texts of
any pair source (anchors and positives, each once per batch) or a plain text file (`data=text_file`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from embedexp.core.errors import ConfigError
from embedexp.model.backbone import load_pretrained
from embedexp.model.embedder import Embedder
from embedexp.model.prompts import PromptTemplate, TokenizedPrompts
from embedexp.training.module import EmbeddingModule, Scheduler

log = logging.getLogger(__name__)
IGNORE = -100


def mask_token_id(tokenizer, mask_token: str | None) -> int:
    """Id of `mask_token` (one token of the vocabulary), or of the tokenizer's own mask token when it is None."""
    if mask_token is None:
        if tokenizer.mask_token_id is None:
            raise ConfigError("objective.mask_token=null but the tokenizer has no mask token; set one, e.g. '_'")
        return int(tokenizer.mask_token_id)
    ids = tokenizer(mask_token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"objective.mask_token={mask_token!r} is {len(ids)} tokens for this tokenizer, not one")
    return int(ids[0])


def mask_tokens(
    batch: TokenizedPrompts, probability: float, mask_id: int, vocab_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels): labels hold the original id at masked positions and -100 elsewhere.

    Only text tokens after a row's first token can be masked (special tokens and pads never; the first token has
    no previous state to predict it from). At least one token per batch is masked.
    """
    ids, maskable = batch.input_ids, batch.text_mask.bool().clone()
    first = batch.attention_mask.argmax(dim=1)
    maskable[torch.arange(len(ids)), first] = False
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & maskable
    if not chosen.any() and maskable.any():
        candidates = maskable.flatten().nonzero().squeeze(1)
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        chosen.view(-1)[pick] = True
    roll = torch.rand(ids.shape, generator=generator)
    masked = ids.clone()
    masked[chosen & (roll < 0.8)] = mask_id
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = random_ids[swap]
    return masked, torch.where(chosen, ids, torch.full_like(ids, IGNORE))


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked tokens, each predicted from the previous position's state (logits only there)."""
    targets = labels[:, 1:]
    selected = targets != IGNORE
    states = hidden[:, :-1][selected]
    logits = states.float() @ head_weight.float().T
    return F.cross_entropy(logits, targets[selected].to(logits.device))


class MNTPModule(EmbeddingModule):
    """Trains the embedder's LoRA with MNTP; optimizer, schedule and checkpoints as in contrastive training."""

    def __init__(
        self,
        embedder: Embedder,
        head_loader: Callable[[Embedder], torch.Tensor | None] | None = None,
        mask_probability: float = 0.2,
        mask_token: str | None = "_",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Scheduler | None = get_linear_schedule_with_warmup,
        warmup_ratio: float = 0.1,
        grad_cache_chunk_size: int | None = None,
    ) -> None:
        """`head_loader(embedder)`: the LM head [vocab, hidden], None for a tied one (then: the input embeddings).

        conf/objective/mntp.yaml builds it with `output_embeddings` on `model.backbone`. GradCache is refused: MNTP's
        loss is per text, a larger batch needs no cache.
        """
        if grad_cache_chunk_size:
            raise ConfigError("objective=mntp does not use GradCache: set grad_cache.chunk_size=null")
        super().__init__(
            embedder, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio, cache_frozen_prefix=False
        )
        if not 0 < mask_probability < 1:
            raise ConfigError(f"objective.mask_probability={mask_probability} must be in (0, 1)")
        self.mask_probability = mask_probability
        self.mask_id = mask_token_id(embedder.tokenizer, mask_token)
        self.plain = PromptTemplate("mntp", "{text}")  # raw texts: MNTP adapts the model, not a prompt
        head_weight = head_loader(embedder) if head_loader is not None else None
        self.register_buffer("head_weight", head_weight.detach() if head_weight is not None else None, persistent=False)

    def lm_head(self) -> torch.Tensor:
        """The output embedding matrix [vocab, hidden]."""
        if self.head_weight is not None:
            return self.head_weight
        return self.embedder.model.get_input_embeddings().weight

    def mntp_step(self, texts: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """MNTP loss of a list of texts."""
        tokenizer = self.embedder.tokenizer
        batch = self.plain.tokenize(texts, tokenizer, self.embedder.max_length, "right")
        head = self.lm_head()
        masked, labels = mask_tokens(batch, self.mask_probability, self.mask_id, head.shape[0], generator)
        hidden, _ = self.embedder.run(TokenizedPrompts(masked, batch.attention_mask, batch.text_mask))
        return mntp_loss(hidden, labels.to(hidden.device), head)

    def step_token_lengths(self, batch: dict[str, list[str]]) -> list[int]:
        """Token counts of the texts one MNTP step runs (raw texts, no prompt)."""
        rows, _, _ = self.plain.token_rows(self.batch_texts(batch), self.embedder.tokenizer, self.embedder.max_length)
        return [len(row) for row in rows]

    @staticmethod
    def batch_texts(batch: dict[str, list[str]]) -> list[str]:
        """Each distinct text of a pair batch once (anchors, then positives)."""
        return list(dict.fromkeys(batch["text"] + batch.get("text_pos", [])))

    def training_step(self, batch: dict[str, list[str]], batch_idx: int) -> torch.Tensor:
        """One MNTP step on the batch's texts."""
        loss = self.mntp_step(self.batch_texts(batch))
        self.check_finite(loss, batch)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["text"]))
        return loss

    def validation_step(self, batch: dict[str, list[str]], batch_idx: int) -> None:
        """MNTP loss on held-out texts, with the same masks at every validation (seeded by the batch index)."""
        generator = torch.Generator().manual_seed(batch_idx)
        loss = self.mntp_step(self.batch_texts(batch), generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["text"]), sync_dist=True)


def output_embeddings(embedder: Embedder, backbone: Mapping) -> torch.Tensor | None:
    """The LM head of the backbone (`model.backbone`): None when it is tied to the input embeddings (or the backbone
    has no checkpoint, like the random tiny model), else the checkpoint's `lm_head` weight (loaded with its causal-LM
    class)."""
    config = embedder.model.config
    if getattr(config, "tie_word_embeddings", False) or not backbone.get("name_or_path"):
        return None
    from transformers import AutoModelForCausalLM

    log.info("MNTP: loading the untied LM head of %s", backbone["name_or_path"])
    model, _ = load_pretrained(
        AutoModelForCausalLM,
        backbone["name_or_path"],
        backbone.get("gguf_file"),
        backbone.get("cache_dir", ".cache/embedexp"),
        "model.backbone.name_or_path",
        bool(backbone.get("trust_remote_code", False)),
        backbone.get("revision"),
    )
    return model.get_output_embeddings().weight.detach().to(next(embedder.model.parameters()).dtype)
