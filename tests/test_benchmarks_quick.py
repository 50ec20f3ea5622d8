"""The benchmark suites still run: ``benchmarks/`` in quick mode (tiny sizes, no goals), in a subprocess.

The full suites (``python -m pytest benchmarks --benchmark-save=cpu``) are not part of the unit
tests; see docs/performance.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICK = ["-m", "pytest", "benchmarks", "--quick", "-q", "-p", "no:cacheprovider", "--benchmark-disable"]


def test_benchmarks_run_in_quick_mode() -> None:
    result = subprocess.run(
        [sys.executable, *QUICK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout.splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_ab_augmentations_swaps_in_a_revisions_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/ab_augmentations.py`` builds the same pipeline from another revision's classes."""
    import importlib
    import shutil

    import torch

    from cifarbudget.augment.batch import Blur, CropFlip, CutMix
    from cifarbudget.augment.pipeline import Compose, soft_targets
    from cifarbudget.data.core import DeviceSplit, normalization_stats
    from cifarbudget.data.synthetic import make_synthetic

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the git repository")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    ab = importlib.import_module("ab_augmentations")
    data = make_synthetic(16, seed=1)
    split = DeviceSplit.from_split(data, torch.device("cpu"), *normalization_stats(data.images))
    augs = [CropFlip(padding_mode="black"), Blur(kernel_size=11, p=1.0), CutMix(p=1.0)]
    pipeline = Compose(augs, ["crop-flip", "blur", "cutmix"], normalize=split.normalize)
    assert ab.with_classes_of(pipeline, ab.module_at("HEAD")) == ["Blur", "CropFlip", "CutMix"]
    assert [type(a).__module__ for a in pipeline.augs] == ["batch_at_rev"] * 3
    assert [a.params() for a in pipeline.augs] == [a.params() for a in augs]  # the same settings
    x, targets = pipeline(data.images, soft_targets(data.labels, 10))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and targets.shape == (16, 10)
