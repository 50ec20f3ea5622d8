"""``cifarbudget.run``: from options to a finished, recorded run.

The order is fixed and cheap-first: resolve the recipe and options into a :class:`RunSpec`,
check every name, check the budget (before any data is loaded), then find an existing record
(finished: return it; unfinished: resume), load the data onto the device, train, evaluate the
test split once, and write ``result.json``, ``metrics.csv`` and the plots.
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from cifarbudget.errors import BudgetError, CifarBudgetError, RunError
from cifarbudget.plugins import get_registry
from cifarbudget.results import RESULT_FILE, RunResult, load_result
from cifarbudget.spec import RunSpec

DEFAULT_RESULTS_DIR = Path("results/runs")
CPU_MACS_PER_SECOND = 2.0e10  # fwd+bwd multiply-accumulates per second per core, measured on the dev machines

_SPEC_FIELDS = {f.name for f in dataclasses.fields(RunSpec)}


def resolve_spec(model: str | None = None, *, recipe: str | None = None, **options: Any) -> RunSpec:
    """Merge defaults <- recipe <- explicit options (``None`` means "not given") into a RunSpec."""
    values: dict[str, Any] = {}
    if recipe is not None:
        preset = get_registry("recipes").create(recipe)
        unknown = set(preset) - _SPEC_FIELDS
        if unknown:
            raise RunError(f"recipe {recipe!r} sets unknown option(s): {', '.join(sorted(unknown))}")
        values.update(preset)
    if model is not None:
        values["model"] = model
    unknown = set(options) - _SPEC_FIELDS
    if unknown:
        raise RunError(f"unknown run option(s): {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in options.items() if v is not None})
    if "model" not in values:
        raise RunError(
            "no model given: pass a MODEL argument or --recipe NAME (see 'cifarbudget list recipes')"
        )
    if "augs" in values:
        values["augs"] = expand_pipeline(values["augs"])
    if isinstance(values.get("budget"), str):
        from cifarbudget.budget import parse_budget

        values["budget"] = parse_budget(values["budget"])
    spec = RunSpec(**values)
    check_names(spec)
    return spec


def expand_pipeline(augs: Any) -> tuple[str, ...]:
    """The exact augmentation pipeline: crop-flip is the base the others add to; ``none`` is empty."""
    names = [augs] if isinstance(augs, str) else list(augs)
    names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if names == ["none"] or not names:
        return ()
    if "none" in names:
        raise RunError("--aug none cannot be combined with other augmentations")
    if "crop-flip" not in names:
        names.insert(0, "crop-flip")
    return tuple(dict.fromkeys(names))


def check_names(spec: RunSpec) -> None:
    """Raise an unknown-name error (with suggestions) for any name no plugin provides."""
    get_registry("models").get(spec.model)
    get_registry("datasets").get(spec.dataset)
    get_registry("schedulers").get(spec.sched)
    get_registry("tta").get(spec.tta)
    for aug in spec.augs:
        get_registry("augmentations").get(aug)


def select_device(requested: str | None = None) -> torch.device:
    """``cuda``, then ``mps``, then ``cpu`` (or the requested one, checked)."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunError(f"--device {requested}: CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def run(
    model: str | None = None,
    *,
    recipe: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    results_dir: str | Path = DEFAULT_RESULTS_DIR,
    device: str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    restart: bool = False,
    progress: bool = True,
    log: Any = None,
    **options: Any,
) -> RunResult:
    """Train and evaluate one configuration; return its :class:`RunResult`.

    ``options`` are :class:`RunSpec` fields (``dataset``, ``augs``, ``sched``, ``tta``, ``epochs``,
    ``lr``, ...); ``None`` values fall back to the recipe's, then to the defaults. An identical
    spec that already finished is returned without training; an unfinished one resumes from its
    last checkpoint unless ``restart``.
    """
    say = log or (lambda message: None)
    spec = resolve_spec(model, recipe=recipe, **options)

    from cifarbudget.budget import check_budget

    report = check_budget(spec.model, spec.budget, num_classes=spec.num_classes or 10)
    if not report.within_budget and not spec.allow_over_budget:
        raise BudgetError(f"refusing to train: {report.reason}; pass --allow-over-budget to train it anyway")

    run_dir = Path(results_dir) / spec.run_id
    if restart and run_dir.exists():
        shutil.rmtree(run_dir)
    if (run_dir / RESULT_FILE).exists():
        try:
            previous = load_result(run_dir)
        except CifarBudgetError:
            previous = None  # a corrupt record: the checkpoint (if any) decides below
        if previous is not None and previous.status in ("finished", "diverged"):
            say(f"{spec.run_id}: already {previous.status}; not training again (use --restart to start over)")
            return previous

    from cifarbudget.trainer import train_run

    return train_run(
        spec,
        report,
        run_dir=run_dir,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        download=download,
        device=select_device(device),
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        progress=progress,
        say=say,
    )


def estimate_cpu_seconds(macs: int, images: int, epochs: int) -> float:
    """A rough training-time estimate on this CPU (forward + backward = 3x the forward MACs)."""
    cores = max(1, torch.get_num_threads())
    return 3 * macs * images * epochs / (CPU_MACS_PER_SECOND * cores)


def warn_cpu(seconds: float) -> None:
    hours = seconds / 3600
    when = f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"
    warnings.warn(f"training on the CPU: expect roughly {when}; a CUDA GPU is 100x+ faster", stacklevel=2)
