"""Where the runs of a sweep train: local worker processes (pinned to GPUs round-robin, or sharing
the CPU cores), or Ray tasks on a cluster. Both write into the same results store and answer with
the same outcome dicts; :func:`make_executor` picks one from the sweep's settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

from cifarbudget.sweep.grid import Sweep, SweepError
from cifarbudget.sweep.worker import OUTCOME_PREFIX, WORKER_LOG, describe_error, execute_run

# Workers ignore SIGINT, from their first line: a terminal's Ctrl-C reaches the whole process
# group, and the driver stops its workers itself (SIGTERM in close(cancel=True); PR_SET_PDEATHSIG
# should it die). A worker's KeyboardInterrupt printed its traceback over the driver's one line.
WORKER_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from cifarbudget.sweep import worker_loop; worker_loop()"
)


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
            [sys.executable, "-c", WORKER_CODE],
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
                while line and not line.startswith(OUTCOME_PREFIX):
                    line = proc.stdout.readline()
            except OSError:  # the worker died before it read the task
                line = ""
            if line:
                return json.loads(line[len(OUTCOME_PREFIX) :])
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
                out.append((fut, {"status": "crashed", "error": describe_error(exc)}))
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
                # no address: a fresh local instance, as documented; Ray's own default would join
                # whatever cluster a leftover file names (and wait for it when it is gone)
                address = sweep.ray_address or "local"
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # no cluster at the address, a version mismatch, ...
                where = sweep.ray_address or "a local instance"
                raise SweepError(f"cannot start or connect to Ray ({where}): {describe_error(exc)}") from None
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
                out.append((ref, {"status": "crashed", "error": f"ray task failed: {describe_error(exc)}"}))
        return out

    def close(self, cancel: bool = False) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(sweep: Sweep) -> LocalExecutor | RayExecutor:
    return RayExecutor(sweep) if sweep.executor == "ray" else LocalExecutor(sweep)
