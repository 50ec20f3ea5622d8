"""Leaderboard at scale: load 10,000 ``result.json`` files and aggregate them (target: under 10 s).

    python -m pytest benchmarks/test_bench_leaderboard.py --benchmark-only -q -s
    python -m pytest benchmarks/test_bench_leaderboard.py --quick --benchmark-disable   # 200 files

The records are realistic in size: 100-epoch histories and 10x10 confusion matrices (about 25 kB
each, 10,000 files of 2,000 configurations x 5 seeds), written once per session. Reads are from
the page cache (the files were just written), as on a machine that has just finished a sweep.
The ratio against a baseline in the same process is the time of a bare ``json.loads`` of every
file, what no reader can beat, measured in alternate rounds. The 10 s target is checked in full
mode only; ``--quick`` writes 200 files.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cifarbudget import leaderboard as lb
from cifarbudget.results import SCHEMA_VERSION
from cifarbudget.spec import RunSpec

N_FILES = 10_000
N_FILES_QUICK = 200
SEEDS = 5
EPOCHS = 100
MODELS = {
    "airnet-small": (292_688, 21_431_552),
    "resnet20": (269_722, 40_551_040),
    "resnet56": (853_018, 125_485_312),
    "resnetsmall": (4_754_218, 271_418_368),
}
AUGS = [
    ("crop-flip",),
    ("crop-flip", "cutout"),
    ("crop-flip", "cutmix"),
    ("crop-flip", "cutmix", "blur"),
    ("crop-flip", "erasing"),
]
SCHEDS = ["multistep", "cosine", "onecycle", "constant"]
TTAS = ["none", "flip", "flip-shift"]
LRS = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4]  # 4*5*4*3*... configurations
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _record(
    i: int, model: str, augs: tuple[str, ...], sched: str, tta: str, lr: float, seed: int
) -> dict[str, Any]:
    params, macs = MODELS[model]
    spec = RunSpec(model=model, augs=augs, sched=sched, tta=tta, lr=lr, seed=seed)
    acc = 0.85 + 0.01 * ((i * 7919) % 97) / 97
    views = {"none": 1, "flip": 2, "flip-shift": 10}[tta]
    matrix = [[900 if r == c else 11 for c in range(10)] for r in range(10)]
    return {
        "schema": "cifarbudget.result",
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{spec.run_id}-{i}",
        # what a schema-2 run records: its configuration (the identity minus the seed) groups the seeds
        "identity": {"config_id": spec.config_id},
        "status": "finished",
        "spec": spec.to_dict(),
        "budget": {
            "model": model,
            "params": params,
            "total_params": params,
            "macs": macs,
            "budget": 5_000_000,
            "within_budget": True,
            "macs_by_operator": {"conv": macs - 5130, "linear": 5130},
        },
        "out_of_budget": False,
        "data": {
            "dataset": "cifar10",
            "source": "bench",
            "classes": CLASSES,
            "n_train": 45000,
            "n_val": 5000,
            "n_test": 10000,
            "val_indices_sha256": "0123456789abcdef",
            "mean": [0.49, 0.48, 0.45],
            "std": [0.25, 0.24, 0.26],
        },
        "pipeline": [{"name": a, "params": {"p": 0.5}} for a in augs],
        "history": [
            {
                "epoch": e,
                "lr": lr * (1 - e / EPOCHS),
                "train_loss": 2.3 / e,
                "train_acc": 0.5 + e / 250,
                "val_loss": 1.9 / e,
                "val_acc": 0.5 + e / 300,
                "seconds": 14.52,
                "images_per_s": 3099.2,
            }
            for e in range(1, EPOCHS + 1)
        ],
        "final": {
            "val_acc": acc,
            "val_loss": 0.3,
            "best_val_acc": acc,
            "best_epoch": EPOCHS,
            "test_acc": acc,
            "test_loss": 0.31,
            "test_acc_tta": acc + 0.004 if tta != "none" else None,
            "test_loss_tta": 0.3 if tta != "none" else None,
            "tta": tta,
            "tta_views": views,
            "inference_macs": macs,
            "inference_macs_tta": macs * views,
            "confusion_matrix": matrix,
            "confusion_matrix_tta": matrix if tta != "none" else None,
        },
        "timing": {
            "train_seconds": 1452.3,
            "train_images_per_s": 3099.2,
            "data_seconds": 3.1,
            "eval_seconds": 2.2,
            "total_seconds": 1458.0,
        },
        "manifest": {
            "cifarbudget": "0.1.0",
            "torch": "2.4.0",
            "python": "3.11.9",
            "git_revision": "abc+dirty",
            "device": "cuda",
            "device_name": "NVIDIA H100 80GB HBM3",
            "seed": seed,
            "started_at": "2025-01-01T00:00:00+00:00",
            "finished_at": "2025-01-01T00:24:18+00:00",
        },
        "error": None,
    }


@pytest.fixture(scope="session")
def n_files(quick: bool) -> int:
    return N_FILES_QUICK if quick else N_FILES


@pytest.fixture(scope="session")
def result_tree(tmp_path_factory: pytest.TempPathFactory, n_files: int) -> Path:
    root = tmp_path_factory.mktemp("bench-runs")
    grid = itertools.product(MODELS, AUGS, SCHEDS, TTAS, LRS)
    configs = list(itertools.islice(grid, n_files // SEEDS))
    assert len(configs) == n_files // SEEDS
    started = time.perf_counter()
    i = 0
    for model, augs, sched, tta, lr in configs:
        for seed in range(SEEDS):
            record = _record(i, model, augs, sched, tta, lr, seed)
            folder = root / record["run_id"]
            folder.mkdir()
            (folder / "result.json").write_text(json.dumps(record, indent=2))
            i += 1
    print(f"\nwrote {i} result files in {time.perf_counter() - started:.1f}s")
    return root


def load_and_aggregate(root: Path, workers: int | None = None) -> tuple[Any, Any]:
    runs, warnings = lb.load_results([root], workers=workers)
    assert warnings == []
    board = lb.leaderboard(runs)
    return runs, board


def json_loads_all(root: Path) -> tuple[float, int]:
    """Seconds for a bare ``json.loads`` of every file in this process, and the bytes read."""
    started = time.perf_counter()
    size = 0
    for f in sorted(root.rglob("result.json")):
        data = f.read_bytes()
        size += len(data)
        json.loads(data)
    return time.perf_counter() - started, size


@pytest.mark.parametrize("workers", [None, 1], ids=["default", "one-process"])
def test_bench_load_and_aggregate(
    paired: Any, record_ratio: Any, quick: bool, result_tree: Path, n_files: int, workers: int | None
) -> None:
    out: dict[str, Any] = {}

    def ours() -> float:
        started = time.perf_counter()
        out["runs"], out["board"] = load_and_aggregate(result_tree, workers)
        return time.perf_counter() - started

    def baseline() -> float:
        seconds, out["size"] = json_loads_all(result_tree)
        return seconds

    ours_s, base_s = paired(ours, baseline, rounds=1 if quick else 3, warmup=0)
    runs, board, size = out["runs"], out["board"], out["size"]
    assert len(runs) == n_files
    assert len(board) == n_files // SEEDS
    assert set(board["n"]) == {SEEDS}
    ratios = [o / b for o, b in zip(ours_s, base_s, strict=True)]
    mean = sum(ours_s) / len(ours_s)
    record_ratio(
        f"leaderboard {n_files} files, workers={workers}",
        sorted(ratios)[len(ratios) // 2],
        what="load + aggregate time / bare json.loads of every file in one process",
        files=n_files,
        megabytes=round(size / 1e6, 1),
        load_and_aggregate_s=[round(x, 3) for x in ours_s],
        json_loads_s=[round(x, 3) for x in base_s],
    )
    if not quick:
        assert mean < 10.0, f"load + aggregate of {n_files} files took {mean:.1f}s (target: < 10 s)"


def test_bench_pareto_and_ablation(benchmark: Any, quick: bool, result_tree: Path) -> None:
    _, board = load_and_aggregate(result_tree)

    def derived() -> tuple[int, int]:
        return len(lb.pareto(board, by="params")), len(lb.ablation(board))

    front, factors = benchmark(derived)
    assert front >= 1 and factors >= 1
    if not quick:  # the full grid varies every factor
        assert factors == 5 + 4 + 2  # augs, schedulers, TTA policies other than none
