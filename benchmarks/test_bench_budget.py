"""The budget check of every builtin model vs. building each model and running it once.

``check_budget`` builds the model, counts parameters with torchinfo and MACs with fvcore (one
traced forward on a 1x3x32x32 image); the baseline is the least any counter must do: build the
model and run that forward. No goal: the ratio is what the exact counts cost.
"""

from __future__ import annotations

import time
from typing import Any

import torch

import cifarbudget


def test_bench_budget_check_every_model(paired: Any, record_ratio: Any, quick: bool) -> None:
    names = cifarbudget.list_models()
    if quick:
        names = names[:2]
    cifarbudget.check_budget(names[0])  # imports torchinfo and fvcore outside the timed rounds
    reports: dict[str, Any] = {}

    def check_all() -> float:
        start = time.perf_counter()
        for name in names:
            reports[name] = cifarbudget.check_budget(name)
        return time.perf_counter() - start

    def build_and_forward() -> float:
        start = time.perf_counter()
        for name in names:
            model = cifarbudget.create_model(name).eval()
            with torch.no_grad():
                model(torch.zeros(1, 3, 32, 32))
        return time.perf_counter() - start

    checks, builds = paired(check_all, build_and_forward, rounds=1 if quick else 2, warmup=0)
    for name, report in reports.items():
        model = cifarbudget.create_model(name)
        assert report.params == sum(p.numel() for p in model.parameters() if p.requires_grad), name
    ratios = [c / b for c, b in zip(checks, builds, strict=True)]
    record_ratio(
        "budget check",
        sorted(ratios)[len(ratios) // 2],
        what=f"check_budget of {len(names)} builtin models / building them and running one forward",
        models=names,
        check_seconds=[round(c, 2) for c in checks],
        build_and_forward_seconds=[round(b, 2) for b in builds],
    )
