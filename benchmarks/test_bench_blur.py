"""Blur: the two ways :func:`~cifarbudget.augment.batch.separable_blur` can compute a pass, by kernel size.

A kernel's pass is either ``K`` multiply-adds of whole planes with per-image weights (tap by
tap) or one batched matrix product with a per-image banded matrix (``H`` multiply-adds per value,
in two BLAS calls). ``separable_blur`` picks the products from ``MATMUL_MIN_TAPS`` taps on; this
benchmark is where that number comes from. Both paths blur the same channels_last images (the
engine's layout) with the same kernels: the images a ``p = 0.5`` blur draws from a batch of 128,
as the CPU path blurs only those. No goal: it explains a threshold.

The images are random normals (the blur's cost does not depend on the pixel values), so it needs
no data.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from reference_loop import median, sync

from cifarbudget.augment.batch import (
    MATMUL_MIN_TAPS,
    _blur_by_matmul,
    _blur_by_taps,
    gaussian_kernels,
)

BATCH = 128
TAPS = (3, 5, 7, 9, 11)  # 11: the reference notebook's kernel (sigma up to 1.5)


@pytest.mark.parametrize("taps", TAPS)
def test_bench_blur_paths(
    taps: int, paired: Any, record_ratio: Any, quick: bool, device: torch.device
) -> None:
    gen = torch.Generator().manual_seed(0)  # the same images, subset and sigmas at every kernel size
    images = torch.randn(BATCH, 3, 32, 32, generator=gen).to(device)
    images = images.contiguous(memory_format=torch.channels_last)
    chosen = (torch.rand(BATCH, generator=gen) < 0.5).nonzero()[:, 0].to(device)
    selected = images.permute(0, 2, 3, 1).index_select(0, chosen).permute(0, 3, 1, 2)
    sigma = (0.1 + 1.9 * torch.rand(len(chosen), generator=gen)).to(device)
    kernel = gaussian_kernels(sigma, taps // 2, images.dtype)  # the kernel is cut to the taps
    torch.testing.assert_close(
        _blur_by_matmul(selected, kernel), _blur_by_taps(selected, kernel), rtol=0, atol=1e-5
    )
    calls = 2 if quick else 50

    def timed(blur: Any) -> float:
        """Seconds per call, the result as separable_blur returns it (channels_last)."""
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            out = blur(selected, kernel)
        sync(device)
        assert out.shape == selected.shape
        return (time.perf_counter() - start) / calls

    def by_matmul(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return _blur_by_matmul(x, k).contiguous(memory_format=torch.channels_last)

    matmul_s, taps_s = paired(
        lambda: timed(by_matmul), lambda: timed(_blur_by_taps), rounds=1 if quick else 9
    )
    ratios = [t / m for m, t in zip(matmul_s, taps_s, strict=True)]
    record_ratio(
        f"blur {taps} taps, matrix products",
        median(ratios),
        what="speed of the matrix-product pass / the tap-by-tap pass (seconds per call, tap by tap / products)",
        images=len(chosen),
        source="random normal images, channels_last float32 (the cost does not depend on the values)",
        device=str(device),
        taps=taps,
        chosen_path="matrix products" if taps >= MATMUL_MIN_TAPS else "tap by tap",
        matmul_us_per_call=round(median(matmul_s) * 1e6, 1),
        taps_us_per_call=round(median(taps_s) * 1e6, 1),
        round_ratios=[round(r, 3) for r in ratios],
    )
