"""One run from a checked spec to its record: data on the device, engine, final evaluation, files.

Called by :func:`cifarbudget.runner.run` after the spec, names and budget have been checked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cifarbudget.budget import BudgetReport
from cifarbudget.data.core import DeviceSplit, default_data_dir, normalization_stats, stratified_split, subset
from cifarbudget.engine import CHECKPOINT, Engine, EngineOptions, TrainState, evaluate
from cifarbudget.errors import DataError, RunError
from cifarbudget.plugins import get_registry
from cifarbudget.results import RunResult, load_result, manifest, now
from cifarbudget.spec import RunSpec


def _load_splits(spec: RunSpec, data_dir: Path | None, download: bool) -> tuple[Any, Any]:
    factory = get_registry("datasets").get(spec.dataset).factory
    root = data_dir or default_data_dir()
    train = factory(root, train=True, download=download)
    test = factory(root, train=False, download=download)
    for split in (train, test):
        if not hasattr(split, "images") or not hasattr(split, "labels") or not hasattr(split, "classes"):
            raise DataError(f"dataset {spec.dataset!r} returned {type(split).__name__}, not a split")
    if list(train.classes) != list(test.classes):
        raise DataError(f"dataset {spec.dataset!r}: train and test splits have different classes")
    return train, test


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n: int) -> list[list[int]]:
    flat = labels.cpu() * n + predictions.cpu()
    return torch.bincount(flat, minlength=n * n).view(n, n).tolist()


def train_run(
    spec: RunSpec,
    report: BudgetReport,
    *,
    run_dir: Path,
    data_dir: Path | None,
    download: bool,
    device: torch.device,
    amp: bool | None,
    channels_last: bool | None,
    compile: bool,
    progress: bool,
    say: Callable[[str], None],
) -> RunResult:
    from cifarbudget.api import create_model
    from cifarbudget.augment.pipeline import Compose, soft_targets
    from cifarbudget.plots import plot_confusion, plot_curves
    from cifarbudget.runner import estimate_cpu_seconds, warn_cpu

    started = time.perf_counter()
    options = EngineOptions(
        device=device,
        amp=device.type == "cuda" if amp is None else amp,
        # channels_last: faster on CUDA, and on CPU (oneDNN) for the CIFAR nets measured: resnet20
        # trains 1.10-1.34x and wrn16-4 1.08-1.10x faster on 2 idle AMD EPYC cores (docs/performance.md).
        channels_last=device.type in ("cuda", "cpu") if channels_last is None else channels_last,
        compile=compile,
        progress=progress,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # -- data ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    train_full, test = _load_splits(spec, data_dir, download)
    # 5,000 of CIFAR's 50,000 is 10%; smaller datasets keep 10% so that most data still trains.
    val_size = min(spec.val_size, len(train_full) // 10)
    train_idx, val_idx = stratified_split(train_full.labels, val_size, spec.seed)
    if spec.train_subset:
        if spec.train_subset > len(train_idx):
            raise RunError(
                f"--train-subset {spec.train_subset} exceeds the {len(train_idx)} training images left"
            )
        gen = torch.Generator().manual_seed(spec.seed + 1)
        train_idx = (
            train_idx[torch.randperm(len(train_idx), generator=gen)[: spec.train_subset]].sort().values
        )
    train_split, val_split = subset(train_full, train_idx), subset(train_full, val_idx)
    classes = list(train_full.classes)
    num_classes = spec.num_classes or len(classes)
    mean, std = normalization_stats(train_split.images)
    to_device = lambda s: DeviceSplit.from_split(s, device, mean, std, options.channels_last)  # noqa: E731
    train_d, val_d, test_d = to_device(train_split), to_device(val_split), to_device(test)
    data_seconds = time.perf_counter() - t0
    data_info = {
        "dataset": spec.dataset,
        "source": getattr(train_full, "source", ""),
        "classes": classes,
        "n_train": len(train_split),
        "n_val": len(val_split),
        "n_test": len(test),
        "val_indices_sha256": _digest(val_idx),
        "mean": mean,
        "std": std,
    }
    if device.type == "cpu" and progress:
        warn_cpu(estimate_cpu_seconds(report.macs, len(train_split), spec.epochs))

    # -- model, pipeline, engine --------------------------------------------------------------
    torch.manual_seed(spec.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(spec.seed)
    model = create_model(spec.model, num_classes=num_classes)
    aug_registry = get_registry("augmentations")
    augs = [aug_registry.create(name, **spec.aug_params.get(name, {})) for name in spec.augs]
    pipeline = Compose(augs)
    pipeline_info = [
        {"name": name, "params": aug.params() if hasattr(aug, "params") else {}}
        for name, aug in zip(spec.augs, augs, strict=True)
    ]
    engine = Engine(
        spec,
        model,
        train_d,
        val_d if len(val_d) else None,
        pipeline,
        lambda y: soft_targets(y, num_classes, spec.label_smoothing),
        get_registry("schedulers").get(spec.sched).factory,
        options,
        run_dir,
    )
    result = RunResult(
        run_id=spec.run_id,
        status="running",
        spec=spec.to_dict(),
        budget=report.to_dict(),
        out_of_budget=not report.within_budget,
        data=data_info,
        pipeline=pipeline_info,
        manifest=manifest(device, spec.seed),
    )
    # how the numbers were computed (not part of the run id): predict mirrors these to match exactly
    result.manifest["engine"] = {
        "amp": options.amp,
        "channels_last": options.channels_last,
        "compile": options.compile,
    }
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists():
        try:
            engine.load_checkpoint(checkpoint)
        except Exception as exc:
            raise RunError(
                f"cannot resume {spec.run_id}: its checkpoint is unreadable ({type(exc).__name__}); rerun with --restart"
            ) from None
        with contextlib.suppress(Exception):  # the previous record is informative only
            result.manifest["started_at"] = load_result(run_dir).manifest.get(
                "started_at", result.manifest["started_at"]
            )
        result.manifest["resumed_at_epoch"] = engine.state.epoch
        say(f"{spec.run_id}: resuming after epoch {engine.state.epoch} of {spec.epochs}")
    else:
        say(f"{spec.run_id}: {spec.describe()}")

    def record(state: TrainState) -> None:
        result.status = "running" if state.status == "finished" else state.status
        result.history = state.history
        result.timing = {"train_seconds": state.train_seconds, "data_seconds": data_seconds}
        result.save(run_dir)

    result.save(run_dir)
    state = engine.fit(on_epoch=record)

    # -- final evaluation: validation (selection) and the test split, once ---------------------
    t_eval = time.perf_counter()
    final: dict[str, Any] = {"tta": spec.tta, "tta_views": 1, "inference_macs": report.macs}
    if state.status == "finished":
        eval_model = engine.eval_model
        if len(val_d):
            val = evaluate(eval_model, val_d, options)
            best = max(state.history, key=lambda h: h.get("val_acc", -1))
            final.update(
                val_acc=val["acc"],
                val_loss=val["loss"],
                best_val_acc=best.get("val_acc"),
                best_epoch=best.get("epoch"),
            )
        plain = evaluate(eval_model, test_d, options)
        final.update(
            test_acc=plain["acc"],
            test_loss=plain["loss"],
            confusion_matrix=confusion_matrix(plain["predictions"], test_d.labels, num_classes),
        )
        if spec.tta != "none":
            policy = get_registry("tta").create(spec.tta)
            views = int(getattr(policy, "n_views", 1))
            with_tta = evaluate(eval_model, test_d, options, tta=policy)
            final.update(
                test_acc_tta=with_tta["acc"],
                test_loss_tta=with_tta["loss"],
                tta_views=views,
                confusion_matrix_tta=confusion_matrix(with_tta["predictions"], test_d.labels, num_classes),
            )
        final["inference_macs_tta"] = report.macs * final["tta_views"]
    eval_seconds = time.perf_counter() - t_eval

    images = sum(h.get("images_per_s", 0) * h.get("seconds", 0) for h in state.history)
    result.status = state.status
    result.history = state.history
    result.final = final
    result.timing = {
        "train_seconds": state.train_seconds,
        "train_images_per_s": images / state.train_seconds if state.train_seconds else 0.0,
        "data_seconds": data_seconds,
        "eval_seconds": eval_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    result.manifest["finished_at"] = now()
    if state.status == "diverged":
        result.error = f"loss became non-finite in epoch {state.epoch} (lr {spec.lr:g}); lower --lr"
    result.save(run_dir)

    title = (
        f"{spec.model} | {'+'.join(spec.augs) or 'no aug'} | {spec.sched} | {spec.epochs} ep | {spec.dataset}"
    )
    plot_curves(state.history, run_dir / "curves.png", title)
    matrix = final.get("confusion_matrix_tta") or final.get("confusion_matrix")
    if matrix:
        acc = final.get("test_acc_tta") or final.get("test_acc")
        plot_confusion(matrix, classes, run_dir / "confusion.png", f"{title}\ntest accuracy {acc:.4f}")
    return result


def _digest(indices: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(indices.cpu().numpy().astype("int64").tobytes()).hexdigest()[:16]
