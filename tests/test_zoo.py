"""The published-architecture zoo: WRN-28-2 / WRN-40-2, PyramidNet-110 / -164 (alpha 48),
DenseNet-BC-100 (k = 12) and ResNetSmall with squeeze-and-excitation, plus the drop-path option.

Parameter counts are pinned at 10 and 100 classes; the 10-class counts equal those of the authors'
reference code (WRN: the common PyTorch port of the authors' code; PyramidNet:
dyhan0920/PyramidNet-PyTorch; DenseNet-BC: andreasveit/densenet-pytorch, listed by the authors).
Structural tests check the widths the papers state; learning tests take a few SGD steps on a fixed
batch. Everything runs on one CPU thread with batches of 2-8 images.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarbudget
from cifarbudget.budget import BudgetReport
from cifarbudget.errors import RunError
from cifarbudget.nets.densenet import DenseLayer, DenseNetBC, Transition
from cifarbudget.nets.droppath import drop_path_rates, make_drop_path
from cifarbudget.nets.pyramidnet import PyramidBasicBlock, PyramidNet
from cifarbudget.nets.se import SqueezeExcite, se_resnetsmall
from cifarbudget.nets.wideresnet import WideBlock, WideResNet

pytestmark = pytest.mark.usefixtures("single_thread")

# name -> (params at 10 classes, params at 100 classes, conv + linear MACs at 10 classes)
ZOO: dict[str, tuple[int, int, int]] = {
    "wrn28-2": (1_467_610, 1_479_220, 214_353_152),
    "wrn40-2": (2_243_546, 2_255_156, 327_599_360),
    "pyramidnet110-a48": (1_772_706, 1_778_556, 403_813_504),
    "pyramidnet164-a48-bottleneck": (1_715_442, 1_738_572, 388_433_920),
    "densenet-bc100-k12": (769_162, 800_032, 287_929_692),
    "se-resnetsmall": (4_791_314, 4_814_444, 271_455_232),
}
DROP_PATH_MODELS = [
    "wrn28-2",
    "wrn40-2",
    "pyramidnet110-a48",
    "pyramidnet164-a48-bottleneck",
    "se-resnetsmall",
]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _drop_rates(model: nn.Module) -> list[float]:
    """The drop probability of every residual branch, in block order (0 for an Identity)."""
    branches = [m.drop_path for m in model.modules() if isinstance(getattr(m, "drop_path", None), nn.Module)]
    return [float(getattr(b, "drop_prob", 0.0)) for b in branches]


# --- counts and budget ----------------------------------------------------------------------------
def test_zoo_is_registered_with_cited_descriptions() -> None:
    entries = {e.name: e for e in cifarbudget.describe("models")}
    for name, (params, _, _) in ZOO.items():
        description = entries[name].description
        assert "arXiv:" in description and "20" in description, description
        assert f"{params:,}" in description, (name, description)  # the description states the count


@pytest.mark.parametrize("name", ZOO)
def test_pinned_counts_and_budget(name: str, budget_report: Callable[[str], BudgetReport]) -> None:
    params, params_100, macs = ZOO[name]
    report = budget_report(name)
    assert report.params == report.total_params == params
    assert report.macs == macs
    assert report.within_budget and params < 5_000_000
    assert _trainable(cifarbudget.create_model(name)) == params
    assert _trainable(cifarbudget.create_model(name, num_classes=100)) == params_100


def test_se_adds_exactly_the_se_parameters_to_resnetsmall() -> None:
    """SE-ResNetSmall = ResNetSmall (same backbone tensors) + 2C^2/16 + C/16 + C per block."""
    plain, se = cifarbudget.create_model("resnetsmall"), cifarbudget.create_model("se-resnetsmall")
    widths = [32] * 4 + [64] * 4 + [128] * 4 + [256] * 3
    se_params = sum(2 * c * c // 16 + c // 16 + c for c in widths)
    assert se_params == 37_096
    assert _trainable(se) == _trainable(plain) + se_params == 4_791_314
    backbone = {k: v.shape for k, v in se.state_dict().items() if ".se." not in k}
    assert backbone == {k: v.shape for k, v in plain.state_dict().items()}


# --- architecture as the papers state it ----------------------------------------------------------
def test_wrn_widths_and_conv_shortcuts() -> None:
    for depth, n in ((28, 4), (40, 6)):
        model = cifarbudget.create_model(f"wrn{depth}-2")
        blocks = [m for m in model.modules() if isinstance(m, WideBlock)]
        assert [b.conv2.out_channels for b in blocks] == [32] * n + [64] * n + [128] * n
        shortcuts = [b.shortcut for b in blocks if b.shortcut is not None]
        assert len(shortcuts) == 3 and all(s.kernel_size == (1, 1) for s in shortcuts)


def test_pyramidnet_widths_grow_additively_to_the_published_output_dimension() -> None:
    """Unit i has round(16 + 48 i / 54) channels; output dims 64 and 256 as in the authors' README."""
    basic = cifarbudget.create_model("pyramidnet110-a48")
    widths = [u.branch[1].out_channels for u in basic.units]
    assert widths == [round(16 + 48 * i / 54) for i in range(1, 55)]
    assert basic.head.in_features == 64
    bottleneck = cifarbudget.create_model("pyramidnet164-a48-bottleneck")
    assert len(bottleneck.units) == 54 and bottleneck.head.in_features == 256
    # every shortcut is parameter-free: all parameters are in the branches, the stem, the head
    assert not any(p for u in basic.units for p in u.shortcut.parameters())


def test_pyramidnet_shortcut_pools_and_zero_pads() -> None:
    block = PyramidBasicBlock(4, 6, stride=2).eval()
    x = torch.randn(2, 4, 8, 8)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 6, 4, 4)
    torch.testing.assert_close(shortcut[:, :4], F.avg_pool2d(x, 2))
    assert torch.equal(shortcut[:, 4:], torch.zeros(2, 2, 4, 4))


def test_densenet_bc_channels() -> None:
    """2k = 24 stem maps; 16 layers per block; compression 0.5: 216 -> 108, 300 -> 150; 342 at the end."""
    model = cifarbudget.create_model("densenet-bc100-k12")
    assert model.features[0].out_channels == 24
    assert sum(isinstance(m, DenseLayer) for m in model.modules()) == 48
    transitions = [m for m in model.modules() if isinstance(m, Transition)]
    assert [(t[2].in_channels, t[2].out_channels) for t in transitions] == [(216, 108), (300, 150)]
    assert model.head.in_features == 342
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_squeeze_excite_matches_timm_se_module() -> None:
    """Our SE gate computes what ``timm.layers.SEModule`` (1x1-conv FCs, ReLU, sigmoid) computes."""
    from timm.layers import SEModule

    torch.manual_seed(0)
    ours, theirs = SqueezeExcite(64, 16), SEModule(64, rd_ratio=1 / 16, rd_divisor=1)
    with torch.no_grad():
        theirs.fc1.weight.copy_(ours.fc1.weight[:, :, None, None])
        theirs.fc1.bias.copy_(ours.fc1.bias)
        theirs.fc2.weight.copy_(ours.fc2.weight[:, :, None, None])
        theirs.fc2.bias.copy_(ours.fc2.bias)
    x = torch.randn(3, 64, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 580


# --- forward contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", ZOO)
def test_forward_shape_train_and_eval(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    model = cifarbudget.create_model(name, num_classes=num_classes)
    x = _images(2)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            logits = model(x)
        assert logits.shape == (2, num_classes)
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


# --- drop-path ------------------------------------------------------------------------------------
def test_drop_path_rates_follow_the_linear_rule() -> None:
    assert drop_path_rates(4, 0.2) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(3, 0.0) == [0.0, 0.0, 0.0]
    assert isinstance(make_drop_path(0.0), nn.Identity)
    model = cifarbudget.create_model("pyramidnet110-a48", drop_path=0.5)
    assert _drop_rates(model) == pytest.approx([0.5 * i / 54 for i in range(1, 55)])
    model = cifarbudget.create_model("wrn28-2", drop_path=0.3)
    assert _drop_rates(model) == pytest.approx([0.3 * i / 12 for i in range(1, 13)])
    model = cifarbudget.create_model("se-resnetsmall", drop_path=0.3)
    assert _drop_rates(model) == pytest.approx([0.3 * i / 15 for i in range(1, 16)])


@pytest.mark.parametrize("name", DROP_PATH_MODELS)
def test_drop_path_is_identity_in_eval_and_stochastic_in_train(name: str) -> None:
    torch.manual_seed(0)
    plain = cifarbudget.create_model(name)
    dropped = cifarbudget.create_model(name, drop_path=0.5)
    assert _trainable(dropped) == _trainable(plain) == ZOO[name][0]  # the option adds no parameters
    assert dropped.state_dict().keys() == plain.state_dict().keys()
    dropped.load_state_dict(plain.state_dict())
    x = _images(4, seed=1)
    with torch.no_grad():
        plain.eval()
        dropped.eval()
        assert torch.equal(dropped(x), plain(x))  # eval: the full network, no rescaling
        plain.train()
        dropped.train()
        full = plain(x)
        assert torch.equal(plain(x), full)  # rate 0: the training forward is deterministic
        torch.manual_seed(1)
        first = dropped(x)
        second = dropped(x)
        torch.manual_seed(1)
        again = dropped(x)
    assert not torch.allclose(first, second)  # branches are dropped at random ...
    assert torch.equal(first, again)  # ... reproducibly under a seed
    assert not torch.allclose(first, full)


def test_drop_path_drops_whole_branches_per_sample_and_rescales() -> None:
    """In training a unit's output is shortcut + 0 or shortcut + branch / (1 - p), about p of the time 0."""
    torch.manual_seed(0)
    block = PyramidBasicBlock(4, 4, stride=1, drop_path=0.3).train()
    x = torch.randn(2000, 4, 4, 4)
    with torch.no_grad():
        branch = block.branch(x)  # BN uses batch statistics: the same values inside block(x)
        residual = block(x) - x
    dropped = residual.flatten(1).abs().amax(1) == 0
    kept = ~dropped
    torch.testing.assert_close(residual[kept], branch[kept] / 0.7, rtol=1e-5, atol=1e-5)
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.04)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_bad_drop_path_is_a_run_error(bad: object) -> None:
    with pytest.raises(RunError, match="drop_path"):
        cifarbudget.create_model("wrn28-2", drop_path=bad)


def test_bad_architecture_parameters_are_run_errors() -> None:
    with pytest.raises(RunError, match="6n \\+ 4"):
        WideResNet(27, 2)
    with pytest.raises(RunError, match="6n \\+ 2"):
        PyramidNet(111, 48)
    with pytest.raises(RunError, match="9n \\+ 2"):
        PyramidNet(165, 48, bottleneck=True)
    with pytest.raises(RunError, match="6n \\+ 4"):
        DenseNetBC(99, 12)
    with pytest.raises(RunError, match="does not divide"):
        se_resnetsmall(reduction=3)
    with pytest.raises(RunError, match="no residual branches"):
        cifarbudget.create_model("densenet-bc100-k12", drop_path=0.1)
    assert _trainable(cifarbudget.create_model("densenet-bc100-k12", drop_path=0.0)) == 769_162


# --- backwards compatibility of WideResNet --------------------------------------------------------
def test_wideresnet_positional_signature_and_wrn16_4_unchanged() -> None:
    torch.manual_seed(0)
    registered = cifarbudget.create_model("wrn16-4")
    torch.manual_seed(0)
    direct = WideResNet(16, 4, 10, 0.0)  # the original positional signature
    assert _trainable(registered) == _trainable(direct) == 2_748_890
    assert all(
        torch.equal(a, b)
        for a, b in zip(registered.state_dict().values(), direct.state_dict().values(), strict=True)
    )
    assert not any(type(m).__name__ == "DropPath" for m in registered.modules())
    with_dropout = WideResNet(16, 4, 10, 0.3)
    assert sum(isinstance(m, nn.Dropout) for m in with_dropout.modules()) == 6


# --- learning -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ZOO)
def test_a_few_sgd_steps_reduce_the_loss(name: str) -> None:
    """Eight SGD steps on a fixed batch of 8 random-label images lower the training loss by > 20%."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (8,), generator=gen)
    model = cifarbudget.create_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2.3, abs=0.35)  # near ln(10) at initialisation
    assert losses[-1] < 0.8 * losses[0], losses
