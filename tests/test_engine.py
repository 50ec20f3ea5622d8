"""Unit tests of the engine: a step, closures, checkpoints and resume, evaluation, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cifarbudget.augment.pipeline import Compose, soft_targets
from cifarbudget.data.core import DeviceSplit
from cifarbudget.device import resolve
from cifarbudget.engine import (
    Engine,
    TrainPlan,
    confusion_matrix,
    evaluate,
    load_weights,
    read_checkpoint,
    steps_per_epoch,
)
from cifarbudget.errors import RunError

CPU = resolve("cpu", amp=False, channels_last=False)
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def tiny_split(n: int = 96, seed: int = 0) -> DeviceSplit:
    """Images whose class (0..3) is written in their mean brightness: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    base = (labels * 60 + 20).view(n, 1, 1, 1).float()
    images = (base + torch.randn(n, 3, 8, 8, generator=gen) * 10).clamp(0, 255).to(torch.uint8)
    return DeviceSplit.from_tensors(images, labels, torch.device("cpu"), MEAN, STD)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def make_engine(
    tmp_path: Path, *, epochs: int = 2, ema: float = 0.0, seed: int = 0, optimizer=None
) -> Engine:
    torch.manual_seed(seed)
    model = TinyNet()
    train, val = tiny_split(96, seed=1), tiny_split(32, seed=2)
    opt = optimizer(model) if optimizer else torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    steps = steps_per_epoch(len(train), 32)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / (epochs * steps))
    return Engine(
        TrainPlan("tiny", epochs, 32, ema),
        model,
        opt,
        sched,
        train=train,
        val=val,
        pipeline=Compose([], normalize=train.normalize),
        targets=lambda y: soft_targets(y, 4),
        settings=CPU,
        checkpoint=tmp_path / "checkpoint.pt",
        progress=False,
    )


def test_fit_trains_steps_the_schedule_and_records_each_epoch(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, epochs=2)
    before = [p.detach().clone() for p in engine.model.parameters()]
    state = engine.fit()
    assert state.status == "finished" and state.epoch == 2 and len(state.history) == 2
    assert engine.scheduler.last_epoch == 2 * 3  # once per optimizer step: 96 / 32 = 3 steps per epoch
    assert [h["epoch"] for h in state.history] == [1, 2]
    assert state.history[1]["train_loss"] < state.history[0]["train_loss"]
    assert all(not torch.equal(a, b) for a, b in zip(before, engine.model.parameters(), strict=True))
    assert state.history[-1]["val_acc"] == evaluate(engine.model, engine.val_split, CPU)["acc"]


def test_an_optimizer_that_needs_a_closure_gets_one(tmp_path: Path) -> None:
    calls: list[int] = []

    class TwoPass(torch.optim.SGD):
        needs_closure = True

        def step(self, closure):  # type: ignore[override]
            calls.append(1)
            first = closure()
            closure()  # a second forward/backward, as SAM does
            super().step()
            return first

    engine = make_engine(tmp_path, epochs=1, optimizer=lambda m: TwoPass(m.parameters(), lr=0.1))
    state = engine.fit()
    assert state.status == "finished" and len(calls) == 3
    assert state.history[0]["train_loss"] > 0


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_ends(tmp_path: Path) -> None:
    whole = make_engine(tmp_path / "a", epochs=3, ema=0.9)
    whole.fit()

    class Killed(Exception):
        pass

    def kill(state: object) -> None:  # right after epoch 1's checkpoint is written
        raise Killed

    first = make_engine(tmp_path / "b", epochs=3, ema=0.9)
    with pytest.raises(Killed):
        first.fit(on_epoch=kill)
    resumed = make_engine(tmp_path / "b", epochs=3, ema=0.9, seed=123)  # other init: the checkpoint wins
    resumed.load_checkpoint()
    assert resumed.state.epoch == 1
    resumed.fit()
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [h["train_loss"] for h in whole.state.history] == [h["train_loss"] for h in resumed.state.history]


def test_a_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, epochs=1)
    engine.fit()
    data = engine.checkpoint.read_bytes()
    engine.checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="cannot read checkpoint"):
        read_checkpoint(engine.checkpoint)


def test_evaluate_with_and_without_logits(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, epochs=2)
    engine.fit()
    split = tiny_split(50, seed=3)
    plain = evaluate(engine.model, split, CPU, batch_size=16)
    full = evaluate(engine.model, split, CPU, batch_size=16, return_logits=True)
    logits = full["logits"]
    assert "logits" not in plain and logits.shape == (50, 4) and logits.dtype == torch.float32
    assert torch.equal(full["predictions"], logits.argmax(1)) and torch.equal(
        plain["predictions"], full["predictions"]
    )
    expected_acc = (logits.argmax(1) == split.labels).sum().item() / 50
    assert plain["acc"] == pytest.approx(expected_acc, abs=1e-12)
    assert plain["loss"] == pytest.approx(nn.functional.cross_entropy(logits, split.labels).item(), rel=1e-5)
    # unknown labels (-1) count in neither the loss nor the accuracy
    half = DeviceSplit.from_tensors(
        split.images, torch.where(torch.arange(50) < 25, split.labels, -1), split.labels.device, MEAN, STD
    )
    partial = evaluate(engine.model, half, CPU, batch_size=16)
    assert partial["acc"] == pytest.approx((logits[:25].argmax(1) == split.labels[:25]).float().mean().item())
    matrix = confusion_matrix(plain["predictions"], split.labels, 4)
    assert sum(map(sum, matrix)) == 50 and sum(matrix[i][i] for i in range(4)) == round(plain["acc"] * 50)


def test_load_weights_returns_the_evaluated_weights(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, epochs=2, ema=0.5)
    engine.fit()
    raw = load_weights(TinyNet(), engine.checkpoint, run_id="tiny", ema=False)
    averaged = load_weights(TinyNet(), engine.checkpoint, run_id="tiny", ema=True)
    for name, tensor in engine.model.state_dict().items():
        assert torch.equal(raw.state_dict()[name], tensor)
    for name, tensor in engine.ema.module.state_dict().items():
        assert torch.equal(averaged.state_dict()[name], tensor)
    assert not torch.equal(raw.head.weight, averaged.head.weight)
    with pytest.raises(RunError, match="belongs to run tiny"):
        load_weights(TinyNet(), engine.checkpoint, run_id="other")
    with pytest.raises(RunError, match="does not fit"):
        load_weights(nn.Linear(3, 3), engine.checkpoint)
