"""Result records without training, shared by the leaderboard, report, identity and budget tests
(a plain module rather than conftest, so that ``tests`` and ``benchmarks`` can be collected together)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from cifarbudget.spec import RunSpec

# --- result records without training: shared by the leaderboard and report tests ----------------
# options of a run that trains in about a second: ``cifarbudget.run("airnet-small", **TINY_RUN)``
TINY_RUN: dict[str, Any] = dict(
    dataset="synthetic", epochs=1, train_subset=64, val_size=32, batch_size=32, progress=False
)
MODELS = {  # trainable parameters and MACs of the real builtin models
    "airnet-small": (292_688, 21_431_552),
    "resnet20": (269_722, 40_551_040),
    "preactresnet18": (11_171_146, 555_422_720),
}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
T1 = 12.706204736174705  # t_{0.975, 1}
T2 = 4.3026527297494639  # t_{0.975, 2}


def make_record(
    model: str = "airnet-small",
    seed: int = 1,
    test_acc: float | None = 0.8,
    *,
    augs: tuple[str, ...] = ("crop-flip",),
    sched: str = "multistep",
    tta: str = "none",
    test_acc_tta: float | None = None,
    val_acc: float | None = None,
    status: str = "finished",
    epochs: int = 3,
    lr: float = 0.1,
    dataset: str = "synthetic",
    train_seconds: float = 10.0,
    images_per_s: float = 500.0,
    error: str | None = None,
    val_split: bool = True,
    data_id: str = "",
) -> dict[str, Any]:
    """A schema-valid ``result.json`` object for one synthetic run (``val_split=False``: trained on
    all images, no validation accuracy)."""
    params, macs = MODELS[model]
    spec = RunSpec(
        model=model,
        dataset=dataset,
        augs=augs,
        sched=sched,
        tta=tta,
        epochs=epochs,
        lr=lr,
        seed=seed,
        allow_over_budget=params >= 5_000_000,
        data_id=data_id,
    )
    within = params < spec.budget
    views = {"none": 1, "flip": 2, "flip-shift": 10}[tta]
    val = test_acc if val_acc is None else val_acc
    done = epochs if status == "finished" else max(1, epochs - 1)
    history = [
        {
            "epoch": e,
            "lr": lr,
            "train_loss": 2.0 / e,
            "train_acc": min(1.0, 0.3 + 0.1 * e),
            "val_loss": 1.5 / e,
            "val_acc": (val or 0.5) * e / epochs,
            "seconds": train_seconds / epochs,
            "images_per_s": images_per_s,
        }
        for e in range(1, done + 1)
    ]
    final: dict[str, Any] = {"tta": tta, "tta_views": 1, "inference_macs": macs}
    if status == "finished":
        correct = round(1000 * (test_acc or 0)) // 10
        matrix = [[correct if i == j else (100 - correct) // 9 for j in range(10)] for i in range(10)]
        if not val_split:
            val = None
            for h in history:
                del h["val_acc"], h["val_loss"]
        final.update(
            val_acc=val,
            val_loss=0.5 if val_split else None,
            best_val_acc=val,
            best_epoch=epochs,
            test_acc=test_acc,
            test_loss=0.6,
            confusion_matrix=matrix,
        )
        if tta != "none":
            final.update(
                test_acc_tta=test_acc_tta, test_loss_tta=0.55, tta_views=views, confusion_matrix_tta=matrix
            )
            final["tta_evals"] = {
                tta: {
                    "val_acc": val,
                    "val_loss": 0.5,
                    "test_acc": test_acc_tta,
                    "test_loss": 0.55,
                    "views": views,
                    "inference_macs": macs * views,
                }
            }
            if test_acc_tta is None:  # a record that predates TTA evaluations
                del final["tta_evals"]
        final["inference_macs_tta"] = macs * final["tta_views"]
    record = {
        "schema": "cifarbudget.result",
        "schema_version": 2,
        "run_id": spec.run_id,
        "status": status,
        "spec": spec.to_dict(),
        "budget": {
            "model": model,
            "params": params,
            "total_params": params,
            "macs": macs,
            "budget": spec.budget,
            "within_budget": within,
            "macs_by_operator": {"conv": macs - 10_000, "linear": 10_000},
        },
        "out_of_budget": not within,
        "data": {
            "dataset": dataset,
            "source": "synthetic",
            "classes": CLASSES,
            "n_train": 512,
            "n_val": 100,
            "n_test": 1000,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
        },
        "pipeline": [{"name": a, "params": {}} for a in augs],
        "history": history,
        "final": final,
        "timing": {
            "train_seconds": train_seconds,
            "train_images_per_s": images_per_s,
            "data_seconds": 0.1,
            "eval_seconds": 0.2,
            "total_seconds": train_seconds + 0.3,
        },
        "manifest": {
            "cifarbudget": "0.1.0",
            "torch": "2.4.0",
            "python": "3.11",
            "git_revision": "abc123",
            "device": "cpu",
            "device_name": "test cpu",
            "seed": seed,
            "started_at": "2025-01-01T00:00:00+00:00",
        },
        "identity": {"version": 2, "config_id": spec.config_id},
        "error": error,
    }
    return record


def write_records(folder: Path, records: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for record in records:
        path = folder / record["run_id"] / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        paths.append(path)
    return paths


# (model, augs, sched, tta) -> per seed (test_acc, test_acc_tta, val_acc, train_seconds)
GRID: dict[tuple[str, tuple[str, ...], str, str], list[tuple[float, float | None, float, float]]] = {
    ("airnet-small", ("crop-flip",), "multistep", "none"): [
        (0.80, None, 0.79, 10.0),
        (0.82, None, 0.81, 12.0),
    ],
    ("airnet-small", ("crop-flip", "cutout"), "multistep", "flip"): [
        (0.83, 0.845, 0.82, 11.0),
        (0.84, 0.86, 0.84, 13.0),
    ],
    ("resnet20", ("crop-flip",), "cosine", "none"): [(0.78, None, 0.77, 20.0), (0.74, None, 0.75, 22.0)],
    ("resnet20", ("crop-flip", "cutout"), "cosine", "flip"): [
        (0.81, 0.82, 0.80, 21.0),
        (0.80, 0.815, 0.79, 23.0),
    ],
}


def grid_records() -> list[dict[str, Any]]:
    records = []
    for (model, augs, sched, tta), seeds in GRID.items():
        for seed, (acc, acc_tta, val, seconds) in enumerate(seeds, start=1):
            records.append(
                make_record(
                    model,
                    seed,
                    acc,
                    augs=augs,
                    sched=sched,
                    tta=tta,
                    test_acc_tta=acc_tta,
                    val_acc=val,
                    train_seconds=seconds,
                    images_per_s=1000.0 / seconds,
                )
            )
    return records


def unranked_records() -> list[dict[str, Any]]:
    return [
        make_record(
            "resnet20",
            3,
            None,
            lr=1e6,
            status="diverged",
            error="loss became non-finite in epoch 2 (lr 1e+06); lower --lr",
        ),
        make_record("preactresnet18", 1, 0.99),  # the most accurate run, but over the 5M budget
        make_record("airnet-small", 3, None, status="running"),
        make_record("resnet20", 4, None, status="failed", error="CUDA out of memory"),
    ]


# --- a 100-class image folder (CIFAR-100 sized heads, tiny images) --------------------------------
def hundred_classes(root: Path, per_class: int = 3) -> Path:
    """An image folder with 100 classes (tiny PNGs), train and test."""
    for split, n in (("train", per_class), ("test", 1)):
        for c in range(100):
            folder = root / split / f"class{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (c * 2, i * 40, 100)).save(folder / f"{i}.png")
    return root


def image_folder(root: Path, shade: int, n_train: int = 30, n_test: int = 10) -> Path:
    """A two-class ImageFolder tree (``train/`` and ``test/``, ``cat`` and ``dog``) of 32x32 PNGs
    whose colours depend on ``shade``: the same ``shade`` gives the same images anywhere."""
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (shade + 40 * c, i, 0)).save(folder / f"{i}.png")
    return root
