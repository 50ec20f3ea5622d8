"""Kill-anywhere stress test: SIGKILL a CPU run (or a sweep) at random moments, resume it, compare.

The on-demand check of issue 12: a run killed with SIGKILL at 20 random moments and resumed each
time must end with metrics bit-identical to an uninterrupted run of the same command, and a
sweep killed 20 times must end with every run present exactly once, finished, with the metrics
of an uninterrupted sweep::

    python benchmarks/stress_kill.py --kills 20 --seed 0            # a run   (~5-10 min on 2 cores)
    python benchmarks/stress_kill.py --kills 20 --seed 0 --sweep    # a sweep (~5-10 min on 2 cores)
    python -m pytest benchmarks/test_stress_kill.py -q -p no:cacheprovider            # both
    python -m pytest benchmarks/test_stress_kill.py --quick -q -p no:cacheprovider    # a few kills

Method. The uninterrupted reference is run first while its run folder is watched (every 3 ms),
which gives its timeline: start-up, each epoch's record, the final record, the plots. The killed
series then starts the same command in a fresh results folder, SIGKILLs its whole process group
at a planned moment, checks what the kill left on disk, and starts the command again, until all
kills have happened; the last start runs to the end.

A run's kills are moments drawn from a seeded RNG uniformly over the reference run up to its
final record, sorted, so that they walk through start-up, every epoch (steps, validation) and the
final evaluation. A moment is mapped onto the attempt that resumed from epoch ``c`` as the same
distance past the reference's record of epoch ``c``, counted from the attempt's first record.
About a third of the moments then wait for the next checkpoint event, windows too short for a
uniform moment to hit: ``+checkpoint-write`` kills as soon as the checkpoint's temporary file
appears (inside ``atomic_torch_save``'s write and fsync), ``+after-checkpoint`` as soon as
``checkpoint.pt`` is replaced (between the checkpoint and the record, or inside the record's
write). The last of three or more kills lands after the final record, while the plots are drawn:
the only moment a later rerun cannot reach.

A sweep's kills are moments of the reference sweep drawn the same way (up to its last run's
final record, sorted), mapped through the reference's progress (epochs recorded plus runs
finished): the attempt waits until its folder shows the progress the reference had at the
moment, then as many seconds as the reference was past it. About a third then wait for the next
checkpoint write (``+checkpoint-write``) or run's final record (``+run-finished``: plots, the
worker's answer, the next task). The whole process group is killed: driver and workers.

After every kill the folder must hold only readable records and checkpoints whose histories are
prefixes of the reference's, a record at most one epoch behind its checkpoint, a ``metrics.csv``
at most one write apart from the record, and no held lock (problems are recorded per kill and
the series goes on). At the end the record's history (without the wall-clock fields), final
metrics, ``metrics.csv`` and the checkpoint's model, EMA, optimizer, scheduler and RNG state must
equal the reference's exactly; a sweep must also hold every planned run exactly once and give
the reference's leaderboard. Temporary files a kill left behind and missing plots are counted
and reported (``leftovers``) apart from that verdict.

Should a series finish before all kills have happened (a kill that lands after the final record,
or a process faster than the reference), the remaining kills continue in a new series in a fresh
folder, with moments drawn afresh, verified the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from cifarbudget.cli import main; main()"]
AUTOLOAD_ENV = "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD"
RESULT, CHECKPOINT, METRICS = "result.json", "checkpoint.pt", "metrics.csv"
PLOTS = ("curves.png", "confusion.png")
WORKER_LOG = "sweep.log"
TIMING_FIELDS = ("seconds", "images_per_s")  # per-epoch wall-clock fields: legitimately differ
BOARD_TIMING = ("train_seconds_mean", "train_images_per_s_mean")
POLL_S = 0.003  # the watcher's polling interval: a checkpoint write (3 MB + fsync) lasts longer
ATTEMPT_TIMEOUT_S = 900.0


class StressError(AssertionError):
    """An invariant broke: the message says which, after which kill, and what was on disk."""


# --- configurations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """One CPU run on the builtin synthetic dataset: EMA and a TTA policy make the final evaluation last."""

    model: str = "airnet-small"
    train_subset: int = 1024
    val_size: int = 256
    epochs: int = 4
    batch_size: int = 64
    ema: float = 0.99
    tta: str = "flip"
    sched: str = "cosine"
    aug: str = "crop-flip+cutmix"
    seed: int = 0

    def args(self, results_dir: Path) -> list[str]:
        return [
            "run",
            self.model,
            "--dataset",
            "synthetic",
            "--train-subset",
            str(self.train_subset),
            "--val-size",
            str(self.val_size),
            "--epochs",
            str(self.epochs),
            "--batch-size",
            str(self.batch_size),
            "--ema",
            str(self.ema),
            "--tta",
            self.tta,
            "--sched",
            self.sched,
            "--aug",
            self.aug,
            "--seed",
            str(self.seed),
            "--device",
            "cpu",
            "--quiet",
            "--results-dir",
            str(results_dir),
        ]


@dataclass(frozen=True)
class SweepConfig:
    """A small grid (models x seeds) on the builtin synthetic dataset with local worker processes."""

    models: tuple[str, ...] = ("airnet-small", "resnet20")
    seeds: int = 2
    epochs: int = 2
    train_subset: int = 512
    val_size: int = 64
    batch_size: int = 64
    ema: float = 0.9
    sched: str = "cosine"
    workers: int = 2

    @property
    def n_runs(self) -> int:
        return len(self.models) * self.seeds

    def args(self, results_dir: Path) -> list[str]:
        models = [a for m in self.models for a in ("--model", m)]
        return [
            "sweep",
            *models,
            "--seeds",
            str(self.seeds),
            "--dataset",
            "synthetic",
            "--epochs",
            str(self.epochs),
            "--train-subset",
            str(self.train_subset),
            "--val-size",
            str(self.val_size),
            "--batch-size",
            str(self.batch_size),
            "--ema",
            str(self.ema),
            "--sched",
            self.sched,
            "--device",
            "cpu",
            "--workers",
            str(self.workers),
            "--results-dir",
            str(results_dir),
        ]


FULL_RUN = RunConfig()
QUICK_RUN = RunConfig(train_subset=256, val_size=64, epochs=2, ema=0.9)
FULL_SWEEP = SweepConfig()
QUICK_SWEEP = SweepConfig(models=("airnet-small",), epochs=1, train_subset=128, val_size=32)


# --- what is on disk -----------------------------------------------------------------------------
def _key(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file: changes when an atomic write replaces it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def tmp_files(run_dir: Path) -> set[str]:
    """Temporary files of atomic writes (``.NAME.XXXX.tmp``) in ``run_dir``."""
    try:
        return {e.name for e in os.scandir(run_dir) if e.name.startswith(".") and e.name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def tmp_target(name: str) -> str:
    """The file a temporary file was written for: ``.checkpoint.pt.ab12.tmp`` -> ``checkpoint.pt``."""
    return name[1:].rsplit(".", 2)[0]


class RunDirWatch:
    """Follows one run folder from outside: record writes, checkpoint replacements, temporary files."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.record_key = _key(run_dir / RESULT)
        self.ckpt_key = _key(run_dir / CHECKPOINT)
        self.record_writes = 0  # records written since the watch began
        self.ckpt_writes = 0  # checkpoint replacements seen since the watch began
        self.status: str | None = None
        self.epochs = 0  # history length of the last record seen
        self.tmp: set[str] = tmp_files(run_dir)
        self.tmp_seen: set[str] = set()  # temporary files that appeared since the watch began
        self.log_key = _key(run_dir / WORKER_LOG)
        self.log_writes = 0  # a sweep worker writes a line to the run's sweep.log when it takes the run
        if self.record_key is not None:
            self._read_record()

    def _read_record(self) -> None:
        try:
            data = json.loads((self.run_dir / RESULT).read_text())
        except (OSError, ValueError):
            return  # replaced while read: the next poll reads the new one
        self.status, self.epochs = data.get("status"), len(data.get("history") or [])

    def poll(self) -> None:
        tmp = tmp_files(self.run_dir)
        self.tmp_seen |= tmp - self.tmp
        self.tmp = tmp
        ckpt = _key(self.run_dir / CHECKPOINT)
        if ckpt is not None and ckpt != self.ckpt_key:
            self.ckpt_writes += 1
        self.ckpt_key = ckpt
        worker_log = _key(self.run_dir / WORKER_LOG)
        if worker_log is not None and worker_log != self.log_key:
            self.log_writes += 1
            self.log_key = worker_log
        record = _key(self.run_dir / RESULT)
        if record is not None and record != self.record_key:
            self.record_writes += 1
            self.record_key = record
            self._read_record()

    def checkpoint_tmp(self) -> bool:
        return any(tmp_target(n) == CHECKPOINT for n in self.tmp)


def comparable(history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch metrics without the wall-clock fields."""
    return [{k: v for k, v in h.items() if k not in TIMING_FIELDS} for h in history]


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``result.json``, validated against the schema; None when there is none."""
    from cifarbudget.results import validate_result

    path = run_dir / RESULT
    if not path.exists():
        return None
    data = json.loads(path.read_text())  # a half-written record raises here: the test fails
    validate_result(data)
    return data  # type: ignore[no-any-return]


def read_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    import torch

    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def read_metrics_csv(run_dir: Path) -> list[dict[str, str]] | None:
    path = run_dir / METRICS
    if not path.exists():
        return None
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two nested structures of dicts, lists, tensors and numbers differ (bit for bit)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{where}: tensor vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"]
        return [] if torch.equal(a, b) else [f"{where}: tensors differ"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(map(str, set(a) ^ set(b)))} in one only"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} vs {b!r}"]


CHECKPOINT_STATE = ("model", "ema", "optimizer", "scheduler", "rng", "epoch", "status")


def checkpoint_differences(ckpt: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    """Differences in everything a checkpoint restores except the wall-clock time trained."""
    if not ckpt:
        return ["no checkpoint"]
    diffs = [d for k in CHECKPOINT_STATE for d in differences(ckpt.get(k), ref.get(k), k)]
    return diffs + differences(comparable(ckpt["history"]), comparable(ref["history"]), "history")


# --- processes -----------------------------------------------------------------------------------
def cli_env() -> dict[str, str]:
    """The builtin plugins only (the same names on every machine) and this checkout's package."""
    env = {**os.environ, AUTOLOAD_ENV: "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still alive (zombies, whose locks are gone, are not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class Attempt:
    """One start of the command: killed, or ended by itself (``returncode``)."""

    killed: bool
    seconds: float
    returncode: int | None
    log: Path


def run_attempt(
    args: list[str],
    cwd: Path,
    log: Path,
    poll: Callable[[], None],
    should_kill: Callable[[float], bool],
    timeout: float = ATTEMPT_TIMEOUT_S,
) -> Attempt:
    """Start the CLI in its own process group; ``poll()`` then ``should_kill(seconds)`` every few ms.

    A kill is SIGKILL to the whole group (a sweep's workers too); it returns once no process of the
    group is alive, so every lock the group held is released.
    """
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, *args],
            cwd=cwd,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while True:
                elapsed = time.perf_counter() - start
                if proc.poll() is not None:
                    return Attempt(False, elapsed, proc.returncode, log)
                poll()
                if should_kill(elapsed):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    deadline = time.monotonic() + 30
                    while _group_alive(proc.pid) and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if _group_alive(proc.pid):
                        raise StressError(f"process group {proc.pid} survived SIGKILL for 30 s")
                    if proc.returncode != -signal.SIGKILL:  # it had ended by itself just before
                        return Attempt(False, elapsed, proc.returncode, log)
                    return Attempt(True, elapsed, None, log)
                if elapsed > timeout:
                    raise StressError(f"{' '.join(args[:2])} ran for over {timeout:.0f} s (see {log})")
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        revision: str | None = (rev + ("+dirty" if dirty else "")) if rev else None
    except (OSError, subprocess.SubprocessError):
        revision = None
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "load_average": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "git_revision": revision,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --- the report ----------------------------------------------------------------------------------
@dataclass
class Kill:
    """One SIGKILL: what was planned and where it landed."""

    index: int
    series: int
    kind: str
    target: str  # what the plan aimed at, e.g. "t=12.3 s" or "epoch 3 checkpoint"
    seconds: float  # since the attempt started
    landed: str  # the phase read from the folder after the kill
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """The figures of one stress test (run or sweep), as printed and as written to JSON."""

    what: str
    command: str
    config: dict[str, Any]
    kills_planned: int
    seed: int
    kills: list[Kill] = field(default_factory=list)
    series: int = 0
    reference_seconds: float = 0.0
    killed_seconds: float = 0.0  # all attempts of all series, the final ones included
    wall_seconds: float = 0.0
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    leftovers: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        self.checks[name] = {"ok": bool(ok), "detail": detail}

    @property
    def passed(self) -> bool:
        """The resume verdict: every check holds (leftovers are reported separately)."""
        return len(self.kills) == self.kills_planned and all(c["ok"] for c in self.checks.values())

    @property
    def clean(self) -> bool:
        """No temporary file or missing plot left behind by the kills."""
        return not self.leftovers.get("tmp_files") and not self.leftovers.get("missing_plots")

    def landed(self) -> dict[str, int]:
        return dict(Counter(k.landed for k in self.kills).most_common())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(passed=self.passed, clean=self.clean, landed=self.landed())
        return d

    def summary(self) -> str:
        lines = [
            f"kill-anywhere stress test: {self.what}",
            f"  command    {self.command}",
            f"  kills      {len(self.kills)} of {self.kills_planned} (seed {self.seed}), in {self.series} series",
            f"  reference  {self.reference_seconds:.1f} s uninterrupted",
            f"  killed     {self.killed_seconds:.1f} s over all attempts; {self.wall_seconds:.1f} s in all",
            "  landed     " + ", ".join(f"{n} x {phase}" for phase, n in self.landed().items()),
        ]
        for k in self.kills:
            lines.append(f"    #{k.index:>2} [{k.kind}: {k.target}] at {k.seconds:6.2f} s -> {k.landed}")
            for run, phase in k.detail.get("runs", {}).items():
                lines.append(f"          {run}: {phase}")
            for problem in k.detail.get("problems", []):
                lines.append(f"          PROBLEM: {problem}")
        for name, c in self.checks.items():
            lines.append(
                f"  {'ok  ' if c['ok'] else 'FAIL'} {name}" + (f": {c['detail']}" if c["detail"] else "")
            )
        left = self.leftovers
        lines.append(
            f"  leftovers  {len(left.get('tmp_files', []))} temporary file(s), "
            f"{left.get('tmp_bytes', 0) / 1e6:.1f} MB; missing plots: {left.get('missing_plots') or 'none'}"
        )
        lines.append(
            f"  verdict    {'PASS' if self.passed else 'FAIL'} (resume), {'clean' if self.clean else 'NOT clean'}"
        )
        m = self.machine
        lines.append(
            f"  machine    {m.get('cpu_model')}, {m.get('cpu_cores')} cores; load average "
            f"{m.get('load_average')} at the start, {m.get('load_average_end')} at the end"
        )
        lines.append(f"  revision   {m.get('git_revision')}  {m.get('date')}")
        return "\n".join(lines)


# --- a run ---------------------------------------------------------------------------------------
@dataclass
class RunTimeline:
    """Seconds into the uninterrupted reference run at which each thing happened."""

    first_record: float = 0.0  # start-up done: data, budget, build
    epoch_records: list[float] = field(default_factory=list)  # record of epoch j written
    finished_record: float = 0.0  # the final record: evaluation done
    plots_written: float = 0.0  # confusion.png, the last file of a run
    exit: float = 0.0

    def epoch_seconds(self, j: int) -> float:
        """Wall seconds of epoch ``j`` (1-based): steps, validation, checkpoint and record."""
        before = self.epoch_records[j - 2] if j > 1 else self.first_record
        return self.epoch_records[j - 1] - before

    @property
    def final_eval(self) -> float:
        return self.finished_record - self.epoch_records[-1]

    @property
    def plots(self) -> float:
        """From the final record to the last plot: metrics.csv, curves.png, confusion.png (0 when
        the plots are drawn before the final record)."""
        return max(0.0, (self.plots_written or self.exit) - self.finished_record)


def reference_run(cfg: RunConfig, work: Path) -> tuple[Path, RunTimeline, float]:
    """The uninterrupted run: its folder, its timeline and its wall seconds."""
    results = work / "reference"
    results.mkdir(parents=True)
    timeline = RunTimeline()
    watch: RunDirWatch | None = None

    def poll() -> None:
        nonlocal watch
        if watch is None:
            dirs = [d for d in results.iterdir() if d.is_dir() and d.name != ".locks"]
            if not dirs:
                return
            watch = RunDirWatch(dirs[0])
            watch.record_writes, watch.record_key = 0, None  # the first record counts
        before = watch.record_writes
        watch.poll()
        if not timeline.plots_written and (watch.run_dir / PLOTS[-1]).exists():
            timeline.plots_written = time.perf_counter() - start
        if watch.record_writes > before:
            t = time.perf_counter() - start
            if watch.status == "finished":
                timeline.finished_record = t
            elif watch.epochs == 0:
                timeline.first_record = t
            elif watch.epochs > len(timeline.epoch_records):
                timeline.epoch_records.append(t)

    start = time.perf_counter()
    attempt = run_attempt(cfg.args(results), work, work / "reference.log", poll, lambda _: False)
    timeline.exit = attempt.seconds
    if attempt.returncode != 0:
        raise StressError(
            f"the reference run failed ({attempt.returncode}): {attempt.log.read_text()[-2000:]}"
        )
    (run_dir,) = [d for d in results.iterdir() if d.is_dir() and d.name != ".locks"]
    if len(timeline.epoch_records) != cfg.epochs or not timeline.finished_record:
        raise StressError(f"the reference timeline is incomplete: {timeline}")
    return run_dir, timeline, attempt.seconds


def classify_run(
    run_dir: Path, epochs: int, new_tmp: set[str], record_writes: int, wrote_checkpoint: bool
) -> tuple[str, dict[str, Any]]:
    """Where a kill landed, read from the folder it left (its processes are gone).

    ``new_tmp``: temporary files that were not there when the attempt started (a write the kill
    interrupted); ``record_writes``: records the attempt wrote; ``wrote_checkpoint``: whether it
    had written a checkpoint.
    """
    record = read_record(run_dir)
    ckpt = read_checkpoint(run_dir)
    rec_epochs = len(record["history"]) if record else 0
    ckpt_epoch = int(ckpt["epoch"]) if ckpt else 0
    finished = bool(record) and record["status"] == "finished"  # type: ignore[index]
    detail = {
        "record": f"{record['status']}, {rec_epochs} epoch(s)" if record else "none",
        "checkpoint_epoch": ckpt_epoch,
        "tmp_left": sorted(new_tmp),
    }
    if new_tmp:
        targets = sorted({tmp_target(n) for n in new_tmp})
        if finished:
            where = "after the final record"
        elif CHECKPOINT in targets:
            where = f"epoch {ckpt_epoch + 1}"
        elif not wrote_checkpoint and record_writes <= 1:
            where = "the attempt's first record"
        else:
            where = f"epoch {ckpt_epoch}'s record"
        return f"writing {'+'.join(targets)} ({where})", detail
    if finished:
        return "plots (after the final record)", detail
    if not record_writes:
        return "start-up (before the attempt's first record)", detail
    if wrote_checkpoint and ckpt_epoch > rec_epochs:
        return f"between checkpoint and record (epoch {ckpt_epoch})", detail
    if ckpt_epoch == epochs:
        return "final evaluation", detail
    return f"epoch {ckpt_epoch + 1} (steps or validation)", detail


def folder_problems(run_dir: Path, ref: dict[str, Any], ref_ckpt: dict[str, Any]) -> tuple[int, list[str]]:
    """(checkpoint epoch, what is wrong) with what a kill left in ``run_dir``.

    Allowed: no record yet; a record (status running or finished) whose history is a prefix of
    the reference's; a checkpoint at the record's epoch or one ahead (killed between the two
    writes) with the reference's history so far; ``metrics.csv`` with the record's rows, or one row
    apart (killed between the writes of ``result.json`` and ``metrics.csv``).
    """
    problems: list[str] = []
    try:
        record = read_record(run_dir)
    except Exception as exc:  # a half-written or invalid record
        return 0, [f"result.json unreadable: {type(exc).__name__}: {exc}".splitlines()[0]]
    try:
        ckpt = read_checkpoint(run_dir)
    except Exception as exc:
        return 0, [f"checkpoint.pt unreadable: {type(exc).__name__}: {exc}".splitlines()[0]]
    rows = read_metrics_csv(run_dir)
    n = len(record["history"]) if record else 0
    if record is not None:
        if record["status"] not in ("running", "finished") or record["run_id"] != ref["run_id"]:
            problems.append(f"record status {record['status']!r} ({record.get('error')})")
        if comparable(record["history"]) != comparable(ref["history"][:n]):
            problems.append("the record's history is not a prefix of the reference's")
        if record["status"] == "finished" and differences(record["final"], ref["final"]):
            problems.append(f"final metrics differ: {differences(record['final'], ref['final'])[:3]}")
    epoch = int(ckpt["epoch"]) if ckpt is not None else 0
    if ckpt is not None:
        if record is None or not n <= epoch <= n + 1:
            problems.append(f"result.json has {n} epoch(s) beside a checkpoint of epoch {epoch}")
        if comparable(ckpt["history"]) != comparable(ref["history"][:epoch]):
            problems.append("the checkpoint's history is not a prefix of the reference's")
        if epoch == len(ref["history"]) and checkpoint_differences(ckpt, ref_ckpt):
            problems.append(f"the last checkpoint differs: {checkpoint_differences(ckpt, ref_ckpt)[:3]}")
    if rows is not None and record is not None:
        expected = [{k: str(v) for k, v in h.items()} for h in comparable(ref["history"])]
        if abs(len(rows) - n) > 1 or rows != expected[: len(rows)]:  # one write apart, either order
            problems.append(f"metrics.csv has {len(rows)} row(s) beside a result.json of {n} epoch(s)")
    return epoch, problems


@dataclass(frozen=True)
class RunMoment:
    """One planned kill of a run: a moment of the reference timeline, and what to wait for there."""

    at: float  # seconds into the uninterrupted reference run
    snap: str = ""  # "", "checkpoint-write" or "after-checkpoint": wait for that event after the moment
    plots: bool = False  # the last kill: wait for the final record, then ``at`` seconds more

    @property
    def kind(self) -> str:
        if self.plots:
            return "plots"
        return "moment" + (f"+{self.snap}" if self.snap else "")

    @property
    def target(self) -> str:
        if self.plots:
            return f"final record +{self.at:.2f} s"
        return f"reference t={self.at:.2f} s" + (f", then the next {self.snap}" if self.snap else "")


def plan_run_kills(rng: random.Random, kills: int, timeline: RunTimeline) -> list[RunMoment]:
    """``kills`` moments drawn uniformly over the reference run up to its final record, sorted, so
    that the kills walk through start-up, every epoch and the final evaluation; about a third
    of them then wait for the next checkpoint write (or replacement), whose window is too short
    for a uniform moment to hit. The last kill (of three or more) lands after the final record,
    while the plots are drawn: the only moment a later rerun cannot reach."""
    n = kills - 1 if kills >= 3 else kills
    moments = sorted(rng.uniform(0.0, timeline.finished_record) for _ in range(n))
    last_checkpoint = timeline.epoch_records[-1] - 0.5 * timeline.epoch_seconds(len(timeline.epoch_records))
    plan = []
    for at in moments:
        r = rng.random()
        snap = "checkpoint-write" if r < 0.2 else "after-checkpoint" if r < 0.35 else ""
        plan.append(RunMoment(at, snap if at < last_checkpoint else ""))
    if n < kills:
        plan.append(RunMoment(rng.uniform(0.0, 0.9 * timeline.plots), plots=True))
    return plan


class RunKill:
    """When to kill one attempt of a run: ``kill(seconds)`` is polled after every ``watch.poll()``.

    The moment is mapped onto the attempt: a moment in the reference's start-up is that many
    seconds after the start; a later one is that far past the reference's record of the epoch the
    attempt resumed from, counted from the attempt's first record (its start-up done). An armed
    ``snap`` then waits for the checkpoint event, falling back to the final evaluation's start.
    Whatever the plan, a final record ends the wait: the kill then lands among the plots.
    """

    def __init__(self, moment: RunMoment, watch: RunDirWatch, epoch: int, epochs: int, timeline: RunTimeline):
        self.moment, self.watch, self.epochs = moment, watch, epochs
        self.kind, self.target = moment.kind, moment.target
        resumed_at = timeline.first_record if epoch == 0 else timeline.epoch_records[epoch - 1]
        self.offset = max(0.0, moment.at - resumed_at)
        self.in_startup = moment.at < timeline.first_record
        self.started: float | None = None  # this attempt's first record
        self.armed_writes: int | None = None  # checkpoint replacements when the snap was armed
        self.finished_at: float | None = None

    def __call__(self, t: float) -> bool:
        watch, m = self.watch, self.moment
        if self.started is None and watch.record_writes:
            self.started = t
        finished = watch.record_writes > 0 and watch.status == "finished"
        if m.plots:
            if finished and self.finished_at is None:
                self.finished_at = t
            return self.finished_at is not None and t - self.finished_at >= m.at
        if finished:
            return True
        if self.armed_writes is None:
            reached = (
                t >= m.at if self.in_startup else self.started is not None and t - self.started >= self.offset
            )
            if not reached:
                return False
            if not m.snap:
                return True
            self.armed_writes = watch.ckpt_writes
        if m.snap == "checkpoint-write" and watch.checkpoint_tmp():
            return True
        # the replacement (after-checkpoint, or a write too short to see), or no checkpoint left to wait for
        return watch.ckpt_writes > self.armed_writes or (
            watch.epochs == self.epochs and watch.record_writes > 0
        )


def run_stress(
    cfg: RunConfig, kills: int, seed: int, work: Path, *, log: Callable[[str], None] = print
) -> Report:
    """The reference run, then killed series until ``kills`` kills have happened; the report."""
    t_all = time.perf_counter()
    rng = random.Random(seed)
    report = Report(
        "run",
        "cifarbudget " + " ".join(cfg.args(Path("DIR"))),
        asdict(cfg),
        kills,
        seed,
        machine=machine(),
    )
    ref_dir, timeline, report.reference_seconds = reference_run(cfg, work)
    ref, ref_ckpt = read_record(ref_dir), read_checkpoint(ref_dir)
    assert ref is not None and ref_ckpt is not None
    log(
        f"reference: {report.reference_seconds:.1f} s (start-up {timeline.first_record:.1f} s, epochs "
        + ", ".join(f"{timeline.epoch_seconds(j):.1f}" for j in range(1, cfg.epochs + 1))
        + f" s, final evaluation {timeline.final_eval:.1f} s, plots {timeline.plots:.1f} s, "
        + f"exit {timeline.exit - (timeline.plots_written or timeline.exit):.1f} s)"
    )
    E = cfg.epochs
    known: set[str] = set()  # problems already reported by an earlier kill of the series
    leftover_tmp: list[str] = []
    tmp_bytes = 0
    missing_plots: list[str] = []
    finals: list[bool] = []
    while len(report.kills) < kills:
        report.series += 1
        results = work / f"killed-{report.series}"
        run_dir = results / ref["run_id"]
        attempt_no = 0
        epoch = 0
        known.clear()
        first = len(report.kills)  # a later series draws its own moments for the kills left
        moments = plan_run_kills(rng, kills - first, timeline)
        while True:
            attempt_no += 1
            last = len(report.kills) == kills
            watch = RunDirWatch(run_dir)
            tmp_before = watch.tmp
            plan: RunKill | None = None
            if not last and watch.status != "finished":  # a finished record ends the series
                plan = RunKill(moments[len(report.kills) - first], watch, epoch, E, timeline)

            log_path = work / f"series{report.series}-attempt{attempt_no:02d}.log"
            attempt = run_attempt(cfg.args(results), work, log_path, watch.poll, plan or (lambda _: False))
            report.killed_seconds += attempt.seconds
            new_tmp = tmp_files(run_dir) - tmp_before
            if attempt.killed:
                assert plan is not None
                index = len(report.kills) + 1
                landed, detail = classify_run(run_dir, E, new_tmp, watch.record_writes, watch.ckpt_writes > 0)
                report.kills.append(
                    Kill(
                        index,
                        report.series,
                        plan.kind,
                        plan.target,
                        round(attempt.seconds, 3),
                        landed,
                        detail,
                    )
                )
                log(f"kill {index:>2}: {plan.kind} [{plan.target}] at {attempt.seconds:.2f} s -> {landed}")
                epoch, problems = folder_problems(run_dir, ref, ref_ckpt)
                problems = [p for p in problems if p not in known]
                known.update(problems)
                if problems:
                    report.kills[-1].detail["problems"] = problems
                    log(f"          PROBLEM: {'; '.join(problems)}")
                continue
            # the command ended by itself: the series is over
            text = attempt.log.read_text(errors="replace")
            if attempt.returncode != 0 or "Traceback" in text:
                report.check(
                    f"series {report.series}: the last start exits 0 without a traceback",
                    False,
                    f"exit {attempt.returncode}: {text.strip().splitlines()[-1:]} (see {attempt.log})",
                )
                break
            if plan is not None:
                log(f"series {report.series} finished before its planned kill [{plan.kind}: {plan.target}]")
            finals.append(_verify_run(run_dir, ref, ref_ckpt, report, report.series))
            left = sorted(tmp_files(run_dir))
            leftover_tmp += [f"killed-{report.series}/{ref['run_id']}/{n}" for n in left]
            tmp_bytes += sum((run_dir / n).stat().st_size for n in left)
            missing_plots += [f"killed-{report.series}: {p}" for p in PLOTS if not (run_dir / p).exists()]
            break
    report.check(
        "every series ends with the reference's metrics and state, bit for bit",
        bool(finals) and all(finals),
        f"{sum(finals)} of {len(finals)} series",
    )
    _check_kills(report)
    report.leftovers = {"tmp_files": leftover_tmp, "tmp_bytes": tmp_bytes, "missing_plots": missing_plots}
    report.wall_seconds = time.perf_counter() - t_all
    report.machine["load_average_end"] = machine()["load_average"]
    return report


def _check_kills(report: Report) -> None:
    bad = [
        f"#{k.index} ({k.landed}): {'; '.join(k.detail['problems'])}"
        for k in report.kills
        if k.detail.get("problems")
    ]
    report.check(
        "after every kill: records and checkpoints readable, prefixes of the reference, in step",
        not bad,
        bad or f"{len(report.kills)} of {len(report.kills)} kills",
    )


def _verify_run(
    run_dir: Path, ref: dict[str, Any], ref_ckpt: dict[str, Any], report: Report, series: int
) -> bool:
    """The finished series against the reference: record, metrics.csv and checkpoint."""
    record, ckpt, rows = read_record(run_dir), read_checkpoint(run_dir), read_metrics_csv(run_dir)
    assert record is not None and ckpt is not None and rows is not None
    name = f"series {series}: "
    ok = True

    def check(what: str, good: bool, detail: Any = "") -> None:
        nonlocal ok
        ok = ok and good
        report.check(name + what, good, detail)

    check("status finished", record["status"] == "finished", record["status"])
    check(
        "history (wall-clock fields aside) equals the reference's",
        comparable(record["history"]) == comparable(ref["history"]),
        f"{len(record['history'])} epochs",
    )
    final_diffs = differences(record["final"], ref["final"])
    check(
        "final metrics equal the reference's",
        not final_diffs,
        final_diffs[:5]
        or f"test_acc {record['final']['test_acc']}, test_acc_tta {record['final'].get('test_acc_tta')}",
    )
    expected = [{k: str(v) for k, v in h.items()} for h in comparable(ref["history"])]
    check("metrics.csv equals the reference's", rows == expected)
    ckpt_diffs = checkpoint_differences(ckpt, ref_ckpt)
    check(
        "checkpoint (model, EMA, optimizer, scheduler, RNG) equals the reference's",
        not ckpt_diffs,
        ckpt_diffs[:5],
    )
    return ok


# --- a sweep -------------------------------------------------------------------------------------
class SweepWatch:
    """Follows every run folder of a sweep's results folder."""

    def __init__(self, results: Path, epochs: int) -> None:
        self.results, self.epochs = results, epochs
        self.runs: dict[str, RunDirWatch] = {}
        self._refresh()
        self.at_start = set(self.runs)
        self.finished_at_start = {n for n, w in self.runs.items() if w.status == "finished"}
        self.tmp_at_start = {n: set(w.tmp) for n, w in self.runs.items()}

    def _refresh(self) -> None:
        if not self.results.is_dir():
            return
        for d in os.scandir(self.results):
            if d.is_dir() and not d.name.startswith(".") and d.name not in self.runs:
                self.runs[d.name] = RunDirWatch(Path(d.path))

    def poll(self) -> None:
        self._refresh()
        for w in self.runs.values():
            w.poll()

    def units_done(self) -> int:
        """Epochs recorded plus one per finished run (its final evaluation)."""
        return sum(min(w.epochs, self.epochs) + (w.status == "finished") for w in self.runs.values())

    def touched(self) -> dict[str, RunDirWatch]:
        """The run folders this attempt worked in (a worker took the run, or wrote in its folder)."""
        return {
            n: w
            for n, w in self.runs.items()
            if n not in self.at_start or w.log_writes or w.record_writes or w.tmp_seen or w.ckpt_writes
        }


def sweep_records(results: Path) -> dict[str, dict[str, Any] | None]:
    return {
        d.name: read_record(d) for d in sorted(results.iterdir()) if d.is_dir() and not d.name.startswith(".")
    }


def leaderboard(results: Path, cwd: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [*CLI, "leaderboard", str(results), "--json"],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise StressError(
            f"cifarbudget leaderboard {results} exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    rows = json.loads(proc.stdout)["data"]
    return [{k: v for k, v in r.items() if k not in BOARD_TIMING} for r in rows]


def sweep_folder_problems(
    results: Path, refs: dict[str, dict[str, Any]], ref_ckpts: dict[str, dict[str, Any]]
) -> list[str]:
    """After a kill: only planned runs, each folder as :func:`folder_problems` allows, no lock held."""
    from cifarbudget.sweep.store import LOCK_DIR, is_locked

    problems = []
    for d in sorted(results.iterdir()) if results.is_dir() else []:
        if not d.is_dir() or d.name.startswith("."):
            continue
        if d.name not in refs:
            problems.append(f"{d.name} is not a run of the sweep")
            continue
        problems += [f"{d.name}: {p}" for p in folder_problems(d, refs[d.name], ref_ckpts[d.name])[1]]
    locks = sorted((results / LOCK_DIR).glob("*.lock")) if (results / LOCK_DIR).is_dir() else []
    held = [p.name for p in locks if is_locked(p)]
    if held:
        problems.append(f"locks held with every process of the sweep gone: {held}")
    return problems


def classify_sweep(watch: SweepWatch) -> tuple[str, dict[str, Any]]:
    """Where a sweep kill landed: for each run folder the attempt worked in, what it was doing."""
    phases = {}
    for name, w in sorted(watch.touched().items()):
        new_tmp = tmp_files(w.run_dir) - watch.tmp_at_start.get(name, set())
        phases[name], _ = classify_run(w.run_dir, watch.epochs, new_tmp, w.record_writes, w.ckpt_writes > 0)
    if not phases:
        return "driver start-up (no worker had taken a run)", {}
    order = ("writing", "between", "final evaluation", "plots", "epoch", "start-up")
    first = min(phases.values(), key=lambda p: next(i for i, o in enumerate(order) if p.startswith(o)))
    summary = {
        "writing": "a write in progress",
        "between": "between a checkpoint and its record",
        "final evaluation": "a final evaluation",
        "plots": "after a run's final record (plots, the next task)",
        "epoch": "training steps or validation",
        "start-up": "a worker's start-up (run taken, no record yet)",
    }[next(o for o in order if first.startswith(o))]
    if first.startswith("writing"):
        summary = first.split(" (")[0]  # "writing checkpoint.pt"
    return summary, {"runs": phases}


@dataclass
class SweepTimeline:
    """The uninterrupted reference sweep, seconds from its start."""

    first_record: float = 0.0  # the first run's first record: driver, budget, worker start-up done
    progress: list[tuple[float, int]] = field(default_factory=list)  # (t, units done) at each increase
    last_checkpoint: float = 0.0
    last_finished: float = 0.0  # the last run's final record
    exit: float = 0.0

    def at(self, moment: float) -> tuple[int, float]:
        """(units done at ``moment``, seconds since the event that completed the last of them)."""
        units, since = 0, self.first_record
        for t, u in self.progress:
            if t > moment:
                break
            units, since = u, t
        return units, moment - since


@dataclass(frozen=True)
class SweepMoment:
    """One planned kill of a sweep: a moment of the reference sweep, and what to wait for there."""

    at: float
    snap: str = ""  # "", "checkpoint-write" or "run-finished"

    @property
    def kind(self) -> str:
        return "moment" + (f"+{self.snap}" if self.snap else "")

    @property
    def target(self) -> str:
        return f"reference t={self.at:.2f} s" + (f", then the next {self.snap}" if self.snap else "")


def plan_sweep_kills(rng: random.Random, kills: int, timeline: SweepTimeline) -> list[SweepMoment]:
    """``kills`` moments drawn uniformly over the reference sweep up to its last run's final record,
    sorted; about a third then wait for the next checkpoint write or run's final record."""
    plan = []
    for at in sorted(rng.uniform(0.0, timeline.last_finished) for _ in range(kills)):
        r = rng.random()
        snap = ""
        if r < 0.2 and at < timeline.last_checkpoint - 1.0:
            snap = "checkpoint-write"
        elif 0.2 <= r < 0.35 and at < timeline.last_finished - 1.0:
            snap = "run-finished"
        plan.append(SweepMoment(at, snap))
    return plan


class SweepKill:
    """When to kill one attempt of a sweep: ``kill(seconds)`` is polled after every ``watch.poll()``.

    A moment in the reference's start-up is that many seconds after the start. A later one is
    mapped through the reference's progress (epochs recorded plus runs finished): the attempt
    waits until its folder shows the progress the reference had at the moment and its first
    record is written, then as many seconds as the reference was past that progress. An armed
    ``snap`` then waits for any run's checkpoint write or final record. With every run finished
    the kill is immediate (the sweep is about to exit).
    """

    def __init__(self, moment: SweepMoment, watch: SweepWatch, n_runs: int, timeline: SweepTimeline) -> None:
        self.moment, self.watch, self.n_runs = moment, watch, n_runs
        self.kind, self.target = moment.kind, moment.target
        self.in_startup = moment.at < timeline.first_record
        self.units, self.offset = timeline.at(moment.at)
        self.anchor: float | None = None
        self.armed = False
        self.finished_when_armed: set[str] = set()
        self.ckpt_writes_when_armed = 0

    def _finished(self) -> set[str]:
        return {n for n, w in self.watch.runs.items() if w.status == "finished"}

    def _ckpt_writes(self) -> int:
        return sum(w.ckpt_writes for w in self.watch.runs.values())

    def __call__(self, t: float) -> bool:
        watch = self.watch
        finished = self._finished()
        if len(finished) == self.n_runs and finished - watch.finished_at_start:
            return True
        if not self.armed:
            if self.in_startup:
                reached = t >= self.moment.at
            else:
                started = any(w.record_writes for w in watch.runs.values())
                if self.anchor is None and started and watch.units_done() >= self.units:
                    self.anchor = t
                reached = self.anchor is not None and t - self.anchor >= self.offset
            if not reached:
                return False
            last_run = len(finished) >= self.n_runs - 1
            if not self.moment.snap or (self.moment.snap == "run-finished" and last_run):
                return True  # the last run's final record would end the sweep: kill at the moment
            self.armed = True
            self.finished_when_armed, self.ckpt_writes_when_armed = finished, self._ckpt_writes()
        if self.moment.snap == "checkpoint-write":
            return any(w.checkpoint_tmp() for w in watch.runs.values()) or (
                self._ckpt_writes() > self.ckpt_writes_when_armed
            )
        return bool(finished - self.finished_when_armed)


def sweep_stress(
    cfg: SweepConfig, kills: int, seed: int, work: Path, *, log: Callable[[str], None] = print
) -> Report:
    """The reference sweep, then killed series until ``kills`` kills have happened; the report."""
    t_all = time.perf_counter()
    rng = random.Random(seed)
    report = Report(
        "sweep",
        "cifarbudget " + " ".join(cfg.args(Path("DIR"))),
        asdict(cfg),
        kills,
        seed,
        machine=machine(),
    )
    ref_results = work / "reference"
    ref_watch = SweepWatch(ref_results, cfg.epochs)
    timeline = SweepTimeline()
    start = time.perf_counter()

    def ref_poll() -> None:
        ckpt_before = sum(w.ckpt_writes for w in ref_watch.runs.values())
        ref_watch.poll()
        t = time.perf_counter() - start
        if not timeline.first_record and any(w.record_writes for w in ref_watch.runs.values()):
            timeline.first_record = t
        units = ref_watch.units_done()
        if units > (timeline.progress[-1][1] if timeline.progress else 0):
            timeline.progress.append((t, units))
            if sum(w.status == "finished" for w in ref_watch.runs.values()) == cfg.n_runs:
                timeline.last_finished = t
        if sum(w.ckpt_writes for w in ref_watch.runs.values()) > ckpt_before:
            timeline.last_checkpoint = t

    attempt = run_attempt(cfg.args(ref_results), work, work / "reference.log", ref_poll, lambda _: False)
    report.reference_seconds = timeline.exit = attempt.seconds
    if attempt.returncode != 0:
        raise StressError(
            f"the reference sweep failed ({attempt.returncode}): {attempt.log.read_text()[-2000:]}"
        )
    refs = {n: r for n, r in sweep_records(ref_results).items() if r is not None}
    if len(refs) != cfg.n_runs or not timeline.last_finished:
        raise StressError(f"the reference sweep has {len(refs)} runs, not {cfg.n_runs}, or no timeline")
    ref_ckpts = {n: read_checkpoint(ref_results / n) or {} for n in refs}
    ref_board = leaderboard(ref_results, work)
    log(
        f"reference sweep: {attempt.seconds:.1f} s (first record at {timeline.first_record:.1f} s, "
        f"last run finished at {timeline.last_finished:.1f} s)"
    )
    finals: list[bool] = []
    leftover_tmp: list[str] = []
    tmp_bytes = 0
    missing_plots: list[str] = []
    known: set[str] = set()  # problems already reported by an earlier kill
    while len(report.kills) < kills:
        report.series += 1
        results = work / f"killed-{report.series}"
        attempt_no = 0
        known.clear()
        first = len(report.kills)  # a later series draws its own moments for the kills left
        moments = plan_sweep_kills(rng, kills - first, timeline)
        while True:
            attempt_no += 1
            watch = SweepWatch(results, cfg.epochs)
            unfinished = cfg.n_runs - len(watch.finished_at_start)
            plan: SweepKill | None = None
            if len(report.kills) < kills and unfinished:  # with every run finished, the series is over
                plan = SweepKill(moments[len(report.kills) - first], watch, cfg.n_runs, timeline)

            log_path = work / f"series{report.series}-attempt{attempt_no:02d}.log"
            attempt = run_attempt(cfg.args(results), work, log_path, watch.poll, plan or (lambda _: False))
            report.killed_seconds += attempt.seconds
            if attempt.killed:
                assert plan is not None
                index = len(report.kills) + 1
                landed, detail = classify_sweep(watch)
                report.kills.append(
                    Kill(
                        index,
                        report.series,
                        plan.kind,
                        plan.target,
                        round(attempt.seconds, 3),
                        landed,
                        detail,
                    )
                )
                log(f"kill {index:>2}: {plan.kind} [{plan.target}] at {attempt.seconds:.2f} s -> {landed}")
                problems = [p for p in sweep_folder_problems(results, refs, ref_ckpts) if p not in known]
                known.update(problems)
                if problems:
                    report.kills[-1].detail["problems"] = problems
                    log(f"          PROBLEM: {'; '.join(problems)}")
                continue
            text = attempt.log.read_text(errors="replace")
            if attempt.returncode != 0 or "Traceback" in text:
                report.check(
                    f"series {report.series}: the last start exits 0 without a traceback",
                    False,
                    f"exit {attempt.returncode}: {text.strip().splitlines()[-1:]} (see {attempt.log})",
                )
                break
            if plan is not None:
                log(f"series {report.series} finished before its planned kill [{plan.kind}: {plan.target}]")
            finals.append(_verify_sweep(results, refs, ref_ckpts, ref_board, cfg, text, report, work))
            for name in refs:
                run_dir = results / name
                left = sorted(tmp_files(run_dir))
                leftover_tmp += [f"killed-{report.series}/{name}/{n}" for n in left]
                tmp_bytes += sum((run_dir / n).stat().st_size for n in left)
                missing_plots += [
                    f"killed-{report.series}/{name}: {p}" for p in PLOTS if not (run_dir / p).exists()
                ]
            break
    report.check(
        "every series ends with every run exactly once and the reference's metrics",
        bool(finals) and all(finals),
        f"{sum(finals)} of {len(finals)} series",
    )
    _check_kills(report)
    report.leftovers = {"tmp_files": leftover_tmp, "tmp_bytes": tmp_bytes, "missing_plots": missing_plots}
    report.wall_seconds = time.perf_counter() - t_all
    report.machine["load_average_end"] = machine()["load_average"]
    return report


def _verify_sweep(
    results: Path,
    refs: dict[str, dict[str, Any]],
    ref_ckpts: dict[str, Any],
    ref_board: list[dict[str, Any]],
    cfg: SweepConfig,
    final_log: str,
    report: Report,
    cwd: Path,
) -> bool:
    records = sweep_records(results)
    name = f"series {report.series}: "
    ok = True

    def check(what: str, good: bool, detail: Any = "") -> None:
        nonlocal ok
        ok = ok and good
        report.check(name + what, good, detail)

    check(
        "every planned run present exactly once, no other folder",
        sorted(records) == sorted(refs)
        and all(r is not None and r["run_id"] == n for n, r in records.items()),
        f"{len(records)} run folders for {len(refs)} planned runs",
    )
    summary = f"{cfg.n_runs} runs: {cfg.n_runs} finished;"
    check("the last rerun reports every run finished", summary in final_log, summary)
    statuses = Counter(r["status"] for r in records.values() if r)
    check("every run finished", statuses == Counter(finished=cfg.n_runs), dict(statuses))
    bad = [
        n
        for n, r in records.items()
        if r is None
        or comparable(r["history"]) != comparable(refs[n]["history"])
        or [h["epoch"] for h in r["history"]] != list(range(1, cfg.epochs + 1))
    ]
    check("every run's history equals the reference's (no duplicate or lost epoch)", not bad, bad)
    bad = [n for n, r in records.items() if r is None or differences(r["final"], refs[n]["final"])]
    check("every run's final metrics equal the reference's", not bad, bad)
    bad = [n for n in refs if checkpoint_differences(read_checkpoint(results / n) or {}, ref_ckpts[n])]
    check("every run's checkpoint equals the reference's", not bad, bad)
    expected = {
        n: [{k: str(v) for k, v in h.items()} for h in comparable(r["history"])] for n, r in refs.items()
    }
    bad = [n for n in refs if read_metrics_csv(results / n) != expected[n]]
    check("every run's metrics.csv equals the reference's", not bad, bad)
    board = leaderboard(results, cwd)
    rows_ok = len(board) == len(cfg.models) and sum(r["n"] for r in board) == cfg.n_runs
    check(
        "the leaderboard has one row per configuration, every run counted once",
        rows_ok,
        f"{len(board)} rows, n = {[r['n'] for r in board]}",
    )
    check(
        "the leaderboard equals the reference sweep's (timing columns aside)",
        not differences(board, ref_board),
    )
    return ok


# --- the command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in all [default: 20]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill plan [default: 0]")
    parser.add_argument("--sweep", action="store_true", help="kill a sweep instead of a run")
    parser.add_argument("--quick", action="store_true", help="tiny run or sweep (seconds per attempt)")
    parser.add_argument("--work", type=Path, help="work folder [default: a new temporary folder]")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (results, logs)")
    parser.add_argument("--report", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="stress-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    torch.set_num_threads(1)  # the watcher only reads checkpoints: leave the cores to the runs
    ok = False
    try:
        if args.sweep:
            report = sweep_stress(QUICK_SWEEP if args.quick else FULL_SWEEP, args.kills, args.seed, work)
        else:
            report = run_stress(QUICK_RUN if args.quick else FULL_RUN, args.kills, args.seed, work)
        report.command = (
            f"python benchmarks/stress_kill.py --kills {args.kills} --seed {args.seed}"
            + (" --sweep" if args.sweep else "")
            + (" --quick" if args.quick else "")
            + f"  ({report.command})"
        )
        print(report.summary())
        if args.report:
            args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        ok = report.passed
        return 0 if ok else 1
    finally:
        if args.keep or not ok:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
