"""The budget is checked on the model that is trained: its head has the dataset's class count."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result
from records import hundred_classes
from torch import nn

import cifarbudget
from cifarbudget.errors import OverBudgetError

Invoke = Callable[..., Result]
FEATURES = 128


class NearTheBudget(nn.Module):
    """4,990,000 trainable parameters with 10 classes; 4,990,000 + 90 * 129 = 5,001,610 with 100."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, FEATURES, 1, bias=False)  # 384
        self.head = nn.Linear(FEATURES, num_classes)  # 1,290 at 10 classes
        self.body = nn.Parameter(torch.zeros(4_990_000 - 3 * FEATURES - (FEATURES * 10 + 10)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))) + self.body[:1] * 0


def _plugin() -> types.ModuleType:
    plugin = types.ModuleType("near_budget")

    @cifarbudget.hookimpl
    def cifarbudget_register_models(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("near-budget", NearTheBudget, description="4,990,000 parameters at 10 classes")

    plugin.cifarbudget_register_models = cifarbudget_register_models  # type: ignore[attr-defined]
    return plugin


def test_a_model_under_budget_at_10_classes_is_refused_at_100_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("near_budget", _plugin()),))
    assert cifarbudget.check_budget("near-budget").params == 4_990_000
    assert cifarbudget.check_budget("near-budget", num_classes=100).params == 4_990_000 + 90 * (FEATURES + 1)
    data = hundred_classes(tmp_path / "data")
    monkeypatch.setattr("cifarbudget.runner.load_splits", lambda *a, **k: pytest.fail("data were decoded"))
    with pytest.raises(
        OverBudgetError, match=r"near-budget: 5,001,610 trainable parameters >= budget 5,000,000"
    ):
        cifarbudget.run(
            "near-budget", dataset="imagefolder", data_dir=data, results_dir=tmp_path / "runs", progress=False
        )
    assert not (tmp_path / "runs").exists()


def test_a_100_class_run_records_the_trained_models_count(tmp_path: Path, invoke: Invoke) -> None:
    data = hundred_classes(tmp_path / "data")
    args = ["run", "resnetsmall", "--dataset", "imagefolder", "--data-dir", str(data), "--epochs", "1"]
    args += [
        "--val-size",
        "0",
        "--batch-size",
        "100",
        "--results-dir",
        str(tmp_path / "runs"),
        "--json",
        "--quiet",
    ]
    out = invoke(args)
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert record["budget"]["params"] == 4_777_348  # 4,754,218 + 90 * (256 + 1)
    assert record["budget"]["num_classes"] == 100 and len(record["data"]["classes"]) == 100
    model = cifarbudget.create_model("resnetsmall", num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == 4_777_348
