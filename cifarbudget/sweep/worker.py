"""One run of a sweep, in a worker: the body of a local worker process and of a Ray task.

:func:`execute_run` takes the run's lock, returns at once when another process holds it or has
settled it, and otherwise trains it with :func:`cifarbudget.runner.run_spec` (the budget was counted
by the driver), logging into the run's ``sweep.log``. A run that raises is recorded as failed and
the sweep goes on. :func:`worker_loop` is a local worker process: one JSON task per line on
stdin, one outcome line back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarbudget.errors import CifarBudgetError, UnexpectedRunError, describe
from cifarbudget.results import FAILED, SETTLED, RunResult, now
from cifarbudget.spec import RunSpec
from cifarbudget.sweep.store import load_or_none, lock_path, record_failure, run_lock

WORKER_LOG = "sweep.log"
OUTCOME_PREFIX = "cifarbudget-outcome "  # marks the worker's answer among anything else printed to its stdout


def describe_error(exc: BaseException) -> str:
    """One line for a run's record: the library's message, or ``Type: message`` of anything else
    (of the original exception when a run wrapped it, its traceback being in the run's log)."""
    if isinstance(exc, UnexpectedRunError):
        exc = exc.cause
    return describe(exc, with_type=not isinstance(exc, CifarBudgetError))


def outcome_dict(
    run_id: str, result: RunResult | None, *, status: str, trained: bool, tta: str = "none", **extra: Any
) -> dict[str, Any]:
    """What a worker answers for one run: its status and accuracies (with the TTA policy asked for)."""
    final = result.final if result is not None else {}
    evaluated = (final.get("tta_evals") or {}).get(tta) or {}
    return {
        "run_id": run_id,
        "status": status,
        "trained": trained,
        "test_acc": final.get("test_acc"),
        "test_acc_tta": evaluated.get(
            "test_acc", final.get("test_acc_tta") if final.get("tta") == tta else None
        ),
        "val_acc": final.get("val_acc"),
        "error": result.error if result is not None else None,
        **extra,
    }


@contextlib.contextmanager
def _command_line(command: str | None) -> Iterator[None]:
    """Record the sweep's command line (not the worker's) in the run's manifest."""
    saved = sys.argv
    if command:
        sys.argv = [command]
    try:
        yield
    finally:
        sys.argv = saved


def execute_run(task: dict[str, Any]) -> dict[str, Any]:
    """Train one planned run under its lock; the body of a local worker process and of a Ray task.

    Returns an outcome dict: ``status`` is the run's final status, ``busy`` when another process
    holds the lock (and ``task["wait"]`` is false), or ``failed`` with the error, recorded in
    ``result.json``, when the run raised. Messages and tracebacks go to the run's ``sweep.log``.
    """
    import torch

    from cifarbudget.runner import needs_tta_evaluation

    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    spec = RunSpec.from_dict(task["spec"])
    results_dir = Path(task["results_dir"])
    run_dir = results_dir / spec.run_id
    with run_lock(lock_path(results_dir, spec.run_id), wait=bool(task.get("wait"))) as acquired:
        if not acquired:
            return {"run_id": spec.run_id, "status": "busy", "trained": False}
        record = load_or_none(run_dir)
        if record is not None and record.status in SETTLED and not needs_tta_evaluation(record, spec):
            return outcome_dict(spec.run_id, record, status=record.status, trained=False, tta=spec.tta_key)
        evaluates_only = record is not None and record.status in SETTLED  # trained: only this TTA is left
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / WORKER_LOG, "a") as log, _logging_to(log):
            print(f"--- {now()} {socket.gethostname()} pid {os.getpid()}", file=log, flush=True)
            started = time.perf_counter()
            try:
                with _command_line(task.get("command")):
                    result = _train(task, spec, results_dir)
            # a plugin's error or a CifarBudgetError: this run fails, the sweep goes on
            except Exception as exc:
                traceback.print_exc(file=log)
                error = describe_error(exc)
                # a finished run whose evaluation with this TTA policy raised stays finished
                marked = record_failure(spec, task["budget"], run_dir, error, task.get("device"))
                return {
                    "run_id": spec.run_id,
                    "status": FAILED,
                    "trained": marked,
                    "evaluated": not marked,
                    "error": error,
                }
        seconds = time.perf_counter() - started
        return outcome_dict(
            spec.run_id,
            result,
            status=result.status,
            trained=not evaluates_only,
            evaluated=evaluates_only,
            seconds=seconds,
            tta=spec.tta_key,
        )


def _train(task: dict[str, Any], spec: RunSpec, results_dir: Path) -> RunResult:
    from cifarbudget.budget import BudgetReport
    from cifarbudget.runner import RunSettings, run_spec

    budget = {k: v for k, v in task["budget"].items() if k != "within_budget"}
    settings = RunSettings(
        data_dir=Path(task["data_dir"]) if task.get("data_dir") else None,
        download=bool(task.get("download")),
        results_dir=results_dir,
        device=task.get("device"),
        amp=task.get("amp"),
        channels_last=task.get("channels_last"),
        compile=bool(task.get("compile")),
        deterministic=bool(task.get("deterministic")),
        aug_chunk=int(task.get("aug_chunk") or 1),
        progress=False,
        track=tuple(task.get("track") or ()),
    )
    return run_spec(spec, settings, report=BudgetReport(**budget))


@contextlib.contextmanager
def _logging_to(stream: Any) -> Iterator[None]:
    """Send the library's log records to ``stream`` (the run's sweep.log) for the block."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("cifarbudget")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _die_with_parent() -> None:
    """Linux: have the kernel send this worker SIGTERM when the sweep's driver dies (even by SIGKILL),
    so no orphan keeps training; elsewhere the closed stdin ends the worker after its current run."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the driver died before the call: do not outlive it
            os._exit(143)


def worker_loop() -> None:
    """Entry point of a local worker process: one JSON task per line on stdin, one outcome line back.

    While a run trains, the process's stdout and stderr go to the run's ``sweep.log``; outcomes
    go through a duplicate of the original stdout.
    """
    import gc

    import torch

    _die_with_parent()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    terminal = os.dup(2)
    os.dup2(terminal, 1)
    for line in sys.stdin:
        task = json.loads(line)
        run_dir = Path(task["results_dir"]) / task["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / WORKER_LOG, "ab") as log:  # warnings and anything else printed, too
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                outcome = execute_run(task)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(terminal, 1)
                os.dup2(terminal, 2)
        channel.write(OUTCOME_PREFIX + json.dumps(outcome) + "\n")
        gc.collect()  # the next run starts with the memory of this one given back
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    channel.close()
    os._exit(0)  # every record is written and closed: skip the slow interpreter teardown (seconds with torch)
