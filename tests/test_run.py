"""End-to-end ``cifarbudget run`` on synthetic data: learning, the record, resume, divergence, budget."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from records import TINY_RUN

import cifarbudget
from cifarbudget.device import cpu_info
from cifarbudget.errors import BudgetError, DataError
from cifarbudget.results import load_result, validate_result
from cifarbudget.runner import resolve_spec, run

# A small, fast configuration: ~1.5k training images, a 0.3M-parameter net.
FAST = {"dataset": "synthetic", "train_subset": 1536, "batch_size": 128}


def _cli(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cifarbudget.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        **kwargs,
    )


def _comparable(history: list[dict]) -> list[dict]:
    """Per-epoch metrics without the wall-clock fields."""
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


def test_run_learns_and_writes_a_complete_record(tmp_path: Path) -> None:
    result = run(
        "airnet-small",
        epochs=3,
        sched="onecycle",
        tta="flip",
        results_dir=tmp_path,
        progress=False,
        lr=0.2,
        label_smoothing=0.1,
        **FAST,
    )
    assert result.status == "finished"
    assert result.test_acc >= 0.45, result.final  # chance is 0.10; 36 steps on 1.5k images
    assert result.test_acc_tta is not None and result.final["tta_views"] == 2
    assert result.final["inference_macs_tta"] == 2 * result.budget["macs"]
    assert result.data["n_val"] == 600 and result.data["n_train"] == 1536  # 10% of 6,000 held out
    run_dir = tmp_path / result.run_id
    data = json.loads((run_dir / "result.json").read_text())
    validate_result(data)
    assert [h["epoch"] for h in data["history"]] == [1, 2, 3]
    assert all(h["val_acc"] is not None for h in data["history"])
    assert data["manifest"]["torch"] == torch.__version__
    assert data["manifest"]["cpu"] == cpu_info()  # the CPU's fingerprint, not only its model name
    assert data["pipeline"][0]["name"] == "crop-flip"
    assert sum(map(sum, data["final"]["confusion_matrix"])) == data["data"]["n_test"]
    csv_lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,") and len(csv_lines) == 4
    for name in ("curves.png", "confusion.png"):
        import matplotlib.image

        png = matplotlib.image.imread(run_dir / name)
        assert png.shape[0] > 200 and png.shape[1] > 200
        assert png.std() > 0.05  # a real picture, not a blank canvas
    assert (run_dir / "checkpoint.pt").exists()


def test_rerun_of_a_finished_spec_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run("airnet-small", epochs=1, results_dir=tmp_path, progress=False, **FAST)
    import cifarbudget.runner

    monkeypatch.setattr(cifarbudget.runner, "load_data", lambda *a, **k: pytest.fail("trained again"))
    again = run("airnet-small", epochs=1, results_dir=tmp_path, progress=False, **FAST)
    assert again.to_dict() == first.to_dict()


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = [
        "run",
        "airnet-small",
        "--dataset",
        "synthetic",
        "--train-subset",
        "2048",
        "--epochs",
        "3",
        "--sched",
        "cosine",
        "--aug",
        "cutmix",
        "--seed",
        "3",
        "--quiet",
    ]
    reference = _cli([*args, "--results-dir", str(tmp_path / "reference")], tmp_path, timeout=600)
    assert reference.returncode == 0, reference.stderr
    ref = load_result(next(p for p in (tmp_path / "reference").iterdir() if p.name != ".locks"))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarbudget.cli", *args, "--results-dir", str(killed_dir)],
        cwd=tmp_path,
        env={**os.environ, "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    record = killed_dir / ref.run_id / "result.json"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as epoch 1 is recorded: epoch 2 is running
        if record.exists() and len(json.loads(record.read_text())["history"]) == 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = json.loads(record.read_text())
    assert interrupted["status"] == "running" and len(interrupted["history"]) == 1

    resumed = _cli([*args, "--results-dir", str(killed_dir)], tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    res = load_result(killed_dir / ref.run_id)
    assert _comparable(res.history) == _comparable(ref.history)
    assert res.final == ref.final
    assert res.manifest["resumed_at_epoch"] == 1

    third = _cli([*args, "--results-dir", str(killed_dir)], tmp_path, timeout=600)
    assert third.returncode == 0 and "already finished" in third.stderr
    assert f"test acc  {ref.test_acc:.4f}" in third.stdout


def test_divergence_is_recorded_and_exits_nonzero(tmp_path: Path) -> None:
    proc = _cli(
        [
            "run",
            "airnet-small",
            "--dataset",
            "synthetic",
            "--train-subset",
            "512",
            "--epochs",
            "2",
            "--lr",
            "1e6",
            "--quiet",
            "--results-dir",
            str(tmp_path),
        ],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "diverged" in errors[0]
    assert "Traceback" not in proc.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name != ".locks"]
    data = json.loads((run_dir / "result.json").read_text())
    validate_result(data)
    assert data["status"] == "diverged" and "non-finite" in data["error"]


def test_over_budget_is_refused_before_any_data_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cifarbudget.runner

    monkeypatch.setattr(cifarbudget.runner, "load_splits", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(BudgetError, match=r"11,171,146 trainable parameters >= budget 5,000,000"):
        run("preactresnet18", dataset="synthetic", results_dir=tmp_path, progress=False)


def test_allow_over_budget_trains_and_marks_the_result(tmp_path: Path) -> None:
    result = run(
        "resnet20",
        dataset="synthetic",
        budget="200k",
        allow_over_budget=True,
        epochs=1,
        train_subset=256,
        results_dir=tmp_path,
        progress=False,
    )
    assert result.status == "finished" and result.out_of_budget is True
    assert json.loads((tmp_path / result.run_id / "result.json").read_text())["out_of_budget"] is True


def test_offline_cifar10_fails_fast_with_one_line(tmp_path: Path, invoke) -> None:
    t0 = time.time()
    res = invoke(
        [
            "run",
            "resnetsmall",
            "--aug",
            "cutmix",
            "--sched",
            "cosine",
            "--tta",
            "--data-dir",
            str(tmp_path / "nothing-here"),
            "--results-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert res.exit_code != 0 and time.time() - t0 < 60
    (line,) = [x for x in res.output.splitlines() if x.startswith("Error:")]
    assert "--data-dir" in line and "--download" in line


def test_recipe_values_are_overridden_by_explicit_options() -> None:
    spec = resolve_spec(recipe="paper-optimized", epochs=5, tta="none")
    assert spec.model == "resnetsmall" and spec.sched == "cosine" and spec.epochs == 5 and spec.tta == "none"
    assert spec.augs == ("crop-flip", "blur", "vflip", "erasing", "cutmix")
    assert resolve_spec("resnet20", augs=["cutmix"]).augs == ("crop-flip", "cutmix")
    assert resolve_spec("resnet20", augs=["none"]).augs == ()


def test_recipes_hook_lists_builtin_recipes() -> None:
    """The builtin plugin implements ``cifarbudget_register_recipes``."""
    assert {"paper-initial", "paper-optimized"} <= set(cifarbudget.recipes().names())
    paper = cifarbudget.recipes().create("paper-initial")
    assert paper["lr"] == 0.1 and paper["epochs"] == 100 and paper["sched"] == "multistep"


def test_unknown_names_fail_before_training() -> None:
    with pytest.raises(KeyError, match="Did you mean: cutmix"):
        resolve_spec("resnet20", augs=["cutmx"])


def test_missing_imagefolder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        run(
            "resnet20",
            dataset="imagefolder",
            data_dir=tmp_path / "missing",
            results_dir=tmp_path,
            progress=False,
        )


def _mismatched(train: bool) -> object:
    import torch.nn.functional as F

    from cifarbudget.data.core import Split
    from cifarbudget.data.synthetic import make_synthetic

    split = make_synthetic(64 if train else 32, split_seed=1 if train else 2)
    if train:
        return split
    if os.environ.get("MISMATCH") == "classes":
        return Split(split.images, split.labels, [*split.classes[:-1], "lorry"], source="odd")
    bigger = F.interpolate(split.images.float(), size=(48, 48)).round().to(torch.uint8)
    return Split(bigger, split.labels, list(split.classes), source="odd")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("sizes", "train images are 32x32, test images 48x48: both splits must have one image size"),
        ("classes", "different classes (only in train: class9; only in test: lorry)"),
    ],
)
def test_train_and_test_splits_that_do_not_match_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, message: str
) -> None:
    """A test split of another image size trained, evaluated and recorded without a word (its
    MACs counted at the training size); classes that differ are named."""
    from types import ModuleType

    plugin = ModuleType("odd_data")

    @cifarbudget.hookimpl
    def cifarbudget_register_datasets(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("odd", lambda root, *, train, download: _mismatched(train))

    plugin.cifarbudget_register_datasets = cifarbudget_register_datasets  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("odd_data", plugin),))
    monkeypatch.setenv("MISMATCH", case)
    with pytest.raises(DataError, match=re.escape(message)):
        run(
            "resnet20",
            dataset="odd",
            epochs=1,
            val_size=0,
            batch_size=32,
            results_dir=tmp_path,
            progress=False,
        )


def test_a_plot_that_raises_is_a_warning_and_the_finished_run_stays_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """matplotlib raised ValueError on a class name with ``$`` (mathtext) after training: the run
    was recorded failed, and the same command failed the same way after resuming."""
    import cifarbudget.plots

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("Unknown symbol: \\1_")

    monkeypatch.setattr(cifarbudget.plots, "plot_confusion", refuse)
    with caplog.at_level("WARNING", logger="cifarbudget"):
        result = run(
            "resnet20", dataset="synthetic", epochs=1, train_subset=128, val_size=0, batch_size=64,
            results_dir=tmp_path, progress=False,
        )  # fmt: skip
    assert result.status == "finished" and result.error is None
    assert load_result(result.run_dir).status == "finished"
    assert any(
        "could not write the plots" in r.getMessage() and "ValueError" in r.getMessage()
        for r in caplog.records
    )
    assert (result.run_dir / "curves.png").is_file() and not (result.run_dir / "confusion.png").exists()


@pytest.mark.realdata
def test_real_cifar10_jpeg_run_with_validation_split(tmp_path: Path, real_data_dir: Path) -> None:
    """The imagefolder zips of ../shared/data: 5,000 stratified validation images, the full test split."""
    result = run(
        "airnet-small",
        dataset="imagefolder",
        data_dir=real_data_dir,
        train_subset=4000,
        epochs=2,
        batch_size=256,
        lr=0.2,
        nesterov=True,
        sched="onecycle",
        label_smoothing=0.1,
        results_dir=tmp_path,
        progress=False,
    )
    assert result.status == "finished"
    assert result.data["classes"][:3] == ["airplane", "automobile", "bird"]
    assert (result.data["n_train"], result.data["n_val"], result.data["n_test"]) == (4000, 5000, 10000)
    assert result.test_acc > 0.20  # chance is 0.10; 2 short epochs on 4,000 images (measured 0.2485)
    assert all(0 <= h["val_acc"] <= 1 for h in result.history)


def test_a_restart_cut_short_while_deleting_never_leaves_a_finished_record_without_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--restart`` deleted the run folder in directory order (plots, checkpoint, then the record):
    a kill in between left a "finished" record without ``checkpoint.pt``, which a plain rerun took
    as done (exit 0) while predict, export and TTA evaluations failed."""
    import shutil

    import cifarbudget.runner as runner

    tiny = TINY_RUN
    first = run("airnet-small", results_dir=tmp_path, **tiny)
    real_rmtree = shutil.rmtree

    def killed_after_the_checkpoint(path: Any, *args: Any, **kwargs: Any) -> None:
        (Path(path) / "checkpoint.pt").unlink()
        raise KeyboardInterrupt  # the kill, before the record's turn came

    monkeypatch.setattr(runner.shutil, "rmtree", killed_after_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run("airnet-small", results_dir=tmp_path, restart=True, **tiny)
    monkeypatch.setattr(runner.shutil, "rmtree", real_rmtree)
    assert not (first.run_dir / "result.json").exists()  # the record went first
    again = run("airnet-small", results_dir=tmp_path, **tiny)  # a plain rerun trains it again
    assert again.status == "finished" and (again.run_dir / "checkpoint.pt").exists()
    assert again.test_acc == first.test_acc  # bit-identical on the CPU


def test_a_finished_run_returned_as_it_is_still_checks_tracker_names_and_says_its_aug_chunk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--track bogus`` on a finished run returned it with exit 0 (the name was only looked up
    before training), and ``--aug-chunk 2`` silently returned a run trained with 1."""
    from cifarbudget.errors import UnknownNameError

    tiny = TINY_RUN
    first = run("airnet-small", results_dir=tmp_path, **tiny)
    with pytest.raises(UnknownNameError, match="bogus"):
        run("airnet-small", results_dir=tmp_path, track=("bogus",), **tiny)
    with caplog.at_level("WARNING", logger="cifarbudget"):
        again = run("airnet-small", results_dir=tmp_path, aug_chunk=2, **tiny)
    assert again.run_id == first.run_id and again.test_acc == first.test_acc
    assert any("trained with --aug-chunk 1, not 2" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("5e+6", 5_000_000), ("3e+13", 30 * 10**12), ("4.5M", 4_500_000)],
)
def test_budget_spellings(given: str, expected: int) -> None:
    from cifarbudget.budget import parse_budget, parse_compute

    assert parse_budget(given) == expected and parse_compute(given) == expected


def test_budget_edges_zero_is_no_compute_budget_and_sizes_are_checked_after_the_suffix() -> None:
    from cifarbudget.budget import parse_budget
    from cifarbudget.spec import coerce

    assert [coerce("compute_budget", v) for v in ("0", "0T", "0.0", " 0", 0)] == [0] * 5
    for too_large in ("1e30", "1e18P"):
        with pytest.raises(BudgetError, match="too large"):
            parse_budget(too_large)
