"""``cifarbudget tune``: what is refused before the study exists, what a study's mismatch says,
the live pruner's last epoch, and Ctrl-C at every moment of a trial.

The Ctrl-C tests stub the runner (``run_spec``) so that a trial trains nothing: what they test is
where the signal lands (inside Optuna's bookkeeping, in a finalizer of its ``gc.collect()``,
inside a trial), not training.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")

import cifarbudget.runner  # noqa: E402
from cifarbudget.tune import (  # noqa: E402
    TuneError,
    _check_setup,
    _Reporter,
    _StopRun,
    fail_stale_trials,
    load_space,
    space_from_tables,
    tune,
)

FIXED = 'model = "airnet-small"\ndataset = "synthetic"\nepochs = 1\ntrain_subset = 64\nval_size = 32\nbatch_size = 32\n'


def _space(tmp_path: Path, params: str, fixed: str = "") -> Path:
    path = tmp_path / "space.toml"
    path.write_text(f"[params]\n{params}\n[fixed]\n{FIXED}{fixed}\n")
    return path


def _args(path: Path, results: Path, *extra: str) -> list[str]:
    return [
        "tune",
        "--space",
        str(path),
        "--seeds",
        "1",
        "--trials",
        "1",
        "--results-dir",
        str(results),
        *extra,
    ]


def _one_line_error(out: Any, message: str) -> None:
    assert out.exit_code == 1, out.output
    assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("params", "fixed", "extra", "message"),
    [
        # finding 6: values and settings, not only names, are checked before the study exists
        (
            '"aug_params.cutmix.p" = {type="float", low=0.5, high=2.0}',
            'augs = "crop-flip+cutmix"',
            [],
            "aug_params.cutmix.p = 2.0: cutmix: p must be a probability in [0, 1], got 2.0",
        ),
        ('lr = {type="float", low=0.01, high=0.5}', "", ["--track", "bogus"], "Unknown callback 'bogus'"),
        ('"model_params.whiten" = ["False", "True"]', "", [], "whiten must be true or false"),
        ('lr = {type="float", low=0.01, high=inf}', "", [], "high must be a finite number (got inf)"),
        (
            'lr = {type="float", low=0.01, high=0.5}',
            'sched = "onecycle"',
            [],
            "needs at least 3 optimizer steps",
        ),
        # finding 8: every trial is measured on one validation split
        (
            'val_size = {type="int", low=8, high=32}',
            "",
            [],
            "'val_size' cannot be searched: the objective must be measured on one validation split",
        ),
        (
            'dataset = ["synthetic", "cifar10"]',
            "",
            [],
            "'dataset' cannot be searched: the objective must be measured on one validation split",
        ),
        # finding 10: a step that does not divide the range is refused, with the high it would reach
        (
            'lr = {type="float", low=0.01, high=0.5, step=0.2}',
            "",
            [],
            "step 0.2 does not divide high - low (0.5 - 0.01); the highest value it reaches is 0.41",
        ),
        (
            'epochs = {type="int", low=1, high=10, step=4}',
            "",
            [],
            "step 4 does not divide high - low (10 - 1); the highest value it reaches is 9",
        ),
        # finding 11: a fixed seed would be ignored
        ('lr = {type="float", low=0.01, high=0.5}', "seed = 3", [], "'seed' cannot be set in [fixed] of"),
        # finding 13: a fixed augmentation parameter no trial can use
        (
            'lr = {type="float", low=0.01, high=0.5}',
            "",
            ["--aug-param", "cutmix.p=0.5"],
            "--aug-param cutmix.* (aug_params): 'cutmix' is in no pipeline a trial can have (crop-flip)",
        ),
    ],
)
def test_a_bad_study_is_refused_in_one_line_before_it_is_created(
    params: str,
    fixed: str,
    extra: list[str],
    message: str,
    tmp_path: Path,
    invoke: Any,
    recwarn: pytest.WarningsRecorder,
) -> None:
    results = tmp_path / "runs"
    out = invoke(_args(_space(tmp_path, params, fixed), results, *extra))
    _one_line_error(out, message)
    assert not results.exists() or not list(results.glob("*.db"))  # no study, no failed trial
    assert not [w for w in recwarn if "step" in str(w.message)]  # not Optuna's own warning either


def test_a_step_that_divides_the_range_is_accepted_without_a_warning(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[params]\nlr = {type="float", low=0.1, high=0.3, step=0.1}\n[fixed]\nmodel = "resnet20"\n'
    )
    (param,) = load_space(path).params
    values = {param.suggest(optuna.create_study().ask()) for _ in range(20)}
    assert values <= {0.1, 0.2, 0.3} and not [w for w in recwarn if "step" in str(w.message)]


def test_seed_in_the_run_options_is_refused(tmp_path: Path) -> None:
    space = space_from_tables({"lr": [0.1]}, {"model": "airnet-small", "results_dir": str(tmp_path)})
    with pytest.raises(TuneError, match="'seed' cannot be set in the run options: seeds come from --seeds"):
        tune(space, seeds=1, trials=1, options={"seed": 3})


def test_an_uncreatable_results_folder_is_one_line(tmp_path: Path, invoke: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = invoke(_args(_space(tmp_path, "lr = [0.1]"), blocker / "runs"))
    _one_line_error(out, f"cannot create the results folder {blocker / 'runs'}: Not a directory")


def test_a_changed_setup_names_the_key_that_differs() -> None:
    fixed = {"batch_size": 32, "dataset": "synthetic", "epochs": 1, "label_smoothing": 0.1, "model": "x" * 40}
    setup = {"objective": "o", "seeds": 1, "params": {}, "fixed": fixed, "recipe": None, "data": []}
    study = optuna.create_study(direction="maximize")
    _check_setup(study, setup, "ls")
    changed = {**setup, "fixed": {**fixed, "weight_decay": 0.0005}}
    with pytest.raises(TuneError, match=r"other fixed \(weight_decay: absent -> 0\.0005\); continue"):
        _check_setup(study, changed, "ls")
    with pytest.raises(TuneError, match=r"other seeds \(was 1, now 2\)"):
        _check_setup(study, {**setup, "seeds": 2}, "ls")


# --- finding 7: the live pruner never stops a run after its last epoch ---------------------------
def test_the_live_pruner_never_prunes_at_a_runs_last_epoch() -> None:
    class Trial:
        def report(self, value: float, step: int) -> None:
            pass

        def should_prune(self) -> bool:
            return True

    reporter = _Reporter(Trial(), 1, [[0.5, 0.5, 0.5]], set(), prune=True, epochs=3)
    with pytest.raises(_StopRun):
        reporter.on_epoch_end(2, {"val_acc": 0.1})
    reporter.on_epoch_end(3, {"val_acc": 0.1})  # only the final evaluation is left: it runs


# --- finding 4: Ctrl-C ----------------------------------------------------------------------------
def _record(*args: Any, **kwargs: Any) -> Any:
    return SimpleNamespace(status="finished", history=[{"val_acc": 0.5}], final={"val_acc": 0.5}, error=None)


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode, in this frame


@pytest.fixture
def stub_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifarbudget.runner, "run_spec", _record)


def _study(results: Path) -> Any:
    return optuna.load_study(study_name="space", storage=f"sqlite:///{results / 'tune-space.db'}")


def _interrupted(out: Any) -> None:
    assert out.exit_code == 130, out.output
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == "interrupted: run the same command again to resume where it stopped", out.stderr
    assert not [line for line in lines if "Error" in line or "Exception" in line], out.stderr


def test_ctrl_c_in_optunas_bookkeeping_after_a_trial_exits_130(
    tmp_path: Path, invoke: Any, stub_runs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ended as 'unexpected UnboundLocalError', exit 1, with the trial left RUNNING."""
    import optuna.study._optimize as optimize

    tell = optimize._tell_with_warning

    def interrupted_tell(**kwargs: Any) -> Any:
        _ctrl_c()
        return tell(**kwargs)

    monkeypatch.setattr(optimize, "_tell_with_warning", interrupted_tell)
    results = tmp_path / "runs"
    out = invoke([*_args(_space(tmp_path, "lr = [0.1, 0.2]"), results, "--quiet"), "--trials", "2"])
    _interrupted(out)
    assert [t.state.name for t in _study(results).trials] == ["COMPLETE"]  # told, and no second trial


def test_ctrl_c_in_a_finalizer_between_trials_is_not_swallowed(
    tmp_path: Path, invoke: Any, stub_runs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised in a finalizer that Optuna's gc.collect() runs, it was printed and dropped: the study
    ran to the end and exited 0."""

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            _ctrl_c()

    def run_spec(*args: Any, **kwargs: Any) -> Any:
        Cycle()  # garbage that only a collection frees: Optuna's, after the trial
        return _record()

    monkeypatch.setattr(cifarbudget.runner, "run_spec", run_spec)
    results = tmp_path / "runs"
    gc.collect()
    gc.disable()
    try:
        out = invoke([*_args(_space(tmp_path, "lr = [0.1, 0.2]"), results, "--quiet"), "--trials", "3"])
    finally:
        gc.enable()
    _interrupted(out)
    assert "Exception ignored" not in out.output
    assert [t.state.name for t in _study(results).trials] == ["COMPLETE"]


def test_ctrl_c_inside_a_trial_queues_it_once(
    tmp_path: Path, invoke: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_spec(*args: Any, **kwargs: Any) -> Any:
        _ctrl_c()
        return _record()

    monkeypatch.setattr(cifarbudget.runner, "run_spec", run_spec)
    results = tmp_path / "runs"
    _interrupted(invoke(_args(_space(tmp_path, "lr = [0.1, 0.2]"), results, "--quiet")))
    trials = _study(results).trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
    assert "interrupted" in trials[0].user_attrs["failed_because"]


def test_a_stale_trial_already_queued_is_not_queued_again() -> None:
    """An interrupted trial whose process queued it but could not mark it FAIL is found RUNNING by
    the next tune: it is marked failed, and its parameters stay queued once."""
    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    trial.suggest_float("lr", 0.01, 1.0)
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    study.enqueue_trial(trial.params)
    assert fail_stale_trials(study, storage) == [trial.number]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"], states
    assert json.dumps(study.trials[1].system_attrs["fixed_params"]) == json.dumps(trial.params)
