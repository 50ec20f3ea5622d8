"""Training compute as a budget (issue 10): refused before any data loads, recorded, ranked within."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result

from cifarbudget.compute import TRAIN_FACTOR

Invoke = Callable[..., Result]


def test_a_plan_over_the_compute_budget_is_refused_before_any_data(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cifarbudget.runner.load_splits", lambda *a, **k: pytest.fail("data were decoded"))
    args = ["run", "resnetsmall", "--epochs", "100", "--compute-budget", "30T"]
    out = invoke([*args, "--data-dir", str(tmp_path / "none"), "--results-dir", str(tmp_path / "runs")])
    assert out.exit_code == 3, out.output  # the over-budget code
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: refusing to train: resnetsmall for 100 epochs"), (
        lines
    )
    assert "> compute budget 30.0T" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_training_compute_is_recorded_and_the_leaderboard_ranks_within_a_budget(
    invoke: Invoke, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    tiny = ["--dataset", "synthetic", "--train-subset", "256", "--val-size", "64", "--batch-size", "64"]
    for epochs in ("1", "2"):
        out = invoke(["run", "resnet20", *tiny, "--epochs", epochs, "--results-dir", str(runs), "--quiet"])
        assert out.exit_code == 0, out.output
    records = {
        r["spec"]["epochs"]: r for r in (json.loads(p.read_text()) for p in runs.glob("*/result.json"))
    }
    one, two = records[1]["compute"], records[2]["compute"]
    # forward MACs x 3 x the training images seen (256 images, full batches of 64)
    assert one["train_macs"] == TRAIN_FACTOR * records[1]["budget"]["macs"] * 256
    assert two["train_macs"] == 2 * one["train_macs"]
    budget = str(one["train_macs"])  # admits the 1-epoch run only
    board = invoke(["leaderboard", str(runs), "--compute-budget", budget, "--format", "csv"])
    assert board.exit_code == 0, board.output
    assert list(pd.read_csv(io.StringIO(board.stdout))["epochs"]) == [1]
    left = invoke(["leaderboard", str(runs), "--compute-budget", budget, "--not-ranked", "--format", "csv"])
    (row,) = pd.read_csv(io.StringIO(left.stdout)).to_dict("records")
    assert row["epochs"] == 2 and row["reason"].startswith("over the compute budget:")
