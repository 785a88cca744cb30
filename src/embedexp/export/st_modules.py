"""The sentence-transformers Transformer module for poolings that sentence-transformers lacks (attention, latent
attention, concat, echo, every `exclude_prompt` pooling and any user pooling): it also emits the features they read.

`export.sentence_transformers` puts it, followed by the pooling itself (an `embedexp.model.pooling.Pooling` is a
sentence-transformers module), in `SentenceTransformer(modules=[...])`, whose `save` writes their configs
(`config_keys`) and weights. A folder whose `modules.json` names these classes needs `embedexp` (and the pooling's
module) importable and `SentenceTransformer(path, trust_remote_code=True)` (sentence-transformers >= 6 asks for it
before importing any module class outside its own namespace). Mean, last, weighted-mean and max without
`exclude_prompt` export to sentence-transformers' own modules instead and need neither.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.modules.transformer import Transformer

from embedexp.core.compat import attn_implementation
from embedexp.export.tokenizer import text_mask
from embedexp.model.attention_capture import final_token_attention
from embedexp.model.bidirectional import set_attention_mode
from embedexp.model.pooling import FINAL_ATTENTION, TEXT_MASK


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
        `attention`: `causal` or `bidirectional` (`model.attention_mode` of the run); `text_copies`: `{text}` slots."""
        super().__init__(model_name_or_path, **kwargs)
        self.attention_layers = [int(layer) for layer in attention_layers] if attention_layers else None
        if self.attention_layers and attn_implementation(self.model) != "eager":
            self.model.set_attn_implementation("eager")
        self.attention, self.text_copies = attention, int(text_copies)
        set_attention_mode(self.model, attention)

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
