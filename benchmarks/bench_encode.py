"""Encoding throughput: embedexp's encoder vs a naive reference encoder and sentence-transformers, same model.

The naive reference is written the way a paper's evaluation script does it: the causal LM, batches in input order
padded to the batch's longest text, every layer's hidden states kept, float32. All three embed the same prompted
texts with mean pooling; the script checks they agree before timing them.

    python benchmarks/bench_encode.py [--texts 256] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from common import EOL, auto_label, header, median_seconds, real_texts, smollm2, smollm2_folder
from transformers import AutoModelForCausalLM, AutoTokenizer

from embedexp.core.hardware import autocast_for
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import MeanPooling
from embedexp.model.prompts import PromptTemplate


def naive_encoder(folder: str, max_length: int):
    """A reference encoder: causal LM, input order, padding to the longest, all hidden states kept."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                prompted = [EOL.replace("{text}", t) for t in texts[start : start + batch_size]]
                batch = tokenizer(prompted, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
                mask = batch["attention_mask"].unsqueeze(-1).float()
                out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out).numpy()

    return encode


def sentence_transformers_encoder(folder: str, max_length: int):
    """sentence-transformers over the same weights: Transformer + mean Pooling + Normalize, the prompt as prefix."""
    from sentence_transformers import SentenceTransformer, models

    # plain-text modality: sentence-transformers 6 would otherwise wrap each text in the model's chat template
    text_only = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
    transformer = models.Transformer(
        folder, max_seq_length=max_length, modality_config=text_only, module_output_name="token_embeddings"
    )
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        prompted = [EOL.replace("{text}", t) for t in texts]
        return model.encode(prompted, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    return encode


def main() -> None:
    """Time the three encoders and print texts/s and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    header(f"encoding throughput, SmolLM2-135M, {args.texts} real texts (prompt eol, mean pooling)")
    texts = real_texts(args.texts)
    folder = smollm2_folder()
    backbone = smollm2()
    embedder = Embedder(backbone.model, backbone.tokenizer, MeanPooling(), PromptTemplate("eol", EOL), args.max_length)

    def embedexp_encode(precision: str, max_batch_tokens: int | None = None):
        def run(batch: list[str]) -> np.ndarray:
            with autocast_for(precision, embedder.device):
                return embedder.encode(batch, batch_size=32, max_batch_tokens=max_batch_tokens)

        return run

    encoders = {
        "naive reference (fp32)": naive_encoder(folder, args.max_length),
        "sentence-transformers (fp32)": sentence_transformers_encoder(folder, args.max_length),
        "embedexp (fp32)": embedexp_encode("32"),
        "embedexp (bf16 autocast)": embedexp_encode("bf16"),
        "embedexp (auto, 2048-token batches)": embedexp_encode("auto", 2048),
    }
    reference = encoders["naive reference (fp32)"](texts[:16])
    for name, encode in encoders.items():
        agreement = float(np.min(np.sum(encode(texts[:16]) * reference, axis=1)))
        print(f"  agreement with the reference on 16 texts (min cosine): {name}: {agreement:.5f}")
    speeds = {
        name: len(texts) / median_seconds(lambda e=encode: e(texts), args.repeats) for name, encode in encoders.items()
    }
    naive, st = speeds["naive reference (fp32)"], speeds["sentence-transformers (fp32)"]
    print(f"\n{'encoder':40s} {'texts/s':>9s} {'vs naive':>9s} {'vs ST':>7s}")
    for name, speed in speeds.items():
        print(f"{name:40s} {speed:9.1f} {speed / naive:8.2f}x {speed / st:6.2f}x")
    default = "embedexp (bf16 autocast)" if auto_label() == "bf16" else "embedexp (fp32)"
    speed = speeds[default]
    print(f"default (precision auto) here: {default}: {speed / naive:.2f}x naive, {speed / st:.2f}x ST")
    print("(median of", args.repeats, "repeats after 1 warm-up; goal: embedexp default >= 2x naive and >= 1.2x ST)")


if __name__ == "__main__":
    main()
