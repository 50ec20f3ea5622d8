"""Faults users meet: a full disk, SIGINT and SIGTERM mid-epoch, logs that are not terminals,
sizes a run cannot honour (issue 12). The kill-anywhere stress test is benchmarks/stress_kill.py."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

ENV = {**os.environ, "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD": "1"}
RUN = ["run", "airnet-small", "--dataset", "synthetic", "--train-subset", "1024", "--val-size", "128"]
RUN += ["--batch-size", "128", "--epochs", "4", "--sched", "cosine", "--seed", "5"]


def _cli(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifarbudget.cli", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        **kwargs,
    )


def _final(results: Path) -> dict:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")]
    record = json.loads((run_dir / "result.json").read_text())
    timing_free = [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in record["history"]
    ]
    return {"final": {k: v for k, v in record["final"].items() if k != "calibration"}, "history": timing_free}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run every interrupted one must end equal to."""
    work = tmp_path_factory.mktemp("reference")
    out = _cli([*RUN, "--results-dir", "runs", "--quiet"], work, timeout=600)
    assert out.returncode == 0, out.stderr
    return _final(work / "runs")


# --- a full disk ---------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_keeps_earlier_records_and_the_run_resumes(
    tmp_path: Path, invoke, monkeypatch: pytest.MonkeyPatch, reference: dict
) -> None:
    """ENOSPC injected into the second checkpoint write (the one after epoch 2)."""
    import cifarbudget.io

    real_fsync = os.fsync
    state = {"checkpoints": 0, "record_before": None}

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if ".checkpoint.pt." in target:
            state["checkpoints"] += 1
            if state["checkpoints"] == 2:
                (record,) = tmp_path.glob("runs/*/result.json")
                state["record_before"] = record.read_bytes()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc/self/fd to see which file a write goes to")
    monkeypatch.setattr(cifarbudget.io.os, "fsync", fsync)
    monkeypatch.chdir(tmp_path)
    out = invoke(["-q", *RUN, "--results-dir", "runs", "--quiet"])  # -q: warnings and errors only
    assert out.exit_code == 1
    (line,) = [x for x in out.stderr.splitlines() if x.strip()]
    assert (
        line.startswith("Error: cannot write ")
        and "checkpoint.pt: No space left on device (errno 28)" in line
    )
    assert "earlier records and checkpoint are intact" in line and "Traceback" not in out.output
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != ".locks"]
    assert (run_dir / "result.json").read_bytes() == state["record_before"]  # byte-identical
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind
    monkeypatch.setattr(cifarbudget.io.os, "fsync", real_fsync)  # space freed
    again = invoke([*RUN, "--results-dir", "runs", "--quiet"])
    assert again.exit_code == 0, again.output
    assert "resuming after epoch 1" in again.stderr
    assert _final(tmp_path / "runs") == reference


def test_a_real_full_tmpfs(tmp_path: Path, reference: dict) -> None:
    """The same on a real 1 MiB tmpfs (root only; skipped where it cannot be mounted)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip() or made.returncode})")
    try:
        out = _cli(["-q", *RUN, "--results-dir", str(mount / "runs"), "--quiet"], tmp_path, timeout=600)
        assert out.returncode == 1, out.stderr
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in out.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- signals -------------------------------------------------------------------------------------
def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_epoch_exits_cleanly_and_the_rerun_resumes_exactly(
    tmp_path: Path, sig: signal.Signals, code: int, reference: dict
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarbudget.cli", *RUN, "--results-dir", "runs", "--quiet"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell starts background jobs with SIGINT ignored, and the child would inherit that
        # (pytest itself run with `&`): give the run the default a terminal user has
        preexec_fn=_default_signals,
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # as soon as epoch 1 is recorded, epoch 2 is running
        records = list(tmp_path.glob("runs/*/result.json"))
        if records and len(json.loads(records[0].read_text()).get("history", [])) >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "run the same command again to resume" in stderr
    resumed = _cli([*RUN, "--results-dir", "runs", "--quiet"], tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    assert _final(tmp_path / "runs") == reference


def test_a_killed_sweep_driver_takes_its_workers_with_it(tmp_path: Path) -> None:
    """SIGKILL the driver: its workers die too (no orphan keeps training); their locks are free."""
    args = [
        "sweep",
        "--model",
        "airnet-small",
        "--dataset",
        "synthetic",
        "--train-subset",
        "2048",
        "--epochs",
        "50",
    ]
    args += ["--val-size", "128", "--seeds", "2", "--workers", "2", "--results-dir", "runs"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "cifarbudget.cli", *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(tmp_path.glob("runs/*/result.json"))) < 2:
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(driver.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2, children
    driver.kill()
    driver.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() and _is_running(pid) for pid in children)
    from cifarbudget.sweep import is_locked

    assert not any(is_locked(lock) for lock in (tmp_path / "runs" / ".locks").glob("*.lock"))


def _is_running(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped


# --- logs that are not terminals ------------------------------------------------------------------
def test_a_run_logging_to_a_file_writes_a_line_per_epoch(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    args = ["run", "resnet20", "--dataset", "synthetic", "--train-subset", "512", "--val-size", "64"]
    args += ["--batch-size", "32", "--epochs", "5", "--results-dir", "runs"]
    with log.open("w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "cifarbudget.cli", *args],
            cwd=tmp_path,
            env=ENV,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    assert proc.returncode == 0
    text = log.read_text()
    lines = text.splitlines()
    assert "\r" not in text  # no carriage-return progress updates
    epochs = [x for x in lines if ": epoch " in x]
    assert [x.split(": epoch ")[1].split()[0] for x in epochs] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert len(lines) <= 5 * 2 + 10, text


# --- sizes the run cannot honour -----------------------------------------------------------------
def test_a_results_folder_that_cannot_hold_the_run_lock_is_one_line(tmp_path: Path, invoke: Any) -> None:
    """A read-only (or otherwise unwritable) results folder: the run lock cannot be created. Here
    ``.locks`` is a file, which fails for root too (CI runs as root, where a read-only mode does not)."""
    results = tmp_path / "runs"
    results.mkdir()
    (results / ".locks").write_text("not a folder")
    out = invoke(
        ["run", "resnet20", "--dataset", "synthetic", "--epochs", "1", "--results-dir", str(results)]
    )
    assert out.exit_code == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot lock "), out.stderr
    assert "(the results folder must be writable)" in lines[0] and "unexpected" not in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--val-size", "10000000"],
            "Error: --val-size 10000000 must be smaller than the 6,000 training images",
        ),
        (["--batch-size", "100000"], "Error: --batch-size 100,000 is larger than the 5,400 training images"),
        (["--warmup", "5", "--epochs", "3"], "Error: --warmup 5 must be shorter than the run (3 epochs)"),
        (["--train-subset", "99999"], "Error: --train-subset 99,999 exceeds the 5,400 training images left"),
        (["--seed", "-1"], "Error: --seed must be a non-negative integer (got -1)"),
        (
            ["--aug", "cutmix", "--aug-param", "cutmix.p=2"],
            "Error: cutmix: p must be a probability in [0, 1]",
        ),
    ],
)
def test_sizes_and_values_a_run_cannot_honour_fail_before_any_data_is_decoded(
    args: list[str], message: str, invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cifarbudget.runner.load_splits", lambda *a, **k: pytest.fail("data were decoded"))
    out: Result = invoke(["run", "resnet20", "--dataset", "synthetic", *args, "--results-dir", str(tmp_path)])
    assert out.exit_code == 1
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr


def test_a_plugin_that_raises_mid_run_is_one_line_keeps_the_run_and_it_resumes(
    invoke: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin's augmentation that raises in epoch 2: one line naming the error and where its
    traceback is (error.log), exit 1; the record says failed with the error, epoch 1's history
    and checkpoint stay; once the plugin is fixed the same command resumes at epoch 2 and the
    finished run has no error.log."""
    from cifarbudget.plugins import get_registry

    calls = {"n": 0, "fail_at": 6}  # 4 batches of 64 per epoch: the 6th call is in epoch 2

    class Flaky:
        name = "flaky"

        def params(self) -> dict[str, Any]:
            return {}

        def __call__(self, images: Any, targets: Any) -> tuple[Any, Any]:
            calls["n"] += 1
            if calls["n"] == calls["fail_at"]:
                raise ZeroDivisionError("flaky: division by zero inside the plugin")
            return images, targets

    registry = get_registry("augmentations")
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    registry.add("flaky", Flaky, plugin="test")
    runs = tmp_path / "runs"
    args = ["run", "resnet20", "--dataset", "synthetic", "--epochs", "2", "--train-subset", "256"]
    args += ["--val-size", "0", "--batch-size", "64", "--aug", "flaky", "--results-dir", str(runs), "--quiet"]
    out = invoke(args)
    assert out.exit_code == 1, out.output
    (run_dir,) = [d for d in runs.iterdir() if d.name != ".locks"]
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and out.stderr.strip().endswith(lines[0]), out.stderr  # one line, the last
    assert "Traceback" not in out.stderr
    assert lines[0].startswith(f"Error: {run_dir.name}: stopped by an unexpected ZeroDivisionError: flaky: ")
    assert (
        f"the traceback is in {run_dir / 'error.log'}" in lines[0]
        and "run the same command again" in lines[0]
    )
    assert "in __call__" in (run_dir / "error.log").read_text()  # the plugin's frame
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("stopped by ZeroDivisionError")
    assert [row["epoch"] for row in record["history"]] == [1] and (run_dir / "checkpoint.pt").exists()

    calls["fail_at"] = -1  # the plugin fixed
    again = invoke(args)
    assert again.exit_code == 0, again.output
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "finished" and record.get("error") is None
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert calls["n"] == 6 + 4  # 4 + 2 calls, then epoch 2 once more: the run resumed
    assert not (run_dir / "error.log").exists()


def test_any_other_exception_is_one_line_and_v_shows_its_traceback(
    invoke: Any, cli_runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception from outside the library's errors before a run folder exists (here the data
    loader raises KeyError): one line, exit 1, no traceback; with ``cifarbudget -v`` it propagates."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr("cifarbudget.runner.load_splits", broken)
    args = ["run", "resnet20", "--dataset", "synthetic", "--epochs", "1", "--results-dir", str(tmp_path)]
    out = invoke(args)
    assert out.exit_code == 1
    assert (
        out.stderr.strip().splitlines()[-1]
        == "Error: unexpected KeyError: 'boom' (cifarbudget -v shows the traceback)"
    )
    assert "Traceback" not in out.stderr
    from cifarbudget.cli import cli

    verbose = cli_runner.invoke(cli, ["-v", *args])  # not invoke(): it fails on any exception
    assert isinstance(verbose.exception, KeyError)
