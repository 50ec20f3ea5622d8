"""The prepared GPU suite (``benchmarks/gpu_suite.py``) runs end to end in ``--smoke`` mode on the CPU,
so it cannot rot before a session with a GPU runs it for real; and the pieces that decide what such a
session reports (the t-test, the deadline guard, the budget and ``--parts`` skips, the data check)
behave as documented.

The smoke run uses the registered ``speedrun-gpu`` and ``best-under-5m`` recipes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cifarbudget.io import read_toml

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE_PATH = REPO_ROOT / "benchmarks" / "gpu_suite.py"


def _load_suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def suite(single_thread: None) -> Iterator[ModuleType]:
    """The suite module (it runs the registered speedrun-gpu and best-under-5m recipes)."""
    yield _load_suite()
    sys.modules.pop("gpu_suite", None)


def _best_recipe() -> str:
    return "best-under-5m"


def test_smoke_run_reports_every_part(tmp_path: Path, suite: ModuleType) -> None:
    best = _best_recipe()
    doc = suite.main(["--smoke", "--out", str(tmp_path), "--best-recipe", best, "--best-seeds", "1"])

    on_disk = json.loads((tmp_path / "suite.json").read_text())
    assert on_disk == doc  # the final document is the one written, strict JSON (no NaN)
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# GPU suite:") and "SMOKE RUN" in readme
    for number, name in enumerate(suite.PARTS, 1):
        part = doc["parts"][name]
        assert part["status"] in {"done", "partial", "skipped"}, (name, part)
        if part["status"] != "done":
            assert part["reason"], (name, part)
        assert f"## {number}. " in readme
    assert doc["smoke"] is True and doc["finished_at"] and doc["environment"]["torch"] == torch.__version__

    throughput = doc["parts"]["throughput"]
    rows = {r["setting"]: r for r in throughput["rows"]}
    assert list(rows) == [s[0] for s in suite.THROUGHPUT_SETTINGS]
    for label in ("fp32", "tf32", "bf16+channels_last"):
        assert rows[label]["status"] == "done"
        assert rows[label]["train_images_per_s"] > 0 and rows[label]["eval_images_per_s"] > 0
        assert rows[label]["steps"] == 2 and rows[label]["batch_size"] == 8
    assert rows["fp32"]["train_speedup_vs_fp32"] == 1.0
    assert rows["fp32"]["backend"]["tf32_matmul"] is False and rows["tf32"]["backend"]["tf32_matmul"] is True
    assert rows["bf16+channels_last"]["amp"] is True and rows["bf16+channels_last"]["channels_last"] is True
    compiled = rows["bf16+channels_last+compile"]
    assert compiled["status"] == "skipped" and "compile" in compiled["reason"]
    assert throughput["status"] == "partial"  # the compiled row is not run on the CPU
    pipeline = throughput["pipeline"]  # paper-optimized's augmentations, one batch and 8 at a time
    assert pipeline["status"] == "done" and pipeline["recipe"] == "paper-optimized" and pipeline["chunk"] == 8
    assert [a["name"] for a in pipeline["augmentations"]] == [
        "crop-flip",
        "blur",
        "vflip",
        "erasing",
        "cutmix",
    ]
    assert pipeline["default_images_per_s"] > 0 and pipeline["chunked_images_per_s"] > 0
    assert pipeline["chunked_over_default"] == pytest.approx(
        pipeline["chunked_images_per_s"] / pipeline["default_images_per_s"]
    )  # one round in smoke mode
    assert "Input pipeline (`paper-optimized` augmentations" in readme

    speedrun = doc["parts"]["speedrun"]
    assert speedrun["status"] == "done", speedrun
    assert speedrun["warmup"]["status"] == "finished" and speedrun["warmup"]["epochs"] == 1
    seeds = speedrun["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1] and all(s["status"] == "finished" for s in seeds)
    for s in seeds:
        assert s["accuracy_is"] == "test_acc_tta" and s["tta"] == "multicrop" and s["tta_views"] == 6
        assert s["time_to_accuracy_seconds"] == pytest.approx(s["train_seconds"] + s["eval_seconds"])
        assert 0.0 <= s["accuracy"] <= 1.0 and s["epochs"] == 1
        assert (tmp_path / "runs" / s["run_id"] / "result.json").exists()
    assert (tmp_path / "warmup" / speedrun["warmup"]["run_id"] / "result.json").exists()
    stats = speedrun["statistics"]
    accs = [s["accuracy"] for s in seeds]
    assert stats["n"] == 2 and stats["accuracy_mean"] == pytest.approx(sum(accs) / 2)
    assert stats["target_accuracy"] == 0.94 and stats["target_seconds"] == 5.0
    assert stats["t_test"]["df"] == 1 and stats["t_test"]["t_critical"] == pytest.approx(12.706204736174705)
    # the smoke sizes reached the runs: a tiny whitened AirNet on 512 synthetic images
    record = json.loads((tmp_path / "runs" / seeds[0]["run_id"] / "result.json").read_text())
    assert record["spec"]["model_params"] == {"whiten": True, "widths": [8, 16, 16], "stem": 8}
    assert record["spec"]["dataset"] == "synthetic" and record["data"]["n_train"] == 512

    paper = doc["parts"]["paper"]
    assert paper["status"] == "done" and len(paper["seeds"]) == 1 and paper["options"]["val_size"] == 0
    best_part = doc["parts"]["best"]
    assert best_part["recipe"] == best and best_part["status"] == "done" and len(best_part["seeds"]) == 1


def test_budget_and_parts_give_skip_reasons(tmp_path: Path, suite: ModuleType) -> None:
    mirror = tmp_path / "device-out"  # the device tool's $OUT: the figures land there on every save
    args = [
        "--smoke",
        "--out",
        str(tmp_path),
        "--budget-seconds",
        "0",
        "--parts",
        "throughput,speedrun,paper",
    ]
    doc = suite.main([*args, "--mirror", str(mirror)])
    assert json.loads((mirror / "suite.json").read_text()) == doc
    assert (mirror / "README.md").read_text() == (tmp_path / "README.md").read_text()
    parts = doc["parts"]
    assert parts["throughput"]["status"] == "skipped"
    assert all(r["status"] == "skipped" and "s left" in r["reason"] for r in parts["throughput"]["rows"][:3])
    assert (
        parts["speedrun"]["status"] == "skipped"
        and "the warm-up and two seeds need" in parts["speedrun"]["reason"]
    )
    assert parts["paper"]["status"] == "skipped" and "before it can be stopped" in parts["paper"]["reason"]
    assert parts["paper"]["start_check"]["needed_seconds"] > parts["paper"]["start_check"]["left_seconds"]
    assert parts["best"] == {
        "status": "skipped",
        "reason": "not selected (--parts throughput,speedrun,paper)",
    }
    assert not (tmp_path / "runs").exists()  # nothing was trained


@pytest.fixture
def like_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``configure_backends`` sets TF32 on, as it does on CUDA, from torch's defaults (matmuls off,
    convolutions on): the CPU can then tell which flags each measurement of the suite ran with.
    The flags are restored afterwards (torch's flag objects do not take ``monkeypatch.setattr``)."""
    import cifarbudget.device as device_module
    import cifarbudget.runner as runner_module

    real = device_module.configure_backends

    def configure(settings: device_module.DeviceSettings) -> dict[str, object]:
        real(settings)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return device_module.backend_flags(settings.device)

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    monkeypatch.setattr(device_module, "configure_backends", configure)
    monkeypatch.setattr(runner_module, "configure_backends", configure)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_each_measurement_records_the_backend_flags_it_ran_with(
    tmp_path: Path, suite: ModuleType, like_cuda: None
) -> None:
    """The flags change during the suite (the throughput settings set TF32 on and off, runs set
    it on), so the environment claims none; each measurement records its own, and the input
    pipeline runs under a run's flags, not under those tf32_mode restored (TF32 matmuls off)."""
    doc = suite.main(["--smoke", "--out", str(tmp_path), "--parts", "throughput,paper"])

    assert "backend" not in doc["environment"]  # read at the start: torch's defaults, changed later
    assert doc["environment"]["backend_flags"].startswith("per measurement")
    rows = {r["setting"]: r["backend"] for r in doc["parts"]["throughput"]["rows"] if r["status"] == "done"}
    assert rows["fp32"]["tf32_matmul"] is False and rows["fp32"]["tf32_cudnn"] is False
    assert rows["fp32"]["float32_matmul_precision"] == "highest"
    assert rows["tf32"]["tf32_matmul"] is True and rows["bf16+channels_last"]["tf32_cudnn"] is True
    pipeline = doc["parts"]["throughput"]["pipeline"]
    assert pipeline["status"] == "done"
    assert pipeline["backend"]["tf32_matmul"] is True and pipeline["backend"]["tf32_cudnn"] is True
    assert pipeline["backend"]["float32_matmul_precision"] == "high"
    (seed,) = doc["parts"]["paper"]["seeds"]
    assert seed["status"] == "finished" and seed["backend"]["tf32_matmul"] is True
    assert seed["backend"]["num_threads"] == 1  # the smoke run's thread, as the run's record says
    record = json.loads((tmp_path / "runs" / seed["run_id"] / "result.json").read_text())
    assert record["manifest"]["backend"]["num_threads"] == 1


def test_long_part_starts_only_when_its_start_up_and_two_epochs_fit(
    tmp_path: Path, suite: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long run's compile and data loading come before its first epoch, where the deadline guard
    cannot stop it: the start check counts them, with the throughput part's measured compile of
    the same model, else the stated estimate."""
    started: list[tuple[str, float]] = []
    monkeypatch.setattr(
        suite, "run_seeds", lambda ctx, key, *a, seed_estimate, **k: started.append((key, seed_estimate))
    )
    mode = suite.GPU_MODE  # nothing runs (run_seeds is replaced): only the start checks
    est = mode.estimates
    args = suite.build_parser().parse_args(["--best-seeds", "3"])

    def context(left: float) -> object:
        doc = {"parts": {name: {"status": "pending"} for name in suite.PARTS}}
        ctx = suite.Context(
            mode, suite.Clock(left, now=lambda: 0.0), suite.Report(tmp_path, doc), None, tmp_path, args
        )
        ctx.report.part("throughput").update(model="resnetsmall", compile_warmup_seconds=40.0)
        return ctx

    unmeasured = est.run_data + est.run_compile + est.run_epochs  # wrn40-2: no compile measured
    ctx = context(unmeasured - 1)
    assert unmeasured - 1 > 90.0  # the earlier minimum (data, compile, two epochs in 90 s) let it start
    suite.part_best(ctx)
    best = ctx.report.part("best")
    assert started == [] and best["status"] == "skipped"
    assert best["start_check"]["compile_seconds"] == est.run_compile
    assert best["start_check"]["compile_source"].startswith("estimate")
    assert f"a run needs about {unmeasured:.0f} s before it can be stopped" in best["reason"]
    assert f"{est.run_compile:.0f} s compile (estimate" in best["reason"]

    measured = est.run_data + 40.0 + est.run_epochs  # paper-initial trains resnetsmall: measured
    ctx = context(measured)
    suite.part_paper(ctx)
    paper = ctx.report.part("paper")
    assert paper["start_check"]["compile_seconds"] == 40.0
    assert paper["start_check"]["compile_source"].startswith("measured")
    assert started == [("paper", measured)]  # and its first seed is held to the same need


def test_runs_record_the_given_git_revision(
    tmp_path: Path, suite: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copied tree has no .git: --git-revision reaches every run's result.json (through
    $CIFARBUDGET_GIT_REVISION), and the variable is gone again after the suite."""
    from cifarbudget import results

    monkeypatch.delenv(results.GIT_REVISION_ENV, raising=False)
    results.git_revision.cache_clear()
    checkout = results.git_revision()
    doc = suite.main(["--smoke", "--out", str(tmp_path), "--parts", "paper", "--git-revision", "abc1234"])

    assert doc["environment"]["git_revision"] == "abc1234"
    assert doc["environment"]["git_revision_source"].startswith("--git-revision")
    (seed,) = doc["parts"]["paper"]["seeds"]
    record = json.loads((tmp_path / "runs" / seed["run_id"] / "result.json").read_text())
    assert record["manifest"]["git_revision"] == "abc1234"
    assert results.GIT_REVISION_ENV not in os.environ and results.git_revision() == checkout

    monkeypatch.setenv(results.GIT_REVISION_ENV, "  ")  # blank: git decides, as without it
    results.git_revision.cache_clear()
    assert results.git_revision() == checkout
    monkeypatch.setenv(results.GIT_REVISION_ENV, " def5678 ")
    results.git_revision.cache_clear()
    assert results.git_revision() == "def5678"
    results.git_revision.cache_clear()


def test_unregistered_recipe_is_skipped_with_its_name(tmp_path: Path, suite: ModuleType) -> None:
    doc = suite.main(
        ["--smoke", "--out", str(tmp_path), "--parts", "best", "--best-recipe", "no-such-recipe"]
    )
    assert doc["parts"]["best"]["status"] == "skipped"
    assert "'no-such-recipe' is not registered" in doc["parts"]["best"]["reason"]


def test_one_sided_t_test_agrees_with_scipy(suite: ModuleType) -> None:
    stats = pytest.importorskip("scipy.stats")
    values = [0.9412, 0.9398, 0.9425, 0.9405, 0.9419]
    result = suite.one_sided_t_test(values, 0.94)
    reference = stats.ttest_1samp(values, 0.94, alternative="greater")
    assert result["t"] == pytest.approx(float(reference.statistic), rel=1e-12)
    assert result["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-9)
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert result["t"] == pytest.approx((mean - 0.94) / (sd / math.sqrt(5)), rel=1e-12)
    assert result["df"] == 4 and result["t_critical"] == pytest.approx(2.7764451051977944)
    assert result["reject"] is (result["t"] > 2.7764451051977944)
    assert suite.one_sided_t_test([0.95], 0.94)["t"] is None  # one seed: no test


def test_deadline_guard_projects_from_steady_epochs(suite: ModuleType) -> None:
    now = [0.0]
    clock = suite.Clock(100.0, now=lambda: now[0])  # starts at t = 0
    guard = suite.DeadlineGuard(clock, epochs=10, reserve=5.0)
    guard.on_run_start(None)

    def epoch(k: int, wall: float, train: float) -> None:
        now[0] += wall
        guard.on_epoch_end(k, {"seconds": train, "train_acc": 0.5})

    epoch(1, 40.0, 39.0)  # the compile epoch: 9 x 40 + 5 > 60 s left, but one epoch is not enough to judge
    epoch(2, 5.0, 4.0)  # steady: 8 x 5 + 5 = 45 s needed, 55 s left
    epoch(3, 5.0, 4.0)  # 7 x 5 + 5 = 40 s needed, 50 s left
    assert guard.stopped is None
    with pytest.raises(suite.OutOfTime, match="stopped after epoch 4 of 10"):
        epoch(4, 20.0, 4.0)  # median wall of epochs 2-4 is 5 s: 6 x 5 + 5 = 35 s needed, 30 s left
    assert guard.stopped["epochs_done"] == 4 and guard.stopped["left_seconds"] == 30.0
    assert guard.stopped["needed_seconds"] == 35.0
    # 39 + 4 + 4 + 4 measured, 6 more at the median of the epochs after the first (4 s)
    assert guard.stopped["projected_train_seconds"] == 75.0
    assert suite.projected_train_seconds([39.0, 4.0, 4.0, 4.0], 10) == 75.0


def test_deadline_stop_passes_through_the_library_run(tmp_path: Path, suite: ModuleType) -> None:
    """The guard's stop is not swallowed by the runner's callback guard: the run ends after its
    first epoch with its checkpoint and record written (resumable), and the suite records why."""
    args = suite.build_parser().parse_args(["--smoke"])
    clock = suite.Clock(0.0)  # the budget is spent: stop after the first epoch
    report = suite.Report(tmp_path, {"parts": {}})
    ctx = suite.Context(suite.SMOKE_MODE, clock, report, None, tmp_path, args)
    options = {**suite.run_options(suite.SMOKE_MODE, "paper-initial"), "epochs": 2}
    row = suite.run_seed(ctx, "paper-initial", options, 0, tmp_path / "runs", reserve=1.0)
    assert row["status"] == "stopped" and row["stopped"]["epochs_done"] == 1
    assert row["reason"].startswith("stopped after epoch 1 of 2")
    record = json.loads((tmp_path / "runs" / row["run_id"] / "result.json").read_text())
    assert len(record["history"]) == 1 and record["status"] == "running"
    assert (tmp_path / "runs" / row["run_id"] / "checkpoint.pt").exists()


def test_gpu_mode_refuses_a_machine_without_cuda(
    tmp_path: Path, suite: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        suite.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no CUDA GPU here" in capsys.readouterr().err


def test_data_dir_check_reads_the_real_archives(real_data_dir: Path, suite: ModuleType) -> None:
    data_dir, meta = suite.check_data_dir(suite.build_parser(), real_data_dir)
    assert data_dir == real_data_dir.resolve()
    assert meta["n_train"] == 50_000 and meta["n_test"] == 10_000 and meta["classes"] == 10


def test_data_dir_check_refuses_a_folder_without_images(
    tmp_path: Path, suite: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        suite.check_data_dir(suite.build_parser(), tmp_path)
    assert "--data-dir" in capsys.readouterr().err


def _bash_array(script: str, name: str) -> list[str]:
    """The words of a bash array ``name=(...)`` (possibly over several lines) in ``script``."""
    match = re.search(rf"^{name}=\(([^)]*)\)", script, flags=re.MULTILINE)
    assert match, f"{name}=(...) not found"
    words = [line.split("#")[0] for line in match.group(1).splitlines()]
    return " ".join(words).split()


def _dist_name(requirement: str) -> str:
    """``'fvcore>=0.1.5; python_version < "3.11"'`` -> ``fvcore`` (PEP 503 normalised)."""
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_device_scripts_carry_every_runtime_dependency_the_image_lacks() -> None:
    """A GPU machine without network runs the suite with its image's packages plus the wheels
    ``gpu_prepare.sh`` collects: every runtime dependency (for Python 3.12, the machine's) must be
    in one of the two lists, so a new dependency cannot strand a lent GPU on an import error."""
    script = (REPO_ROOT / "benchmarks" / "gpu_prepare.sh").read_text()
    image = {_dist_name(word) for word in _bash_array(script, "image_has")}
    carried = {
        _dist_name(word) for word in _bash_array(script, "pure_sdists") + _bash_array(script, "wheels")
    }
    assert not image & carried, "a package is both in the image and carried"
    dependencies = read_toml(REPO_ROOT / "pyproject.toml")["project"]["dependencies"]
    needed = {_dist_name(dep) for dep in dependencies if "python_version < '3.11'" not in dep}
    assert needed, "no dependencies parsed"
    assert needed <= image | carried, sorted(needed - image - carried)
    # fvcore's and jsonschema's own dependencies that the image lacks travel too
    assert {"iopath", "yacs", "termcolor", "referencing", "rpds-py", "jsonschema-specifications"} <= carried


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", ["gpu_prepare.sh", "gpu_device.sh"])
def test_device_scripts_parse(name: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(REPO_ROOT / "benchmarks" / name)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_device_script_stops_on_a_missing_wheel_folder(tmp_path: Path) -> None:
    """Without the carried wheels the device script fails at once, with one line, before the suite."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu_device.sh"), "abc1234", "--smoke"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OUT": str(tmp_path / "out")},
        timeout=120,
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "gpu_device: no wheels in .wheels/ (run benchmarks/gpu_prepare.sh here, carry .data and .wheels)"
    ]
    assert not (tmp_path / "out" / "log.txt").exists()  # the suite never started
