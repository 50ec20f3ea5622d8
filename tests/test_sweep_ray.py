"""``cifarbudget sweep --executor ray``: what the Ray path owes a user beyond training the runs
(those are compared with the local executor's in test_sweep.py): SIGTERM to the driver ends it as
it ends a local sweep, an unreachable ``--ray-address`` is one line within a bounded time, and a
dry run says that Ray is missing.

Only the two end-to-end SIGTERM tests start Ray, each in the driver it kills (Ray's start-up is
most of their time); the others run in-process and never reach ``ray.init`` (one uses a fake Ray).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from test_sweep import CLI, plugin_env, plugin_here, plugin_site, records  # noqa: F401 (its fixtures too)

from cifarbudget.results import validate_result
from cifarbudget.sweep import SweepError, is_locked
from cifarbudget.sweep.executors import check_ray_address

NO_RAY = "Error: --executor ray needs Ray: pip install 'cifarbudget[ray]' (or 'ray>=2.9')"
ONE_RUN = ["--model", "resnet20", "--dataset", "synthetic", "--epochs", "1"]
# two runs on the test plugin's tiny dataset (test_sweep.py): both in flight once each has an epoch
# recorded, with too many epochs left to finish before the SIGTERM lands, and few for the rerun
INTERRUPTED = ["--model", "airnet-small", "--seeds", "2", "--epochs", "6", "--workers", "2"]
INTERRUPTED += [
    "--dataset",
    "tiny-synthetic",
    "--train-subset",
    "128",
    "--val-size",
    "0",
    "--batch-size",
    "64",
]


def needs_ray() -> None:
    pytest.importorskip(
        "ray", reason="the Ray executor needs the 'ray' extra: pip install 'cifarbudget[ray]'"
    )


def error_lines(stderr: str) -> list[str]:
    """Standard error without Ray's own start-up lines (``2026-... INFO worker.py:... Started ...``)."""
    ray_log = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING)\s")
    return [line for line in stderr.splitlines() if line.strip() and not ray_log.match(line)]


# --- Ray not installed: the dry run says so, as the run does --------------------------------------
@pytest.fixture
def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_without_ray_a_ray_sweep_and_its_dry_run_fail_with_the_same_line(
    without_ray: None, invoke: Callable[..., Result], tmp_path: Path, dry_run: bool
) -> None:
    args = ["sweep", *ONE_RUN, "--executor", "ray", "--results-dir", str(tmp_path / "runs")]
    out = invoke([*args, "--dry-run"] if dry_run else args)
    assert out.exit_code == 1, out.output
    assert error_lines(out.stderr) == [NO_RAY]
    assert out.stdout == ""  # no plan: the grid's names are checked first, then the executor
    assert not (tmp_path / "runs").exists()


def test_without_ray_a_sweep_with_nothing_left_to_train_needs_no_executor(
    without_ray: None, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    """Every run over budget: the real run trains nothing and starts no executor; nor does its dry run
    ask for Ray (it exits 3, as the real run does)."""
    args = ["sweep", *ONE_RUN, "--budget", "1k", "--executor", "ray", "--results-dir", str(tmp_path)]
    out = invoke([*args, "--dry-run"])
    assert out.exit_code == 3, out.output
    assert "needs Ray" not in out.stderr


def test_a_dry_run_does_not_probe_the_ray_address(invoke: Callable[..., Result], tmp_path: Path) -> None:
    """It plans on this machine and may come before the cluster is up: only the real run connects."""
    needs_ray()
    args = ["sweep", *ONE_RUN, "--executor", "ray", "--ray-address", "127.0.0.1:1", "--dry-run"]
    out = invoke([*args, "--results-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "dry run, nothing trained" in out.stderr


# --- an unreachable --ray-address: one line, in bounded time ----------------------------------------
def test_an_unreachable_ray_address_fails_with_one_line_and_never_hangs(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray itself retried 127.0.0.1:1 for many minutes (until Ctrl-C): the address is probed first,
    and ray.init is never reached (here it would fail the test, where the real one would hang)."""
    needs_ray()
    import ray

    monkeypatch.setattr(
        ray, "init", lambda *a, **k: pytest.fail("ray.init called with an unreachable address")
    )
    for address in ["127.0.0.1:1", "ray://127.0.0.1:1"]:  # GCS, Ray Client
        args = ["sweep", *ONE_RUN, "--executor", "ray", "--ray-address", address]
        out = invoke([*args, "--results-dir", str(tmp_path / "runs")])
        assert out.exit_code == 1, out.output
        assert error_lines(out.stderr) == [f"Error: cannot connect to Ray at {address}: Connection refused"]
        assert not (tmp_path / "runs").exists()


def test_the_address_probe_names_the_cause() -> None:
    with pytest.raises(SweepError, match=r"^cannot connect to Ray at 127\.0\.0\.1:1: Connection refused$"):
        check_ray_address("127.0.0.1:1")
    started = time.perf_counter()
    with pytest.raises(SweepError, match=r"^cannot connect to Ray at no-such-host\.invalid:6379: "):
        check_ray_address("no-such-host.invalid:6379", timeout=5)  # "cannot resolve host", offline too
    assert time.perf_counter() - started < 6
    check_ray_address("local")  # a fresh local instance: nothing to probe


def serve_once(reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A server on a free local port that accepts one connection, reads the client's first bytes,
    then sends ``reply`` and closes (``None``: keeps the connection open and silent)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if reply is None:
                time.sleep(1.5)
                return
            conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered b'HTTP/1.1 '"),  # a web server, the dashboard's port
        (b"", "closed the connection"),
        (None, "said nothing"),
    ],
)
def test_a_port_where_something_else_listens_is_not_taken_for_ray(reply: bytes | None, what: str) -> None:
    """Ray would retry there for minutes: the probe expects the HTTP/2 settings frame that Ray's
    gRPC servers send first (Ray 2.60's GCS does, checked by hand with `ray start --head`)."""
    server, thread = serve_once(reply)
    port = server.getsockname()[1]
    with server:
        address = f"127.0.0.1:{port}"
        started = time.perf_counter()
        with pytest.raises(SweepError) as caught:
            check_ray_address(address, timeout=0.5)
        assert time.perf_counter() - started < 2
        thread.join(3)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to Ray at {address}: port {port} accepts connections but ")
    assert what in message and message.endswith("not a Ray GCS or Ray Client port")
    assert "\n" not in message


def test_a_grpc_server_passes_the_probe_and_tls_is_only_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes(6)  # a SETTINGS frame with one setting
    server, thread = serve_once(settings)
    with server:
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=2)
        thread.join(3)
    monkeypatch.setenv("RAY_USE_TLS", "1")  # the preface would be refused by TLS: connect only
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=2)


def test_a_host_lookup_that_hangs_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup has no timeout of its own (a DNS server that does not answer)."""
    lookup = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (time.sleep(5), lookup(*a, **k))[1])
    started = time.perf_counter()
    with pytest.raises(
        SweepError, match=r"^cannot connect to Ray at somehost:6379: no answer within 0\.3 s$"
    ):
        check_ray_address("somehost:6379", timeout=0.3)
    assert time.perf_counter() - started < 2


def test_auto_is_probed_at_the_address_ray_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_ray()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what `ray start` leaves for `auto` to find
    with pytest.raises(SweepError, match=r"^cannot connect to Ray at auto \(\S+:1\): Connection refused$"):
        check_ray_address("auto")


# --- SIGTERM: exit 143 as a local sweep, workers and Ray gone, runs resumable ------------------------
class FakeRemote:
    """``ray.remote(execute_run)``: each task submitted is a new ref."""

    def options(self, **kwargs: object) -> FakeRemote:
        return self

    def remote(self, task: dict) -> object:
        return object()


class FakeRay:
    """What RayExecutor uses of ``ray``, with Ray's signal behaviour: ``init`` replaces the SIGTERM
    handler, and a handler's exception inside ``wait`` is lost (Ray's signal check forwards only
    KeyboardInterrupt). ``wait`` never finds a task done: the SIGTERM is the only way out."""

    def __init__(self) -> None:
        self.initialized = False
        self.sigterm_in_wait = False
        self.waits: list[float | None] = []
        self.cancelled: list[tuple[object, bool]] = []
        self.shut_down = False

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: object) -> None:
        self.initialized = True
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init does

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def remote(self, function: object) -> FakeRemote:
        return FakeRemote()

    def wait(
        self, refs: list[object], num_returns: int = 1, timeout: float | None = None
    ) -> tuple[list, list]:
        self.waits.append(timeout)
        if self.sigterm_in_wait:
            self.sigterm_in_wait = False
            with contextlib.suppress(BaseException):  # what Ray's check_signals does with it
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
        if timeout is None:  # the real one would block until a run ends: minutes
            pytest.fail("ray.wait without a timeout: a SIGTERM held meanwhile waits for it")
        if len(self.waits) > 40:  # the real one would go on until the runs end
            pytest.fail("the SIGTERM was lost")
        return [], list(refs)

    def cancel(self, ref: object, force: bool = False) -> None:
        self.cancelled.append((ref, force))

    def shutdown(self) -> None:
        self.shut_down = True


def test_sigterm_in_ray_wait_reaches_the_cli_handler_and_close_cancels_the_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process, with a fake Ray: the SIGTERM that came while the driver waited reaches the handler
    from before ray.init in plain Python, close(cancel=True) kills the runs in flight (force: their
    workers) and shuts Ray down, and the handler from before is back."""
    from cifarbudget.errors import Terminated
    from cifarbudget.sweep import RayExecutor, Sweep

    def cli_handler(signum: int, frame: object) -> None:
        raise Terminated

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    before = signal.signal(signal.SIGTERM, cli_handler)
    try:
        executor = RayExecutor(Sweep(executor="ray", workers=2))
        refs = [executor.submit({"run_id": str(i)}) for i in range(2)]
        fake.sigterm_in_wait = True
        with pytest.raises(Terminated):
            executor.wait(refs)
        executor.close(cancel=True)
        assert fake.cancelled == [(ref, True) for ref in refs]
        assert fake.shut_down
        assert signal.getsignal(signal.SIGTERM) is cli_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now: Ray's GCS, raylet and its workers, for the driver."""
    children, found, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Driver:
    """The CLI in a subprocess, SIGTERMed when ``ready()``; what is left of it is killed at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.tree: list[int] = []  # its processes when the SIGTERM was sent

    def start(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [*CLI, *args], cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self.proc

    def sigterm_when(self, ready: Callable[[], bool]) -> tuple[str, float, float]:
        """(its standard error, seconds until it exited, seconds until all its processes had too)."""
        assert self.proc is not None
        deadline = time.time() + 300
        while time.time() < deadline and self.proc.poll() is None and not ready():
            time.sleep(0.05)
        assert self.proc.poll() is None, self.proc.communicate()[1]
        self.tree = descendants(self.proc.pid)
        sent = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=60)
        exited = time.perf_counter() - sent
        while any(alive(pid) for pid in self.tree) and time.perf_counter() - sent < exited + 10:
            time.sleep(0.02)
        return stderr, exited, time.perf_counter() - sent

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.tree += descendants(self.proc.pid)
            self.proc.kill()
            self.proc.communicate()
        for pid in self.tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    found = Driver(tmp_path)
    yield found
    found.kill()


def test_sigterm_stops_a_ray_sweep_like_a_local_one_and_its_runs_resume(
    tmp_path: Path, request: pytest.FixtureRequest, driver: Driver, invoke: Callable[..., Result]
) -> None:
    """ray.init replaced the CLI's SIGTERM handler: the driver aborted (exit 134, a C stack on
    standard error) and its workers ran on for seconds. Now: one line, exit 143, the runs' workers
    killed and Ray shut down before the driver exits, and the runs left to resume from their
    checkpoints (whole records, no lock held)."""
    needs_ray()
    env = request.getfixturevalue("plugin_env")  # the test plugin's tiny dataset, in every process
    runs = tmp_path / "runs"

    def every_run_has_an_epoch() -> bool:
        found = 0
        for path in runs.glob("*/result.json"):
            with contextlib.suppress(OSError, ValueError):  # being replaced
                found += bool(json.loads(path.read_text()).get("history"))
        return found == 2

    proc = driver.start(["sweep", *INTERRUPTED, "--executor", "ray", "--results-dir", "runs"], env)
    stderr, exited, all_gone = driver.sigterm_when(every_run_has_an_epoch)
    workers = {
        int(pid) for log in runs.glob("*/sweep.log") for pid in re.findall(r" pid (\d+)", log.read_text())
    }
    print(f"SIGTERM: driver exited after {exited:.2f} s, all its processes gone after {all_gone:.2f} s")

    assert proc.returncode == 143, stderr
    lines = error_lines(stderr)
    assert lines[-1] == "terminated: run the same command again to resume where it stopped", stderr
    assert lines[0].startswith("ray executor:") and len(lines) == 2, stderr  # no C stack, no traceback
    assert len(workers) == 2 and workers <= set(driver.tree)
    assert not [pid for pid in driver.tree if alive(pid)], "processes of the driver outlived it"
    assert all_gone < exited + 1

    found = records(runs)
    assert len(found) == 2
    for record in found.values():  # whole records of epochs done, no lock left behind
        validate_result(record)
        assert record["status"] == "running" and 1 <= len(record["history"]) < 6
    assert not any(is_locked(lock) for lock in (runs / ".locks").glob("*.lock"))

    # what the same sweep would do now (test_sweep.py's SIGKILL test resumes such runs to the end)
    request.getfixturevalue("plugin_here")
    plan = invoke(["sweep", *INTERRUPTED, "--results-dir", str(runs), "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert len(re.findall(r"\sunfinished \([1-5]/6 epochs\)\s*$", plan.stdout, re.M)) == 2, plan.stdout


def test_sigterm_while_ray_starts_stops_it_too(driver: Driver) -> None:
    """Inside ray.init, Ray's own handler ended the driver with exit code 15."""
    needs_ray()
    proc = driver.start(["sweep", *ONE_RUN, "--executor", "ray", "--results-dir", "runs"])

    def ray_is_starting() -> bool:  # its GCS is up: ray.init goes on for seconds
        for pid in descendants(proc.pid):
            with contextlib.suppress(OSError):
                if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
        return False

    stderr, exited, all_gone = driver.sigterm_when(ray_is_starting)
    print(f"SIGTERM in ray.init: driver exited after {exited:.2f} s, all gone after {all_gone:.2f} s")
    assert proc.returncode == 143, stderr
    assert error_lines(stderr) == ["terminated: run the same command again to resume where it stopped"]
    assert not [pid for pid in driver.tree if alive(pid)], "Ray's processes outlived the driver"
