"""InfoNCE against a hand computation; it must prefer true pairs."""

from __future__ import annotations

import math

import pytest
import torch

from embedexp.core.errors import ConfigError
from embedexp.training.loss import InfoNCELoss


def hand_infonce(a: list[list[float]], p: list[list[float]], temperature: float, margin: float) -> float:
    """Plain-Python InfoNCE with cosine similarity."""

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))

    total = 0.0
    for i, anchor in enumerate(a):
        logits = [(cos(anchor, pos) - (margin if i == j else 0.0)) / temperature for j, pos in enumerate(p)]
        total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    return total / len(a)


def test_matches_hand_computation():
    a = [[1.0, 0.0, 0.5], [0.2, 1.0, 0.0], [0.0, 0.3, 1.0]]
    p = [[0.9, 0.1, 0.4], [0.0, 1.0, 0.2], [0.5, 0.0, 1.0]]
    loss = InfoNCELoss(temperature=0.1, margin=0.05)(torch.tensor(a), torch.tensor(p))
    assert loss.item() == pytest.approx(hand_infonce(a, p, 0.1, 0.05), rel=1e-5)


def test_symmetric_averages_both_directions():
    a, p = torch.randn(4, 8), torch.randn(4, 8)
    one_way = InfoNCELoss(temperature=0.2)(a, p)
    back = InfoNCELoss(temperature=0.2)(p, a)
    both = InfoNCELoss(temperature=0.2, symmetric=True)(a, p)
    assert both.item() == pytest.approx((one_way.item() + back.item()) / 2, rel=1e-5)


def test_prefers_true_pairs():
    torch.manual_seed(0)
    anchors = torch.randn(8, 16)
    positives = anchors + 0.1 * torch.randn(8, 16)
    loss_fn = InfoNCELoss(temperature=0.05)
    aligned = loss_fn(anchors, positives)
    shuffled = loss_fn(anchors, positives.roll(1, dims=0))
    assert aligned.item() < 0.1 < shuffled.item()


def test_gradient_pulls_pairs_together():
    anchors = torch.randn(4, 6, requires_grad=True)
    positives = torch.randn(4, 6)
    loss_fn = InfoNCELoss(temperature=0.1)
    before = loss_fn(anchors, positives)
    before.backward()
    with torch.no_grad():
        moved = anchors - 0.5 * anchors.grad
    assert loss_fn(moved, positives).item() < before.item()


def test_single_pair_is_refused():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        InfoNCELoss()(torch.randn(1, 4), torch.randn(1, 4))


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)


def test_a_candidate_closer_than_the_true_pair_is_left_out_only_with_the_false_negative_margin():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    p = torch.tensor([[0.6, 0.8], [0.1, 1.0], [1.0, 0.0]])  # anchor 0's own positive is far; positive 2 is near it
    plain = InfoNCELoss(temperature=0.1)
    masked = InfoNCELoss(temperature=0.1, false_negative_margin=0.1)
    sims = plain.similarities(a, p)
    keep = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])  # cos(a0, p2) 1.0 > 0.6 + 0.1
    logits = torch.where(keep, sims, torch.tensor(float("-inf"))) / 0.1
    assert masked(a, p).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(3)).item())
    assert plain(a, p).item() > masked(a, p).item()
    both = InfoNCELoss(temperature=0.1, symmetric=True, false_negative_margin=0.1)(a, p)
    assert both.item() == pytest.approx((masked(a, p).item() + masked(p, a).item()) / 2, rel=1e-5)
    with pytest.raises(ConfigError, match="loss.false_negative_margin"):
        InfoNCELoss(false_negative_margin=-0.1)
