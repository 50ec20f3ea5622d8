"""Tests of the builtin learning-rate schedules: their per-step LR traces, warmup and resume.

Every schedule registered through ``cifarbudget_register_schedulers`` is checked through the
registry (parametrized over all names).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result
from torch.optim.lr_scheduler import LRScheduler

import cifarbudget
from cifarbudget.builtin.schedulers import SCHEDULERS
from cifarbudget.errors import CifarBudgetError
from cifarbudget.schedules import constant, cosine, multistep, onecycle

SCHED_NAMES = cifarbudget.get_registry("schedulers").names()
PEAK = 0.1
Factory = Callable[..., LRScheduler]


def make_optimizer(lr: float = PEAK) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9, weight_decay=5e-4)


def trace(factory: Factory, epochs: int, steps_per_epoch: int, **params: object) -> list[float]:
    """The LR used by each of the ``epochs * steps_per_epoch`` optimizer steps."""
    opt = make_optimizer()
    sched = factory(opt, epochs=epochs, steps_per_epoch=steps_per_epoch, **params)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


# --- the registry ---------------------------------------------------------------------------------
def test_every_builtin_is_registered_through_the_hook() -> None:
    """``cifarbudget_register_schedulers`` adds every builtin schedule, with a description."""
    registry = cifarbudget.get_registry("schedulers")
    assert {"multistep", "cosine", "onecycle", "constant"} <= set(registry.names())
    for name in SCHEDULERS:
        entry = registry.get(name)
        assert entry.plugin == "cifarbudget.builtin.schedulers"
        assert entry.description


@pytest.mark.parametrize("name", SCHED_NAMES)
def test_registered_scheduler_honours_the_contract(name: str) -> None:
    opt = make_optimizer()
    sched = cifarbudget.get_registry("schedulers").create(name, opt, epochs=3, steps_per_epoch=7)
    assert isinstance(sched, LRScheduler)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warnings when stepped exactly as the engine does
        for _ in range(21):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    assert max(lrs) == pytest.approx(PEAK)  # the optimizer's lr is the peak
    assert all(0 <= lr <= PEAK * (1 + 1e-9) for lr in lrs)


@pytest.mark.parametrize("name", SCHED_NAMES)
def test_registered_scheduler_accepts_warmup(name: str) -> None:
    lrs = trace(cifarbudget.get_registry("schedulers").get(name).factory, 10, 4, warmup_epochs=2)
    assert lrs[0] < 0.2 * PEAK
    assert all(a < b for a, b in itertools.pairwise(lrs[:9]))  # rising through the warmup
    assert lrs[8] == pytest.approx(PEAK, rel=1e-6)  # peak at the end of the 8 warmup steps


@pytest.mark.parametrize("name", SCHED_NAMES)
def test_registered_scheduler_resumes_exactly_from_its_state_dict(name: str) -> None:
    factory = cifarbudget.get_registry("schedulers").get(name).factory
    full = trace(factory, 6, 5, warmup_epochs=1)
    opt = make_optimizer()
    sched = factory(opt, epochs=6, steps_per_epoch=5, warmup_epochs=1)
    lrs = []
    for _ in range(13):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    state = {"opt": opt.state_dict(), "sched": sched.state_dict()}
    # a fresh optimizer and scheduler, as the engine builds them on resume
    opt = make_optimizer()
    sched = factory(opt, epochs=6, steps_per_epoch=5, warmup_epochs=1)
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    for _ in range(30 - 13):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(full, rel=1e-12)


# --- multistep ------------------------------------------------------------------------------------
def test_multistep_is_the_papers_multisteplr_50_75() -> None:
    lrs = trace(multistep, 100, 1)
    assert lrs[:50] == pytest.approx([0.1] * 50)
    assert lrs[50:75] == pytest.approx([0.01] * 25)
    assert lrs[75:] == pytest.approx([0.001] * 25)


def test_multistep_milestones_fall_on_epoch_boundaries() -> None:
    lrs = trace(multistep, 4, 3)  # milestones at epochs 2 and 3 -> steps 6 and 9
    assert lrs == pytest.approx([0.1] * 6 + [0.01] * 3 + [0.001] * 3)
    lrs = trace(multistep, 10, 2, milestones=[0.3], gamma=0.5)  # epoch 3 -> step 6
    assert lrs == pytest.approx([0.1] * 6 + [0.05] * 14)


def test_multistep_matches_torch_multisteplr_stepped_per_epoch() -> None:
    epochs, steps = 20, 3
    opt = make_optimizer()
    reference = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10, 15], gamma=0.1)
    per_epoch = []
    for _ in range(epochs):
        per_epoch += [opt.param_groups[0]["lr"]] * steps
        opt.step()
        reference.step()
    assert trace(multistep, epochs, steps) == pytest.approx(per_epoch)


# --- cosine ---------------------------------------------------------------------------------------
def test_cosine_decays_monotonically_to_zero() -> None:
    lrs = trace(cosine, 50, 4)
    assert lrs[0] == pytest.approx(PEAK)
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] < 1e-4 * PEAK
    assert lrs[100] == pytest.approx(PEAK / 2)  # half way
    assert lrs[-1] == pytest.approx(PEAK * 0.5 * (1 + math.cos(math.pi * 199 / 200)))


def test_cosine_min_lr_factor_and_warmup() -> None:
    lrs = trace(cosine, 20, 5, min_lr_factor=0.1, warmup_epochs=2)
    assert lrs[:10] == pytest.approx([PEAK * (k + 1) / 11 for k in range(10)])
    assert lrs[10] == pytest.approx(PEAK)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] > 0.1 * PEAK and lrs[-1] == pytest.approx(0.1 * PEAK, rel=1e-2)


def test_cosine_per_epoch_matches_torch_cosineannealinglr_stepped_per_epoch() -> None:
    """The reference paper's notebook: CosineAnnealingLR(T_max=epochs), one step per epoch."""
    epochs, steps = 12, 3
    opt = make_optimizer()
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    per_epoch = []
    for _ in range(epochs):
        per_epoch += [opt.param_groups[0]["lr"]] * steps
        opt.step()
        reference.step()
    assert trace(cosine, epochs, steps, per_epoch=True) == pytest.approx(per_epoch)
    assert trace(cosine, epochs, steps) != pytest.approx(per_epoch)  # the default moves every step


def test_cosine_per_epoch_holds_each_epoch_after_a_warmup_ending_mid_epoch() -> None:
    """4 epochs of 4 steps, warmup 0.5 epoch (W = 2): warmup ramp, the rest of epoch 0 at the peak,
    then one LR per epoch, at ``(1 + cos(pi * (4e - 2) / 14)) / 2`` of the peak."""
    lrs = trace(cosine, 4, 4, per_epoch=True, warmup_epochs=0.5)
    assert lrs[:4] == pytest.approx([PEAK / 3, 2 * PEAK / 3, PEAK, PEAK])
    for epoch in (1, 2, 3):
        held = lrs[4 * epoch : 4 * epoch + 4]
        assert held == pytest.approx([held[0]] * 4)  # no change inside an epoch
        assert held[0] == pytest.approx(PEAK * (1 + math.cos(math.pi * (4 * epoch - 2) / 14)) / 2)
    # with a warmup of whole epochs, the same as before: the decay starts at the boundary
    whole = trace(cosine, 4, 4, per_epoch=True, warmup_epochs=1)
    assert whole[4:] == pytest.approx(
        [PEAK * (1 + math.cos(math.pi * (4 * e - 4) / 12)) / 2 for e in (1, 2, 3) for _ in range(4)]
    )


# --- onecycle -------------------------------------------------------------------------------------
def test_onecycle_peaks_at_pct_start() -> None:
    lrs = trace(onecycle, 10, 10)  # T = 100, pct_start = 0.3: peak at step 29
    assert max(range(100), key=lrs.__getitem__) == 29
    assert lrs[29] == pytest.approx(PEAK)
    assert lrs[0] == pytest.approx(PEAK / 25)
    assert lrs[-1] == pytest.approx(PEAK / 25 / 1e4, rel=1e-3)
    assert all(a < b for a, b in itertools.pairwise(lrs[:30]))
    assert all(a > b for a, b in itertools.pairwise(lrs[29:]))


def test_onecycle_linear_triangle_and_momentum() -> None:
    opt = make_optimizer()
    sched = onecycle(opt, epochs=4, steps_per_epoch=5, pct_start=0.5, anneal_strategy="linear")
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[0]["momentum"] == 0.9  # left alone by default
        opt.step()
        sched.step()
    ups = [b - a for a, b in itertools.pairwise(lrs[:10])]
    assert ups == pytest.approx([ups[0]] * 9)  # a straight line up to the peak at step 9
    assert lrs[9] == pytest.approx(PEAK)
    opt = make_optimizer()
    onecycle(opt, epochs=4, steps_per_epoch=5, cycle_momentum=True)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)


# --- constant and errors --------------------------------------------------------------------------
def test_constant_with_and_without_warmup() -> None:
    assert trace(constant, 3, 4) == pytest.approx([PEAK] * 12)
    assert trace(constant, 3, 4, warmup_epochs=0.5) == pytest.approx([PEAK / 3, 2 * PEAK / 3] + [PEAK] * 10)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (multistep, {"milestones": [50, 75]}, "fractions"),
        (cosine, {"warmup_epochs": 10}, "warmup_epochs"),
        (cosine, {"min_lr_factor": 2.0}, "min_lr_factor"),
        (constant, {"warmup_epochs": -1}, "warmup_epochs"),
        (onecycle, {"anneal_strategy": "exp"}, "anneal_strategy"),
    ],
)
def test_bad_params_are_user_errors(factory: Factory, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CifarBudgetError, match=message):
        factory(make_optimizer(), epochs=10, steps_per_epoch=2, **kwargs)
    with pytest.raises(CifarBudgetError, match="epochs"):
        factory(make_optimizer(), epochs=0, steps_per_epoch=2)


def test_a_schedule_the_run_cannot_have_is_refused_before_any_data(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'onecycle' over 2 steps (256 images, batch 256, 2 epochs) fails with one line, before decoding."""
    monkeypatch.setattr("cifarbudget.runner.load_splits", lambda *a, **k: pytest.fail("data were decoded"))
    args = ["run", "airnet-small", "--dataset", "synthetic", "--train-subset", "256", "--batch-size", "256"]
    out = invoke([*args, "--epochs", "2", "--sched", "onecycle", "--results-dir", f"{tmp_path}/runs"])
    assert out.exit_code == 1, out.output  # a run error
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["Error: scheduler 'onecycle': needs at least 3 optimizer steps, the run has 2"], lines
    monkeypatch.undo()
    ok = invoke(
        [*args, "--epochs", "3", "--sched", "onecycle", "--results-dir", f"{tmp_path}/runs", "--quiet"]
    )
    assert ok.exit_code == 0, ok.output  # 3 steps: trains
