"""Sweeps: a grid of :class:`RunSpec` values, planned against the budget and the results store, then
trained by an executor (local worker processes, or Ray tasks) that writes into the same store.

A :class:`Sweep` holds the grid (``RunSpec`` field -> list of values, ``seed`` among them), the
fields every run shares, and where and how to run. :func:`expand_grid` turns it into checked,
de-duplicated specs; :func:`plan_sweep` adds each model's budget verdict (counted once per model)
and what the store already holds; :func:`run_sweep` trains what is left and returns one
:class:`RunOutcome` per run. Training itself is :func:`cifarbudget.runner.run`, so a finished run
is never trained again and an unfinished one resumes from its checkpoint. A per-run ``flock`` in
``<results_dir>/.locks/`` keeps two workers, or two sweep processes, off the same run; the kernel
releases it when its holder dies, so a killed sweep leaves nothing stale behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import json
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarbudget import budget as budget_module
from cifarbudget.budget import BudgetReport, parse_budget
from cifarbudget.engine import CHECKPOINT
from cifarbudget.errors import CifarBudgetError
from cifarbudget.results import RESULT_FILE, RunResult, load_result, now
from cifarbudget.runner import DEFAULT_RESULTS_DIR, expand_pipeline, resolve_spec
from cifarbudget.spec import RunSpec

EXECUTORS = ("local", "ray")
LOCK_DIR = ".locks"
WORKER_LOG = "sweep.log"
_WORKER_CODE = "from cifarbudget.sweep import worker_loop; worker_loop()"
_OUTCOME = "cifarbudget-outcome "  # marks the worker's answer among anything else printed to its stdout
# Spec fields in the order the grid is expanded: seeds outermost, so that an interrupted sweep has
# one seed of every configuration before the second seed of any.
_SPEC_FIELDS = [f.name for f in dataclasses.fields(RunSpec)]
AXIS_ORDER = ("seed", *[f for f in _SPEC_FIELDS if f != "seed"])
_ALIASES = {"aug": "augs", "wd": "weight_decay", "warmup": "warmup_epochs"}
_FIELD_TYPES: dict[str, type] = {
    f.name: (dict if f.name == "aug_params" else tuple if f.name == "augs" else type(f.default))
    for f in dataclasses.fields(RunSpec)
}
# Options shared by every run that are not part of the spec (they do not change the run id).
SETTINGS = ("recipe", "data_dir", "download", "results_dir", "device", "amp", "channels_last", "compile")
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "recipe": (str,),
    "data_dir": (str,),
    "download": (bool,),
    "results_dir": (str,),
    "device": (str,),
    "amp": (bool,),
    "channels_last": (bool,),
    "compile": (bool,),
    "executor": (str,),
    "workers": (int,),
    "ray_address": (str,),
}
TOP_LEVEL = ("executor", "workers", "ray_address", "grid", "fixed")
# Spec fields shown in their own dry-run column; the other axes are listed as "hyperparameters".
_OWN_COLUMNS = ("seed", "model", "augs", "sched", "tta")
_SHORT = {"weight_decay": "wd", "warmup_epochs": "warmup", "batch_size": "batch-size"}
STORED_FINAL = ("finished", "diverged")  # what runner.run returns without training


class SweepError(CifarBudgetError):
    """A sweep definition is invalid (unknown key, bad value, empty axis, bad executor)."""


# --- the grid -------------------------------------------------------------------------------------
def _key(raw: str, allowed: Sequence[str], where: str) -> str:
    key = str(raw).strip().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in allowed:
        close = difflib.get_close_matches(key, list(allowed), n=3, cutoff=0.6)
        hint = (
            f" Did you mean: {', '.join(close)}?" if close else f" Known keys: {', '.join(sorted(allowed))}."
        )
        raise SweepError(f"unknown key {raw!r} in {where}.{hint}")
    return key


def parse_pipeline(value: Any) -> tuple[str, ...]:
    """One point of the augmentation axis: ``"cutmix+blur"`` or ``["cutmix", "blur"]`` (crop-flip first)."""
    if isinstance(value, str):
        if "," in value:
            raise SweepError(
                f"aug {value!r}: in a sweep each value is one pipeline; join its augmentations with '+' "
                "(cutmix+blur) and repeat --aug (or list more values) for more points"
            )
        names = [n.strip() for n in value.split("+")]
    elif isinstance(value, list | tuple) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise SweepError(f"aug {value!r}: expected a name, 'a+b+c', or a list of names")
    if not names or any(not n for n in names):
        raise SweepError(f"aug {value!r}: empty augmentation name")
    return expand_pipeline(names)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    return None


def _as_number(value: Any, kind: type) -> int | float | None:
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            return kind(value)
    except ValueError:
        return None
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    return None


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a name", dict: "a table"}


def coerce(key: str, value: Any) -> Any:
    """``value`` (a TOML value or a command-line string) as the type of the RunSpec field ``key``."""
    kind = _FIELD_TYPES[key]
    if key == "augs":
        return parse_pipeline(value)
    if key == "budget":
        return parse_budget(value)
    text = value.strip() if isinstance(value, str) else value
    if kind is bool:
        out: Any = _as_bool(text)
    elif kind in (int, float):
        out = _as_number(text, kind)
    elif kind is str:
        out = text if isinstance(text, str) and text else None
    else:
        out = text if isinstance(text, dict) else None
    if out is None:
        raise SweepError(f"{key}: {value!r} is not {_EXPECTED.get(kind, kind.__name__)}")
    return out


@dataclass
class Sweep:
    """A grid of RunSpec fields (x seeds), the fields and options every run shares, and the executor.

    ``grid`` maps a RunSpec field to the list of its values (``augs`` values are pipelines,
    ``seed`` the seeds); ``fixed`` maps RunSpec fields to one value. Build one with
    :meth:`from_options` or :meth:`from_toml`, which check keys and coerce values.
    """

    grid: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    data_dir: str | None = None
    download: bool = False
    results_dir: str = str(DEFAULT_RESULTS_DIR)
    device: str | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    executor: str = "local"
    # local: worker processes (default 1); ray: most runs in flight at once (default: no cap)
    workers: int | None = None
    ray_address: str | None = None

    @classmethod
    def from_options(
        cls, grid: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None, **settings: Any
    ) -> Sweep:
        """A sweep from raw values (strings allowed); ``None`` values mean "not given"."""
        return cls().with_overrides(grid or {}, fixed or {}, **settings)

    @classmethod
    def from_toml(cls, path: str | Path) -> Sweep:
        """Read a sweep file: top-level ``executor``/``workers``/``ray_address``, ``[grid]``, ``[fixed]``."""
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise SweepError("reading a sweep file needs Python 3.11+ or 'pip install tomli'") from None
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise SweepError(f"cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SweepError(f"{path}: invalid TOML: {exc}") from None
        for key in data:
            if key not in TOP_LEVEL:
                _key(key, TOP_LEVEL, str(path))  # raises with a suggestion
        grid, fixed = data.get("grid", {}), data.get("fixed", {})
        if not isinstance(grid, dict) or not isinstance(fixed, dict):
            raise SweepError(f"{path}: [grid] and [fixed] must be tables")
        settings = {k: fixed[k] for k in list(fixed) if k.replace("-", "_") in SETTINGS}
        spec_fixed = {k: v for k, v in fixed.items() if k not in settings}
        settings = {k.replace("-", "_"): v for k, v in settings.items()}
        top = {k: data[k] for k in ("executor", "workers", "ray_address") if k in data}
        return cls().with_overrides(grid, spec_fixed, **settings, **top)

    def with_overrides(self, grid: Mapping[str, Any], fixed: Mapping[str, Any], **settings: Any) -> Sweep:
        """A copy where the given axes, fixed fields and settings (not ``None``) replace this sweep's."""
        new_grid, new_fixed = dict(self.grid), dict(self.fixed)
        grid_keys = [_key(k, [*_SPEC_FIELDS, "seeds"], "[grid]") for k in grid]
        if "seeds" in grid_keys and "seed" in grid_keys:
            raise SweepError("give the seeds as 'seeds = N' (seeds 0..N-1) or as 'seed = [...]', not both")
        for key, values in zip(grid_keys, grid.values(), strict=True):
            if key == "seeds":
                key, points = "seed", _seed_range(values)
            else:  # a list of points (an aug point may itself be a list: one pipeline), or one point
                listed = list(values) if isinstance(values, list | tuple) else [values]
                points = [coerce(key, v) for v in listed]
            if not points:
                raise SweepError(f"the {key} axis has no values")
            if key == "allow_over_budget":
                raise SweepError("a sweep never trains over-budget models: allow_over_budget cannot be set")
            new_grid[key] = list(dict.fromkeys(_hashable(p) for p in points))
            new_fixed.pop(key, None)
        for raw, value in fixed.items():
            key = _key(raw, _SPEC_FIELDS, "[fixed]")
            if key == "allow_over_budget":
                raise SweepError("a sweep never trains over-budget models: allow_over_budget cannot be set")
            new_fixed[key] = coerce(key, value)
            new_grid.pop(key, None)
        changes: dict[str, Any] = {}
        for raw, value in settings.items():
            key = _key(raw, list(_SETTING_TYPES), "the sweep settings")
            if value is None:
                continue
            kinds = _SETTING_TYPES[key]
            if isinstance(value, Path) and str in kinds:
                value = str(value)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join("true/false" if k is bool else k.__name__ for k in kinds)
                raise SweepError(f"{key} must be {names} (got {value!r})")
            changes[key] = value
        sweep = dataclasses.replace(self, grid=new_grid, fixed=new_fixed, **changes)
        if sweep.executor not in EXECUTORS:
            raise SweepError(f"unknown executor {sweep.executor!r}; use one of: {', '.join(EXECUTORS)}")
        if sweep.workers is not None and sweep.workers < 1:
            raise SweepError(f"workers must be at least 1 (got {sweep.workers})")
        return sweep

    @property
    def results_path(self) -> Path:
        return Path(self.results_dir).expanduser().resolve()

    def specs(self) -> list[RunSpec]:
        return expand_grid(self)


def _seed_range(value: Any) -> list[int]:
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    try:
        n = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        n = -1
    if n < 1:
        raise SweepError(
            f"seeds must be a positive number of seeds (got {value!r}); seeds N runs seeds 0..N-1"
        )
    return list(range(n))


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _unhash(key: str, value: Any) -> Any:
    return json.loads(value) if key == "aug_params" and isinstance(value, str) else value


def expand_grid(sweep: Sweep) -> list[RunSpec]:
    """Every grid point as a checked :class:`RunSpec` (recipe <- fixed <- point), duplicates dropped.

    Every name is looked up in its registry here, so a typo fails before anything is built or
    trained. Seeds are the outermost loop.
    """
    if "model" not in sweep.grid and "model" not in sweep.fixed and sweep.recipe is None:
        raise SweepError("no model: pass --model (repeatable) or --recipe NAME, or set model in [grid]")
    keys = [k for k in AXIS_ORDER if k in sweep.grid]
    specs: dict[str, RunSpec] = {}
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        options = {**sweep.fixed, **{k: _unhash(k, v) for k, v in zip(keys, values, strict=True)}}
        spec = resolve_spec(recipe=sweep.recipe, **options)
        specs.setdefault(spec.run_id, spec)
    return list(specs.values())


# --- the plan: budget and the results store -------------------------------------------------------
@dataclass
class PlannedRun:
    """One run of a sweep before it is trained: its spec, its model's budget, what the store holds."""

    spec: RunSpec
    report: BudgetReport
    state: str  # new | unfinished | running (locked by another process) | finished | diverged | failed
    epochs_done: int = 0
    record: RunResult | None = None

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def within_budget(self) -> bool:
        return self.report.within_budget


def lock_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / LOCK_DIR / f"{run_id}.lock"


@contextlib.contextmanager
def run_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` for the block; yields False when another holder has it.

    The kernel drops the lock when its process dies (even by SIGKILL), so nothing goes stale.
    On NFS, Linux emulates flock with POSIX locks, which work across clients.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    acquired = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            acquired = True
        except BlockingIOError:
            pass
        if acquired:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield acquired
    finally:
        if acquired:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds the run lock at ``path`` now (a probe: it writes nothing)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock the probe took
    return False


def _load_or_none(run_dir: Path) -> RunResult | None:
    if not (run_dir / RESULT_FILE).exists():
        return None
    with contextlib.suppress(CifarBudgetError):
        return load_result(run_dir)
    return None  # a corrupt record: the runner decides from the checkpoint


def stored_state(results_dir: Path, run_id: str) -> tuple[str, int, RunResult | None]:
    """(state, epochs recorded, record) of ``run_id`` in the store, without touching it."""
    run_dir = Path(results_dir) / run_id
    record = _load_or_none(run_dir)
    done = len(record.history) if record is not None else 0
    if is_locked(lock_path(results_dir, run_id)):
        return "running", done, record
    if record is not None and record.status in ("finished", "diverged", "failed"):
        return record.status, done, record
    if record is not None or (run_dir / CHECKPOINT).exists():
        return "unfinished", done, record
    return "new", 0, None


def plan_sweep(sweep: Sweep, specs: Sequence[RunSpec] | None = None) -> list[PlannedRun]:
    """Each run with its model's budget verdict (counted once per model) and its state in the store."""
    specs = expand_grid(sweep) if specs is None else specs
    reports: dict[tuple[str, int, int], BudgetReport] = {}
    planned = []
    for spec in specs:
        key = (spec.model, spec.budget, spec.num_classes or 10)
        if key not in reports:
            try:
                reports[key] = budget_module.check_budget(spec.model, spec.budget, num_classes=key[2])
            except CifarBudgetError:
                raise
            except Exception as exc:  # a plugin's model that cannot even be built
                raise SweepError(
                    f"{spec.model}: cannot build the model to count its parameters "
                    f"({type(exc).__name__}: {exc})".splitlines()[0]
                ) from None
        state, done, record = stored_state(sweep.results_path, spec.run_id)
        planned.append(PlannedRun(spec, reports[key], state, done, record))
    return planned


# --- one run, in a worker -------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, CifarBudgetError):
        return text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _outcome(run_id: str, result: RunResult | None, *, status: str, trained: bool, **extra: Any) -> dict:
    final = result.final if result is not None else {}
    return {
        "run_id": run_id,
        "status": status,
        "trained": trained,
        "test_acc": final.get("test_acc"),
        "test_acc_tta": final.get("test_acc_tta"),
        "val_acc": final.get("val_acc"),
        "error": result.error if result is not None else None,
        **extra,
    }


def record_failure(
    spec: RunSpec, budget: dict[str, Any], run_dir: Path, error: str, device: str | None
) -> None:
    """Mark ``run_dir``'s record failed with ``error`` (writing a minimal record if there is none).

    The history and checkpoint of a run that failed mid-way are kept: a rerun resumes it.
    """
    from cifarbudget.results import manifest

    record = _load_or_none(run_dir)
    if record is None or record.run_id != spec.run_id:
        try:
            from cifarbudget.runner import select_device

            info = manifest(select_device(device), spec.seed)
        except Exception:  # the device itself may be what failed
            info = manifest("cpu", spec.seed)
        # Nothing was loaded: the counts are zero and the normalisation is the identity.
        data = {"dataset": spec.dataset, "source": "not loaded (the run failed before its data loaded)"}
        data.update(classes=[], n_train=0, n_val=0, n_test=0, mean=[0.0] * 3, std=[1.0] * 3)
        record = RunResult(spec.run_id, "failed", spec.to_dict(), budget, data=data, manifest=info)
    record.status = "failed"
    record.error = error
    record.manifest["finished_at"] = now()
    record.save(run_dir)


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

    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    spec = RunSpec.from_dict(task["spec"])
    results_dir = Path(task["results_dir"])
    run_dir = results_dir / spec.run_id
    with run_lock(lock_path(results_dir, spec.run_id), wait=bool(task.get("wait"))) as acquired:
        if not acquired:
            return {"run_id": spec.run_id, "status": "busy", "trained": False}
        record = _load_or_none(run_dir)
        if record is not None and record.status in STORED_FINAL:  # finished by another process meanwhile
            return _outcome(spec.run_id, record, status=record.status, trained=False)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / WORKER_LOG, "a") as log:
            print(f"--- {now()} {socket.gethostname()} pid {os.getpid()}", file=log, flush=True)
            started = time.perf_counter()
            try:
                with _command_line(task.get("command")):
                    result = _train(task, spec, results_dir, lambda m: print(m, file=log, flush=True))
            # a plugin's error or a CifarBudgetError: this run fails, the sweep goes on
            except Exception as exc:
                traceback.print_exc(file=log)
                error = _describe(exc)
                record_failure(spec, task["budget"], run_dir, error, task.get("device"))
                return {"run_id": spec.run_id, "status": "failed", "trained": True, "error": error}
        seconds = time.perf_counter() - started
        return _outcome(spec.run_id, result, status=result.status, trained=True, seconds=seconds)


def _train(task: dict[str, Any], spec: RunSpec, results_dir: Path, say: Callable[[str], None]) -> RunResult:
    from cifarbudget import runner

    options = spec.to_dict()
    result = runner.run(
        options.pop("model"),
        results_dir=results_dir,
        data_dir=task.get("data_dir"),
        download=bool(task.get("download")),
        device=task.get("device"),
        amp=task.get("amp"),
        channels_last=task.get("channels_last"),
        compile=bool(task.get("compile")),
        progress=False,
        log=say,
        **options,
    )
    if result.run_id != spec.run_id:  # resolve_spec must be idempotent; guard the store against a bug
        raise RuntimeError(f"the run resolved to {result.run_id}, not the planned {spec.run_id}")
    return result


def worker_loop() -> None:
    """Entry point of a local worker process: one JSON task per line on stdin, one outcome line back.

    While a run trains, the process's stdout and stderr go to the run's ``sweep.log``; outcomes
    go through a duplicate of the original stdout.
    """
    import gc

    import torch

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
        channel.write(_OUTCOME + json.dumps(outcome) + "\n")
        gc.collect()  # the next run starts with the memory of this one given back
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    channel.close()
    os._exit(0)  # every record is written and closed: skip the slow interpreter teardown (seconds with torch)


# --- executors ------------------------------------------------------------------------------------
def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def visible_gpus(device: str | None) -> list[str]:
    """The CUDA devices a local worker may be pinned to (as CUDA_VISIBLE_DEVICES entries)."""
    if device not in (None, "auto", "cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [x.strip() for x in env.split(",") if x.strip()] if env else [str(i) for i in range(count)]
    return ids[:count]


class LocalExecutor:
    """N worker slots, each a long-lived ``python`` process that trains one run after another.

    On CUDA, slot ``i`` is pinned to GPU ``i mod count`` through CUDA_VISIBLE_DEVICES in the
    worker's environment (set before it starts, so before it imports torch); on the CPU, each
    worker gets ``cpu_count // workers`` threads. A worker that dies fails its current run only;
    the slot starts a fresh process for its next run.
    """

    def __init__(self, sweep: Sweep) -> None:
        self.workers = int(sweep.workers or 1)
        self.slots = self.workers
        self.gpus = visible_gpus(sweep.device)
        self.threads = max(1, cpu_count() // self.workers)
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(self.workers):
            self._free.put(slot)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sweep-worker")
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else f"CPU, {self.threads} thread(s) each"
        return f"local executor: {self.workers} worker process(es), {where}"

    def submit(self, task: dict[str, Any]) -> Future:
        return self._pool.submit(self._run, {**task, "threads": self.threads})

    def _start(self, slot: int) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        with self._lock:
            self._procs[slot] = proc
        return proc

    def _run(self, task: dict[str, Any]) -> dict[str, Any]:
        slot = self._free.get()
        try:
            with self._lock:
                proc = self._procs.get(slot)
            if proc is None or proc.poll() is not None:
                proc = self._start(slot)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(task) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                while line and not line.startswith(_OUTCOME):
                    line = proc.stdout.readline()
            except OSError:  # the worker died before it read the task
                line = ""
            if line:
                return json.loads(line[len(_OUTCOME) :])
            code = proc.wait()
            log = Path(task["results_dir"]) / task["run_id"] / WORKER_LOG
            return {
                "run_id": task["run_id"],
                "status": "crashed",
                "error": f"worker process exited with code {code} during the run (see {log})",
            }
        finally:
            self._free.put(slot)

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            try:
                out.append((fut, fut.result()))
            except Exception as exc:  # an error of the executor itself, not of the run
                out.append((fut, {"status": "crashed", "error": _describe(exc)}))
        return out

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if cancel:
                proc.terminate()
            elif proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # the worker's loop ends
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RayExecutor:
    """Each run is a Ray task (one GPU when the cluster has GPUs) writing into the same results store."""

    def __init__(self, sweep: Sweep) -> None:
        try:
            import ray
        except ImportError:
            raise SweepError(
                "--executor ray needs Ray: pip install 'cifarbudget[ray]' (or 'ray>=2.9')"
            ) from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=sweep.ray_address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # no cluster at the address, a version mismatch, ...
                where = sweep.ray_address or "a local instance"
                raise SweepError(f"cannot start or connect to Ray ({where}): {_describe(exc)}") from None
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0)) if sweep.device not in ("cpu", "mps") else 0
        if gpus:
            self.num_gpus, self.num_cpus = 1, 1
            self.threads = max(1, cpus // gpus)
        else:
            self.num_gpus = 0
            self.num_cpus = max(1, cpus // sweep.workers) if sweep.workers else 1
            self.threads = self.num_cpus
        self.slots = int(sweep.workers) if sweep.workers else sys.maxsize
        self._remote = ray.remote(execute_run).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=1
        )
        self._cluster = f"{cpus} CPUs, {gpus} GPUs"

    def describe(self) -> str:
        per = f"{self.num_gpus} GPU + {self.num_cpus} CPU" if self.num_gpus else f"{self.num_cpus} CPU"
        cap = "" if self.slots == sys.maxsize else f", at most {self.slots} at once"
        return f"ray executor: cluster of {self._cluster}; {per} per run{cap}"

    def submit(self, task: dict[str, Any]) -> Any:
        return self._remote.remote({**task, "threads": self.threads})

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for ref in done:
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as exc:  # the worker or its node died
                out.append((ref, {"status": "crashed", "error": f"ray task failed: {_describe(exc)}"}))
        return out

    def close(self, cancel: bool = False) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(sweep: Sweep) -> LocalExecutor | RayExecutor:
    return RayExecutor(sweep) if sweep.executor == "ray" else LocalExecutor(sweep)


# --- the sweep ------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    """What became of one run of a sweep."""

    spec: RunSpec
    status: str  # finished | diverged | failed | over_budget
    trained: bool  # trained or resumed by this sweep (False: already recorded, or over budget)
    test_acc: float | None = None
    test_acc_tta: float | None = None
    val_acc: float | None = None
    error: str | None = None
    seconds: float | None = None
    run_dir: Path | None = None

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def ok(self) -> bool:
        """Finished, or skipped because over budget (never trained, by design)."""
        return self.status in ("finished", "over_budget")


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
    ``on_outcome(outcome, done, total, eta_seconds)`` is called as each run is settled.
    """
    planned = list(plan_sweep(sweep) if planned is None else planned)
    results_dir = sweep.results_path
    total, done = len(planned), 0
    outcomes: dict[str, RunOutcome] = {}

    def settle(outcome: RunOutcome, eta: float | None = None) -> None:
        nonlocal done
        done += 1
        outcomes[outcome.run_id] = outcome
        if on_outcome is not None:
            on_outcome(outcome, done, total, eta)

    specs = {p.run_id: p.spec for p in planned}
    tasks = []
    for p in planned:
        if not p.within_budget:
            settle(RunOutcome(p.spec, "over_budget", False, error=p.report.reason))
        elif p.state in STORED_FINAL and p.record is not None:
            raw = _outcome(p.run_id, p.record, status=p.state, trained=False)
            settle(_from_dict(p.spec, raw, results_dir / p.run_id))
        else:
            tasks.append(_task(sweep, p))
    if not tasks:
        return [outcomes[p.run_id] for p in planned]

    executor = make_executor(sweep)
    if on_start is not None:
        on_start(executor.describe())
    started, settled = time.perf_counter(), 0
    pending, deferred, running = deque(tasks), [], {}
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
                settle(_from_dict(specs[task["run_id"]], raw, results_dir / task["run_id"]), eta)
    except BaseException:  # Ctrl-C included: stop the workers; their runs resume next time
        executor.close(cancel=True)
        raise
    executor.close()
    return [outcomes[p.run_id] for p in planned]


def _task(sweep: Sweep, planned: PlannedRun) -> dict[str, Any]:
    """What a worker needs to train ``planned``: plain JSON (it crosses process and machine borders)."""
    return {
        "run_id": planned.run_id,
        "spec": planned.spec.to_dict(),
        "budget": planned.report.to_dict(),
        "results_dir": str(sweep.results_path),
        "data_dir": str(Path(sweep.data_dir).expanduser().resolve()) if sweep.data_dir else None,
        "download": sweep.download,
        "device": sweep.device,
        "amp": sweep.amp,
        "channels_last": sweep.channels_last,
        "compile": sweep.compile,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "wait": False,
    }


def _record_crash(task: dict[str, Any], error: str) -> dict[str, Any]:
    """A worker died without reporting: record the run as failed (unless another process took it)."""
    spec = RunSpec.from_dict(task["spec"])
    results_dir = Path(task["results_dir"])
    with run_lock(lock_path(results_dir, spec.run_id), wait=False) as acquired:
        if acquired:
            record_failure(spec, task["budget"], results_dir / spec.run_id, error, task.get("device"))
    return {"run_id": spec.run_id, "status": "failed", "trained": True, "error": error}


def _from_dict(spec: RunSpec, raw: dict[str, Any], run_dir: Path) -> RunOutcome:
    return RunOutcome(
        spec,
        raw["status"],
        bool(raw.get("trained")),
        test_acc=raw.get("test_acc"),
        test_acc_tta=raw.get("test_acc_tta"),
        val_acc=raw.get("val_acc"),
        error=raw.get("error"),
        seconds=raw.get("seconds"),
        run_dir=run_dir,
    )


def hyperparameters(spec: RunSpec, keys: Sequence[str]) -> str:
    """``epochs=3 lr=0.05 wd=0.001``: the spec's values of ``keys`` as a short cell."""
    parts = []
    for key in keys:
        value = getattr(spec, key)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{_SHORT.get(key, key.replace('_', '-'))}={text}")
    return " ".join(parts)


def hyperparameter_keys(sweep: Sweep) -> list[str]:
    """The axes shown in the "hyperparameters" column: epochs, then every other axis of the grid."""
    return ["epochs"] + [k for k in AXIS_ORDER if k in sweep.grid and k not in (*_OWN_COLUMNS, "epochs")]
