"""Batched chat completion with a causal LM: chat template, left padding, sampling, stop at newline, prefix caching.

Few-shot prompts share everything but the last user turn, so with `prefix_cache` the shared prefixes (one per
prompt template) are run once and their key/value cache is reused by every row of the batch.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
from transformers import AutoModelForCausalLM

from embedexp.core.hardware import resolve_precision
from embedexp.model.backbone import load_pretrained, torch_dtype

log = logging.getLogger(__name__)

Message = dict[str, str]


def pick_device(device: str | None) -> torch.device:
    """`None`/`auto`: CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ChatLM:
    """A causal LM and its tokenizer, answering many chat conversations per `generate` call."""

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        autocast: str | None = "auto",
        prefix_cache: bool = True,
        stop_at_newline: bool = True,
    ) -> None:
        """Wrap a loaded model; `autocast`: auto (bf16 where faster here), bf16, or None (full precision)."""
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        key, device = "generator.model.autocast", model.device.type
        chosen = resolve_precision(autocast, key, "autocast", device) if autocast else None
        self.autocast, self.prefix_cache = ("bf16" if chosen == "bf16" else None), prefix_cache
        self.tokenizer.padding_side = "left"  # generation continues after the last real token of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = self._stop_ids(stop_at_newline)

    @classmethod
    def load(
        cls,
        name_or_path: str,
        gguf_file: str | None = None,
        dtype: str = "float32",
        cache_dir: str = ".cache/embedexp",
        device: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **options,
    ) -> ChatLM:
        """Load a hub id, a local folder, or `pkg:<package>` + `gguf_file` (dequantized once into `cache_dir`)."""
        model, tokenizer = load_pretrained(
            AutoModelForCausalLM,
            name_or_path,
            gguf_file,
            cache_dir,
            "generator.model.name_or_path",
            trust_remote_code,
            revision,
            dtype=torch_dtype(dtype),
        )
        return cls(model.to(pick_device(device)), tokenizer, name_or_path, **options)

    def _stop_ids(self, stop_at_newline: bool) -> list[int]:
        """End-of-sequence ids of the model and tokenizer, plus single-token newlines when asked."""
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        if stop_at_newline:
            for newline in ("\n", "\n\n"):
                encoded = self.tokenizer.encode(newline, add_special_tokens=False)
                if len(encoded) == 1:
                    ids.add(encoded[0])
        return sorted(i for i in ids if i is not None)

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text: the tokenizer's chat template, or plain `Role: text` lines for models without one."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
        return text + ("Assistant:" if add_generation_prompt else "")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Number of tokens of each text (no special tokens)."""
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]

    def complete(
        self,
        conversations: list[list[Message]],
        max_new_tokens: int = 48,
        temperature: float = 0.7,
        top_p: float = 0.9,
        do_sample: bool = True,
    ) -> list[tuple[str, bool]]:
        """One reply per conversation as (text, finished); `finished` is False when max_new_tokens cut it off."""
        if not conversations:
            return []
        ids, mask, cache = self._inputs(conversations)
        device = self.model.device
        sampling = dict(temperature=temperature, top_p=top_p) if do_sample else {}
        amp = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if self.autocast == "bf16" and device.type in ("cpu", "cuda")
            else nullcontext()
        )
        with torch.inference_mode(), amp:
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                cache=cache,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.stop_ids,
                **sampling,
            )
        return [self._decode(row) for row in out[:, ids.shape[1] :].cpu()]

    def _decode(self, tokens: torch.Tensor) -> tuple[str, bool]:
        """The text before the first stop token, and whether a stop token was produced."""
        stops = torch.isin(tokens, torch.tensor(self.stop_ids))
        end = int(stops.nonzero()[0, 0]) if stops.any() else len(tokens)
        return self.tokenizer.decode(tokens[:end], skip_special_tokens=True), bool(stops.any())

    def _inputs(self, conversations: list[list[Message]]):
        """Token ids, attention mask and (with prefix caching) the cache of the shared prefixes."""
        fulls = [self.render(c) for c in conversations]
        prefixes = [self.render(c[:-1], add_generation_prompt=False) if len(c) > 1 else "" for c in conversations]
        usable = self.prefix_cache and all(p and f.startswith(p) for f, p in zip(fulls, prefixes))
        if not usable:
            enc = self.tokenizer(fulls, return_tensors="pt", padding=True, add_special_tokens=False)
            return enc.input_ids, enc.attention_mask, None
        unique = sorted(set(prefixes))
        rows = torch.tensor([unique.index(p) for p in prefixes])
        head = self.tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False)
        tail = self.tokenizer(
            [f[len(p) :] for f, p in zip(fulls, prefixes)], return_tensors="pt", padding=True, add_special_tokens=False
        )
        cache = self._prefix_cache(head.input_ids, head.attention_mask)
        cache.batch_select_indices(rows.to(self.model.device))
        ids = torch.cat([head.input_ids[rows], tail.input_ids], dim=1)
        mask = torch.cat([head.attention_mask[rows], tail.attention_mask], dim=1)
        return ids, mask, cache

    def _prefix_cache(self, ids: torch.Tensor, mask: torch.Tensor):
        """Run the distinct prefixes once (positions count from each row's first real token); return their cache."""
        device = self.model.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if self.autocast == "bf16" else nullcontext()
        with torch.inference_mode(), amp:
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=True,
            )
        return out["cache"] if "cache" in out else out["past_key_values"]
