"""The frozen-prefix store on disk: shared across runs, never a wrong tensor, bounded, safe when damaged."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import open_dict

from embedexp.model.bidirectional import set_attention_mode
from embedexp.model.build import build_embedder
from embedexp.model.prefix_store import PrefixStore, decode, encode

STORE_NODE = {"_target_": "embedexp.model.prefix_store.PrefixStore"}
TEXTS = ["apt package manager", "a text editor for the terminal", "fonts for printing", "a tool to compress files"]


@pytest.fixture
def store(tmp_path) -> PrefixStore:
    """An empty store in the test's folder."""
    opened = PrefixStore(tmp_path / "store", max_gb=1.0)
    yield opened
    opened.close()


def embedder_with(cfg, store: PrefixStore | None, last_n_layers: int = 1):
    """A fresh tiny embedder (LoRA on the top `last_n_layers`) whose prefix cache reads and writes `store`."""
    with open_dict(cfg):
        cfg.model.lora.last_n_layers = last_n_layers
    embedder = build_embedder(cfg)
    embedder.enable_prefix_cache(store=store)
    return embedder


def test_encode_round_trip_and_damage_is_detected():
    states = torch.randn(7, 16).to(torch.bfloat16)
    assert torch.equal(decode(encode(states)), states)
    value = bytearray(encode(states))
    value[-3] ^= 0xFF  # one flipped byte in the tensor data
    assert decode(bytes(value)) is None
    assert decode(b"\x00") is None


def test_a_second_embedder_reads_every_prefix_from_the_store(tiny_train_cfg, store):
    first = embedder_with(tiny_train_cfg, store)
    plain = first.encode(TEXTS, batch_size=2)
    assert store.puts == len(TEXTS) and first.prefix_cache.misses == len(TEXTS)
    second = embedder_with(tiny_train_cfg, store)  # a new run: empty memory cache, same frozen layers
    vectors = second.encode(TEXTS, batch_size=2)
    assert second.prefix_cache.misses == 0 and store.hits >= len(TEXTS)
    assert torch.allclose(torch.tensor(vectors), torch.tensor(plain), atol=1e-6)


def test_a_damaged_entry_is_recomputed_never_returned(tiny_train_cfg, store, caplog):
    first = embedder_with(tiny_train_cfg, store)
    plain = first.encode(TEXTS, batch_size=4)
    for key in list(store.cache.iterkeys()):
        store.cache.set(key, encode(torch.zeros(1, 1))[:-2] + b"xx")  # wrong bytes behind a stale checksum
    second = embedder_with(tiny_train_cfg, store)
    with caplog.at_level(logging.WARNING, logger="embedexp.model.prefix_store"):
        vectors = second.encode(TEXTS, batch_size=4)
    assert store.corrupt == len(TEXTS) and "damaged" in caplog.text
    assert second.prefix_cache.misses == len(TEXTS)
    assert torch.allclose(torch.tensor(vectors), torch.tensor(plain), atol=1e-6)


def test_an_unreadable_store_is_reported_and_the_run_goes_on(tiny_train_cfg, tmp_path, caplog):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "cache.db").write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="embedexp.model.prefix_store"):
        broken = PrefixStore(folder)
    assert not broken.enabled and "unreadable" in caplog.text and str(folder) in caplog.text
    embedder = embedder_with(tiny_train_cfg, broken)
    assert embedder.prefix_cache.store is None and embedder.encode(TEXTS).shape[0] == len(TEXTS)


def test_the_store_stays_within_its_bound_and_says_when_full(tmp_path, caplog):
    small = PrefixStore(tmp_path / "small", max_gb=2 / 1024)  # 2 MB
    with caplog.at_level(logging.WARNING, logger="embedexp.model.prefix_store"):
        for index in range(512):
            small.put(f"key{index}", torch.randn(64, 64))  # 16 kB each: 8 MB written in all
    assert small.cache.volume() < 3 * 2**20
    assert "is full" in caplog.text and "prefix_store.max_gb" in caplog.text
    assert small.get("key511") is not None and small.get("key0") is None  # least recently used went first
    small.close()


def test_a_changed_prompt_reads_nothing_of_another_prompt(tiny_train_cfg, store):
    embedder_with(tiny_train_cfg, store).encode(TEXTS)
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.prompt.template = "Topic of: {text}"
    other = embedder_with(tiny_train_cfg, store)
    other.encode(TEXTS)
    assert store.hits == 0 and other.prefix_cache.misses == len(TEXTS)


def test_an_adapted_layer_below_the_stored_one_reads_nothing(tiny_train_cfg, store):
    top = embedder_with(tiny_train_cfg, store, last_n_layers=1)
    top.encode(TEXTS)
    lower = embedder_with(tiny_train_cfg, store, last_n_layers=2)
    assert lower.prefix_cache.split < top.prefix_cache.split
    assert lower.prefix_cache.namespace() != top.prefix_cache.namespace()
    lower.encode(TEXTS)
    assert store.hits == 0


def test_bidirectional_attention_reads_nothing_of_causal_states(tiny_train_cfg, store):
    embedder_with(tiny_train_cfg, store).encode(TEXTS)
    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.attention_mode = "bidirectional"
    other = embedder_with(tiny_train_cfg, store)
    other.encode(TEXTS)
    assert store.hits == 0


def test_changed_frozen_weights_read_nothing_and_trained_ones_do_not_matter(tiny_train_cfg, store):
    """MNTP (or any init_adapter) changes the frozen layers' weights: their states must not be reused; the adapted
    layers above the split change in every training step and must not change the key."""
    embedder_with(tiny_train_cfg, store).encode(TEXTS)
    adapted = embedder_with(tiny_train_cfg, store)
    with torch.no_grad():
        for name, param in adapted.model.named_parameters():
            if "lora_B" in name:
                param.add_(0.1)
    adapted.encode(TEXTS)
    assert store.hits == len(TEXTS)
    merged = embedder_with(tiny_train_cfg, store)
    with torch.no_grad():
        merged.model.get_base_model().layers[0].self_attn.q_proj.weight.add_(0.01)
    merged.encode(TEXTS)
    assert store.hits == len(TEXTS) and merged.prefix_cache.misses == len(TEXTS)


def test_a_frozen_adapter_splits_at_its_first_adapted_layer(tiny_train_cfg, store):
    """A saved adapter loaded for evaluation has no trainable weight; its LoRA layers still set the split, so two
    adapters of the same placement share the base layers' states."""
    trained = embedder_with(tiny_train_cfg, store)
    trained.encode(TEXTS)
    loaded = embedder_with(tiny_train_cfg, None)
    for name, param in loaded.model.named_parameters():
        param.requires_grad_(False)  # as PeftModel.from_pretrained(..., is_trainable=False) leaves it
        if "lora_B" in name:
            param.data.add_(0.1)  # another run's adapter
    loaded.prefix_cache = None
    loaded.enable_prefix_cache(store=store)
    assert loaded.prefix_cache.split == trained.prefix_cache.split
    loaded.encode(TEXTS)
    assert loaded.prefix_cache.misses == 0 and store.hits >= len(TEXTS)


def test_the_namespace_follows_autocast(tiny_train_cfg, store):
    embedder = embedder_with(tiny_train_cfg, store)
    plain = embedder.prefix_cache.namespace()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert embedder.prefix_cache.namespace() != plain


def test_set_attention_alone_changes_the_namespace(tiny_train_cfg, store):
    embedder = embedder_with(tiny_train_cfg, None)
    causal = embedder.prefix_cache.namespace()
    set_attention_mode(embedder.model, "bidirectional")
    embedder.prefix_cache = None
    embedder.enable_prefix_cache(store=store)
    assert embedder.prefix_cache.namespace() != causal


def test_a_later_run_trains_on_stored_prefixes_with_the_same_losses(tiny_train_cfg, tmp_path):
    from embedexp.cli.train import train

    with open_dict(tiny_train_cfg):
        tiny_train_cfg.model.lora.last_n_layers = 1
        tiny_train_cfg.trainer.max_epochs = 1
        tiny_train_cfg.callbacks.clustering_eval.zero_shot_cache_dir = None
    runs = {}
    for name, folder in (("plain", None), ("first", "store"), ("later", "store")):
        with open_dict(tiny_train_cfg):
            tiny_train_cfg.paths.output_dir = str(tmp_path / name)
            tiny_train_cfg.prefix_store = None if folder is None else {**STORE_NODE, "folder": str(tmp_path / folder)}
        runs[name] = train(tiny_train_cfg)
    assert runs["plain"]["throughput/cached_share"] == 0.0
    assert runs["first"]["throughput/cached_share"] < 0.5  # the first run computes (and stores) its prefixes
    assert runs["later"]["throughput/cached_share"] == 1.0  # every text's frozen layers read from the store
    for key in ("train/loss", "val/clustering_mean", "zero_shot/clustering_mean"):
        assert runs["later"][key] == pytest.approx(runs["plain"][key], abs=1e-4), key
    assert {"time/startup_s", "time/train_s", "time/eval_zero_shot_s", "time/eval_trained_s"} <= runs["later"].keys()


def test_an_eval_pooling_grid_runs_the_decoder_once_per_prompt(tmp_path, monkeypatch):
    from embedexp.cli.eval import evaluate
    from embedexp.model.prefix_cache import FrozenPrefixCache

    from .conftest import compose_config

    computed: list[int] = []
    checking: list[bool] = []
    original, original_verify = FrozenPrefixCache.prefix, FrozenPrefixCache.verify

    def counted(self, input_ids, attention_mask):
        if not checking:  # the self-check's one fresh batch per run is not a text's prefix computed for use
            computed.append(len(input_ids))
        return original(self, input_ids, attention_mask)

    def verify(self, *args):
        checking.append(True)
        try:
            return original_verify(self, *args)
        finally:
            checking.clear()

    monkeypatch.setattr(FrozenPrefixCache, "prefix", counted)
    monkeypatch.setattr(FrozenPrefixCache, "verify", verify)
    runs = {}
    for pooling in ("mean", "last", "max"):
        cfg = compose_config("eval", ["model=tiny", "tasks=tiny", f"pooling={pooling}"], tmp_path / pooling)
        before = len(computed)
        runs[pooling] = (evaluate(cfg), len(computed) - before)
    assert runs["mean"][1] > 0 and runs["last"][1] == 0 and runs["max"][1] == 0  # later poolings: stored states
    cfg = compose_config("eval", ["model=tiny", "tasks=tiny", "pooling=last", "prefix_store=null"], tmp_path / "plain")
    assert evaluate(cfg)["clustering_mean"] == pytest.approx(runs["last"][0]["clustering_mean"], abs=1e-6)


def test_the_split_check_tolerates_rounding_and_refuses_a_broken_split():
    from embedexp.model.prefix_cache import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, largest_relative_error

    full = torch.randn(50, 64) * torch.linspace(1, 300, 64)  # a few massive dimensions, as real decoders have
    rounded = full.to(torch.bfloat16).float() + 0.002 * full * torch.randn(50, 64)  # bf16 noise of another batch
    broken = full.clone()
    broken[7] = torch.randn(64) * full[7].norm() / 8  # one token whose state the split lost
    assert FP32_TOLERANCE < largest_relative_error(rounded, full) < LOW_PRECISION_TOLERANCE
    assert largest_relative_error(broken, full) > LOW_PRECISION_TOLERANCE
    assert largest_relative_error(full, full) == 0.0


def test_a_batch_of_rows_is_written_and_read_in_one_transaction(store, monkeypatch):
    rows = [(f"k{i}", torch.randn(3 + i, 4)) for i in range(5)]
    opened = []
    real = store.cache.transact
    monkeypatch.setattr(store.cache, "transact", lambda **kw: opened.append(kw) or real(**kw))
    store.put_many(rows)
    got = store.get_many([key for key, _ in rows] + ["absent"])
    assert len(opened) == 2  # one for the writes, one for the reads
    assert all(torch.equal(g, t) for g, (_, t) in zip(got, rows, strict=False)) and got[-1] is None
    assert (store.puts, store.hits, store.misses) == (5, 5, 1)


def test_the_self_check_runs_on_fresh_states_not_on_stored_ones(tiny_train_cfg, store):
    first = embedder_with(tiny_train_cfg, store)
    first.encode(TEXTS, batch_size=2)
    for key in list(store.cache.iterkeys()):  # stored states off by 20 %, as bf16 states of other batches drift
        states = store.get(key)
        store.put(key, states * 1.2)
    second = embedder_with(tiny_train_cfg, store)
    second.encode(TEXTS, batch_size=2)
    assert second.prefix_cache.enabled and second.prefix_cache.verified
    assert second.prefix_cache.misses == 0  # every text read from the store after the check


def test_final_token_attention_reads_its_layer_above_a_stored_packed_prefix(tiny_train_cfg, store, monkeypatch):
    """The pooling reads the top layer's attention (eager, hooked) while the frozen layers below come from the store,
    computed once with packed SDPA attention: the vectors of the all-eager model, gradients flowing to the adapter."""
    from embedexp.model import packing

    from .conftest import compose_config

    with open_dict(tiny_train_cfg):
        tiny_train_cfg.pooling = compose_config("train", ["pooling=final_token_attention"], ".").pooling
    reference = build_embedder(tiny_train_cfg).encode(TEXTS, batch_size=2)  # no cache: every layer eager, padded
    packed_calls = []
    real = packing.packed_attention
    monkeypatch.setattr(packing, "packed_attention", lambda *args: packed_calls.append(1) or real(*args))
    cached = embedder_with(tiny_train_cfg, store)
    vectors = cached.encode(TEXTS, batch_size=2)
    assert cached.prefix_cache.misses == len(TEXTS) and store.puts == len(TEXTS)  # through the cache, into the store
    assert packed_calls and cached.prefix_cache.prefix_attention == "embedexp_packed_sdpa"
    assert torch.allclose(torch.tensor(vectors), torch.tensor(reference), atol=1e-5)
    cached.train_with_prefix_cache = True
    cached.train()
    cached(cached.tokenize(TEXTS)).pow(2).sum().backward()
    assert cached.prefix_cache.hits >= len(TEXTS)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in cached.named_parameters() if "lora_" in n)
