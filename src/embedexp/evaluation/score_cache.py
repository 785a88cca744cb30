"""Zero-shot clustering scores cached on disk, keyed by everything that determines them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path

from embedexp.core.atomic import atomic_write_text
from embedexp.model.bidirectional import attention_mode
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import Pooling, class_path
from embedexp.model.prompts import PromptTemplate

log = logging.getLogger(__name__)


def _texts_and_labels_digest(split) -> str:
    """SHA-1 of a task split's texts and labels."""
    digest = hashlib.sha1()
    for column in ("sentences", "labels"):
        digest.update(json.dumps(list(split[column])).encode())
    return digest.hexdigest()


def task_fingerprint(task) -> str:
    """Name, seed, bootstrap settings and a hash of the texts and labels of a task."""
    task.load_data()
    digest = _texts_and_labels_digest(task.dataset["test"])
    return f"{task.metadata.name}:{task.seed}:{task.n_clusters}:{task.max_documents_per_cluster}:{digest}"


def task_identity(task) -> dict:
    """What a task scores: its name, number of texts and a hash of its texts and labels (16 hex digits)."""
    task.load_data()
    split = task.dataset["test"]
    digest = _texts_and_labels_digest(split)[:16]
    return {"name": task.metadata.name, "n_texts": len(split["sentences"]), "hash": digest}


def task_set_record(tasks: list) -> dict:
    """The task set of a run: its tasks (sorted by name) and an id hashing them all (12 hex digits)."""
    identities = sorted((task_identity(task) for task in tasks), key=lambda t: t["name"])
    joined = "\n".join(f"{t['name']}:{t['n_texts']}:{t['hash']}" for t in identities)
    return {"id": hashlib.sha1(joined.encode()).hexdigest()[:12], "tasks": identities}


def inert_lora(model) -> bool:
    """Whether the model has LoRA weights that change nothing: every `lora_B` is zero (a fresh adapter, any seed)."""
    found = [param for name, param in model.named_parameters() if "lora_B" in name]
    return bool(found) and all(not bool(param.detach().any()) for param in found)


def weights_fingerprint(model) -> str:
    """Hash of all trainable weights and of the first 4,096 values of every frozen tensor (tells random inits,
    adapters and adapters merged into the backbone apart). A fresh LoRA (every `lora_B` zero) is left out: it
    changes no output, so the zero-shot scores of every seed share one key."""
    digest = hashlib.sha1()
    skip_lora = inert_lora(model)
    for name, param in model.named_parameters():
        if skip_lora and "lora_" in name:
            continue
        values = param.detach().flatten()[: (1 << 16) if param.requires_grad else 4096]
        digest.update(name.encode() + values.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def pooling_identity(pooling: Pooling) -> str:
    """The pooling's class and every constructor option (its saved config), as sorted JSON."""
    return json.dumps({"class": class_path(pooling), **pooling.get_config_dict()}, sort_keys=True)


def prompt_identity(prompt: PromptTemplate) -> str:
    """The prompt's class and constructor fields except its name (which does not change a vector), as sorted JSON."""
    values = {f.name: getattr(prompt, f.name) for f in dataclasses.fields(prompt) if f.init and f.name != "name"}
    return json.dumps({"class": class_path(prompt), **values}, sort_keys=True)


def configuration_key(embedder: Embedder, tasks: list, precision: str, dims: list | None = None) -> str:
    """Hash of model (weights, attention mode, dtype), prompt and pooling (class and every option), tokenization
    settings, precision, task data, library versions (and the Matryoshka evaluation sizes, when there are any)."""
    parts = [
        embedder.name,
        weights_fingerprint(embedder.model),
        f"attention={attention_mode(embedder.model)}",  # bidirectional attention changes every score, not the weights
        f"dtype={next(embedder.model.parameters()).dtype}",
        *([weights_fingerprint(embedder.pooling)] if embedder.pooling.has_weights else []),
        prompt_identity(embedder.prompt),
        pooling_identity(embedder.pooling),
        str(embedder.max_length),
        embedder.padding_side,
        str(precision),  # resolved (32 or bf16); an int from the command line must not break the join
        metadata.version("mteb"),
        metadata.version("torch"),
        *sorted(task_fingerprint(task) for task in tasks),
        *([f"dims={[str(d) for d in dims]}"] if dims else []),
    ]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


class ZeroShotScoreCache:
    """JSON files `<folder>/<key>.json` with the untrained model's scores of one configuration."""

    def __init__(self, folder: str | Path) -> None:
        """Scores live under `folder`."""
        self.folder = Path(folder)

    def get(self, key: str) -> dict[str, float] | None:
        """Cached scores, or None."""
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, scores: dict[str, float]) -> None:
        """Store scores atomically."""
        atomic_write_text(self.folder / f"{key}.json", json.dumps(scores, indent=2))
