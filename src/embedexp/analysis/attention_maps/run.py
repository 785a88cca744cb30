"""The attention-map analysis command: `python -m embedexp attention_maps [run_dir=<run> | model_path=...] [overrides]`.

Where does the final (pooled) token look, before and after fine-tuning? Writes, into the run folder:
`attention_shares.csv`, `attention_tokens.csv`, `top_tokens.csv`, `heatmap_<model>_<i>.png`, `shares_by_layer.png`
and `attention_summary.md`; with `logger=wandb` the same tables and images go to an offline W&B run; with
`result_file=<path>` the mean shares per model and layer also go to a result file for the docs
(`embedexp.analysis.attention_maps.result`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from embedexp.analysis.attention_maps.analysis import ModelAttention, analyse, load_texts
from embedexp.analysis.attention_maps.plots import plot_heatmap, plot_shares_by_layer
from embedexp.analysis.attention_maps.result import texts_label, write_attention_result
from embedexp.analysis.attention_maps.shares import SHARE_NAMES
from embedexp.analysis.attention_maps.tables import share_frame, summary_frame, summary_markdown, token_frame, top_frame
from embedexp.core.atomic import atomic_file, atomic_write_text
from embedexp.core.errors import ConfigError
from embedexp.core.hardware import configure_threads
from embedexp.export.resolve import OpenedModel, open_model
from embedexp.model.build import build_embedder

log = logging.getLogger("embedexp.analysis.attention_maps")


def analyse_models(cfg: DictConfig, texts: list[str]) -> tuple[list[ModelAttention], str, OpenedModel]:
    """The base model, and the base + adapter when a saved model is named, through the embedding path; a saved
    model keeps its own prompt and pooling (`embedexp.export.resolve.open_model`); its base is analysed with them."""
    layers = tuple(int(layer) for layer in cfg.layers) if cfg.get("layers") is not None else None
    opened = open_model(cfg, eager_attention=True)
    if opened.embedder is None:
        raise ConfigError(f"model_path={opened.path!r}: attention maps need a run, adapter or checkpoint, not a folder")
    tuned = opened.embedder if opened.kind != "base" else None
    base = opened.embedder
    if tuned is not None:
        base = build_embedder(opened.cfg, trainable=False, new_lora=False, eager_attention=True)
    backbone_name = base.name
    results = [analyse(base, texts, "base", layers, cfg.batch_size)]
    del base
    if tuned is not None:
        results.append(analyse(tuned, texts, "finetuned", layers, cfg.batch_size))
    return results, backbone_name, opened


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a CSV atomically."""
    with atomic_file(path) as staging:
        frame.to_csv(staging, index=False)
    return path


def write_outputs(cfg: DictConfig, results: list[ModelAttention], meta: dict[str, str]) -> dict:
    """Write the CSVs, figures and Markdown summary; return the frames and image paths."""
    out = Path(cfg.paths.output_dir)
    frames = {
        "attention_shares": share_frame(results, cfg.per_head),
        "attention_tokens": token_frame(results, cfg.per_head),
        "top_tokens": top_frame(results, cfg.top_k),
        "attention_summary": summary_frame(results),
    }
    for name, frame in frames.items():
        write_csv(frame, out / f"{name}.csv")
    images = [plot_shares_by_layer(results, out / "shares_by_layer.png")]
    for result in results:
        for index, example in enumerate(result.examples[: cfg.max_examples_plotted]):
            title = f"{result.name} · example {index}: {example.text[:90]}"
            images.append(plot_heatmap(example, result.layers, title, out / f"heatmap_{result.name}_{index}.png"))
    text = summary_markdown(frames["attention_summary"], frames["top_tokens"], meta)
    atomic_write_text(out / "attention_summary.md", text)
    return {"frames": frames, "images": images, "summary_text": text}


def log_to_wandb(cfg: DictConfig, frames: dict[str, pd.DataFrame], images: list[Path]) -> None:
    """With `logger=wandb`: an offline W&B run (in the run folder) holding the tables, images and mean shares."""
    node = (cfg.get("logger") or {}).get("wandb")
    if not node:
        return
    import wandb

    run = wandb.init(
        project=node.get("project", "embedexp"),
        name=cfg.get("run_name") or cfg.task_name,
        group=cfg.task_name,
        tags=list(cfg.get("tags") or []),
        dir=str(cfg.paths.output_dir),
        mode="offline" if node.get("offline", True) else "online",
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    try:
        run.log({f"attention/{name}": wandb.Table(dataframe=frame) for name, frame in frames.items()})
        run.log({f"attention/{path.stem}": wandb.Image(str(path)) for path in images})
        for row in frames["attention_summary"].to_dict("records"):
            for share in SHARE_NAMES:
                run.summary[f"attention/{row['model']}/{row['scope']}/{share}"] = row[share]
    finally:
        run.finish()


def run_analysis(cfg: DictConfig, command: str = "python -m embedexp attention_maps") -> pd.DataFrame:
    """Analyse, write every output, log to W&B if asked, write `result_file` (naming `command`) if set; return the
    summary table."""
    configure_threads(cfg.get("num_threads", "auto"))
    texts = load_texts(cfg.get("texts"), cfg.get("texts_file"), cfg.text_column, cfg.get("max_texts"))
    results, backbone_name, opened = analyse_models(cfg, texts)
    meta = {
        "model": backbone_name,
        "adapter": opened.label() if opened.kind != "base" else "none (base only)",
        "prompt": f"{opened.cfg.prompt.name}: `{opened.cfg.prompt.template}`",
        "texts": f"{len(texts)}" + (f" from {cfg.texts_file}" if cfg.get("texts_file") else " (inline)"),
        "layers": f"{len(results[0].layers)} analysed ({results[0].layers[0]}..{results[0].layers[-1]})",
    }
    written = write_outputs(cfg, results, meta)
    log_to_wandb(cfg, written["frames"], written["images"])
    if cfg.get("result_file"):  # the table the docs render (embedexp.core.results)
        texts_used = texts_label(len(texts), cfg.get("texts_file"))
        path = write_attention_result(cfg.result_file, results, backbone_name, command, texts_used, meta["prompt"])
        log.info("result file written to %s", path)
    print(written["summary_text"])
    log.info("attention analysis written to %s", cfg.paths.output_dir)
    return written["frames"]["attention_summary"]
