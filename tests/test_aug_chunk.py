"""Augmenting several training batches at once (``aug_chunk``): ``Compose.batches`` and
``engine.augmented_batches``.

The per-image augmentations and normalisation run once on the chunk; the ones that mix the images
of a batch (``per_image = False``: CutMix, Mixup, any plugin that does not say otherwise) run on
each batch, with that batch's context. One batch is exactly the per-batch call (the same random
draws); a pipeline of deterministic per-image augmentations gives the same batches chunked or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cifarbudget.augment.pipeline import BatchContext, Compose, soft_targets
from cifarbudget.builtin.augmentations import AUGMENTATIONS
from cifarbudget.data.core import DeviceSplit
from cifarbudget.device import resolve
from cifarbudget.engine import augmented_batches
from cifarbudget.errors import RunError
from cifarbudget.plugins import get_registry
from cifarbudget.runner import RunSettings, recorded_run_options, run
from cifarbudget.sweep import Sweep, SweepError

MEAN, STD = [0.5123, 0.4871, 0.4533], [0.25, 0.24, 0.26]  # no uint8 value normalises to exactly 0
BATCH = 16
# a tiny AirNet on synthetic images: a whole run in a few seconds
TINY_RUN: dict[str, Any] = {
    "dataset": "synthetic",
    "batch_size": 32,
    "model_params": {"widths": [8, 16, 16]},
    "progress": False,
}


def split(n: int = 96) -> DeviceSplit:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 12, 12), generator=gen, dtype=torch.uint8)
    return DeviceSplit.from_tensors(images, torch.arange(n) % 10, torch.device("cpu"), MEAN, STD)


def build(data: DeviceSplit, augs: list[tuple[str, dict[str, Any]]]) -> Compose:
    registry = get_registry("augmentations")
    return Compose([registry.create(n, **p) for n, p in augs], [n for n, _ in augs], normalize=data.normalize)


def contexts_for(indices: list[torch.Tensor], epoch: int = 0) -> list[BatchContext]:
    return [BatchContext(epoch=epoch, indices=i) for i in indices]


class Spy:
    """Records the size and context of every call; returns its input (cloned)."""

    wants_context = True

    def __init__(self, per_image: bool, stage: str = "normalized") -> None:
        self.per_image, self.stage, self.calls = per_image, stage, []

    def __call__(self, images, targets, context=None):
        self.calls.append((images.shape[0], None if context is None else context.indices.clone()))
        return images.clone(), targets


# the recipes' pipelines: notebook-style (paper-optimized), a policy, the airbench ones
PIPELINES = {
    "notebook": [
        ("crop-flip", {"padding": 4, "padding_mode": "black"}),
        ("blur", {"sigma": [0.1, 1.5], "p": 0.3, "kernel_size": 11}),
        ("vflip", {"p": 0.05}),
        ("erasing", {"p": 0.5}),
        ("cutmix", {"p": 0.5, "mode": "batch"}),
    ],
    "policy": [("crop-flip", {}), ("randaugment", {}), ("cutout", {}), ("mixup", {"p": 1.0})],
    "airbench": [("crop-flip", {"flip": False, "padding": 2}), ("flip-alternating", {"seed": 3})],
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_one_batch_is_exactly_the_per_batch_call(name: str) -> None:
    data = split()
    pipe = build(data, PIPELINES[name])
    idx = torch.arange(BATCH)
    images, targets = data.images[idx], soft_targets(data.labels[idx], 10)
    torch.manual_seed(5)
    expected = pipe(images, targets, BatchContext(epoch=1, indices=idx))
    torch.manual_seed(5)
    (got,) = list(pipe.batches(images, targets, contexts_for([idx], epoch=1)))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_deterministic_per_image_augmentations_give_the_same_batches_chunked() -> None:
    """vflip with p=1 and the alternating flip are functions of each image (and its index and the
    epoch): running them on three batches at once gives exactly the batches one at a time."""
    data = split()
    pipe = build(data, [("vflip", {"p": 1.0}), ("flip-alternating", {"seed": 7})])
    assert pipe.chunkable() == 1  # vflip moves before normalisation (stage "any"); both run on the chunk
    indices = list(torch.randperm(96, generator=torch.Generator().manual_seed(1)).split(BATCH))[:3]
    idx = torch.cat(indices)
    chunked = list(
        pipe.batches(data.images[idx], soft_targets(data.labels[idx], 10), contexts_for(indices, 3))
    )
    for i, (x, t) in zip(indices, chunked, strict=True):
        ex, et = pipe(data.images[i], soft_targets(data.labels[i], 10), BatchContext(epoch=3, indices=i))
        assert torch.equal(x, ex) and torch.equal(t, et)


def test_per_image_augmentations_run_once_on_the_chunk_and_mixing_ones_per_batch() -> None:
    data = split()
    head, mixing, after = Spy(per_image=True), Spy(per_image=False), Spy(per_image=True)
    pipe = Compose([head, mixing, after], ["head", "mix", "after"], normalize=data.normalize)
    assert pipe.chunkable() == 1  # the per-image one after a mixing one runs per batch too
    indices = [torch.arange(0, 16), torch.arange(40, 56), torch.arange(80, 90)]  # the last batch is short
    idx = torch.cat(indices)
    out = list(pipe.batches(data.images[idx], soft_targets(data.labels[idx], 10), contexts_for(indices)))
    assert [x.shape[0] for x, _ in out] == [16, 16, 10]
    assert [n for n, _ in head.calls] == [42] and torch.equal(head.calls[0][1], idx)
    for spy in (mixing, after):
        assert [n for n, _ in spy.calls] == [16, 16, 10]
        assert all(torch.equal(got, i) for (_, got), i in zip(spy.calls, indices, strict=True))


def test_a_mixing_augmentation_before_normalisation_keeps_everything_per_batch() -> None:
    data = split()
    early = Spy(per_image=False, stage="uint8")
    late = Spy(per_image=True)
    pipe = Compose([early, late], ["early", "late"], normalize=data.normalize)
    assert pipe.chunkable() == -1
    indices = [torch.arange(0, 16), torch.arange(16, 32)]
    idx = torch.cat(indices)
    list(pipe.batches(data.images[idx], soft_targets(data.labels[idx], 10), contexts_for(indices)))
    assert [n for n, _ in early.calls] == [16, 16] and [n for n, _ in late.calls] == [16, 16]


def test_which_builtins_are_per_image() -> None:
    """Every builtin transforms each image on its own except the two that mix images of a batch."""
    registry = get_registry("augmentations")
    mixing = {name for name in AUGMENTATIONS if not getattr(registry.create(name), "per_image", False)}
    assert mixing == {"cutmix", "mixup"}, mixing


def test_batches_refuses_contexts_that_do_not_cover_the_chunk() -> None:
    data = split()
    pipe = build(data, PIPELINES["airbench"])
    images, targets = data.images[:32], soft_targets(data.labels[:32], 10)
    with pytest.raises(RunError, match="cover 16 images, the chunk has 32"):
        list(pipe.batches(images, targets, contexts_for([torch.arange(16)])))
    with pytest.raises(RunError, match="needs its indices"):
        list(pipe.batches(images, targets, [BatchContext(), BatchContext()]))


@pytest.mark.parametrize("chunk", [2, 4, 100])
def test_engine_batches_are_the_same_batches_in_the_same_order(chunk: int) -> None:
    """Chunked or not, an epoch is the same shuffled batches (the permutation is drawn first); with a
    deterministic pipeline the same images too; the short last batch stays."""
    data = split(90)
    pipe = build(data, [("vflip", {"p": 1.0}), ("flip-alternating", {"seed": 1})])

    def epoch(c: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        torch.manual_seed(11)
        targets = lambda y: soft_targets(y, 10)  # noqa: E731
        return list(augmented_batches(data, pipe, targets, BATCH, epoch=2, drop_last=False, chunk=c))

    plain, chunked = epoch(1), epoch(chunk)
    assert [len(y) for y, _, _ in chunked] == [16] * 5 + [10]
    for (y0, x0, t0), (y1, x1, t1) in zip(plain, chunked, strict=True):
        assert torch.equal(y0, y1) and torch.equal(x0, x1) and torch.equal(t0, t1)


def test_engine_chunks_keep_the_distribution_of_a_random_augmentation() -> None:
    """Erasing with p=0.5 on 40 chunks of 4 batches: about half of the images are erased, as per batch."""
    data = split(64)
    pipe = build(data, [("erasing", {"p": 0.5, "mode": "const"})])
    torch.manual_seed(0)
    erased = total = 0
    for _ in range(40):
        for _, x, _ in augmented_batches(
            data, pipe, lambda y: soft_targets(y, 10), BATCH, epoch=0, drop_last=True, chunk=4
        ):
            erased += int((x == 0).flatten(1).any(dim=1).sum())
            total += x.shape[0]
    assert total == 40 * 64
    assert abs(erased / total - 0.5) < 0.04  # 4 sigma of a binomial(2560, 0.5) is 0.04


def test_a_run_with_chunks_records_the_setting_and_keeps_its_identity(tmp_path: Path) -> None:
    common = {**TINY_RUN, "train_subset": 256, "epochs": 1, "augs": ("crop-flip", "cutmix")}
    chunked = run("airnet-small", results_dir=tmp_path / "a", aug_chunk=4, **common)
    plain = run("airnet-small", results_dir=tmp_path / "b", **common)
    assert chunked.status == plain.status == "finished"
    assert chunked.run_id == plain.run_id  # how the batches were augmented is not what is trained
    record = json.loads((tmp_path / "a" / chunked.run_id / "result.json").read_text())
    assert record["manifest"]["engine"]["aug_chunk"] == 4
    assert (
        json.loads((tmp_path / "b" / plain.run_id / "result.json").read_text())["manifest"]["engine"][
            "aug_chunk"
        ]
        == 1
    )


class _Halt(BaseException):
    """Stops a run after its first epoch, as a kill would (the checkpoint and record are written)."""


class HaltAfterFirstEpoch:
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        raise _Halt


def test_rerun_from_a_record_and_resume_keep_or_report_the_chunk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = {**TINY_RUN, "train_subset": 128, "epochs": 2, "results_dir": tmp_path}
    with pytest.raises(_Halt):
        run("airnet-small", aug_chunk=2, callbacks=(HaltAfterFirstEpoch(),), **common)
    run_dir = next(tmp_path.iterdir())
    _, settings = recorded_run_options(run_dir)
    assert settings["aug_chunk"] == 2  # run --from draws the batches as the recorded run did
    with caplog.at_level("WARNING", logger="cifarbudget"):
        resumed = run("airnet-small", **common)  # resumed with the default, 1
    assert resumed.status == "finished" and resumed.manifest["resumed_at_epoch"] == 1
    assert "resuming with --aug-chunk 1 after starting with 2" in caplog.text
    assert resumed.manifest["segments"][0]["engine"]["aug_chunk"] == 2


def test_a_bad_chunk_is_one_line_before_any_work(invoke) -> None:
    with pytest.raises(RunError, match="--aug-chunk must be a whole number of batches >= 1, got 0"):
        RunSettings(aug_chunk=0)
    with pytest.raises(RunError, match="got 0"):
        resolve("cpu", aug_chunk=0)
    with pytest.raises(SweepError, match="aug_chunk must be at least 1"):
        Sweep.from_options(fixed={"model": "resnet20"}, aug_chunk=0)
    result = invoke(["run", "resnet20", "--dataset", "synthetic", "--aug-chunk", "0"])
    assert result.exit_code == 2 and "--aug-chunk" in result.output
