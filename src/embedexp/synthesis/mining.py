"""Hard-negative mining: `python -m embedexp mine input=pairs.parquet [model_path=... | run_dir=...] [num_negatives=3]`.

Every anchor's candidates are the pool texts (the file's positives by default) ranked by cosine similarity. A candidate
is never one of the anchor's positives (any row with the same anchor) nor the anchor itself, and it is skipped as a
likely false negative when it scores above the positive by the margin (GISTEmbed's strategies, as in
sentence-transformers' `mine_hard_negatives`): `absolute` keeps c only if cos(a, c) <= cos(a, p) - margin, `relative`
only if cos(a, c) <= cos(a, p) - |cos(a, p)| * margin (sentence-transformers' rule since its #3819: `cos * (1 - margin)`
raised the limit above a negative positive score). The top `num_negatives` survivors, best first, are written as new
columns `<neg_column>_<i>` (empty where fewer survived), the output written atomically.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from embedexp.core.atomic import atomic_file
from embedexp.core.errors import ConfigError
from embedexp.data.pairs import negative_columns, validate_pairs
from embedexp.data.reader import SUPPORTED, file_label, is_gzip, read_table, read_texts
from embedexp.export.resolve import load_encoder

log = logging.getLogger(__name__)
STRATEGIES = ("absolute", "relative")
WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".json": lambda frame, path: frame.to_json(path, orient="records", force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def thresholds(positive_scores: np.ndarray, margin: float, strategy: str) -> np.ndarray:
    """The highest candidate score each anchor accepts."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"margin_strategy must be one of {STRATEGIES}, got {strategy!r}")
    return positive_scores - margin if strategy == "absolute" else positive_scores - np.abs(positive_scores) * margin


def mine_negatives(
    anchors: list[str],
    anchor_vectors: np.ndarray,
    positive_vectors: np.ndarray,
    positives_of: dict[str, set[str]],
    pool: list[str],
    pool_vectors: np.ndarray,
    *,
    num_negatives: int,
    margin: float,
    strategy: str = "absolute",
    chunk: int = 1024,
) -> tuple[list[list[tuple[str, float]]], np.ndarray, int]:
    """Per anchor, up to `num_negatives` (text, score) pairs, best first; the positives' scores; candidates skipped.

    Vectors are L2-normalised rows; `positives_of[anchor]` holds every positive of that anchor text.
    """
    positive_scores = np.sum(anchor_vectors * positive_vectors, axis=1)
    limits = thresholds(positive_scores, margin, strategy)
    where = defaultdict(list)
    for index, text in enumerate(pool):
        where[text.strip()].append(index)
    mined, skipped = [], 0
    for start in range(0, len(anchors), chunk):
        scores = anchor_vectors[start : start + chunk] @ pool_vectors.T
        for row, scores_row in enumerate(scores):
            i = start + row
            for text in positives_of[anchors[i]] | {anchors[i]}:
                scores_row[where.get(text.strip(), [])] = -np.inf
            above = scores_row > limits[i]
            skipped += int(np.sum(above & np.isfinite(scores_row)))
            scores_row[above] = -np.inf
            k = min(num_negatives, len(pool))
            top = np.argpartition(-scores_row, k - 1)[:k] if k else np.array([], dtype=int)
            top = top[np.argsort(-scores_row[top], kind="stable")]
            mined.append([(pool[j], float(scores_row[j])) for j in top if np.isfinite(scores_row[j])])
    return mined, positive_scores, skipped


def output_path(cfg: DictConfig) -> Path:
    """`output`, or `<input stem>.mined<suffix>` (`.gz` dropped); an unsupported suffix or an existing file fail."""
    source = Path(cfg.input)
    plain = Path(source.name[:-3] if is_gzip(source) else source.name)  # pairs.csv.gz -> pairs.mined.csv
    path = Path(cfg.output) if cfg.get("output") else source.with_name(f"{plain.stem}.mined{plain.suffix}")
    if path.suffix.lower() not in WRITERS:
        raise ConfigError(f"output={str(path)!r}: use a {', '.join(WRITERS)} file name")
    if path.exists() and not cfg.overwrite:
        raise ConfigError(f"output={str(path)!r} exists; set overwrite=true to replace it")
    return path


def with_negatives(
    frame: pd.DataFrame, mined: list[list[tuple[str, float]]], positive_scores, prefix: str, scores: bool, origin: str
) -> pd.DataFrame:
    """The input table plus `<prefix>_<i>` columns numbered after the existing ones (and score columns)."""
    existing = [str(c) for c in frame.columns if str(c) == prefix or str(c).startswith(prefix + "_")]
    if existing:
        existing = negative_columns(frame[existing], prefix, origin)  # refuses misnamed negative columns
    first = 1 + max([int(c[len(prefix) + 1 :]) for c in existing if c != prefix] or [0])
    width = max((len(row) for row in mined), default=0)
    frame = frame.copy()
    if scores:
        frame["score_pos"] = positive_scores.astype(float)
    for k in range(width):
        frame[f"{prefix}_{first + k}"] = [row[k][0] if k < len(row) else None for row in mined]
        if scores:
            frame[f"score_neg_{first + k}"] = [row[k][1] if k < len(row) else None for row in mined]
    return frame


def mine(cfg: DictConfig) -> dict:
    """Read the pair file, embed, mine, write the output atomically; returns a summary."""
    if not cfg.get("input"):
        raise ConfigError(f"set input=<pair file: {SUPPORTED}>")
    if int(cfg.num_negatives) < 1:
        raise ConfigError(f"num_negatives must be >= 1, got {cfg.num_negatives}")
    thresholds(np.zeros(1), float(cfg.margin), cfg.margin_strategy)  # validate the strategy before any embedding
    path = output_path(cfg)
    origin = file_label(cfg.input, "input")
    frame = read_table(cfg.input, "input")
    pairs = validate_pairs(frame, cfg.text_column, cfg.pos_column, origin, column_keys=("text_column", "pos_column"))
    anchors, positives = [p[0] for p in pairs], [p[1] for p in pairs]
    positives_of: dict[str, set[str]] = defaultdict(set)
    for anchor, positive in zip(anchors, positives):
        positives_of[anchor].add(positive.strip())
    pool_texts = read_texts(cfg.pool, cfg.pool_column, "pool", "pool_column") if cfg.get("pool") else positives
    pool = list(dict.fromkeys(pool_texts))
    encoder = load_encoder(cfg)
    texts = list(dict.fromkeys(anchors + positives + pool))
    vectors = encoder.encode(texts, batch_size=int(cfg.batch_size), show_progress=bool(cfg.show_progress))
    index = {text: i for i, text in enumerate(texts)}
    pick = lambda items: vectors[[index[t] for t in items]]  # noqa: E731
    mined, positive_scores, skipped = mine_negatives(
        anchors,
        pick(anchors),
        pick(positives),
        positives_of,
        pool,
        pick(pool),
        num_negatives=int(cfg.num_negatives),
        margin=float(cfg.margin),
        strategy=cfg.margin_strategy,
    )
    result = with_negatives(frame, mined, positive_scores, cfg.neg_column, bool(cfg.write_scores), origin)
    with atomic_file(path) as staging:
        WRITERS[path.suffix.lower()](result, staging)
    counts = [len(row) for row in mined]
    summary = {
        "output": str(path),
        "anchors": len(anchors),
        "pool": len(pool),
        "negatives": int(sum(counts)),
        "anchors_with_fewer_than_k": int(sum(c < int(cfg.num_negatives) for c in counts)),
        "skipped_above_margin": skipped,
        "margin": float(cfg.margin),
        "margin_strategy": cfg.margin_strategy,
    }
    log.info("mined %s", summary)
    return summary
