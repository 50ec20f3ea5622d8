"""Every registered model honours the model contract of ``cifarbudget_register_models``.

``factory(num_classes=10) -> nn.Module`` taking ``(N, 3, 32, 32)`` float images and returning
``(N, num_classes)`` logits. The parametrization runs over ``cifarbudget.list_models()`` at
collection time; conftest turns plugin autoload off, so that is the builtin models (installed
third-party plugins test their own models).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarbudget
from cifarbudget.budget import BudgetReport

pytestmark = pytest.mark.usefixtures("single_thread")

ALL_MODELS = cifarbudget.list_models()
BUILTIN_MODELS = [
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnetsmall",
    "preactresnet18",
    "wrn16-4",
    "airnet",
    "airnet-small",
]


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_builtin_models_are_registered() -> None:
    assert set(BUILTIN_MODELS) <= set(ALL_MODELS)
    assert cifarbudget.list_models() == ALL_MODELS  # collection saw the same registry


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape_and_params(name: str, budget_report: Callable[[str], BudgetReport]) -> None:
    torch.manual_seed(0)
    model = cifarbudget.create_model(name)
    assert isinstance(model, nn.Module)
    model.train()
    logits = model(_images())
    assert logits.shape == (2, 10)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # every trainable parameter receives a gradient
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing[:5]}"

    report = budget_report(name)
    assert report.model == name
    assert report.params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.macs > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_num_classes_100(name: str) -> None:
    model = cifarbudget.create_model(name, num_classes=100).eval()
    with torch.no_grad():
        logits = model(_images())
    assert logits.shape == (2, 100)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_eval_is_deterministic_and_batch_independent(name: str) -> None:
    model = cifarbudget.create_model(name).eval()
    x = _images(3, seed=1)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(first, both[:1], rtol=1e-4, atol=1e-5)


def test_fresh_weights_each_call() -> None:
    a, b = cifarbudget.create_model("resnet20"), cifarbudget.create_model("resnet20")
    assert not torch.equal(a.stem[0].weight, b.stem[0].weight)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnetsmall", 4_754_218),
        ("resnet20", 269_722),
        ("resnet110", 1_727_962),
        ("preactresnet18", 11_171_146),
        ("wrn16-4", 2_748_890),
        ("airnet", 1_972_792),
        ("airnet-small", 292_688),
    ],
)
def test_pinned_parameter_counts(name: str, params: int) -> None:
    model = cifarbudget.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_resnetsmall_architecture() -> None:
    """The reference model: BasicBlocks [4,4,4,3], widths 32/64/128/256, projection shortcuts."""
    from cifarbudget.nets.resnet import BasicBlock

    model = cifarbudget.create_model("resnetsmall")
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert [b.conv2.out_channels for b in blocks] == [32] * 4 + [64] * 4 + [128] * 4 + [256] * 3
    projections = [b for b in blocks if isinstance(b.shortcut, nn.Sequential)]
    assert len(projections) == 3  # one per stage change


def test_small_model_overfits_random_labels() -> None:
    """airnet-small memorises 64 random-label images in 30 SGD steps on CPU (a learning smoke test)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    model = cifarbudget.create_model("airnet-small").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(30):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2.30, abs=0.1)  # ln(10): chance level at the start
    assert losses[-1] < losses[0] / 20, losses
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.95
