"""Tests of the builtin test-time augmentation policies: views, averaging, chunking, n_views.

Every policy registered through ``cifarbudget_register_tta_policies`` is checked through the
registry (parametrized over all names).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarbudget
from cifarbudget.builtin.tta import TTA_POLICIES
from cifarbudget.errors import CifarBudgetError
from cifarbudget.tta import FlipShiftTTA, FlipTTA, NoTTA

TTA_NAMES = cifarbudget.get_registry("tta").names()


class PointwisePool(nn.Module):
    """1x1 convolutions and global average pooling: invariant to flips (and nearly to shifts)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class Recorder(nn.Module):
    """A position-sensitive model (flattened pixels -> linear) that records its batch sizes."""

    def __init__(self, num_classes: int = 10, size: int = 8) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * size * size, num_classes)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return self.linear(x.flatten(1))


def images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return PointwisePool().eval()


# --- the registry ---------------------------------------------------------------------------------
def test_every_builtin_is_registered_through_the_hook() -> None:
    """``cifarbudget_register_tta_policies`` adds none, flip and flip-shift, with descriptions."""
    registry = cifarbudget.get_registry("tta")
    assert {"none", "flip", "flip-shift"} <= set(registry.names())
    for name in TTA_POLICIES:
        entry = registry.get(name)
        assert entry.plugin == "cifarbudget.builtin.tta"
        assert entry.description


@pytest.mark.parametrize("name", TTA_NAMES)
def test_registered_policy_honours_the_contract(name: str, model: nn.Module) -> None:
    policy = cifarbudget.get_registry("tta").create(name)
    # n_views is the (expected) forward passes per image: a float for selective TTA
    assert isinstance(policy.n_views, int | float) and policy.n_views >= 1
    x = images(6).requires_grad_()
    before = getattr(policy, "views_computed", 0)
    logits = policy(model, x)
    assert logits.shape == (6, 10) and not logits.requires_grad
    assert torch.isfinite(logits).all()
    if isinstance(policy.n_views, int):
        assert policy.views_computed - before == policy.n_views * 6  # the cost it reports is the cost
        if hasattr(policy, "views"):
            assert len(policy.views(x)) == policy.n_views


def test_n_views() -> None:
    assert NoTTA().n_views == 1
    assert FlipTTA().n_views == 2
    assert FlipShiftTTA().n_views == 10
    registry = cifarbudget.get_registry("tta")
    assert [registry.create(n).n_views for n in ("none", "flip", "flip-shift")] == [1, 2, 10]


# --- what each policy computes --------------------------------------------------------------------
def test_none_is_plain_evaluation(model: nn.Module) -> None:
    x = images()
    assert torch.equal(NoTTA()(model, x), model(x).detach())


def test_flip_of_a_flip_invariant_model_equals_plain_evaluation(model: nn.Module) -> None:
    x = images(16)
    plain = model(x).detach()
    assert torch.allclose(model(x.flip(-1)), plain, atol=1e-6)  # the model is flip-invariant
    assert torch.allclose(FlipTTA()(model, x), plain, atol=1e-6)


def test_flip_averages_the_logits_of_both_views() -> None:
    torch.manual_seed(0)
    model = Recorder(size=8).eval()
    x = images(5, size=8)
    expected = (model(x) + model(x.flip(-1))).detach() / 2
    model.batch_sizes.clear()
    assert torch.allclose(FlipTTA()(model, x), expected, atol=1e-6)
    assert model.batch_sizes == [5, 5]  # on a CPU one forward pass per view (faster there; GPUs: one pass)


def test_flip_shift_views_are_reflect_padded_shifts_and_their_mirrors() -> None:
    x = images(3, size=8)
    views = FlipShiftTTA(shift=2).views(x)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    expected = [
        padded[..., 2 + dy : 10 + dy, 2 + dx : 10 + dx]
        for dy, dx in [(0, 0), (0, 2), (0, -2), (2, 0), (-2, 0)]
    ]
    expected += [v.flip(-1) for v in expected]
    assert len(views) == 10
    for got, want in zip(views, expected, strict=True):
        assert torch.equal(got, want)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    # a right shift by 2: column j of the view is column j - 2 of the image
    assert torch.equal(views[2][..., 2:], x[..., :-2])
    flat = torch.stack(views).flatten(2)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(10) for j in range(i))


def test_flip_shift_averages_all_views() -> None:
    torch.manual_seed(0)
    model = Recorder(size=8).eval()
    x = images(4, size=8)
    policy = FlipShiftTTA()
    expected = torch.stack([model(v) for v in policy.views(x)]).mean(dim=0).detach()
    assert torch.allclose(policy(model, x), expected, atol=1e-6)


def test_flip_shift_on_a_translation_invariant_ish_model(model: nn.Module) -> None:
    # smooth images: a 2-pixel reflect shift changes little, so the pooled model barely notices
    x = F.avg_pool2d(images(32, size=36), 5, stride=1)
    plain = model(x).detach()
    tta = FlipShiftTTA()(model, x)
    assert (tta - plain).abs().max().item() < 0.05 * plain.abs().max().item()
    assert (tta.argmax(1) == plain.argmax(1)).float().mean().item() >= 0.9


def test_probability_averaging_returns_log_mean_softmax() -> None:
    torch.manual_seed(0)
    model = Recorder(size=8).eval()
    x = images(4, size=8)
    probs = (F.softmax(model(x), -1) + F.softmax(model(x.flip(-1)), -1)) / 2
    out = FlipTTA(reduce="probs")(model, x)
    assert torch.allclose(out, probs.log().detach(), atol=1e-6)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-6)


def test_chunking_bounds_the_forward_batch_and_keeps_the_result() -> None:
    torch.manual_seed(0)
    model = Recorder(size=8).eval()
    x = images(12, size=8)
    whole = FlipShiftTTA()(model, x)
    model.batch_sizes.clear()
    chunked = FlipShiftTTA(max_batch=5)(model, x)
    assert torch.allclose(chunked, whole, atol=1e-6)
    assert max(model.batch_sizes) <= 5 and sum(model.batch_sizes) == 120


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (FlipTTA, {"reduce": "median"}, "reduce"),
        (FlipTTA, {"max_batch": 0}, "max_batch"),
        (FlipShiftTTA, {"shift": 0}, "shift"),
    ],
)
def test_bad_params_are_user_errors(factory: type, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CifarBudgetError, match=message):
        factory(**kwargs)
