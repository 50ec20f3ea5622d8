"""TTA cost: evaluation time with a TTA policy vs. plain evaluation, through ``engine.evaluate``.

The same model (resnet20, eval mode) and test batches on the device; plain and TTA evaluation
alternate, after a warm-up round. Goals: ``flip`` (2 views) at most 2.1x plain; ``flip-shift``
(10 views) proportional to its views, i.e. time per view within 0.7x-1.3x of plain.

A policy runs all views of a batch in one forward pass (up to ``max_batch`` images), so it also
runs the model at ``views`` times the batch size. To tell the policy's own cost from the model's
batch-size scaling, the benchmark also times plain evaluation of ``views x`` as many images in one
batch (``same_batch_ratio``: TTA time / that time, 1.0 when the policy itself costs nothing),
and the policy with ``max_batch`` set to the evaluation batch, one view per forward pass
(``one_view_per_pass_ratio``: its time / plain).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from reference_loop import MEAN, STD, median, random_split, run_defaults, sync

from cifarbudget.api import create_model
from cifarbudget.data.core import DeviceSplit
from cifarbudget.device import DeviceSettings
from cifarbudget.engine import evaluate
from cifarbudget.plugins import get_registry

MODEL = "resnet20"
GOALS: dict[str, tuple[float | None, float | None]] = {
    "flip": (None, 2.1),  # issue 5: TTA time / plain time
    "flip-shift": (0.7, 1.3),  # issue 5: TTA time / plain time / views
}


@pytest.mark.parametrize("policy_name", list(GOALS))
def test_bench_tta(
    paired: Any, record_ratio: Any, quick: bool, device: torch.device, policy_name: str
) -> None:
    n, rounds = (16, 1) if quick else (256, 5)
    amp, channels_last = run_defaults(device)
    options = DeviceSettings(device=device, amp=amp, channels_last=channels_last)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    torch.manual_seed(0)
    model = create_model(MODEL).to(device, memory_format=memory_format).eval()
    split = DeviceSplit.from_split(random_split(n), device, MEAN, STD, channels_last)
    policy = get_registry("tta").create(policy_name)
    views = int(policy.n_views)

    def seconds(fn: Callable[[], Any]) -> Callable[[], float]:
        def timed() -> float:
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            return time.perf_counter() - start

        return timed

    tta, plain = paired(
        seconds(lambda: evaluate(model, split, options, tta=policy)),
        seconds(lambda: evaluate(model, split, options)),
        rounds=rounds,
        warmup=1,
    )
    ratios = [t / p for t, p in zip(tta, plain, strict=True)]
    as_one_batch = DeviceSplit.from_split(random_split(n * views, seed=1), device, MEAN, STD, channels_last)
    plain_big = seconds(lambda: evaluate(model, as_one_batch, options, batch_size=n * views))
    plain_big()  # warm-up at this batch size
    same_batch_seconds = plain_big()
    one_view_policy = get_registry("tta").create(policy_name, max_batch=n)
    chunked = seconds(lambda: evaluate(model, split, options, tta=one_view_policy))
    chunked()  # warm-up
    chunked_seconds = chunked()
    per_view = policy_name != "flip"
    ratio = median(ratios) / views if per_view else median(ratios)
    record_ratio(
        f"tta {policy_name}" + (" per view" if per_view else ""),
        ratio,
        what=f"evaluation time with {policy_name} ({views} views) / plain"
        + (f", divided by {views} views" if per_view else ""),
        goal=GOALS[policy_name],
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        model=MODEL,
        images=n,
        views=views,
        time_ratio=round(median(ratios), 3),
        plain_seconds=round(median(plain), 4),
        tta_seconds=round(median(tta), 4),
        plain_same_batch_seconds=round(same_batch_seconds, 4),
        same_batch_ratio=round(median(tta) / same_batch_seconds, 3),
        one_view_per_pass_ratio=round(chunked_seconds / median(plain), 3),
        round_ratios=[round(r, 3) for r in ratios],
    )
