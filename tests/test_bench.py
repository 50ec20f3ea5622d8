"""``cifarbudget bench`` and :func:`cifarbudget.bench.bench_model` on tiny models (1 warm-up + 2 steps)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import torch
from click.testing import Result
from torch import nn

import cifarbudget
from cifarbudget.bench import BenchResult, bench_model

Invoke = Callable[..., Result]
TINY_ARGS = ["--device", "cpu", "--batch-size", "4", "--warmup-steps", "1", "--steps", "2"]
WIDE = 1628  # 3072 * 1628 + 1628 weights and biases alone exceed the 5M budget


def tiny(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, num_classes),
    )  # fmt: skip


def too_wide(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, WIDE), nn.ReLU(), nn.Linear(WIDE, num_classes))


@pytest.fixture(autouse=True)
def tiny_models(single_thread: None) -> Iterator[None]:
    @cifarbudget.hookimpl
    def cifarbudget_register_models(registry) -> None:
        registry.add("tiny", tiny, description="a 2-layer CNN for the bench tests")
        registry.add("too-wide", too_wide, description="an over-budget MLP")

    plugin = ModuleType("bench_test_models")
    plugin.cifarbudget_register_models = cifarbudget_register_models  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("bench_test_models", plugin),))
    yield


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_bench_json_schema(invoke: Invoke) -> None:
    result = invoke(["bench", "tiny", *TINY_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["model"] for r in records] == ["tiny"]
    record = records[0]
    assert set(record) == set(BenchResult.__dataclass_fields__)
    assert record["device"] == "cpu"
    assert (record["batch_size"], record["warmup"], record["steps"]) == (4, 1, 2)
    assert (record["amp"], record["channels_last"], record["compile"]) == (False, True, False)  # as run
    assert record["params"] == _params(tiny()) == 3 * 8 * 9 + 8 + 2 * 8 + 8 * 10 + 10
    assert record["macs"] == 32 * 32 * 8 * 3 * 9 + 8 * 10  # conv + linear, fvcore
    assert record["within_budget"] is True
    for key in ("train_images_per_s", "eval_images_per_s", "train_step_ms", "eval_step_ms"):
        assert isinstance(record[key], float) and record[key] > 0, key
    assert record["peak_memory_mb"] is None or record["peak_memory_mb"] >= 0
    assert record["memory_note"]


def test_bench_times_exactly_the_timed_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that advances 10 ms per forward pass, the figures are exactly those steps'.

    Warm-up steps run first and are not timed: 2 warm-up + 3 timed steps of batch 4 give
    10 ms/step and 400 images/s, for training and for inference alike.
    """
    import cifarbudget.bench as bench_module

    clock = [0.0]
    calls = {"forward": 0}

    class Ticking(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls["forward"] += 1
            clock[0] += 0.010
            return self.net(x)

    plugin = ModuleType("ticking")

    @cifarbudget.hookimpl
    def cifarbudget_register_models(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("ticking", lambda num_classes=10: Ticking())

    plugin.cifarbudget_register_models = cifarbudget_register_models  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("ticking", plugin),))
    monkeypatch.setattr(bench_module.time, "perf_counter", lambda: clock[0])
    result = bench_model("ticking", device="cpu", batch_size=4, warmup=2, steps=3, channels_last=False)
    assert calls["forward"] >= 2 * (2 + 3)  # train and eval: warm-up + timed (+ the budget's counting)
    assert result.train_step_ms == pytest.approx(10.0) and result.eval_step_ms == pytest.approx(10.0)
    assert result.train_images_per_s == pytest.approx(400.0) and result.eval_images_per_s == pytest.approx(
        400.0
    )


def test_bench_table(invoke: Invoke) -> None:
    result = invoke(["bench", "tiny", *TINY_ARGS])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "params", "MACs", "batch"]
    assert lines[2].split()[0] == "tiny"
    assert lines[-1].startswith("cpu (") and "1 warm-up + 2 timed steps" in lines[-1]


def test_bench_unknown_model_is_one_line(invoke: Invoke) -> None:
    result = invoke(["bench", "tinny", *TINY_ARGS])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["Error: Unknown model 'tinny'. Did you mean: tiny?"]


def test_bench_unmatched_pattern(invoke: Invoke) -> None:
    result = invoke(["bench", "nothing*", *TINY_ARGS])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no model matches 'nothing*'; see 'cifarbudget list models'"


def test_bench_rejects_zero_steps(invoke: Invoke) -> None:
    result = invoke(["bench", "tiny", "--steps", "0"])
    assert result.exit_code == 2
    assert "--steps" in result.stderr


def test_over_budget_model_is_benchmarked() -> None:
    result = bench_model("too-wide", device="cpu", batch_size=2, warmup=1, steps=2)
    assert result.params == _params(too_wide()) == 3072 * WIDE + WIDE + WIDE * 10 + 10
    assert result.params >= 5_000_000 and result.within_budget is False
    assert result.train_images_per_s > 0 and result.eval_images_per_s > 0


def test_bench_amp_and_no_channels_last_on_cpu() -> None:
    result = bench_model("tiny", device="cpu", batch_size=3, amp=True, channels_last=False, warmup=0, steps=1)
    assert (result.batch_size, result.warmup, result.steps) == (3, 0, 1)
    assert (result.amp, result.channels_last) == (True, False)
    assert result.train_step_ms > 0 and result.eval_step_ms > 0
