"""``cifarbudget tune``: an Optuna study over seed-averaged recorded runs, on tiny synthetic runs.

One study (4 trials x 2 seeds of airnet-small on 256 synthetic images, 1-2 epochs) is searched
once for the module and then continued once; the tests read the SQLite study with Optuna's own
``load_study`` and the runs' ``result.json`` files. A separate tune process is killed with
SIGKILL in the middle of a trial and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

optuna = pytest.importorskip("optuna")

from cifarbudget.tune import SEED_STEP, load_space, suggest_values  # noqa: E402

Invoke = Callable[..., Result]
REPO = Path(__file__).resolve().parent.parent

SPACE = """
[params]
lr = {type="float", low=0.02, high=1.0, log=true}
augs = {type="categorical", choices=["crop-flip", "crop-flip+cutmix"]}
label_smoothing = {type="float", low=0, high=0.2}
epochs = {type="int", low=1, high=2}

[fixed]
model = "airnet-small"
dataset = "synthetic"
train_subset = 256
val_size = 128
batch_size = 64
"""


pytestmark = pytest.mark.usefixtures("single_thread_module")  # many small CPU ops: one thread is faster


def _invoke(args: list[str]) -> Result:
    """The CLI in-process (the ``invoke`` fixture is function-scoped; the studies are module-scoped)."""
    from click.testing import CliRunner

    import cifarbudget
    from cifarbudget.cli import cli

    cifarbudget.reset_plugins(autoload=False)
    out = CliRunner().invoke(cli, args)
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    assert "Traceback" not in out.output, out.output
    return out


def _records(results: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/result.json")}


def _mtimes(results: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in results.glob("*/result.json")}


def _load(results: Path, name: str) -> Any:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results / f'tune-{name}.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first invocation: 4 trials x 2 seeds."""
    root = tmp_path_factory.mktemp("tune")
    space = root / "space.toml"
    space.write_text(SPACE)
    results = root / "runs"
    args = [
        "tune",
        "--space",
        str(space),
        "--seeds",
        "2",
        "--results-dir",
        str(results),
        "--sampler-seed",
        "0",
    ]
    started = time.perf_counter()
    out = _invoke([*args, "--trials", "4", "--quiet", "--json"])
    assert out.exit_code == 0, out.output
    return {
        "args": args,
        "results": results,
        "out": json.loads(out.stdout),
        "mtimes": _mtimes(results),
        "records": _records(results),
        "seconds": time.perf_counter() - started,
    }


@pytest.fixture(scope="module")
def continued(searched: dict[str, Any]) -> dict[str, Any]:
    """Three more invocations: --trials 5 after queueing a repeat of trial 0; --trials 6 after
    queueing a poor configuration (lr at the low end, 1 epoch), with pruning from the first trial
    on; --trials 6 again."""
    results = searched["results"]
    study = _load(results, "space")
    first = study.trials[0].params
    study.enqueue_trial(first)  # the same configuration again: its runs are found, not trained
    before = _mtimes(results)
    repeat = _invoke([*searched["args"], "--trials", "5", "--no-prune", "--quiet", "--json"])
    assert repeat.exit_code == 0, repeat.output
    study.enqueue_trial({**first, "lr": 0.02, "epochs": 1})  # far below the median: pruned after seed 0
    poor = _invoke([*searched["args"], "--trials", "6", "--prune-startup", "1", "--quiet", "--json"])
    assert poor.exit_code == 0, poor.output
    again = _invoke([*searched["args"], "--trials", "6", "--quiet", "--json"])  # the target is reached
    assert again.exit_code == 0, again.output
    return {
        "repeat": json.loads(repeat.stdout),
        "poor": json.loads(poor.stdout),
        "again": json.loads(again.stdout),
        "before": before,
    }


def test_four_trials_of_two_seeds_finish_into_a_sqlite_study(searched: dict[str, Any]) -> None:
    results, out = searched["results"], searched["out"]
    db = results / "tune-space.db"
    assert db.is_file() and out["storage"] == f"sqlite:///{db.resolve().as_posix()}"
    study = _load(results, "space")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert out["counts"] == {"complete": 4} and out["new_trials"] == [0, 1, 2, 3]
    # every trial is 2 recorded, trained runs: seeds 0 and 1 of its configuration
    assert len(searched["records"]) == 8
    for trial in out["trials"]:
        assert trial["trained"] == [True, True]
        seeds = [searched["records"][r]["spec"]["seed"] for r in trial["run_ids"]]
        assert seeds == [0, 1]
        spec = searched["records"][trial["run_ids"][0]]["spec"]
        assert spec["lr"] == trial["params"]["lr"] and spec["epochs"] == trial["params"]["epochs"]
        assert "+".join(spec["augs"]) == trial["params"]["augs"]
    best = max(out["trials"], key=lambda t: t["value"])
    assert out["best"]["number"] == best["number"] == study.best_trial.number
    assert out["best"]["value"] == study.best_value


def test_the_objective_is_the_mean_recorded_val_acc_of_the_trials_runs(searched: dict[str, Any]) -> None:
    study = _load(searched["results"], "space")
    for trial in study.trials:
        recorded = [searched["records"][r]["final"]["val_acc"] for r in trial.user_attrs["run_ids"]]
        assert trial.value == pytest.approx(statistics.fmean(recorded), abs=1e-12)
        assert trial.user_attrs["val_accs"] == recorded
        # pruning saw each epoch: step 1000 * seed + epoch holds the mean over the seeds so far
        history = [searched["records"][r]["history"] for r in trial.user_attrs["run_ids"]]
        for epoch, row in enumerate(history[0], start=1):
            assert trial.intermediate_values[epoch] == pytest.approx(row["val_acc"])
            both = statistics.fmean([row["val_acc"], history[1][epoch - 1]["val_acc"]])
            assert trial.intermediate_values[SEED_STEP + epoch] == pytest.approx(both)


def test_the_leaderboard_ranks_the_trials_runs(searched: dict[str, Any]) -> None:
    board = _invoke(["leaderboard", str(searched["results"]), "--json"])
    assert board.exit_code == 0, board.output
    rows = json.loads(board.stdout)["data"]
    by_lr = {t["params"]["lr"]: t["value"] for t in searched["out"]["trials"]}
    assert len(rows) == 4 and all(r["n"] == 2 and r["seeds"] == "0,1" for r in rows)
    for row in rows:  # the leaderboard's seed mean is the trial's objective
        assert row["val_acc_mean"] == pytest.approx(by_lr[row["lr"]], abs=1e-12)


def test_a_second_invocation_continues_the_study_without_retraining(
    searched: dict[str, Any], continued: dict[str, Any]
) -> None:
    results, repeat = searched["results"], continued["repeat"]
    assert continued["before"] == searched["mtimes"]
    assert repeat["new_trials"] == [4] and len(repeat["trials"]) == 5 and repeat["counts"]["complete"] == 5
    trial = repeat["trials"][4]
    assert trial["state"] == "complete" and trial["trained"] == [False, False]
    assert (
        trial["run_ids"] == repeat["trials"][0]["run_ids"] and trial["value"] == repeat["trials"][0]["value"]
    )
    assert continued["poor"]["new_trials"] == [5] and len(continued["poor"]["trials"]) == 6
    now = _mtimes(results)
    assert {k: now[k] for k in searched["mtimes"]} == searched["mtimes"]  # no finished run written again
    # the target is reached: the same command again runs nothing
    assert continued["again"]["new_trials"] == [] and len(continued["again"]["trials"]) == 6
    assert len(_load(results, "space").trials) == 6 and _mtimes(results) == now


def test_a_trial_below_the_median_is_pruned_after_its_first_seed(
    searched: dict[str, Any], continued: dict[str, Any]
) -> None:
    results = searched["results"]
    poor = continued["poor"]["trials"][5]
    assert poor["state"] == "pruned" and poor["params"]["lr"] == 0.02
    assert "median rule" in poor["note"]
    (run_id,) = poor["run_ids"]  # seed 1 never started
    record = json.loads((results / run_id / "result.json").read_text())
    assert record["spec"]["seed"] == 0 and poor["trained"] == [True]
    assert len([p for p in results.iterdir() if p.is_dir() and p.name != ".locks"]) == 8 + 1
    study = _load(results, "space")
    frozen = study.trials[5]
    others = [t.intermediate_values[1] for t in study.trials[:5]]
    assert frozen.intermediate_values[1] < statistics.median(others)
    # its one epoch was the run's last: live pruning leaves it to the check after the seed, so the
    # run is finished and recorded (never left "running" with every epoch trained)
    assert record["status"] == "finished" and poor["val_accs"] == [record["final"]["val_acc"]]
    # the pruned trial's one finished seed is a configuration of its own on a plain board; the
    # command tune ends with ranks only the configurations with every seed
    plain = _invoke(["leaderboard", str(results), "--json"])
    assert any(r["n"] == 1 and r["lr"] == 0.02 for r in json.loads(plain.stdout)["data"])
    end = _invoke([*searched["args"], "--trials", "6", "--quiet"])  # the target is reached: trains nothing
    assert end.exit_code == 0, end.output
    (pointer,) = [line for line in end.stdout.splitlines() if line.startswith("rank the runs:")]
    command = pointer.removeprefix("rank the runs: cifarbudget ").split(";")[0]
    assert command == f"leaderboard {results} --min-seeds 2"
    board = _invoke([*command.split(), "--json"])
    assert board.exit_code == 0, board.output
    rows = json.loads(board.stdout)["data"]
    assert len(rows) == 4 and all(r["n"] == 2 for r in rows) and 0.02 not in [r["lr"] for r in rows]


def test_an_over_budget_trial_is_pruned_without_training(tmp_path: Path, invoke: Invoke) -> None:
    space = tmp_path / "budget.toml"
    space.write_text(
        '[params]\nmodel = ["resnet20", "airnet-small"]\n'
        '[fixed]\ndataset = "synthetic"\nbudget = "280k"\nepochs = 1\nval_size = 128\n'
    )
    results = tmp_path / "runs"
    results.mkdir()
    storage = f"sqlite:///{results / 'tune-budget.db'}"
    study = optuna.create_study(study_name="budget", storage=storage, direction="maximize")
    study.enqueue_trial({"model": "airnet-small"})  # 292,688 parameters > 280k
    out = invoke(
        [
            "tune",
            "--space",
            str(space),
            "--seeds",
            "2",
            "--trials",
            "1",
            "--results-dir",
            str(results),
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    (trial,) = json.loads(out.stdout)["trials"]
    assert trial["state"] == "pruned" and trial["params"] == {"model": "airnet-small"}
    assert trial["note"].startswith("over budget, not trained: airnet-small: 292,688 trainable parameters")
    assert trial["run_ids"] == [] and not [p for p in results.iterdir() if p.is_dir() and p.name != ".locks"]


@pytest.mark.parametrize(
    ("space", "fixed", "extra", "message"),
    [
        ('lrr = {type="float", low=0.01, high=0.5}', "", [], "unknown key 'lrr' in [params] of"),
        ('lr = {type="float", low=0.01, hihg=0.5}', "", [], "unknown key 'hihg' for 'lr'"),
        ('lr = {type="float", low=0.01, high=0.5}', "epochz = 2", [], "unknown key 'epochz' in [fixed]"),
        ('lr = {type="flaot", low=0.01, high=0.5}', "", [], "type must be one of float, int, categorical"),
        ('lr = {type="float", low=0, high=0.5, log=true}', "", [], "a log scale needs low > 0"),
        ('epochs = {type="float", low=1, high=3}', "", [], 'epochs is an integer; use type="int"'),
        ('aug = ["crop-flip", "cutmx"]', "", [], "Unknown augmentation 'cutmx'. Did you mean: cutmix"),
        ('lr = {type="float", low=0.01, high=0.5}', "val_size = 0", [], "val_size must be above 0"),
        ('lr = {type="float", low=0.01, high=0.5}', "", ["--lr", "0.1"], "lr is both searched"),
        ("seed = [0, 1]", "", [], "'seed' cannot be searched: seeds come from --seeds"),
        ('tta = ["none", "flip"]', "", [], "'tta' cannot be searched: it does not change training"),
        (
            '"aug_params.cutmix.p" = {type="float", low=0.2, high=1.0}\naugs = ["crop-flip", "crop-flip+mixup"]',
            "",
            [],
            "aug_params.cutmix.p is searched, but cutmix is in no pipeline a trial can have "
            "(crop-flip, crop-flip+mixup)",
        ),
        (
            'batch_size = {type="int", low=64, high=512, log=true, step=64}',
            "",
            [],
            "give log or step, not both",
        ),
    ],
)
def test_space_mistakes_are_one_line_errors_with_suggestions(
    space: str, fixed: str, extra: list[str], message: str, tmp_path: Path, invoke: Invoke
) -> None:
    path = tmp_path / "space.toml"
    path.write_text(f'[params]\n{space}\n[fixed]\nmodel = "airnet-small"\ndataset = "synthetic"\n{fixed}\n')
    args = ["tune", "--space", str(path), "--seeds", "1", "--trials", "1", "--results-dir", str(tmp_path)]
    out = invoke([*args, *extra])
    assert out.exit_code == 1, out.output
    assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr
    if "lrr" in space:
        assert "Did you mean: lr" in out.stderr
    assert not list(tmp_path.glob("*.db"))  # nothing was created


def test_a_study_is_continued_only_with_the_same_setup(searched: dict[str, Any], tmp_path: Path) -> None:
    out = _invoke([*searched["args"], "--trials", "1", "--epochs", "3"])  # epochs was searched
    assert out.exit_code == 1 and "epochs is both searched" in out.stderr
    other = tmp_path / "space.toml"
    other.write_text(SPACE.replace("high=0.2", "high=0.3"))
    args = [*searched["args"], "--trials", "1"]
    args[args.index("--space") + 1] = str(other)
    out = _invoke(args)
    assert out.exit_code == 1, out.output
    assert "study 'space' was made with other params" in out.stderr


def test_the_space_file_parses_to_optuna_distributions(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[params]\nwd = {type="float", low=1e-4, high=1e-2, log=true}\n'
        'batch-size = {type="int", low=32, high=128, step=32}\n'
        '"aug_params.cutmix.p" = {type="float", low=0.2, high=1.0}\n'
        'aug = ["cutmix", "none"]\n'
        '[fixed]\nmodel = "resnet20"\ntrack = []\n'
    )
    space = load_space(path)
    assert space.names == ["weight_decay", "batch_size", "aug_params.cutmix.p", "augs"]
    assert space.params[3].choices == ("crop-flip+cutmix", "none")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    values = {p.name: p.suggest(trial) for p in space.params}
    assert 1e-4 <= values["weight_decay"] <= 1e-2 and values["batch_size"] in (32, 64, 96, 128)
    from cifarbudget.tune import trial_spec

    spec = trial_spec(space, {**values, "augs": "crop-flip+cutmix"}, seed=1)
    assert spec.aug_params == {"cutmix": {"p": values["aug_params.cutmix.p"]}} and spec.seed == 1
    assert trial_spec(space, {**values, "augs": "none"}).aug_params == {}  # cutmix is not in the pipeline
    # the CutMix probability is drawn only for trials whose pipeline has CutMix
    fixed = {"weight_decay": 1e-3, "batch_size": 64, "aug_params.cutmix.p": 0.5}
    assert "aug_params.cutmix.p" not in suggest_values(
        space, optuna.trial.FixedTrial({**fixed, "augs": "none"})
    )
    with_cutmix = suggest_values(space, optuna.trial.FixedTrial({**fixed, "augs": "crop-flip+cutmix"}))
    assert with_cutmix["aug_params.cutmix.p"] == 0.5


def test_missing_optuna_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, invoke: Invoke
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    path = tmp_path / "s.toml"
    path.write_text('[params]\nlr = [0.1]\n[fixed]\nmodel = "resnet20"\n')
    out = invoke(["tune", "--space", str(path), "--seeds", "1", "--trials", "1"])
    assert out.exit_code == 1
    assert (
        out.stderr.strip()
        == "Error: cifarbudget tune needs the optuna package: pip install 'cifarbudget[tune]'"
    )


def test_a_killed_tune_resumes_its_trial(tmp_path: Path, invoke: Invoke) -> None:
    space = tmp_path / "kill.toml"
    space.write_text(
        '[params]\nlr = [0.1]\n[fixed]\nmodel = "airnet-small"\ndataset = "synthetic"\n'
        "epochs = 3\ntrain_subset = 256\nval_size = 128\nbatch_size = 64\n"
    )
    results = tmp_path / "runs"
    args = ["tune", "--space", str(space), "--seeds", "2", "--trials", "1", "--results-dir", str(results)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarbudget", *args, "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed_at = None
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            for path in results.glob("*-s1-*/result.json"):  # seed 1 has started: seed 0 is finished
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if record["status"] == "running" and 1 <= len(record["history"]) < 3:
                    proc.send_signal(signal.SIGKILL)
                    killed_at = len(record["history"])
                    break
            if killed_at is not None:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait()
    assert killed_at is not None, "the tune process finished before it could be killed mid-trial"
    seed0 = next(results.glob("*-s0-*/result.json"))
    mtime = seed0.stat().st_mtime_ns
    study = _load(results, "kill")
    assert [t.state.name for t in study.trials] == ["RUNNING"]  # what SIGKILL leaves behind

    out = invoke([*args, "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["stale_trials_failed"] == [0]
    killed, resumed = result["trials"]
    assert killed["state"] == "fail" and f"pid {proc.pid}" in killed["note"]
    assert resumed["state"] == "complete" and resumed["params"] == killed["params"] == {"lr": 0.1}
    assert resumed["run_ids"] == killed["run_ids"] and resumed["trained"] == [False, True]
    assert seed0.stat().st_mtime_ns == mtime  # the finished seed was not trained again
    seed1 = json.loads((results / resumed["run_ids"][1] / "result.json").read_text())
    assert seed1["status"] == "finished" and seed1["manifest"]["resumed_at_epoch"] >= killed_at
    assert [h["epoch"] for h in seed1["history"]] == [1, 2, 3]


def test_a_plan_over_the_compute_budget_found_only_after_the_data_loads_prunes_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset without ``metadata(root)`` (allowed for plugin datasets) lets the compute plan be
    judged only inside the run: that verdict prunes the trial, as the early one does, and the
    study goes on (it aborted the whole study)."""
    import cifarbudget.runner
    from cifarbudget.tune import space_from_tables, tune

    monkeypatch.setattr(cifarbudget.runner, "dataset_metadata", lambda dataset, root: None)
    fixed = {"model": "resnet20", "dataset": "synthetic", "train_subset": 128, "epochs": 1, "val_size": 64}
    space = space_from_tables(
        {"lr": {"type": "float", "low": 0.05, "high": 0.1}},
        {**fixed, "compute_budget": "1G", "results_dir": str(tmp_path)},
    )
    result = tune(space, seeds=1, trials=2, progress=False, sampler_seed=0)
    assert [t.state for t in result.trials] == ["pruned", "pruned"]
    assert all(t.note.startswith("over budget, not trained: resnet20 for 1 epoch") for t in result.trials)


def test_the_median_rule_compares_within_the_current_seed() -> None:
    """From the second seed on, the trial's best value is taken over that seed's epochs only.

    Optuna's own ``MedianPruner`` takes the best over every step: the first seed's last epoch
    (0.9 here) would be compared with the others' median at seed 1, epoch 1 (0.5), and a trial
    that is far below the others at seed 1 (0.2) would never be pruned.
    """
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from cifarbudget.tune import seed_median_pruner

    def study_with(pruner: Any) -> Any:
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for value in (0.5, 0.55, 0.6):
            curve = {1: value - 0.1, 2: value, SEED_STEP + 1: value, SEED_STEP + 2: value}
            study.add_trial(
                create_trial(
                    params={"lr": 0.1},
                    distributions={"lr": FloatDistribution(0.01, 1.0)},
                    value=value,
                    intermediate_values=curve,
                    state=TrialState.COMPLETE,
                )
            )
        return study

    def prunes(pruner: Any, curve: dict[int, float]) -> bool:
        trial = study_with(pruner).ask()
        for step, value in curve.items():
            trial.report(value, step)
        return bool(trial.should_prune())

    ours = seed_median_pruner(optuna, startup=1, warmup=0)
    optunas = optuna.pruners.MedianPruner(n_startup_trials=1)
    poor_second_seed = {1: 0.6, 2: 0.9, SEED_STEP + 1: 0.2}
    assert prunes(ours, poor_second_seed) and not prunes(optunas, poor_second_seed)
    # within a seed the rule is Optuna's: the best epoch so far of that seed counts
    assert not prunes(ours, {1: 0.6, 2: 0.4}) and prunes(ours, {1: 0.3})
    assert not prunes(ours, {1: 0.6, 2: 0.9, SEED_STEP + 1: 0.2, SEED_STEP + 2: 0.6})
    # startup trials, warmup steps, and a non-finite value
    assert not prunes(seed_median_pruner(optuna, startup=4, warmup=0), {1: 0.1})
    assert not prunes(seed_median_pruner(optuna, startup=1, warmup=2), {1: 0.1})
    assert prunes(ours, {1: float("nan")})
