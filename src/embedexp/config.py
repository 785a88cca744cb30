"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"

# Offline by default: W&B writes runs locally unless the user sets WANDB_MODE=online.
os.environ.setdefault("WANDB_MODE", "offline")
# Rust tokenizers' own thread pool deadlocks in forked DataLoader workers; torch's threads do the parallel work.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
