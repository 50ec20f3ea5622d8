"""The input pipeline with this tree's augmentations against an earlier revision's, in one process.

    python benchmarks/ab_augmentations.py REV [--pipeline notebook|pinned] [--rounds N]

The pipeline benchmark (``test_bench_pipeline.py``) compares the batched pipeline with a
per-image DataLoader; on a shared 2-core VM its ratio moves by a third between runs of the same
code, which hides a change of a fifth. This script measures a change of the augmentation code
directly: it loads ``cifarbudget/augment/batch.py`` as it was at ``REV`` (``git show``) as a
module of its own, builds the benchmark's pipeline twice (the builtin augmentation classes of
``REV`` in one, this tree's in the other; everything else, including ``Compose``, is this
tree's) and times epochs of the two alternately, starting with the other one each round. It
reports the median of the per-round ratios (this tree / REV, images per second).

Real CIFAR-10 images from ``../shared/data`` (``CIFARBUDGET_SHARED_DATA``), 10,240 training images as
the pipeline benchmark. Writes ``results/benchmarks/ab-<date>-<HHMMSS>.json`` with the command,
machine and both revisions.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from machine import cpu_model, load_average  # noqa: E402
from reference_loop import median  # noqa: E402
from test_bench_pipeline import build_pipeline, epoch, prepare  # noqa: E402

from cifarbudget.augment.pipeline import Compose  # noqa: E402
from cifarbudget.io import atomic_write_json  # noqa: E402

PIPELINES = {"notebook": "input pipeline", "pinned": "input pipeline, 2026-11 augmentations"}


def module_at(rev: str) -> ModuleType:
    """``cifarbudget/augment/batch.py`` at ``rev``, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{rev}:cifarbudget/augment/batch.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batch_at_rev.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("batch_at_rev", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def with_classes_of(pipeline: Compose, module: ModuleType) -> list[str]:
    """Swap each augmentation in ``pipeline`` for the same class of ``module`` with the same state."""
    swapped: dict[int, Any] = {}
    for value in vars(pipeline).values():
        if not isinstance(value, list):
            continue
        for i, aug in enumerate(value):
            cls = getattr(module, type(aug).__name__, None)
            if cls is None or not isinstance(cls, type):
                continue
            if id(aug) not in swapped:
                twin: Any = object.__new__(cls)
                twin.__dict__.update(aug.__dict__)
                swapped[id(aug)] = twin
            value[i] = swapped[id(aug)]
    return sorted({type(a).__name__ for a in swapped.values()})


def revision(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the revision to compare against (e.g. HEAD~2)")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="notebook")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    shared = Path(os.environ.get("CIFARBUDGET_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not shared.is_dir():
        print(
            f"ab_augmentations: no CIFAR-10 zips in {shared} (set CIFARBUDGET_SHARED_DATA)", file=sys.stderr
        )
        return 1
    if args.rounds < 1:
        print(f"ab_augmentations: --rounds must be at least 1, got {args.rounds}", file=sys.stderr)
        return 2
    try:
        their_module = module_at(args.rev)
    except subprocess.CalledProcessError as error:
        reason = (error.stderr or "").strip().splitlines()[-1:] or ["git failed"]
        print(f"ab_augmentations: cannot read {args.rev}'s augmentations: {reason[0]}", file=sys.stderr)
        return 1
    device = torch.device("cpu")
    torch.manual_seed(0)
    load_start = load_average()
    prep = prepare(PIPELINES[args.pipeline], False, device, shared)
    ours = build_pipeline(prep.augs, prep.data)
    theirs = build_pipeline(prep.augs, prep.data)
    swapped = with_classes_of(theirs, their_module)
    epoch(prep.data, ours, device)  # warm-up, both
    epoch(prep.data, theirs, device)
    rates: dict[str, list[float]] = {"this tree": [], args.rev: []}
    for r in range(args.rounds):
        order = [("this tree", ours), (args.rev, theirs)]
        for label, stages in order if r % 2 else order[::-1]:
            seen, _, seconds = epoch(prep.data, stages, device)
            rates[label].append(seen / seconds)
    ratios = [a / b for a, b in zip(rates["this tree"], rates[args.rev], strict=True)]
    now = datetime.now(timezone.utc)
    record = {
        "command": "python benchmarks/ab_augmentations.py " + " ".join(sys.argv[1:]),
        "date": now.isoformat(timespec="seconds"),
        "what": "images/s of the pipeline with this tree's augmentations / with REV's, alternating epochs",
        "pipeline": PIPELINES[args.pipeline],
        "augmentations": [{"name": n, "params": p} for n, p in prep.augs],
        "source": prep.source,
        "images": len(prep.split.labels),
        "this_tree_revision": revision("HEAD"),
        "this_tree_has_uncommitted_changes": bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        ),
        "rev": args.rev,
        "rev_revision": revision(args.rev),
        "classes_from_rev": swapped,
        "ratio": round(median(ratios), 4),
        "round_ratios": [round(x, 3) for x in ratios],
        "images_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
        "machine": {
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before_after": [load_start, load_average()],
        },
        "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
    }
    path = ROOT / "results" / "benchmarks" / f"ab-{now:%Y-%m-%d-%H%M%S}.json"
    atomic_write_json(path, record)
    print(
        f"{record['pipeline']}: this tree / {args.rev} = {record['ratio']:.3f} "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; {cpu_model()}); {path.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
