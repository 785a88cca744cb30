"""Embed a text file or a table column: `python -m embedexp.encode input=texts.txt output=vectors.npy model_path=...`.

Inputs: `.txt` (one text per line; blank lines skipped), `.csv`, `.tsv`, `.jsonl`, `.parquet` (the `text_column`).
Outputs: `.npy` (float32 [N, D], rows in input order) or `.parquet` (`text`, `embedding`, plus `keep_columns`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import hydra
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig

from embedexp.atomic import atomic_file
from embedexp.config import CONFIG_DIR
from embedexp.errors import ConfigError, DataError, exit_on_error
from embedexp.hardware import autocast_for, configure_threads
from embedexp.progress import encode_with_progress

log = logging.getLogger(__name__)
TABLE_READERS = {
    ".csv": lambda path: pd.read_csv(path, keep_default_na=False),
    ".tsv": lambda path: pd.read_csv(path, sep="\t", keep_default_na=False),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": pd.read_parquet,
}
OUTPUTS = (".npy", ".parquet")


class TextEncoder(Protocol):
    """Anything that embeds a list of texts to an L2-normalised [N, D] array."""

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray: ...


def read_texts(path: str | Path, text_column: str = "text") -> tuple[list[str], pd.DataFrame]:
    """Texts to embed and the table they came from (a `.txt` file becomes a one-column table)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input={str(path)!r}: no such file")
    if path.suffix == ".txt":
        lines = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
        frame = pd.DataFrame({text_column: [line for line in lines if line.strip()]})
    elif path.suffix in TABLE_READERS:
        frame = TABLE_READERS[path.suffix](path)
    else:
        raise DataError(f"input={str(path)!r}: unsupported file type; use .txt, {', '.join(TABLE_READERS)}")
    if text_column not in frame.columns:
        raise DataError(f"{path}: no column {text_column!r} (text_column); columns are {list(frame.columns)}")
    texts = frame[text_column]
    bad = [int(i) for i, value in enumerate(texts) if not isinstance(value, str) or not value.strip()]
    if bad:
        raise DataError(f"{path}: column {text_column!r} is empty or not text in rows {bad[:10]} (0-based)")
    return texts.tolist(), frame


def write_vectors(
    vectors: np.ndarray, output: str | Path, frame: pd.DataFrame, text_column: str, keep_columns: list[str]
) -> Path:
    """Write `.npy` or `.parquet` atomically (a killed run leaves no partial file)."""
    output = Path(output)
    if output.suffix not in OUTPUTS:
        raise ConfigError(f"output={str(output)!r}: use a {' or '.join(OUTPUTS)} file name")
    missing = [c for c in keep_columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"keep_columns: {missing} not in the input; columns are {list(frame.columns)}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with atomic_file(output) as staging:
        if output.suffix == ".npy":
            with open(staging, "wb") as handle:
                np.save(handle, vectors)
        else:
            columns = {c: pa.array(frame[c].tolist()) for c in keep_columns if c != text_column}
            columns["text"] = pa.array(frame[text_column].tolist(), type=pa.string())
            flat = pa.array(vectors.reshape(-1), type=pa.float32())
            columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
            pq.write_table(pa.table(columns), staging)
    return output


class _EmbedderEncoder:
    """An Embedder behind the `TextEncoder` interface."""

    def __init__(self, embedder) -> None:
        """Wrap a training-style Embedder."""
        self.embedder = embedder

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings."""
        return self.embedder.encode(texts, batch_size=batch_size, show_progress=show_progress)


def load_encoder(cfg: DictConfig) -> TextEncoder:
    """An exported folder (`model_path`), else the training Embedder from run_dir/adapter_path/ckpt_path or groups."""
    if cfg.get("model_path"):
        from embedexp.export.load import load_export

        return load_export(cfg.model_path)
    from embedexp.export.source import resolve_source

    return _EmbedderEncoder(resolve_source(cfg, require_weights=False).embedder)


def encode(cfg: DictConfig) -> Path:
    """Read the texts, embed them in batches with a progress bar, write the vectors; returns the output path."""
    if not cfg.get("input") or not cfg.get("output"):
        raise ConfigError("set input=<texts file> and output=<vectors .npy or .parquet>")
    if Path(cfg.output).suffix not in OUTPUTS:
        raise ConfigError(f"output={cfg.output!r}: use a {' or '.join(OUTPUTS)} file name")
    configure_threads(cfg.get("num_threads", "auto"))
    texts, frame = read_texts(cfg.input, cfg.text_column)
    encoder = load_encoder(cfg)
    batch_size = int(cfg.batch_size)
    with autocast_for(cfg.get("precision", "auto"), torch.device("cpu"), "precision"):
        if cfg.show_progress:
            vectors = encode_with_progress(lambda chunk: encoder.encode(chunk, batch_size=batch_size), texts, "encode")
        else:
            vectors = encoder.encode(texts, batch_size=batch_size)
    path = write_vectors(vectors, cfg.output, frame, cfg.text_column, list(cfg.get("keep_columns") or []))
    log.info("wrote %d x %d embeddings to %s", *vectors.shape, path)
    return path


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="encode")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with exit_on_error(log):
        print(encode(cfg))


if __name__ == "__main__":
    main()
