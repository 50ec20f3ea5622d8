"""Sweeps: a grid of :class:`~cifarbudget.spec.RunSpec` values, planned against the budget and the
results store, then trained by an executor (local worker processes, or Ray tasks) that writes into
the same store.

=================  ==============================================================================
module             owns
=================  ==============================================================================
``grid``           :class:`Sweep` (from options or a TOML file), key checks, :func:`expand_grid`
``store``          the per-run lock (filelock), :func:`stored_state`, :func:`record_failure`
``worker``         :func:`execute_run` (one run under its lock) and :func:`worker_loop`
``executors``      :class:`LocalExecutor`, :class:`RayExecutor`, :func:`make_executor`
``plan``           :func:`plan_sweep` (budget verdicts, stored states) and :func:`run_sweep`
=================  ==============================================================================
"""

from cifarbudget.sweep.executors import LocalExecutor, RayExecutor, cpu_count, make_executor, visible_gpus
from cifarbudget.sweep.grid import (
    EXECUTORS,
    Sweep,
    SweepError,
    expand_grid,
    hyperparameter_keys,
    hyperparameters,
)
from cifarbudget.sweep.plan import OVER_BUDGET, PlannedRun, RunOutcome, plan_sweep, run_sweep
from cifarbudget.sweep.store import LOCK_DIR, is_locked, lock_path, record_failure, run_lock, stored_state
from cifarbudget.sweep.worker import WORKER_LOG, execute_run, worker_loop

__all__ = [
    "EXECUTORS",
    "LOCK_DIR",
    "OVER_BUDGET",
    "WORKER_LOG",
    "LocalExecutor",
    "PlannedRun",
    "RayExecutor",
    "RunOutcome",
    "Sweep",
    "SweepError",
    "cpu_count",
    "execute_run",
    "expand_grid",
    "hyperparameter_keys",
    "hyperparameters",
    "is_locked",
    "lock_path",
    "make_executor",
    "plan_sweep",
    "record_failure",
    "run_lock",
    "run_sweep",
    "stored_state",
    "visible_gpus",
    "worker_loop",
]
