"""The LoRA adapter alone (peft format) with the tokenizer, the pooling and the manifest: reloads onto the base model
with transformers + peft, or with `embedexp.export.resolve.open_model` (`model_path=...`), as runs' `adapter/` do."""

from __future__ import annotations

from pathlib import Path

from embedexp.core.errors import ConfigError
from embedexp.model.embedder import Embedder
from embedexp.model.manifest import save_adapter


def write_adapter(embedder: Embedder, folder: Path) -> dict:
    """Save the peft adapter, tokenizer and pooling into `folder`; returns manifest entries (base model path)."""
    try:
        save_adapter(embedder, folder)
    except ConfigError as err:
        raise ConfigError(f"formats: 'adapter': {err}") from None
    config = embedder.model.peft_config[embedder.model.active_adapter]
    return {"base_model_name_or_path": config.base_model_name_or_path}
