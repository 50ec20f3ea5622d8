"""Optimizers (cifarbudget.optim): groups, agreement with torch, Lookahead/SAM/Muon math, resume."""

from __future__ import annotations

import copy
import io
import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarbudget
from cifarbudget.errors import RunError
from cifarbudget.optim import (
    SAM,
    Lookahead,
    MuonHybrid,
    adamw,
    lookahead,
    muon,
    param_groups,
    sam,
    sgd,
    split_parameters,
)

# torch.optim.Muon came with torch 2.9; the package accepts older torch, where `muon` is one line
NEEDS_MUON = pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9"
)


def names(*optimizers: str) -> list[Any]:
    """Parametrize values: the Muon-based ones skipped where the installed torch has no Muon."""
    return [pytest.param(n, marks=NEEDS_MUON) if "muon" in n else n for n in optimizers]


RUN = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> global pool -> linear (with bias): every parameter kind, small."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, bias=True)
        self.head = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = F.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


def tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def batches(n: int, seed: int = 1, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, 4, (size,), generator=g)) for _ in range(n)
    ]


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool = False
):
    """One step the way the engine does it: a closure for optimizers that need one."""

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        if amp:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
        else:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        return loss

    if getattr(opt, "needs_closure", False):
        return opt.step(closure)
    loss = closure()
    opt.step()
    return loss


def learnable(n: int = 128, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class (of 4) shifts channels 0 and 1 by +-1: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    offsets = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    return offsets[y][:, :, None, None] + torch.randn(n, 3, 8, 8, generator=g), y


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- parameter groups ---------------------------------------------------------------------------
def test_param_groups_on_resnet20_count_every_parameter_once():
    model = cifarbudget.create_model("resnet20")
    groups = param_groups(
        model, lr=0.1, weight_decay=5e-4, norm_weight_decay=0.0, bias_lr_scale=64, norm_lr_scale=2
    )
    by_name = {g["name"]: g for g in groups}
    # 19 convs + the linear head; 19 BatchNorms (688 channels); the head's bias
    counts = {n: (len(g["params"]), sum(p.numel() for p in g["params"])) for n, g in by_name.items()}
    assert counts == {
        "weights": (20, 267_696 + 640),
        "norm_weights": (19, 688),
        "norm_biases": (19, 688),
        "biases": (1, 10),
    }
    assert sum(n for _, n in counts.values()) == 269_722 == sum(p.numel() for p in model.parameters())
    settings = {n: (g["lr"], g["weight_decay"]) for n, g in by_name.items()}
    assert settings == {
        "weights": (0.1, 5e-4),
        "norm_weights": (0.1 * 2, 0.0),
        "norm_biases": (0.1 * 64, 0.0),
        "biases": (0.1, 0.0),
    }
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in by_name["norm_biases"]["params"]} == bn_biases


def test_param_groups_skip_frozen_excluded_and_tied_parameters():
    model = TinyNet()
    model.conv.weight.requires_grad_(False)
    model.extra = nn.Linear(12, 4, bias=False)
    model.extra.weight = model.head.weight  # tied: counted once
    groups = param_groups(model, lr=1.0, weight_decay=0.0, exclude=[model.conv2.weight])
    names = {g["name"]: [p.shape for p in g["params"]] for g in groups}
    assert names == {
        "weights": [torch.Size([4, 12])],
        "norm_weights": [torch.Size([8])],
        "norm_biases": [torch.Size([8])],
        "biases": [torch.Size([12]), torch.Size([4])],
    }
    assert split_parameters(model)["weights"][0] is model.conv2.weight


def test_sgd_factory_equals_torch_sgd_step_for_step():
    a, b = tiny(), tiny()
    opt_a = sgd(a, **RUN)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    for x, y in batches(6):
        train_step(a, opt_a, x, y)
        train_step(b, opt_b, x, y)
        assert weights_equal(a, b)
    assert not weights_equal(a, tiny())  # it did train


def test_sgd_bn_bias_lr_and_norm_decay_equal_hand_built_groups():
    a, b = tiny(), tiny()
    opt_a = sgd(a, **RUN, bn_bias_lr_scale=64.0, norm_weight_decay=0.0)
    # the reference groups, built by hand from the module types
    opt_b = torch.optim.SGD(
        [
            {"params": [b.conv.weight, b.conv2.weight, b.head.weight]},
            {"params": [b.bn.weight, b.conv2.bias, b.head.bias], "weight_decay": 0.0},
            {"params": [b.bn.bias], "lr": 6.4, "weight_decay": 0.0},
        ],
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=True,
    )
    for x, y in batches(4):
        train_step(a, opt_a, x, y)
        train_step(b, opt_b, x, y)
    assert weights_equal(a, b)


def test_adamw_factory_equals_torch_adamw_and_nesterov_is_nadamw():
    a, b, c, d = tiny(), tiny(), tiny(), tiny()
    run = {**RUN, "lr": 1e-3, "nesterov": False, "momentum": 0.8}
    opt_a = adamw(a, **run)  # betas = (momentum, 0.999)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3, betas=(0.8, 0.999), weight_decay=5e-4)
    opt_c = adamw(c, **{**run, "nesterov": True}, betas=(0.9, 0.99))
    opt_d = torch.optim.NAdam(
        d.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=5e-4, decoupled_weight_decay=True
    )
    for x, y in batches(4):
        for model, opt in ((a, opt_a), (b, opt_b), (c, opt_c), (d, opt_d)):
            train_step(model, opt, x, y)
    assert weights_equal(a, b)
    assert weights_equal(c, d)
    assert not weights_equal(a, c)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (sgd, {"lr": 0.0}, "lr must be positive"),
        (sgd, {"lr": math.nan}, "lr must be a finite number"),
        (sgd, {"momentum": 1.0}, "momentum must be in [0, 1)"),
        (sgd, {"weight_decay": -1e-4}, "weight_decay must be non-negative"),
        (sgd, {"nesterov": "yes"}, "nesterov must be true or false"),
        (sgd, {"momentum": 0.0}, "nesterov needs a positive momentum"),
        (sgd, {"bn_bias_lr_scale": 0}, "bn_bias_lr_scale must be positive"),
        (sgd, {"norm_weight_decay": -1.0}, "norm_weight_decay must be non-negative"),
        (adamw, {"betas": (0.9,)}, "betas must be two numbers"),
        (adamw, {"betas": (0.9, 1.0)}, "betas[1] must be in [0, 1)"),
        (lookahead, {"k": 0}, "k must be an integer >= 1"),
        (lookahead, {"alpha": 0.0}, "alpha must be in (0, 1]"),
        (lookahead, {"base": "nope"}, "nope"),
        (lookahead, {"frobnicate": 1}, "has no parameter frobnicate"),
        (sam, {"rho": -0.1}, "rho must be positive"),
        (sam, {"adaptive": 1}, "adaptive must be true or false"),
        (sam, {"base": "sam"}, "needs a closure of its own"),
        pytest.param(muon, {"adjust_lr_fn": "bigger"}, "adjust_lr_fn must be one of", marks=NEEDS_MUON),
        pytest.param(muon, {"ns_steps": 0}, "ns_steps must be an integer >= 1", marks=NEEDS_MUON),
        pytest.param(muon, {"muon_momentum": 1.5}, "muon_momentum must be in [0, 1)", marks=NEEDS_MUON),
        pytest.param(
            muon, {"muon_normalize": "yes"}, "muon_normalize must be true or false", marks=NEEDS_MUON
        ),
        pytest.param(muon, {"head_lr_scale": 0}, "head_lr_scale must be positive", marks=NEEDS_MUON),
    ],
)
def test_bad_values_raise_one_line_run_errors(factory, kwargs, message):
    run = {**RUN, **{k: v for k, v in kwargs.items() if k in RUN}}
    params = {k: v for k, v in kwargs.items() if k not in RUN}
    with pytest.raises(RunError) as info:
        factory(TinyNet(), **run, **params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_muon_without_torch_muon_names_the_torch_version(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    with pytest.raises(RunError, match=r"muon needs torch >= 2\.9"):
        muon(TinyNet(), **RUN)


# --- Lookahead ----------------------------------------------------------------------------------
def test_lookahead_slow_weights_are_the_hand_interpolation_every_k_steps():
    k, alpha = 3, 0.4
    model, reference = tiny(), tiny()
    opt = lookahead(model, **RUN, k=k, alpha=alpha)
    assert isinstance(opt, Lookahead)
    plain = sgd(reference, **RUN)  # the fast weights are plain SGD between syncs
    data = batches(2 * k)
    slow = [p.detach().clone() for p in reference.parameters()]
    for i, (x, y) in enumerate(data, start=1):
        train_step(model, opt, x, y)
        train_step(reference, plain, x, y)
        if i % k:
            assert weights_equal(model, reference)  # between syncs: exactly the base optimizer
            continue
        with torch.no_grad():  # phi <- phi + alpha * (theta - phi); theta <- phi
            for s, p in zip(slow, reference.parameters(), strict=True):
                s += alpha * (p - s)
                p.copy_(s)
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
        with torch.no_grad():  # continue the reference from the wrapper's weights, bit for bit
            for p, q in zip(model.parameters(), reference.parameters(), strict=True):
                q.copy_(p)
    assert opt.steps == 2 * k
    assert not opt.needs_closure and opt.passes_per_step == 1
    around_sam = lookahead(tiny(), **RUN, base="sam")
    assert around_sam.needs_closure and around_sam.passes_per_step == 2


def test_planned_passes_match_the_built_lookahead_nested_or_around_sam():
    """The compute plan (before any optimizer is built) counts the passes the built one makes; a
    lookahead around a lookahead (which wraps sgd) is planned, not a RecursionError."""
    from cifarbudget.compute import passes_per_step
    from cifarbudget.spec import resolve_spec

    for params, passes in (({}, 1), ({"base": "sam"}, 2), ({"base": "lookahead"}, 1)):
        spec = resolve_spec("resnet20", dataset="synthetic", optimizer="lookahead", opt_params=params)
        assert passes_per_step(spec) == passes
        assert lookahead(tiny(), **RUN, **params).passes_per_step == passes


# --- SAM ----------------------------------------------------------------------------------------
def test_sam_first_perturbation_is_rho_g_over_norm_g_and_steps_with_the_perturbed_gradient():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    w0 = [p.detach().clone() for p in model.parameters()]
    seen = []

    def closure() -> torch.Tensor:
        seen.append([p.detach().clone() for p in model.parameters()])
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    rho, lr = 0.05, 0.1
    opt = sam(model, lr=lr, momentum=0.0, weight_decay=0.0, nesterov=False, rho=rho)
    loss = opt.step(closure)
    # by hand: g at w0, e = rho g / ||g||, and g' at w0 + e
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p, w in zip(ref.parameters(), w0, strict=True):
            p.copy_(w)
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    expected_e = [rho * g / norm for g in grads]
    assert len(seen) == 2
    for w, at_first, at_second, e in zip(w0, seen[0], seen[1], expected_e, strict=True):
        assert torch.equal(at_first, w)
        torch.testing.assert_close(at_second - w, e, rtol=0, atol=1e-7)
    torch.testing.assert_close(loss, F.cross_entropy(ref(x), y))  # the loss at w, not at w + e
    with torch.no_grad():
        for p, e in zip(ref.parameters(), expected_e, strict=True):
            p += e
    grads2 = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    for p, w, g2 in zip(model.parameters(), w0, grads2, strict=True):
        torch.testing.assert_close(p.detach(), w - lr * g2, rtol=0, atol=1e-7)


def test_asam_perturbation_scales_weights_by_abs_weight_plus_eta_and_leaves_biases():
    torch.manual_seed(1)
    model = nn.Linear(4, 2)
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    w0, b0 = (p.detach().clone() for p in (model.weight, model.bias))
    seen = []

    def closure() -> torch.Tensor:
        seen.append([p.detach().clone() for p in (model.weight, model.bias)])
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    rho, eta = 0.5, 0.01
    opt = sam(model, **{**RUN, "nesterov": False}, rho=rho, adaptive=True, eta=eta)
    opt.step(closure)
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    gw, gb = torch.autograd.grad(F.cross_entropy(F.linear(x, w, b), y), [w, b])
    t = w0.abs() + eta
    norm = torch.sqrt(((t * gw) ** 2).sum() + (gb**2).sum())
    torch.testing.assert_close(seen[1][0] - w0, rho * t * t * gw / norm, rtol=0, atol=1e-6)
    torch.testing.assert_close(seen[1][1] - b0, rho * gb / norm, rtol=0, atol=1e-6)


def test_sam_runs_two_passes_per_step_and_updates_batchnorm_statistics_once():
    model = tiny()
    counter = {"forward": 0, "backward": 0}
    model.register_forward_hook(lambda *_: counter.__setitem__("forward", counter["forward"] + 1))
    opt = sam(model, **RUN, rho=0.1)
    assert opt.needs_closure and opt.passes_per_step == 2 and isinstance(opt, SAM)
    reference = tiny()
    data = batches(3)
    for step, (x, y) in enumerate(data, start=1):
        reference.load_state_dict(model.state_dict())
        reference.train()
        reference(x)  # one plain forward in train mode at the same weights and batch

        def closure(x=x, y=y) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            counter["backward"] += 1
            return loss

        opt.step(closure)
        assert counter == {"forward": 2 * step, "backward": 2 * step}
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(model.bn, name), getattr(reference.bn, name)), name
        assert model.bn.momentum == 0.1  # restored after the second pass
    assert int(model.bn.num_batches_tracked) == len(data)
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()


# --- schedulers on wrappers ---------------------------------------------------------------------
@pytest.mark.parametrize("name", names("lookahead", "sam", "muon", "lookahead+sam"))
def test_lr_schedulers_drive_wrappers_like_plain_sgd(name):
    def build(model):
        if name == "lookahead+sam":
            return lookahead(model, **RUN, base="sam", k=2)
        return {"lookahead": lookahead, "sam": sam, "muon": muon}[name](model, **RUN)

    model, model2 = tiny(), tiny()
    opt, opt2 = build(model), build(model2)
    n_groups = len(opt.param_groups)
    base_lrs = [g["lr"] for g in opt.param_groups]
    inner = opt.base if hasattr(opt, "base") else opt  # where the base optimizer reads its lr
    factor = lambda step: 1.0 / (1 + step)  # noqa: E731
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    # OneCycleLR on the wrapper and on a plain SGD with as many groups: the same lr and momentum
    plain = torch.optim.SGD(
        [{"params": [torch.zeros(1, requires_grad=True)]} for _ in opt2.param_groups], lr=0.1, momentum=0.9
    )
    cycle = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=0.2, total_steps=8)
    cycle_plain = torch.optim.lr_scheduler.OneCycleLR(plain, max_lr=0.2, total_steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for step, (x, y) in enumerate(batches(6), start=1):
            train_step(model, opt, x, y)
            train_step(model2, opt2, x, y)
            plain.step()
            for scheduler in (lambda_lr, cycle, cycle_plain):
                scheduler.step()
            assert [g["lr"] for g in inner.param_groups] == pytest.approx(
                [b * factor(step) for b in base_lrs]
            )
            assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in plain.param_groups]
            assert [g["momentum"] for g in opt2.param_groups] == [g["momentum"] for g in plain.param_groups]
    assert len(opt.param_groups) == n_groups
    if name == "muon":  # the scheduled lr and momentum reach torch's Muon
        opt2._sync()
        assert opt2.muon.param_groups[0]["lr"] == plain.param_groups[0]["lr"]
        assert opt2.muon.param_groups[0]["momentum"] == plain.param_groups[0]["momentum"]


# --- resume -------------------------------------------------------------------------------------
CONFIGS = {
    "sgd": (sgd, {"bn_bias_lr_scale": 8.0}),
    "adamw": (adamw, {}),
    "lookahead": (lookahead, {"k": 3}),
    "sam": (sam, {}),
    "lookahead+sam": (lookahead, {"k": 3, "base": "sam"}),
    "muon": (muon, {}),
    "sam+muon": (sam, {"base": "muon", "adaptive": True, "rho": 0.5}),
}


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", names(*CONFIGS))
def test_state_dict_round_trip_resumes_bit_for_bit(name):
    factory, params = CONFIGS[name]
    run = {**RUN, "lr": 0.01} if name == "adamw" else RUN
    data = batches(7)

    def fresh():
        model = tiny()
        opt = factory(model, **run, **params)
        return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9**s)

    model, opt, sched = fresh()  # uninterrupted
    for x, y in data:
        train_step(model, opt, x, y)
        sched.step()

    first, opt1, sched1 = fresh()  # interrupted after 4 steps (mid Lookahead cycle)
    for x, y in data[:4]:
        train_step(first, opt1, x, y)
        sched1.step()
    saved = _roundtrip({"model": first.state_dict(), "opt": opt1.state_dict(), "sched": sched1.state_dict()})
    resumed, opt2, sched2 = fresh()
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.param_groups[0]["lr"] == opt1.param_groups[0]["lr"]
    for x, y in data[4:]:
        train_step(resumed, opt2, x, y)
        sched2.step()
    assert weights_equal(model, resumed)

    forgetful, opt3, sched3 = fresh()  # control: the same without the optimizer state differs
    forgetful.load_state_dict(saved["model"])
    sched3.load_state_dict(saved["sched"])
    for x, y in data[4:]:
        train_step(forgetful, opt3, x, y)
        sched3.step()
    assert not weights_equal(model, forgetful)


@NEEDS_MUON
def test_loading_another_optimizers_state_is_a_run_error():
    with pytest.raises(RunError, match="not a lookahead state"):
        lookahead(tiny(), **RUN).load_state_dict(sgd(tiny(), **RUN).state_dict())
    with pytest.raises(RunError, match="not a muon state"):
        muon(tiny(), **RUN).load_state_dict(sam(tiny(), **RUN).state_dict())


# --- mixed precision ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", names("sam", "lookahead+sam", "muon"))
def test_bf16_autocast_trains_with_float32_parameters(name):
    factory, params = CONFIGS[name]
    model = tiny()
    opt = factory(model, **{**RUN, "lr": 0.1}, **params)
    x, y = learnable()
    losses = [float(train_step(model, opt, x, y, amp=True).detach()) for _ in range(25)]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.1 * losses[0], losses
    assert int(model.bn.num_batches_tracked) == 25


# --- Muon ---------------------------------------------------------------------------------------
@NEEDS_MUON
def test_muon_groups_on_resnet20():
    model = cifarbudget.create_model("resnet20")
    opt = muon(model, **RUN)
    assert isinstance(opt, MuonHybrid)
    names = [g.get("name") for g in opt.param_groups]
    assert names == ["muon", "weights", "norm_weights", "norm_biases", "biases"]
    assert len(opt.param_groups[0]["params"]) == 19  # every conv filter
    assert [p.shape for p in opt.param_groups[1]["params"]] == [torch.Size([10, 64])]  # the head
    with_linear = muon(model, **RUN, linear=True)
    assert len(with_linear.param_groups[0]["params"]) == 20
    assert sum(len(g["params"]) for g in with_linear.param_groups) == 59 == len(list(model.parameters()))


@NEEDS_MUON
def test_muon_groups_and_defaults_cannot_be_replaced():
    opt = muon(TinyNet(), **RUN)
    defaults = opt.defaults
    with pytest.raises(AttributeError, match="param_groups cannot be replaced"):
        opt.param_groups = []
    with pytest.raises(AttributeError, match="defaults cannot be replaced"):
        opt.defaults = {}
    assert opt.defaults == defaults and len(opt.param_groups) > 1


@NEEDS_MUON
def test_muon_update_is_torch_muon_on_the_flattened_filter_and_nearly_orthogonal():
    torch.manual_seed(0)
    model = TinyNet()
    opt = muon(model, **{**RUN, "nesterov": False}, muon_lr=1.0, muon_momentum=0.0, muon_nesterov=False)
    # a badly conditioned gradient for conv2 (12 x 8*3*3): singular values spread over 100x
    u, _, vh = torch.linalg.svd(torch.randn(12, 72), full_matrices=False)
    grad = u @ torch.diag(torch.logspace(-1, 1, 12)) @ vh
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.conv2.weight.grad = grad.view(12, 8, 3, 3).clone()
    before = model.conv2.weight.detach().clone()
    head_before = model.head.weight.detach().clone()
    opt.step()
    update = (before - model.conv2.weight.detach()).view(12, 72)

    matrix = nn.Parameter(before.view(12, 72).clone())  # torch's Muon on the matrix itself
    matrix.grad = grad.clone()
    torch.optim.Muon([matrix], lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.0).step()
    assert torch.equal(update, before.view(12, 72) - matrix.detach())

    s = torch.linalg.svdvals(update)
    assert s.max() / s.min() < 2.0  # the gradient's ratio was 100: Newton-Schulz evened them out
    assert float(s.min()) > 0.6 and float(s.max()) < 1.3
    # the head is not Muon's: SGD moved it by lr * weight_decay * w only (zero gradient)
    torch.testing.assert_close(model.head.weight.detach(), head_before * (1 - 0.1 * 5e-4), rtol=0, atol=1e-7)


@NEEDS_MUON
def test_muon_normalize_rescales_each_filter_to_norm_sqrt_out_and_then_takes_the_same_step():
    plain, normed = tiny(), tiny()
    with torch.no_grad():  # filters far from the target norm, one above it and one below
        for m in (plain, normed):
            m.conv.weight.mul_(5.0)
            m.conv2.weight.mul_(0.1)
    kwargs = {**RUN, "nesterov": False, "muon_lr": 0.05, "muon_momentum": 0.0, "muon_nesterov": False}
    opt_plain, opt_normed = muon(plain, **kwargs), muon(normed, **kwargs, muon_normalize=True)
    before = {n: p.detach().clone() for n, p in normed.named_parameters()}
    x, y = batches(1)[0]
    train_step(plain, opt_plain, x, y)
    train_step(normed, opt_normed, x, y)
    after_plain, after_normed = dict(plain.named_parameters()), dict(normed.named_parameters())
    for name, rows in (("conv.weight", 8), ("conv2.weight", 12)):
        w0 = before[name]
        rescaled = w0 * (math.sqrt(rows) / w0.norm())
        torch.testing.assert_close(rescaled.norm(), torch.tensor(math.sqrt(rows)))
        # Muon's step depends on the gradient only (no momentum, no decay), and the gradient was
        # taken before the rescaling: the same step, from the rescaled filter
        step_plain = after_plain[name].detach() - w0
        torch.testing.assert_close(after_normed[name].detach() - rescaled, step_plain, rtol=0, atol=1e-6)
        assert float(step_plain.norm()) > 0.01
    for name in ("bn.weight", "bn.bias", "conv2.bias", "head.weight", "head.bias"):  # SGD's: untouched
        assert torch.equal(after_normed[name], after_plain[name]), name
    # a second step rescales again: the norm that the first update moved is brought back first
    w1 = after_normed["conv2.weight"].detach().clone()
    assert abs(float(w1.norm()) - math.sqrt(12)) > 1e-3
    train_step(normed, opt_normed, x, y)
    moved = after_normed["conv2.weight"].detach() - w1 * (math.sqrt(12) / w1.norm())
    assert float(moved.norm()) < 0.05 * 1.3 * math.sqrt(12)  # one step of lr 0.05: singular values < 1.3


@NEEDS_MUON
def test_muon_head_lr_scale_scales_the_classifier_rate_only():
    model = tiny()
    opt = muon(model, **RUN, bn_bias_lr_scale=64.0, head_lr_scale=10.0)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    lr = RUN["lr"]
    assert rates[id(model.head.weight)] == pytest.approx(10 * lr)  # the classifier: scaled
    assert rates[id(model.bn.bias)] == pytest.approx(64 * lr)  # the norms' and biases' rates: not
    assert rates[id(model.bn.weight)] == pytest.approx(lr)
    assert rates[id(model.head.bias)] == pytest.approx(lr)
    assert rates[id(model.conv2.weight)] == pytest.approx(0.02)  # Muon's filters: muon_lr
    # and the step the classifier takes is ten times the plain one (SGD: linear in lr)
    a, b = tiny(), tiny()
    opt_a, opt_b = muon(a, **RUN), muon(b, **RUN, head_lr_scale=10.0)
    w0 = a.head.weight.detach().clone()
    x, y = batches(1)[0]
    train_step(a, opt_a, x, y)
    train_step(b, opt_b, x, y)
    step_a, step_b = a.head.weight.detach() - w0, b.head.weight.detach() - w0
    assert float(step_a.norm()) > 0
    torch.testing.assert_close(step_b, 10 * step_a, rtol=1e-4, atol=1e-6)  # float32 rounding of w0 + step
    torch.testing.assert_close(b.bn.bias, a.bn.bias, rtol=0, atol=0)


@NEEDS_MUON
def test_muon_channels_last_gives_the_contiguous_update():
    a, b = tiny(), tiny().to(memory_format=torch.channels_last)
    opt_a, opt_b = muon(a, **RUN), muon(b, **RUN)
    x, y = batches(1)[0]
    train_step(a, opt_a, x, y)
    train_step(b, opt_b, x.contiguous(memory_format=torch.channels_last), y)
    assert b.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        # Newton-Schulz runs in bf16: the permuted columns change rounding, not the update
        torch.testing.assert_close(p, q, rtol=0, atol=2e-3)
    assert not torch.equal(a.conv2.weight, tiny().conv2.weight)


# --- learning -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", names(*CONFIGS))
def test_every_builtin_optimizer_learns_a_small_problem(name):
    factory, params = CONFIGS[name]
    x, y = learnable()
    model = tiny()
    run = {**RUN, "lr": 0.01} if name == "adamw" else {**RUN, "lr": 0.05}
    opt = factory(model, **run, **params)
    losses = [float(train_step(model, opt, x, y).detach()) for _ in range(40)]
    assert losses[-1] < 0.1 * losses[0], losses
    x_new, y_new = learnable(512, seed=4)  # held-out images
    with torch.no_grad():
        accuracy = (model.eval()(x_new).argmax(dim=1) == y_new).float().mean()
    assert accuracy > 0.9
