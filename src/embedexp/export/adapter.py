"""The LoRA adapter alone (peft format) with the tokenizer: reloads onto the base model with transformers + peft."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel

from embedexp.core.errors import ConfigError


def write_adapter(model, tokenizer, folder: Path) -> dict:
    """Save the peft adapter and tokenizer into `folder`; returns manifest entries (base model path)."""
    if not isinstance(model, PeftModel):
        raise ConfigError("formats: 'adapter' needs a LoRA run (model.lora set); this model has no adapter")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    config = model.peft_config[model.active_adapter]
    return {"base_model_name_or_path": config.base_model_name_or_path}
