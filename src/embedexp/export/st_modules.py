"""sentence-transformers modules for poolings that sentence-transformers lacks (attention, latent attention, concat,
echo and every `exclude_prompt` pooling).

`export.sentence_transformers` puts them in `SentenceTransformer(modules=[...])`, whose `save` writes their configs
(`config_keys`) and weights. A folder whose `modules.json` names these classes needs `embedexp` installed and
`SentenceTransformer(path, trust_remote_code=True)` (sentence-transformers >= 6 asks for it before importing any
module class outside its own namespace). Mean, last, weighted-mean and max without `exclude_prompt` export to
sentence-transformers' own modules instead and need neither.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from sentence_transformers.base.modules.transformer import Transformer

from embedexp.core.compat import attn_implementation
from embedexp.export.tokenizer import text_mask
from embedexp.model.attention_capture import final_token_attention
from embedexp.model.bidirectional import set_attention
from embedexp.model.pooling import Pooling

TEXT_MASK = "text_mask"
FINAL_ATTENTION = "final_token_attention"


class EmbedexpTransformer(Transformer):
    """A Transformer that also emits the text-token mask, mask-based position ids and the final token's attention.

    The text mask comes from the tokenizer's `special_tokens_mask`: the exported tokenizer inserts the prompt around
    the text as template pieces, so every non-special token is a text token (as `PromptTemplate.text_mask`); with
    `text_copies` > 1 (echo) only the pooled copy's tokens, which carry token type id 1.
    """

    config_keys = [*Transformer.config_keys, "attention_layers", "attention", "text_copies"]

    def __init__(
        self,
        model_name_or_path: str,
        *,
        attention_layers: list[int] | None = None,
        attention: str = "causal",
        text_copies: int = 1,
        **kwargs: Any,
    ) -> None:
        """`attention_layers`: decoder layers whose final-token attention the pooling reads (None: not needed);
        `attention`: `causal` or `bidirectional` (`model.attention` of the run); `text_copies`: `{text}` slots."""
        super().__init__(model_name_or_path, **kwargs)
        self.attention_layers = [int(layer) for layer in attention_layers] if attention_layers else None
        if self.attention_layers and attn_implementation(self.model) != "eager":
            self.model.set_attn_implementation("eager")
        self.attention, self.text_copies = attention, int(text_copies)
        set_attention(self.model, attention)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Run the decoder with position ids counted from the first real token; add the text mask and attention."""
        mask = features["attention_mask"]
        pooled_text = text_mask(features, self.text_copies)
        features.pop("special_tokens_mask", None)
        if self.text_copies > 1:
            features.pop("token_type_ids", None)
        features["position_ids"] = (mask.cumsum(dim=1) - 1).clamp_min(0)
        if self.attention_layers:
            with final_token_attention(self.model, mask, tuple(self.attention_layers)) as captured:
                features = super().forward(features, **kwargs)
            features[FINAL_ATTENTION] = torch.stack(list(captured.values())).mean(dim=(0, 2))
        else:
            features = super().forward(features, **kwargs)
        features.pop("position_ids", None)
        features[TEXT_MASK] = pooled_text
        return features


def import_pooling(target: str, options: dict[str, Any]) -> Pooling:
    """Instantiate an embedexp pooling from its class path and options."""
    module_name, class_name = target.rsplit(".", 1)
    pooling = getattr(importlib.import_module(module_name), class_name)(**options)
    if not isinstance(pooling, Pooling):
        raise TypeError(f"{target} is not an embedexp.model.pooling.Pooling")
    return pooling


class EmbedexpPooling(Module):
    """Any embedexp pooling (the same code as in training) as a sentence-transformers module.

    A pooling with trained weights (`latent_attention`) keeps them in `model.safetensors` beside its config.
    """

    config_keys = ["target", "options", "embedding_dimension"]

    def __init__(self, target: str, options: dict[str, Any] | None = None, embedding_dimension: int = 0) -> None:
        """`target`: pooling class path; `options`: its constructor arguments; `embedding_dimension`: output size."""
        super().__init__()
        self.target, self.options, self.embedding_dimension = target, dict(options or {}), int(embedding_dimension)
        self.pooling = import_pooling(target, self.options)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Pool `token_embeddings` over the attention (or text) mask into `sentence_embedding`."""
        features["sentence_embedding"] = self.pooling(
            features["token_embeddings"],
            features["attention_mask"],
            features.get(TEXT_MASK),
            features.get(FINAL_ATTENTION),
        )
        return features

    def get_embedding_dimension(self) -> int:
        """Size of the pooled vector."""
        return self.embedding_dimension

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """The config, and the weights of a pooling that has any."""
        self.save_config(output_path)
        if self.pooling.has_weights:
            self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> EmbedexpPooling:
        """Rebuild the pooling from its config, then load its weights if it has any."""
        hub = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        module = cls(**config)
        if module.pooling.has_weights:
            cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **hub)
        return module
