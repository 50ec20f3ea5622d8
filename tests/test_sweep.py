"""``cifarbudget sweep``: grids, dry runs, budget skips, idempotency, SIGKILL and resume, executors.

The training sweeps run the real CLI in subprocesses with a test plugin installed as a fake
distribution (``tiny-synthetic``: 600 train / 200 test images, and ``broken-net``, whose training
forward raises), so the sweep's worker processes and Ray tasks find it through its entry point,
as they would find any installed plugin. Grid parsing and dry runs run in-process on the builtin
``synthetic`` dataset (a dry run loads no data).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from records import make_record, write_records

import cifarbudget.budget
from cifarbudget import leaderboard as lb
from cifarbudget.plugins import AUTOLOAD_ENV, reset_plugins
from cifarbudget.results import validate_result
from cifarbudget.spec import RunSpec
from cifarbudget.sweep import Sweep, SweepError, execute_run, expand_grid, plan_sweep, run_lock, stored_state
from cifarbudget.sweep.plan import _record_crash

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = re.compile(r"^(\S+-e\d+-s\d+-[0-9a-f]{12})\b", re.M)
PLUGIN_SRC = '''"""Test plugin for the sweep tests: a tiny dataset, a model that cannot train, a TTA that raises."""

import os

from torch import nn

from cifarbudget import hookimpl
from cifarbudget.data.synthetic import make_synthetic


def tiny(root, *, train, download):
    log = os.environ.get("SWEEPTEST_CALLS")  # who asked for the data, and whether it may download
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {'download' if download else 'load'}\\n")
    return make_synthetic(600 if train else 200, seed=0, split_seed=1 if train else 2)


class BrokenNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x):
        if self.training:
            raise RuntimeError("broken-net cannot train")
        return self.fc(x.flatten(1))


class BrokenTTA:
    """Passes the stand-in check (2 images) and fails on the run's real batches, as a policy that
    runs out of memory would."""

    n_views = 1

    def __call__(self, model, images):
        if len(images) > 2:
            raise RuntimeError("broken-tta cannot evaluate")
        return model(images)


@hookimpl
def cifarbudget_register_datasets(registry):
    registry.add("tiny-synthetic", tiny, description="600/200 synthetic images")


@hookimpl
def cifarbudget_register_tta_policies(registry):
    registry.add("broken-tta", BrokenTTA, description="raises when it evaluates")


@hookimpl
def cifarbudget_register_models(registry):
    registry.add("broken-net", BrokenNet, description="raises in its training forward")
'''
TINY = ["--dataset", "tiny-synthetic", "--train-subset", "200", "--val-size", "50", "--batch-size", "64"]
GRID = ["--model", "resnet20", "--model", "airnet-small", "--aug", "crop-flip", "--aug", "cutmix+blur"]
# 2 models x 2 pipelines x 2 seeds
SWEEP = [*GRID, "--seeds", "2", *TINY, "--epochs", "1", "--workers", "2"]
SYNTHETIC = ["--dataset", "synthetic", "--epochs", "1"]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder where the test plugin is installed (distribution ``cifarbudget-sweeptest``)."""
    site = tmp_path_factory.mktemp("site")
    info = site / "cifarbudget_sweeptest-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cifarbudget-sweeptest\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[cifarbudget]\nsweeptest = cifarbudget_sweeptest\n")
    (site / "cifarbudget_sweeptest.py").write_text(PLUGIN_SRC)
    return site


@pytest.fixture(scope="module")
def plugin_env(plugin_site: Path) -> dict[str, str]:
    """The environment of a process that finds the test plugin through its entry point."""
    env = {k: v for k, v in os.environ.items() if k != AUTOLOAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_site), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def plugin_here(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test plugin in this process too (the conftest fixture resets the plugins afterwards)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    reset_plugins(autoload=True)


# what the console script runs (``python -m cifarbudget.cli`` would import the CLI module twice)
CLI = [sys.executable, "-c", "from cifarbudget.cli import main; main()"]


def cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(results_dir: Path) -> dict[str, dict]:
    """run folder name -> its result.json."""
    return {
        d.name: json.loads((d / "result.json").read_text())
        for d in sorted(results_dir.iterdir())
        if not d.name.startswith(".") and (d / "result.json").exists()
    }


def board_rows(invoke: Callable[..., Result], results_dir: Path) -> list[tuple]:
    out = invoke(["leaderboard", str(results_dir), "--format", "json"])
    assert out.exit_code == 0, out.output
    board = lb.read_leaderboard_json(out.stdout)
    assert board[["test_acc_mean", "test_acc_std", "test_acc_ci95"]].notna().all().all()
    return sorted(
        board[["config_id", "model", "augs", "sched", "tta", "epochs", "n"]].itertuples(index=False)
    )


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory, plugin_env: dict[str, str]) -> tuple[Path, str]:
    """The 8-run sweep on the local executor with 2 workers: (results dir, its stderr)."""
    work = tmp_path_factory.mktemp("local")
    proc = cli(["sweep", *SWEEP, "--results-dir", "runs"], plugin_env, work)
    assert proc.returncode == 0, proc.stderr
    return work / "runs", proc.stderr


# --- training sweeps ----------------------------------------------------------------------------------
def test_local_sweep_trains_every_run_once_and_a_rerun_trains_nothing(
    local_sweep: tuple[Path, str],
    plugin_here: None,
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results_dir, stderr = local_sweep
    found = records(results_dir)
    assert len(found) == 8
    assert all(r["status"] == "finished" and r["run_id"] == name for name, r in found.items())
    assert {(r["spec"]["model"], tuple(r["spec"]["augs"]), r["spec"]["seed"]) for r in found.values()} == {
        (m, a, s)
        for m in ("resnet20", "airnet-small")
        for a in (("crop-flip",), ("crop-flip", "cutmix", "blur"))
        for s in (0, 1)
    }
    assert "local executor: 2 worker process(es)" in stderr
    progress = re.findall(r"^\[(\d)/8\] (\S+): finished, test acc [\d.]+", stderr, re.M)
    assert sorted(int(n) for n, _ in progress) == list(range(1, 9))
    assert {run_id for _, run_id in progress} == set(found)
    assert "ETA" in stderr

    rows = board_rows(invoke, results_dir)
    assert len(rows) == 4 and all(row.n == 2 for row in rows)

    mtimes = {name: (results_dir / name / "result.json").stat().st_mtime_ns for name in found}
    monkeypatch.setattr(
        "cifarbudget.sweep.plan.make_executor", lambda sweep: pytest.fail("an executor started")
    )
    again = invoke(["sweep", *SWEEP, "--results-dir", str(results_dir)])
    assert again.exit_code == 0, again.output
    assert len(re.findall(r"skipped \(already finished\), test acc", again.stderr)) == 8
    assert "8 runs: 8 finished; this sweep trained 0" in again.stderr
    assert {name: (results_dir / name / "result.json").stat().st_mtime_ns for name in found} == mtimes
    assert sorted(RUN_ID.findall(again.stdout)) == sorted(found)


def test_a_downloading_sweep_downloads_once_in_the_driver_never_in_the_workers(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    calls = tmp_path / "calls.log"
    env = {**plugin_env, "SWEEPTEST_CALLS": str(calls)}
    args = ["sweep", "--model", "resnet20", "--seeds", "2", *TINY, "--epochs", "1", "--workers", "2"]
    proc = cli([*args, "--download", "--data-dir", "data", "--results-dir", "runs"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in calls.read_text().splitlines()]
    downloaders = {pid for pid, what in rows if what == "download"}
    loaders = {pid for pid, what in rows if what == "load"}
    assert len(downloaders) == 1  # the driver: train and test split, once each
    assert sum(what == "download" for _, what in rows) == 2
    assert len(loaders) == 2 and not loaders & downloaders  # the two workers only load


def test_torchvision_downloads_take_a_lock_and_the_waiter_finds_the_data(tmp_path: Path) -> None:
    """Two processes asking for a missing dataset: one downloads, the other waits, then loads."""
    import threading

    from cifarbudget.data.sources import _download_once

    fetched: list[int] = []

    class FakeCifar:
        def __init__(self, root: str, *, train: bool, download: bool) -> None:
            marker = Path(root) / "here"
            if download:
                time.sleep(0.3)
                fetched.append(1)
                marker.touch()
            elif not marker.exists():
                raise RuntimeError("Dataset not found or corrupted.")

    threads = [
        threading.Thread(target=_download_once, args=(FakeCifar, tmp_path / "d", True)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fetched == [1]


def test_sigkilled_sweep_resumes_and_completes_every_run_exactly_once(
    tmp_path: Path,
    plugin_env: dict[str, str],
    plugin_here: None,
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = [*GRID, "--seeds", "2", *TINY, "--epochs", "2", "--workers", "2", "--results-dir", "runs"]
    results_dir = tmp_path / "runs"
    proc = subprocess.Popen(
        [*CLI, "sweep", *args],
        cwd=tmp_path,
        env=plugin_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    deadline = time.time() + 300
    finished = 0
    while time.time() < deadline and proc.poll() is None:
        states = [stored_state(results_dir, d.name)[0] for d in results_dir.glob("*-e2-*")]
        finished = states.count("finished")
        if finished >= 1:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= finished < 8, "the sweep finished before it could be killed"

    monkeypatch.chdir(tmp_path)
    plan = invoke(["sweep", *args, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    states = re.findall(r"\s(finished|unfinished \(\d/2 epochs\)|new)\s*$", plan.stdout, re.M)
    assert len(states) == 8 and "finished" in states and set(states) != {"finished"}
    finished_before = states.count("finished")

    # Two sweep processes resume the same sweep at once: each run is trained by one of them.
    procs = [
        subprocess.Popen(
            [*CLI, "sweep", *args],
            cwd=tmp_path,
            env=plugin_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    trained = [set(re.findall(r"^\[\d/8\] (\S+): finished, test acc", err, re.M)) for _, err in outputs]
    assert not trained[0] & trained[1]  # no run trained by both
    assert len(trained[0] | trained[1]) == 8 - finished_before
    found = records(results_dir)
    assert len(found) == 8 and len([d for d in results_dir.iterdir() if not d.name.startswith(".")]) == 8
    assert len({r["run_id"] for r in found.values()}) == 8
    for record in found.values():
        assert record["status"] == "finished"
        assert [h["epoch"] for h in record["history"]] == [1, 2]


def test_ray_executor_gives_the_same_runs_and_leaderboard(
    local_sweep: tuple[Path, str], plugin_env: dict[str, str], invoke: Callable[..., Result], tmp_path: Path
) -> None:
    pytest.importorskip(
        "ray", reason="the Ray executor needs the 'ray' extra: pip install 'cifarbudget[ray]'"
    )
    local_dir, _ = local_sweep
    proc = cli(
        ["sweep", *SWEEP, "--executor", "ray", "--results-dir", "runs"], plugin_env, tmp_path, timeout=400
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"^ray executor: cluster of \d+ CPUs, \d+ GPUs; .+ per run, at most 2 at once$", proc.stderr, re.M
    )
    ray_records = records(tmp_path / "runs")
    assert sorted(ray_records) == sorted(records(local_dir))
    assert all(r["status"] == "finished" for r in ray_records.values())
    assert board_rows(invoke, tmp_path / "runs") == board_rows(invoke, local_dir)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on_and_exits_nonzero(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    args = ["--model", "airnet-small,broken-net", "--lr", "0.05,1e6", *TINY, "--epochs", "2"]
    proc = cli(["sweep", *args, "--workers", "2", "--results-dir", "runs"], plugin_env, tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: 3 of 4 runs failed or diverged (see the table)"]
    found = records(tmp_path / "runs")
    by_config = {(r["spec"]["model"], r["spec"]["lr"]): r for r in found.values()}
    assert by_config[("airnet-small", 0.05)]["status"] == "finished"
    assert by_config[("airnet-small", 1e6)]["status"] == "diverged"
    for lr in (0.05, 1e6):
        broken = by_config[("broken-net", lr)]
        validate_result(broken)
        assert broken["status"] == "failed"
        assert broken["error"] == "RuntimeError: broken-net cannot train"
        log = (tmp_path / "runs" / broken["run_id"] / "sweep.log").read_text()
        assert "Traceback" in log and "broken-net cannot train" in log  # the details stay in the run's log
    table = {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s+(\w+)", proc.stdout, re.M)}
    assert sorted(table[run_id] for run_id in found) == ["diverged", "failed", "failed", "finished"]


def test_tta_lines_train_once_evaluate_the_others_and_a_failed_evaluation_keeps_the_run(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    """Three TTA lines of one run: the first trains it, the others only evaluate its checkpoint,
    and the sweep says so; an evaluation that raises fails its line, not the finished run."""
    args = ["--model", "airnet-small", *TINY, "--epochs", "1", "--workers", "1", "--results-dir", "runs"]
    proc = cli(
        ["sweep", *args, "--tta", "none", "--tta", "flip", "--tta", "broken-tta"], plugin_env, tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    (record,) = records(tmp_path / "runs").values()
    assert record["status"] == "finished" and record["error"] is None  # the failed evaluation lost nothing
    assert set(record["final"]["tta_evals"]) == {"flip"}
    assert re.search(
        r"^\[2/3\] \S+: evaluated TTA flip \(no training\), test acc TTA [\d.]+", proc.stderr, re.M
    )
    assert re.search(r"^\[3/3\] \S+: FAILED: RuntimeError: broken-tta cannot evaluate", proc.stderr, re.M)
    assert (
        "3 runs (1 training): 2 finished, 1 failed; this sweep trained 1 and evaluated 1 more TTA policy"
        in proc.stderr
    )


@pytest.mark.parametrize(("status", "marked"), [("finished", False), ("diverged", False), ("running", True)])
def test_a_worker_that_dies_marks_only_an_unsettled_run_failed(
    tmp_path: Path, status: str, marked: bool
) -> None:
    """A worker killed (OOM, a segfault) while it evaluates another TTA policy of a finished run:
    that line fails, the run's record (and its earlier evaluations) stay as they were."""
    record = make_record(tta="flip", test_acc_tta=0.85, status=status)
    (path,) = write_records(tmp_path, [record])
    before = path.read_text()
    spec = RunSpec.from_dict({**record["spec"], "tta": "flip-shift"})
    task = {"spec": spec.to_dict(), "results_dir": str(tmp_path), "budget": record["budget"], "device": "cpu"}
    outcome = _record_crash(task, "worker process exited with code -9")
    assert (outcome["status"], outcome["trained"], outcome["evaluated"]) == ("failed", marked, not marked)
    after = json.loads(path.read_text())
    if marked:
        assert after["status"] == "failed" and after["error"] == "worker process exited with code -9"
    else:
        assert path.read_text() == before  # not one byte changed


def test_a_record_is_written_for_a_run_that_fails_before_its_first_epoch(tmp_path: Path) -> None:
    """--train-subset larger than the data fails before the runner writes anything; the worker records it."""
    sweep = Sweep.from_options(
        {"model": ["airnet-small"]},
        {"dataset": "synthetic", "train_subset": 9000, "epochs": 1},
        results_dir=tmp_path,
    )
    (planned,) = plan_sweep(sweep)
    task = {"run_id": planned.run_id, "spec": planned.spec.to_dict(), "budget": planned.report.to_dict()}
    outcome = execute_run({**task, "results_dir": str(tmp_path)})
    assert outcome["status"] == "failed" and "--train-subset 9,000 exceeds" in outcome["error"]
    (record,) = records(tmp_path).values()
    validate_result(record)
    assert record["status"] == "failed" and record["error"] == outcome["error"]
    assert record["data"]["n_train"] == 0 and record["history"] == []
    assert stored_state(tmp_path, planned.run_id)[0] == "failed"  # a rerun of the sweep tries it again


# --- grids and dry runs (in-process, nothing trains) ------------------------------------------------------
def test_dry_run_lists_the_grid_with_budget_verdicts_and_trains_nothing(
    tmp_path: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    real = cifarbudget.budget.check_budget

    def counting(model, *args, **kwargs):
        counted.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(cifarbudget.budget, "check_budget", counting)
    results_dir = tmp_path / "runs"
    args = [
        "sweep",
        "--model",
        "resnet20,preactresnet18",
        "--aug",
        "crop-flip",
        "--aug",
        "cutmix+blur+erasing",
    ]
    args += ["--seeds", "2", "--lr", "0.05,0.1", *SYNTHETIC, "--results-dir", str(results_dir), "--dry-run"]
    out = invoke(args)
    assert out.exit_code == 0, out.output
    assert sorted(counted) == ["preactresnet18", "resnet20"]  # once per model, not per run
    lines = [line for line in out.stdout.splitlines() if RUN_ID.match(line)]
    assert len(lines) == 16
    ok = [line for line in lines if line.startswith("resnet20-")]
    over = [line for line in lines if line.startswith("preactresnet18-")]
    assert len(ok) == len(over) == 8
    assert all(re.search(r"\s269,722\s+ok\s+new$", line) for line in ok)
    assert all(re.search(r"\s11,171,146\s+OVER \(skip\)\s+new$", line) for line in over)
    assert any("crop-flip+cutmix+blur+erasing" in line and "epochs=1 lr=0.05" in line for line in ok)
    assert "skipped, over budget: preactresnet18: 11,171,146 trainable parameters" in out.stderr
    assert "8 new; 8 over budget (skipped); dry run, nothing trained" in out.stderr
    assert not results_dir.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--sched", "onecycle", "--train-subset", "64", "--batch-size", "64"],
            "needs at least 3 optimizer steps",
        ),
        (["--sched", "onecycle", "--sched-param", "bogus=1"], "scheduler 'onecycle' has no parameter bogus"),
        # what the run passes itself is neither accepted as a parameter nor listed as one
        (
            ["--sched", "onecycle", "--sched-param", "epochs=3"],
            "scheduler 'onecycle': epochs is set by the run",
        ),
        (["--opt-param", "lr=0.3"], "optimizer 'sgd': lr is set by the run"),
        (["--model-param", "num_classes=3"], "model 'airnet-small': num_classes is set by the run"),
        (
            ["--aug", "crop-flip+progressive-resize", "--aug-param", "progressive-resize.size=4"],
            "size must be",
        ),
    ],
)
def test_a_run_that_cannot_train_fails_the_sweep_before_any_work(
    tmp_path: Path,
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(
        "cifarbudget.sweep.plan.make_executor", lambda sweep: pytest.fail("an executor started")
    )
    base = ["sweep", "--model", "airnet-small", "--dataset", "synthetic", "--epochs", "1", "--val-size", "0"]
    for dry in ([], ["--dry-run"]):
        out = invoke([*base, *options, "--results-dir", str(tmp_path / "runs"), *dry])
        assert out.exit_code == 1, out.output
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: airnet-small-synthetic-e1-s0-"), lines
        assert message in lines[0]
    assert not (tmp_path / "runs").exists()


def test_over_budget_runs_are_skipped_and_reported_never_trained(
    tmp_path: Path, invoke: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "cifarbudget.sweep.plan.make_executor", lambda sweep: pytest.fail("an executor started")
    )
    out = invoke(["sweep", "--model", "preactresnet18", *SYNTHETIC, "--results-dir", str(tmp_path / "runs")])
    # nothing could train: the table first, then the over-budget exit code and one error line
    assert out.exit_code == 3, out.output
    assert (
        out.stderr.rstrip().splitlines()[-1]
        == "Error: every one of the 1 runs is over budget: nothing to train"
    )
    assert re.search(
        r"^\[1/1\] preactresnet18-synthetic-e1-s0-\w+: skipped \(over budget\): .*>= budget", out.stderr, re.M
    )
    assert re.search(r"^preactresnet18-\S+\s+over_budget\s*$", out.stdout, re.M)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet2"], "Error: Unknown model 'resnet2'. Did you mean: resnet20"),
        (
            ["--model", "resnet20", "--aug", "cutmx"],
            "Error: Unknown augmentation 'cutmx'. Did you mean: cutmix?",
        ),
        (
            ["--model", "resnet20", "--sched", "cosin"],
            "Error: Unknown scheduler 'cosin'. Did you mean: cosine?",
        ),
        (["--model", "resnet20", "--tta", "flp"], "Error: Unknown TTA policy 'flp'. Did you mean: flip"),
        (
            ["--model", "resnet20", "--dataset", "cifar11"],
            "Error: Unknown dataset 'cifar11'. Did you mean: cifar10",
        ),
        (
            ["--model", "resnet20", "--aug", "cutmix,blur"],
            "Error: aug 'cutmix,blur': join the augmentations of one pipeline with '+'",
        ),
        (["--model", "resnet20", "--lr", "0.1,fast"], "Error: lr: 'fast' is not a number"),
        (["--model", "resnet20", "--epochs", "0"], "Error: --epochs must be at least 1 (got 0)"),
        (["--aug", "cutmix"], "Error: no model: pass --model"),
    ],
)
def test_bad_grids_fail_with_one_line_before_anything_runs(
    args: list[str], message: str, invoke: Callable[..., Result], tmp_path: Path
) -> None:
    out = invoke(["sweep", *args, "--results-dir", str(tmp_path), "--dry-run"])
    assert out.exit_code == 1
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr
    assert out.stdout == ""


def test_toml_file_grid_equals_the_cli_grid_and_options_override_it(
    tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        'executor = "local"\nworkers = 2\n\n[grid]\nmodel = ["resnet20", "airnet-small"]\n'
        'aug = ["crop-flip", "cutmix+blur", ["cutmix", "blur", "erasing"]]\nsched = ["cosine", "multistep"]\n'
        'tta = ["none", "flip"]\nlr = [0.05, 0.1]\nseeds = 2\n\n'
        '[fixed]\ndataset = "synthetic"\nepochs = 3\nbatch-size = 256\nlabel_smoothing = 0.1\n'
        f'results_dir = "{tmp_path / "runs"}"\n\n[fixed.aug_params.cutmix]\np = 1.0\n'
    )
    cli_args = [
        "--model",
        "resnet20",
        "--model",
        "airnet-small",
        "--aug",
        "crop-flip",
        "--aug",
        "cutmix+blur",
    ]
    cli_args += [
        "--aug",
        "cutmix+blur+erasing",
        "--sched",
        "cosine,multistep",
        "--tta",
        "none",
        "--tta",
        "flip",
    ]
    cli_args += ["--lr", "0.05,0.1", "--seeds", "2", "--dataset", "synthetic", "--epochs", "3"]
    cli_args += ["--batch-size", "256", "--label-smoothing", "0.1", "--aug-param", "cutmix.p=1.0"]
    from_file = invoke(["sweep", "--file", str(toml), "--dry-run"])
    from_cli = invoke(["sweep", *cli_args, "--results-dir", str(tmp_path / "runs"), "--dry-run"])
    assert from_file.exit_code == 0 and from_cli.exit_code == 0, from_file.output + from_cli.output
    ids = RUN_ID.findall(from_file.stdout)
    assert len(ids) == 2 * 3 * 2 * 2 * 2 * 2
    assert len(set(ids)) == len(ids) // 2  # TTA is evaluation only: the none/flip variants share a run
    assert ids == RUN_ID.findall(from_cli.stdout)

    sweep = Sweep.from_toml(toml)
    assert (sweep.executor, sweep.workers, sweep.fixed["aug_params"]) == ("local", 2, {"cutmix": {"p": 1.0}})
    assert [s.run_id for s in expand_grid(sweep)] == ids
    overridden = invoke(["sweep", "--file", str(toml), "--seed", "7", "--model", "resnet20", "--dry-run"])
    assert len(RUN_ID.findall(overridden.stdout)) == 24
    assert all(re.search(r"^resnet20-synthetic-e3-s7-", line) for line in RUN_ID.findall(overridden.stdout))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[grid]\nmodle = ["resnet20"]\n', "unknown key 'modle' in [grid]. Did you mean: model?"),
        ('[fixed]\nmodel = "resnet20"\nlearning_rate = 0.1\n', "unknown key 'learning_rate' in [fixed]."),
        ('exector = "ray"\n[grid]\nmodel = ["resnet20"]\n', "Did you mean: executor?"),
        (
            'executor = "slurm"\n[grid]\nmodel = ["resnet20"]\n',
            "unknown executor 'slurm'; use one of: local, ray",
        ),
        ("[grid]\nmodel = []\n", "the model axis has no values"),
        ('[grid]\nmodel = ["resnet20"]\nseeds = 0\n', "seeds must be a positive number of seeds"),
        ('[grid]\nmodel = ["resnet20"]\nseeds = 2.5\n', "seeds must be a positive number of seeds (got 2.5)"),
        ('[grid]\nmodel = ["resnet20"]\nseeds = "3"\n', "seeds must be a positive number of seeds (got '3')"),
        (
            '[grid]\nmodel = ["resnet20"]\naug = ["crop-flip"]\n[fixed.aug_params]\ncutmix = 3\n',
            "aug_params.cutmix: 3 is not a table of the augmentation's parameters",
        ),
        (
            '[fixed]\nmodel = "resnet20"\nallow_over_budget = true\n',
            "a sweep never trains over-budget models",
        ),
        ('[grid\nmodel = ["resnet20"]\n', "invalid TOML"),
    ],
)
def test_bad_sweep_files_fail_with_one_line(
    text: str, message: str, tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(SweepError, match=re.escape(message)):
        Sweep.from_toml(toml)
    out = invoke(["sweep", "--file", str(toml), "--dry-run"])
    assert out.exit_code == 1 and out.stderr.count("\n") == 1 and message in out.stderr


def test_the_documented_example_file_is_a_valid_sweep(invoke: Callable[..., Result], tmp_path: Path) -> None:
    example = REPO_ROOT / "docs" / "examples" / "sweep.toml"
    sweep = Sweep.from_toml(example)
    specs = expand_grid(sweep)
    assert len(specs) == len({s.run_id for s in specs}) > 1
    out = invoke(["sweep", "--file", str(example), "--results-dir", str(tmp_path), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert RUN_ID.findall(out.stdout) == [s.run_id for s in specs]


def test_the_run_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    path = tmp_path / ".locks" / "run.lock"
    with run_lock(path, wait=False) as first:
        assert first
        with run_lock(path, wait=False) as second:  # another open file description: a second worker
            assert not second
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from cifarbudget.sweep import is_locked; print(is_locked(__import__('pathlib').Path({str(path)!r})))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert holder.stdout.strip() == "True"
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import fcntl, os, time; fd = os.open({str(path)!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout.readline().strip() == "locked"
    with run_lock(path, wait=False) as while_held:
        assert not while_held
    killed.kill()
    killed.wait()
    with run_lock(path, wait=False) as after_kill:
        assert after_kill


class _FakeWorker:
    stdin = None

    def poll(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_local_workers_are_pinned_round_robin_to_the_gpus_and_split_the_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from cifarbudget import sweep as sweep_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert sweep_module.visible_gpus(None) == ["4", "6"]  # the sweep's own restriction is honoured
    assert sweep_module.visible_gpus("cuda:1") == sweep_module.visible_gpus("cpu") == []

    envs: list[dict[str, str]] = []
    monkeypatch.setattr(sweep_module.executors, "cpu_count", lambda: 16)
    monkeypatch.setattr(
        sweep_module.executors.subprocess, "Popen", lambda args, **kw: envs.append(kw["env"]) or _FakeWorker()
    )
    executor = sweep_module.LocalExecutor(Sweep(workers=3))
    for slot in range(3):
        executor._start(slot)
    executor.close()
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["4", "6", "4"]
    assert {env["OMP_NUM_THREADS"] for env in envs} == {"5"} and executor.threads == 5
    assert executor.describe() == "local executor: 3 worker process(es), GPUs 4,6"


def test_a_misspelled_tracker_is_one_line_before_any_run(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    args = [
        "sweep",
        "--model",
        "resnet20",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--track",
        "tensorbaord",
    ]
    out = invoke([*args, "--results-dir", str(tmp_path / "runs")])
    assert out.exit_code == 1, out.output
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tensorbaord" in lines[0] and "tensorboard" in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_a_local_worker_ignores_ctrl_c_the_driver_stops_it() -> None:
    """Ctrl-C reaches the whole process group: a worker's KeyboardInterrupt printed its traceback
    over the driver's one line (8 of 26 tries). Workers ignore SIGINT from their first line; the
    driver stops them (SIGTERM)."""
    from cifarbudget.sweep.executors import WORKER_CODE

    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # inside its imports, where the tracebacks came from
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    _, err = proc.communicate(input="", timeout=120)  # no task: the loop ends at end of input
    assert proc.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
