"""The results store of a sweep: one folder per run under the results directory, a lock per run,
and what the store holds of each run (new, unfinished, running elsewhere, settled, failed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarbudget.engine import CHECKPOINT
from cifarbudget.errors import CifarBudgetError
from cifarbudget.results import FAILED, RESULT_FILE, RUNNING, SETTLED, RunResult, load_result, now
from cifarbudget.spec import RunSpec

LOCK_DIR = ".locks"


def lock_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / LOCK_DIR / f"{run_id}.lock"


@contextlib.contextmanager
def run_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` for the block; yields False when another holder has it.

    A :class:`filelock.FileLock` (``flock`` on POSIX, ``msvcrt`` on Windows): the kernel drops it
    when its process dies (even by SIGKILL), so a killed sweep leaves nothing stale behind. Each
    call opens its own file description, so two workers in one process exclude each other too.
    On NFS, Linux emulates flock with POSIX locks, which work across clients.
    """
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def is_locked(path: Path) -> bool:
    """Whether some process holds the run lock at ``path`` now (a probe that releases what it takes)."""
    if not path.exists():
        return False
    with run_lock(path, wait=False) as acquired:
        return not acquired


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
) -> None:
    """Mark ``run_dir``'s record failed with ``error`` (writing a minimal record if there is none).

    The history and checkpoint of a run that failed mid-way are kept: a rerun resumes it.
    """
    from cifarbudget.results import manifest

    record = load_or_none(run_dir)
    if record is None or record.run_id != spec.run_id:
        try:
            from cifarbudget.device import select_device

            info = manifest(select_device(device), spec.seed)
        except Exception:  # the device itself may be what failed
            info = manifest("cpu", spec.seed)
        # Nothing was loaded: the counts are zero and the normalisation is the identity.
        data = {"dataset": spec.dataset, "source": "not loaded (the run failed before its data loaded)"}
        data.update(classes=[], n_train=0, n_val=0, n_test=0, mean=[0.0] * 3, std=[1.0] * 3)
        record = RunResult(spec.run_id, FAILED, spec.to_dict(), budget, data=data, manifest=info)
    record.status = FAILED
    record.error = error
    record.manifest["finished_at"] = now()
    record.save(run_dir)
