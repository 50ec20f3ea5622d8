"""A sweep from plan to outcomes: each run's budget verdict and stored state, then an executor
trains what is left and every run is settled as one :class:`RunOutcome`.

Over-budget runs are reported and never trained; finished (or diverged) ones are reported from
their records; a run that fails is recorded as failed and the others go on. Training itself is
:func:`cifarbudget.runner.run_spec`, so a finished run is never trained again and an unfinished one
resumes from its checkpoint.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarbudget import budget as budget_module
from cifarbudget.budget import BudgetReport
from cifarbudget.errors import CifarBudgetError
from cifarbudget.plugins import get_registry
from cifarbudget.results import FAILED, FINISHED, SETTLED, RunResult
from cifarbudget.spec import RunSpec
from cifarbudget.sweep.executors import make_executor
from cifarbudget.sweep.grid import Sweep, SweepError, expand_grid
from cifarbudget.sweep.store import lock_path, record_failure, run_lock, stored_state
from cifarbudget.sweep.worker import outcome_dict

OVER_BUDGET = "over_budget"


@dataclass
class PlannedRun:
    """One run of a sweep before it is trained: its spec, its model's budget, what the store holds."""

    spec: RunSpec
    report: BudgetReport
    state: str  # new | unfinished | running (locked by another process) | finished | diverged | failed
    epochs_done: int = 0
    record: RunResult | None = None
    compute_refusal: str | None = None  # why the planned training compute is over the compute budget

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def within_budget(self) -> bool:
        """Within the parameter budget and, when the sweep has one, the compute budget."""
        return self.report.within_budget and self.compute_refusal is None

    @property
    def refusal(self) -> str:
        """Why the run is skipped (the parameter count, or the planned compute)."""
        return self.report.reason if not self.report.within_budget else str(self.compute_refusal)


def check_before_work(spec: RunSpec, meta: dict[str, Any]) -> None:
    """What ``run`` checks of its components before any data is decoded, for every run of the grid:
    the parameter names and values of each component, and the schedule against the run's number of
    steps (when the dataset's metadata gives its size). A mistake fails the whole sweep with one line
    naming the run, before any run trains, as an unknown name does (and ``--dry-run`` says so instead
    of listing the run as ``ok``). Split sizes the data cannot give (``--train-subset`` over the
    images there are) stay the run's own failure, recorded in its folder as before."""
    from cifarbudget.compute import training_split_size
    from cifarbudget.engine import steps_per_epoch
    from cifarbudget.errors import RunError
    from cifarbudget.runner import check_component_params, check_schedule, check_sizes, validate_components

    try:
        check_component_params(spec)
        validate_components(spec)
        if meta.get("n_train"):
            n_train = int(meta["n_train"])
            try:
                check_sizes(spec, n_train)
            except RunError:
                return  # the run fails on its own and records why
            check_schedule(spec, steps_per_epoch(training_split_size(spec, n_train), spec.batch_size))
    except RunError as exc:
        raise SweepError(f"{spec.run_id}: {exc}".splitlines()[0]) from None


def plan_sweep(sweep: Sweep, specs: Sequence[RunSpec] | None = None) -> list[PlannedRun]:
    """Each run with its model's budget verdict (counted once per model) and its state in the store."""
    from cifarbudget.data.core import default_data_dir
    from cifarbudget.errors import OverBudgetError
    from cifarbudget.runner import check_compute_budget, dataset_metadata, needs_tta_evaluation

    specs = expand_grid(sweep) if specs is None else specs
    callbacks = get_registry("callbacks")
    for name in sweep.track:  # a misspelled tracker is one line now, not a failure in every run
        callbacks.get(name)
    root = Path(sweep.data_dir).expanduser() if sweep.data_dir else default_data_dir()
    metadata: dict[str, dict[str, Any]] = {}
    reports: dict[tuple[str, int, int, str], BudgetReport] = {}
    planned = []
    for spec in specs:
        if spec.dataset not in metadata:  # the model is counted with the head it will be trained with
            metadata[spec.dataset] = dataset_metadata(spec.dataset, root) or {}
        meta = metadata[spec.dataset]
        n_classes = int(meta.get("num_classes") or len(meta.get("classes") or []) or 10)
        options = json.dumps(spec.model_params, sort_keys=True)
        key = (spec.model, spec.budget, spec.num_classes or n_classes, options)
        check_before_work(spec, meta)  # parameter names first: a model is then built with valid ones
        if key not in reports:
            try:
                reports[key] = budget_module.check_budget(
                    spec.model, spec.budget, num_classes=key[2], model_params=spec.model_params
                )
            except CifarBudgetError:
                raise
            except Exception as exc:  # a plugin's model that cannot even be built
                raise SweepError(
                    f"{spec.model}: cannot build the model to count its parameters "
                    f"({type(exc).__name__}: {exc})".splitlines()[0]
                ) from None
        state, done, record = stored_state(sweep.results_path, spec.run_id)
        if state == FINISHED and record is not None and needs_tta_evaluation(record, spec):
            state = "finished (TTA to evaluate)"  # trained; only this TTA policy's evaluation is left
        refusal = None
        if spec.compute_budget and meta.get("n_train"):
            try:
                check_compute_budget(spec, reports[key], int(meta["n_train"]))
            except OverBudgetError as exc:
                refusal = str(exc).removeprefix("refusing to train: ")
        planned.append(PlannedRun(spec, reports[key], state, done, record, refusal))
    return planned


@dataclass
class RunOutcome:
    """What became of one run of a sweep."""

    spec: RunSpec
    status: str  # finished | diverged | failed | over_budget (never trained, by design)
    trained: bool  # trained or resumed by this sweep (False: already recorded, or over budget)
    evaluated: bool = False  # already trained; this sweep only evaluated its TTA policy
    test_acc: float | None = None
    test_acc_tta: float | None = None
    val_acc: float | None = None
    error: str | None = None
    seconds: float | None = None
    run_dir: Path | None = None

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def to_dict(self) -> dict[str, Any]:
        """The outcome as ``sweep --json`` prints it."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "trained": self.trained,
            "evaluated": self.evaluated,
            "test_acc": self.test_acc,
            "test_acc_tta": self.test_acc_tta,
            "val_acc": self.val_acc,
            "error": self.error,
            "seconds": self.seconds,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "spec": self.spec.to_dict(),
        }

    @property
    def ok(self) -> bool:
        """Finished, or skipped because over budget (never trained, by design)."""
        return self.status in (FINISHED, OVER_BUDGET)


ProgressCallback = Callable[[RunOutcome, int, int, "float | None"], None]


def run_sweep(
    sweep: Sweep,
    *,
    planned: Sequence[PlannedRun] | None = None,
    on_outcome: ProgressCallback | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[RunOutcome]:
    """Train every run of ``sweep`` that is within budget and not yet finished; one outcome per run.

    Over-budget runs are reported and never trained; finished (or diverged) ones are reported
    from their records. A run that fails is recorded as failed and the others go on.
    ``on_outcome(outcome, done, total, eta_seconds)`` is called as each run is settled. Specs that
    differ only in their TTA policy share one run: it trains once, and each TTA variant evaluates
    its checkpoint (a task that finds the run locked by its sibling waits, then only evaluates).
    """
    planned = list(plan_sweep(sweep) if planned is None else planned)
    results_dir = sweep.results_path
    total, done = len(planned), 0
    outcomes: dict[tuple[str, str], RunOutcome] = {}

    def settle(outcome: RunOutcome, eta: float | None = None) -> None:
        nonlocal done
        done += 1
        outcomes[(outcome.run_id, outcome.spec.tta_key)] = outcome
        if on_outcome is not None:
            on_outcome(outcome, done, total, eta)

    specs = {(p.run_id, p.spec.tta_key): p.spec for p in planned}
    tasks = []
    for p in planned:
        if not p.within_budget:
            settle(RunOutcome(p.spec, OVER_BUDGET, False, error=p.refusal))
        elif p.state in SETTLED and p.record is not None:
            raw = outcome_dict(p.run_id, p.record, status=p.state, trained=False, tta=p.spec.tta_key)
            settle(_from_dict(p.spec, raw, results_dir / p.run_id))
        else:
            tasks.append(_task(sweep, p))
    if not tasks:
        return [outcomes[(p.run_id, p.spec.tta_key)] for p in planned]
    if sweep.download:  # once, here, before any worker starts; the workers then only read
        prepare_datasets(sorted({t["spec"]["dataset"] for t in tasks}), sweep.data_dir)
        tasks = [{**t, "download": False} for t in tasks]

    executor = make_executor(sweep)
    if on_start is not None:
        on_start(executor.describe())
    started, settled = time.perf_counter(), 0
    pending = deque(tasks)
    deferred: list[dict[str, Any]] = []  # runs another process holds
    running: dict[Any, dict[str, Any]] = {}  # executor handle -> task
    try:
        while pending or running or deferred:
            if not pending and not running:  # only runs that other processes hold are left: wait for them
                pending.extend({**t, "wait": True} for t in deferred)
                deferred.clear()
            while pending and len(running) < executor.slots:
                task = pending.popleft()
                running[executor.submit(task)] = task
            for handle, raw in executor.wait(list(running)):
                task = running.pop(handle)
                if raw.get("status") == "busy":  # another process trains it: take it up again at the end
                    deferred.append(task)
                    continue
                if raw.get("status") == "crashed":
                    raw = _record_crash(task, raw.get("error") or "the worker died")
                settled += 1
                eta = (time.perf_counter() - started) / settled * (len(tasks) - settled)
                key = (task["run_id"], task["tta_key"])
                settle(_from_dict(specs[key], raw, results_dir / task["run_id"]), eta)
    except BaseException:  # Ctrl-C included: stop the workers; their runs resume next time
        executor.close(cancel=True)
        raise
    executor.close()
    return [outcomes[(p.run_id, p.spec.tta_key)] for p in planned]


def prepare_datasets(datasets: Sequence[str], data_dir: str | Path | None) -> None:
    """Fetch each dataset that the sweep may download, in the driver (the factories lock the data
    folder while they download); the workers then load the files and never download in parallel."""
    from cifarbudget.data.core import default_data_dir

    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    create = get_registry("datasets").create
    for name in datasets:
        create(name, root, train=True, download=True)
        create(name, root, train=False, download=True)


def _task(sweep: Sweep, planned: PlannedRun) -> dict[str, Any]:
    """What a worker needs to train ``planned``: plain JSON (it crosses process and machine borders)."""
    return {
        "run_id": planned.run_id,
        "spec": planned.spec.to_dict(),
        "tta_key": planned.spec.tta_key,
        "budget": planned.report.to_dict(),
        "results_dir": str(sweep.results_path),
        "data_dir": str(Path(sweep.data_dir).expanduser().resolve()) if sweep.data_dir else None,
        "download": sweep.download,
        "device": sweep.device,
        "amp": sweep.amp,
        "channels_last": sweep.channels_last,
        "compile": sweep.compile,
        "deterministic": sweep.deterministic,
        "aug_chunk": sweep.aug_chunk,
        "track": list(sweep.track),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "wait": False,
    }


def _record_crash(task: dict[str, Any], error: str) -> dict[str, Any]:
    """A worker died without reporting: record the run as failed (unless another process took it,
    or it is settled: then the worker died evaluating another TTA policy, and only this line failed)."""
    spec = RunSpec.from_dict(task["spec"])
    results_dir = Path(task["results_dir"])
    evaluated = False
    with run_lock(lock_path(results_dir, spec.run_id), wait=False) as acquired:
        if acquired:
            run_dir = results_dir / spec.run_id
            evaluated = not record_failure(spec, task["budget"], run_dir, error, task.get("device"))
    return {
        "run_id": spec.run_id,
        "status": FAILED,
        "trained": not evaluated,
        "evaluated": evaluated,
        "error": error,
    }


def _from_dict(spec: RunSpec, raw: dict[str, Any], run_dir: Path) -> RunOutcome:
    return RunOutcome(
        spec,
        raw["status"],
        bool(raw.get("trained")),
        evaluated=bool(raw.get("evaluated")),
        test_acc=raw.get("test_acc"),
        test_acc_tta=raw.get("test_acc_tta"),
        val_acc=raw.get("val_acc"),
        error=raw.get("error"),
        seconds=raw.get("seconds"),
        run_dir=run_dir,
    )
