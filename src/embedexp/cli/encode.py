"""Embed a text file or a table column: `python -m embedexp encode input=texts.txt output=vectors.npy model_path=...`.

Inputs: `.txt` (one text per line; blank lines skipped), `.csv`, `.tsv`, `.jsonl`, `.json`, `.parquet` (the
`text_column`), each optionally `.gz`.
Outputs: `.npy` (float32 [N, D], rows in input order) or `.parquet` (`text`, `embedding`, plus `keep_columns`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig

from embedexp.cli.runner import hydra_command
from embedexp.core.atomic import atomic_file
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import autocast_for
from embedexp.core.progress import encode_with_progress
from embedexp.core.run_setup import RunSetup
from embedexp.data.reader import column_texts, file_label, read_table
from embedexp.export.resolve import load_encoder

log = logging.getLogger(__name__)
OUTPUTS = (".npy", ".parquet")


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


def encode(cfg: DictConfig) -> Path:
    """Read the texts, embed them in batches with a progress bar, write the vectors; returns the output path."""
    if not cfg.get("input") or not cfg.get("output"):
        raise ConfigError("set input=<texts file> and output=<vectors .npy or .parquet>")
    if Path(cfg.output).suffix not in OUTPUTS:
        raise ConfigError(f"output={cfg.output!r}: use a {' or '.join(OUTPUTS)} file name")
    frame = read_table(cfg.input, "input", txt_column=cfg.text_column)
    texts = column_texts(frame, cfg.text_column, file_label(cfg.input, "input"))  # every row: vectors follow the rows
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


def encode_and_print(run: RunSetup) -> None:
    """Encode and print where the vectors went."""
    print(encode(run.cfg))


main = hydra_command("encode", encode_and_print)


if __name__ == "__main__":
    main()
