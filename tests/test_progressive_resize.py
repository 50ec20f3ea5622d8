"""Progressive resizing (``progressive-resize``): its defining property, and that the training
compute it saves is counted at the size each epoch trains at, before training and in the record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import Result

from cifarbudget.api import create_model
from cifarbudget.augment.pipeline import BatchContext
from cifarbudget.augment.resize import ProgressiveResize
from cifarbudget.budget import count_macs, count_macs_at
from cifarbudget.compute import TRAIN_FACTOR, epoch_input_sizes, planned_training
from cifarbudget.errors import RunError
from cifarbudget.spec import RunSpec

Invoke = Callable[..., Result]


def test_the_first_epochs_train_on_downscaled_images_and_the_rest_on_the_originals() -> None:
    aug = ProgressiveResize(size=16, epochs=2)
    images = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    targets = torch.eye(4)
    for epoch in (0, 1):
        out, t = aug(images, targets, context=BatchContext(epoch=epoch))
        assert out.shape == (4, 3, 16, 16) and t is targets
        expected = F.interpolate(images, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
        torch.testing.assert_close(out, expected)
        assert out.is_contiguous(memory_format=torch.channels_last)  # the engine's layout is kept
    out, t = aug(images, targets, context=BatchContext(epoch=2))
    assert out is images and t is targets  # full resolution: the batch passes through untouched
    assert [aug.input_size(e) for e in range(4)] == [16, 16, None, None]


def test_downscaling_averages_rather_than_aliases() -> None:
    # a 1-pixel checkerboard has mean 0: an antialiased halving keeps it near 0 everywhere,
    # plain subsampling would keep one colour of the board
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    images = board.expand(1, 3, 32, 32).clone()
    out, _ = ProgressiveResize(size=16, epochs=1)(images, torch.ones(1, 1), context=BatchContext(epoch=0))
    assert out.abs().max() < 0.05


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"size": 4}, "size must be a whole number of pixels"),
        ({"epochs": -1}, "epochs must be a whole number"),
    ],
)
def test_bad_parameters_are_one_line_errors(params: dict[str, int], message: str) -> None:
    with pytest.raises(RunError, match=message):
        ProgressiveResize(**params)


def _spec(**kw: object) -> RunSpec:
    base: dict[str, object] = {
        "model": "resnet20",
        "dataset": "synthetic",
        "augs": ("crop-flip", "progressive-resize"),
        "aug_params": {"progressive-resize": {"size": 16, "epochs": 1}},
        "epochs": 3,
        "batch_size": 64,
        "val_size": 0,
    }
    base.update(kw)
    return RunSpec(**base)  # type: ignore[arg-type]


def test_planned_compute_counts_each_epoch_at_its_input_size(single_thread: None) -> None:
    spec = _spec()
    assert epoch_input_sizes(spec) == [16, None, None]
    model = create_model("resnet20", num_classes=10)
    at32, at16 = count_macs(model)[0], count_macs_at(model, 16)
    assert at16 < 0.3 * at32  # a quarter of the area: about a quarter of the MACs
    plan = planned_training(spec, at32, 640)
    assert plan["forward_macs_per_epoch"] == [at16, at32, at32]
    assert plan["train_macs"] == TRAIN_FACTOR * 640 * (at16 + 2 * at32)
    assert "forward_macs_per_epoch" not in planned_training(_spec(augs=("crop-flip",)), at32, 640)


def test_a_model_that_cannot_take_the_smaller_images_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(model: torch.nn.Module, size: int) -> int:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x256 and 1024x10)\nmore")

    monkeypatch.setattr("cifarbudget.budget.count_macs_at", fail)
    with pytest.raises(RunError) as err:  # a size no other test counts: nothing cached
        planned_training(_spec(aug_params={"progressive-resize": {"size": 13, "epochs": 1}}), 1, 640)
    assert "resnet20 cannot train on 13x13 images" in str(err.value) and "\n" not in str(err.value)


def test_a_resized_run_trains_at_the_planned_sizes_and_records_the_compute_it_spent(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cifarbudget.engine import Engine

    seen: dict[int, set[int]] = {}
    step = Engine._step

    def recording_step(
        self: Engine, x: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seen.setdefault(self.state.epoch, set()).add(x.shape[-1])
        return step(self, x, targets)

    monkeypatch.setattr(Engine, "_step", recording_step)
    model = create_model("resnet20", num_classes=10)
    at32, at16 = count_macs(model)[0], count_macs_at(model, 16)
    exact = TRAIN_FACTOR * 256 * (at16 + at32)  # 256 training images per epoch, 2 epochs
    tiny = ["--dataset", "synthetic", "--train-subset", "256", "--val-size", "64", "--batch-size", "64"]
    runs = str(tmp_path / "runs")
    args = ["run", "resnet20", *tiny, "--epochs", "2", "--results-dir", runs, "--quiet", "--compute-budget"]
    # the same 2 epochs at full resolution are over that budget: refused before training
    refused = invoke([*args, str(exact)])
    assert refused.exit_code == 3 and "> compute budget" in refused.stderr, refused.output
    resized = ["--aug", "crop-flip+progressive-resize", "--aug-param", "progressive-resize.size=16"]
    out = invoke([*args, str(exact), *resized, "--aug-param", "progressive-resize.epochs=1"])
    assert out.exit_code == 0, out.output
    assert seen == {0: {16}, 1: {32}}
    (record,) = [json.loads(p.read_text()) for p in Path(runs).glob("*/result.json")]
    compute = record["compute"]
    assert compute["forward_macs_per_epoch"] == [at16, at32]
    assert compute["train_macs"] == compute["planned_train_macs"] == exact
    assert compute["forward_macs"] == record["budget"]["macs"] == at32  # the model's own 32x32 count


def test_the_cpu_time_estimate_counts_the_cheaper_epochs_and_sams_second_pass(single_thread: None) -> None:
    from cifarbudget.budget import check_budget
    from cifarbudget.runner import CPU_MACS_PER_SECOND, cpu_training_seconds

    spec, report = _spec(), check_budget("resnet20")
    expected = planned_training(spec, report.macs, 640)["train_macs"] / CPU_MACS_PER_SECOND  # one thread
    assert cpu_training_seconds(spec, report, 640) == pytest.approx(expected)
    # 3 full epochs against 2 and one at a quarter of the area
    assert cpu_training_seconds(_spec(augs=("crop-flip",)), report, 640) > 1.3 * expected
    assert cpu_training_seconds(_spec(optimizer="sam"), report, 640) == pytest.approx(2 * expected)
