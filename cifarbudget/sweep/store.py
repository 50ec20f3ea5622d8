"""The results store of a sweep: one folder per run under the results directory, a lock per run
(:func:`cifarbudget.io.run_lock`, shared with ``cifarbudget run``), and what the store holds of
each run (new, unfinished, running elsewhere, settled, failed).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cifarbudget.engine import CHECKPOINT
from cifarbudget.errors import CifarBudgetError
from cifarbudget.io import LOCK_DIR, is_locked, lock_path, run_lock  # noqa: F401 (the store's names)
from cifarbudget.results import FAILED, RESULT_FILE, RUNNING, SETTLED, RunResult, load_result, now
from cifarbudget.spec import RunSpec


def load_or_none(run_dir: Path) -> RunResult | None:
    if not (run_dir / RESULT_FILE).exists():
        return None
    with contextlib.suppress(CifarBudgetError):
        return load_result(run_dir)
    return None  # a corrupt record: the runner decides from the checkpoint


def stored_state(results_dir: Path, run_id: str) -> tuple[str, int, RunResult | None]:
    """(state, epochs recorded, record) of ``run_id`` in the store, without touching it."""
    run_dir = Path(results_dir) / run_id
    record = load_or_none(run_dir)
    done = len(record.history) if record is not None else 0
    if is_locked(lock_path(results_dir, run_id)):
        return RUNNING, done, record
    if record is not None and record.status in (*SETTLED, FAILED):
        return record.status, done, record
    if record is not None or (run_dir / CHECKPOINT).exists():
        return "unfinished", done, record
    return "new", 0, None


def record_failure(
    spec: RunSpec, budget: dict[str, Any], run_dir: Path, error: str, device: str | None
) -> bool:
    """Mark ``run_dir``'s record failed with ``error`` (writing a minimal record if there is none);
    whether it did.

    The history and checkpoint of a run that failed mid-way are kept: a rerun resumes it. A
    settled record (finished or diverged) is never marked: what failed then was only an evaluation
    of it (another TTA policy), and the trained run and its evaluations stay as they are.
    """
    from cifarbudget.results import manifest

    record = load_or_none(run_dir)
    if record is not None and record.run_id == spec.run_id and record.status in SETTLED:
        return False
    if record is None or record.run_id != spec.run_id:
        try:
            from cifarbudget.device import select_device

            info = manifest(select_device(device), spec.seed)
        except Exception:  # the device itself may be what failed
            info = manifest("cpu", spec.seed)
        # Nothing was loaded: the counts are zero and the normalisation is the identity.
        data: dict[str, Any] = {
            "dataset": spec.dataset,
            "source": "not loaded (the run failed before its data loaded)",
        }
        data.update(classes=[], n_train=0, n_val=0, n_test=0, mean=[0.0] * 3, std=[1.0] * 3)
        record = RunResult(spec.run_id, FAILED, spec.to_dict(), budget, data=data, manifest=info)
    record.status = FAILED
    record.error = error
    record.manifest["finished_at"] = now()
    record.save(run_dir)
    return True
