"""Where the runs of a sweep train: local worker processes (pinned to GPUs round-robin, or sharing
the CPU cores), or Ray tasks on a cluster. Both write into the same results store and answer with
the same outcome dicts; :func:`make_executor` picks one from the sweep's settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cifarbudget.errors import Terminated
from cifarbudget.sweep.grid import Sweep, SweepError
from cifarbudget.sweep.worker import OUTCOME_PREFIX, WORKER_LOG, describe_error, execute_run

# Workers ignore SIGINT, from their first line: a terminal's Ctrl-C reaches the whole process
# group, and the driver stops its workers itself (SIGTERM in close(cancel=True); PR_SET_PDEATHSIG
# should it die). A worker's KeyboardInterrupt printed its traceback over the driver's one line.
WORKER_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from cifarbudget.sweep import worker_loop; worker_loop()"
)


# Ray's own connection to an address where nothing answers retries for many minutes: the address is
# probed first (a plain TCP connect), and an address that gives no answer in this time is an error.
RAY_CONNECT_TIMEOUT = 10.0  # seconds; docs/sweeps.md
RAY_CLIENT_PORT = 10001  # Ray Client's default port (ray://HOST)
RAY_POLL = 0.25  # seconds between two ray.wait calls, so that a held SIGTERM is handled in Python
RAY_CANCEL_WAIT = 10.0  # seconds to wait for cancelled Ray tasks to end before Ray is shut down


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


def require_ray() -> Any:
    """The ``ray`` module, or the one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs Ray: pip install 'cifarbudget[ray]' (or 'ray>=2.9')") from None
    return ray


def check_executor(sweep: Sweep, *, connect: bool = False) -> None:
    """What can be checked of the sweep's executor without starting it: that Ray is installed and,
    with ``connect``, that its address answers (:func:`check_ray_address`). ``sweep --dry-run``
    checks the first only: it plans on this machine, and may well come before the cluster is up."""
    if sweep.executor == "ray":
        require_ray()
        if connect and sweep.ray_address:
            check_ray_address(sweep.ray_address)


def _ray_endpoint(address: str) -> tuple[str, int] | None:
    """The host and port that ``ray.init(address=...)`` connects to; None for a local instance, or
    when it cannot be told (``auto`` with no cluster found: ray.init says so at once)."""
    if address == "local":
        return None
    if address == "auto":  # as ray.init reads it: $RAY_ADDRESS, else what the last `ray start` here recorded
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            try:
                from ray._private.services import canonicalize_bootstrap_address

                address = canonicalize_bootstrap_address("auto") or ""
            except Exception:  # none found, or a Ray without this (private) helper
                return None
    parts = urlsplit(address if "://" in address else f"//{address}")  # ray://HOST:PORT or HOST:PORT
    try:
        port = parts.port or (RAY_CLIENT_PORT if parts.scheme == "ray" else None)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname and port is not None else None


# what a client sends first on an HTTP/2 connection (RFC 9113, 3.4), with an empty SETTINGS frame
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # a frame's type, its 4th byte


def check_ray_address(address: str, timeout: float | None = None) -> None:
    """One line, within ``timeout`` seconds, when Ray does not answer at ``address``.

    A probe of the GCS (or Ray Client) port before ``ray.init``: Ray retries an unreachable
    address for many minutes (an unreachable ``ray://`` for 30 s, with a warning), and one where
    something else listens (the dashboard's port, 8265, given for the GCS's, 6379) as long. Both
    ports serve gRPC, so the probe opens an HTTP/2 connection and expects the server's SETTINGS
    frame, which every HTTP/2 server sends first (Ray 2.60's GCS answers at once); with
    ``RAY_USE_TLS`` set, only the TCP connect is tried. The probe runs in a thread so that the
    host name's lookup, which has no timeout of its own, is bounded too.
    """
    timeout = RAY_CONNECT_TIMEOUT if timeout is None else timeout
    endpoint = _ray_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    tls = os.environ.get("RAY_USE_TLS", "0").strip().lower() not in ("", "0", "false")
    outcome: list[str] = []  # why it failed; "" when Ray answered
    deadline = time.monotonic() + timeout

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                if not tls:
                    # the reply is awaited until just before the caller stops waiting for this thread
                    conn.settimeout(max(0.05, deadline - time.monotonic() - 0.2))
                    conn.sendall(HTTP2_PREFACE)
                    outcome.append(_not_grpc(conn, port))
                    return
        except socket.gaierror as exc:
            outcome.append(f"cannot resolve host {host!r} ({exc.strerror})")
            return
        except TimeoutError:
            outcome.append(f"no answer within {timeout:g} s")
            return
        except OSError as exc:
            outcome.append(exc.strerror or describe_error(exc))
            return
        outcome.append("")

    worker = threading.Thread(target=probe, name="ray-address-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    reason = outcome[0] if outcome else f"no answer within {timeout:g} s"
    if reason:
        where = f"{address} ({host}:{port})" if address == "auto" else address
        raise SweepError(f"cannot connect to Ray at {where}: {reason}")


def _not_grpc(conn: socket.socket, port: int) -> str:
    """Why what answers on ``conn`` (after the HTTP/2 preface was sent) is not Ray; "" when it is."""
    head, timed_out = b"", False
    try:
        while len(head) < 9:  # a frame header: length (3 bytes), type, flags, stream id (4)
            chunk = conn.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        timed_out = True
    if len(head) >= 4 and head[3] == HTTP2_SETTINGS:
        return ""
    silent = "said nothing" if timed_out else "closed the connection"
    what = f"answered {head!r}" if head else silent
    hint = ""
    if port == 8265:
        hint = " (8265 is the Ray dashboard's port; the GCS listens on 6379 unless `ray start --port` chose another)"
    return (
        f"port {port} accepts connections but {what} where Ray's gRPC server sends its HTTP/2 "
        f"settings: not a Ray GCS or Ray Client port{hint}"
    )


class _HeldSigterm:
    """SIGTERM while the driver waits on Ray: held by a handler that only notes it, then handed to
    the handler it was meant for (the CLI's raises :class:`Terminated`) from plain Python.

    ``ray.init`` replaces SIGTERM's handler twice: in Python (``sys.exit``), and in C, where the core
    worker's failure handler prints a stack and aborts (exit 134, Ray left to die on its own). And a
    Python handler that raises while the main thread is inside ``ray.wait`` is lost: Ray's signal
    check forwards ``KeyboardInterrupt`` only. Ctrl-C needs none of this.
    """

    def __init__(self) -> None:
        # only the main thread may set handlers (and it is the one that Python runs them in)
        self.main = threading.current_thread() is threading.main_thread()
        # the handler before ray.init: a function, SIG_DFL, SIG_IGN, or None (not set from Python)
        self.previous = signal.getsignal(signal.SIGTERM) if self.main else None
        self.received = False

    def install(self) -> None:
        if self.main:
            signal.signal(signal.SIGTERM, signal.SIG_IGN if self.previous == signal.SIG_IGN else self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self.received = True

    def deliver(self) -> None:
        """Hand a held SIGTERM on: call the previous handler, or raise Terminated where it was the default."""
        if not self.received:
            return
        self.received = False
        if callable(self.previous):
            self.previous(signal.SIGTERM, None)
        else:
            raise Terminated

    def restore(self) -> None:
        """Put back the handler from before (ray.init's would end the process with ``sys.exit``)."""
        if self.main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous is None else self.previous)


class RayExecutor:
    """Each run is a Ray task (one GPU when the cluster has GPUs) writing into the same results store.

    SIGTERM stops the sweep as it stops local workers: the runs in flight are cancelled (their
    workers killed, even on a cluster or a Ray the caller started, which outlive the sweep), Ray is
    shut down when the sweep started it, and the handler from before ``ray.init`` is back.
    """

    def __init__(self, sweep: Sweep) -> None:
        ray = require_ray()
        self.ray = ray
        self.started = not ray.is_initialized()
        # the task refs not yet settled, in submission order (cancelled in it by close(cancel=True))
        self._running: dict[Any, None] = {}
        self._sigterm = _HeldSigterm()  # before ray.init, which replaces the handler
        if self.started:
            if sweep.ray_address:
                check_ray_address(sweep.ray_address)
            try:
                # no address: a fresh local instance, as documented; Ray's own default would join
                # whatever cluster a leftover file names (and wait for it when it is gone)
                address = sweep.ray_address or "local"
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except SystemExit as exc:  # ray.init's own SIGTERM handler (sys.exit) while Ray started
                if exc.code != signal.SIGTERM:
                    raise
                self._sigterm.received = True
                self.close(cancel=True)  # stops what Ray started so far, hands the SIGTERM on
                raise Terminated from None  # where the handler it was handed to did not raise
            except Exception as exc:  # no cluster at the address, a version mismatch, ...
                self._sigterm.restore()
                where = sweep.ray_address or "a local instance"
                raise SweepError(f"cannot start or connect to Ray ({where}): {describe_error(exc)}") from None
        self._sigterm.install()
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
        ref = self._remote.remote({**task, "threads": self.threads})
        self._running[ref] = None
        return ref

    def wait(self, handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        if not handles:
            return []
        done: list[Any] = []
        while not done:  # short waits: a SIGTERM held meanwhile is handed on here, in Python
            self._sigterm.deliver()
            done, _ = self.ray.wait(handles, num_returns=1, timeout=RAY_POLL)
        out = []
        for ref in done:
            self._running.pop(ref, None)
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as exc:  # the worker or its node died
                out.append((ref, {"status": "crashed", "error": f"ray task failed: {describe_error(exc)}"}))
        return out

    def close(self, cancel: bool = False) -> None:
        try:
            if cancel and self._running:
                # kill the runs' workers now (their runs resume from their last checkpoint, as after
                # a local worker's SIGTERM), and wait for them: none outlives the driver
                refs = list(self._running)
                self._running.clear()
                for ref in refs:
                    with contextlib.suppress(Exception):
                        self.ray.cancel(ref, force=True)
                with contextlib.suppress(Exception):
                    self.ray.wait(refs, num_returns=len(refs), timeout=RAY_CANCEL_WAIT)
        finally:
            try:
                if self.started:
                    self.ray.shutdown()
            finally:
                self._sigterm.restore()
        self._sigterm.deliver()  # one that came while the last runs settled: the sweep still stops


def make_executor(sweep: Sweep) -> LocalExecutor | RayExecutor:
    return RayExecutor(sweep) if sweep.executor == "ray" else LocalExecutor(sweep)
