"""``--tta-param``: a TTA policy's parameters from the command line and the library.

TTA is evaluation only, so a policy's parameters never change the run id: each parameter set is
one more evaluation of the same checkpoint, recorded under a key that names the policy and the
parameters that differ from its defaults (``selective(fraction=1.0)``), and it becomes its own
leaderboard row whose rerun command gives the parameters back.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from click.testing import Result

import cifarbudget
from cifarbudget.errors import CifarBudgetError
from cifarbudget.identity import tta_key
from cifarbudget.predict import load_inputs, predict
from cifarbudget.results import load_result

Invoke = Callable[..., Result]
TINY = dict(dataset="synthetic", epochs=1, train_subset=256, val_size=64, batch_size=64)
TINY_ARGS = ["--dataset", "synthetic", "--epochs", "1", "--train-subset", "256", "--val-size", "64"]


def test_the_key_names_only_parameters_that_differ_from_the_defaults() -> None:
    assert tta_key("selective") == tta_key("selective", {}) == "selective"
    assert tta_key("selective", {"fraction": 0.2, "shift": 1.0}) == "selective"  # the defaults, spelled out
    assert (
        tta_key("selective", {"score": "margin", "fraction": 0.5}) == 'selective(fraction=0.5,score="margin")'
    )
    assert tta_key("multicrop", {"weight": 0.25}) == "multicrop(weight=0.25)"


def test_each_parameter_set_is_one_more_evaluation_of_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invoke: Invoke
) -> None:
    from cifarbudget.engine import Engine

    def selective(**params: float) -> cifarbudget.RunResult:
        return cifarbudget.run(
            "resnet20", results_dir=tmp_path, progress=False, tta="selective", tta_params=params, **TINY
        )

    first = selective()
    monkeypatch.setattr(Engine, "fit", lambda *a, **k: pytest.fail("trained again"))
    every = selective(fraction=1.0)
    same = selective(fraction=0.2)  # the default value spelled out: the evaluation the run already has
    assert first.run_id == every.run_id == same.run_id
    record = load_result(tmp_path / first.run_id)
    evals = record.final["tta_evals"]
    assert set(evals) == {"selective", "selective(fraction=1.0)"}
    # fraction 1: the four translations for every image, so 2 + 4 views each, as counted
    assert evals["selective(fraction=1.0)"]["views"] == 6.0
    assert evals["selective"]["views"] < 6.0
    assert evals["selective(fraction=1.0)"]["policy"] == "selective"
    assert evals["selective(fraction=1.0)"]["tta_params"] == {"fraction": 1.0}
    assert evals["selective(fraction=1.0)"]["params"]["fraction"] == 1.0
    assert record.final["tta"] == "selective"  # the training run's own evaluation

    from cifarbudget import leaderboard as lb

    runs, _ = lb.load_results(tmp_path)
    assert sorted(runs["tta"]) == ["selective", "selective(fraction=1.0)"]
    board = lb.leaderboard(runs)
    rerun = board.set_index("tta").loc["selective(fraction=1.0)", "rerun"]
    args = shlex.split(rerun)
    assert args[args.index("--tta") + 1] == "selective"
    assert args[args.index("--tta-param") + 1] == "fraction=1.0"
    assert "--tta-param" not in shlex.split(board.set_index("tta").loc["selective", "rerun"])
    # --tta PATTERN keeps the rows of matching evaluations (a key's parentheses are literal)
    assert list(lb.filter_runs(runs, ttas=["selective(*"])["tta"]) == ["selective(fraction=1.0)"]
    out = invoke(["leaderboard", str(tmp_path), "--tta", "selective", "--json"])
    assert out.exit_code == 0, out.output
    assert [row["tta"] for row in json.loads(out.stdout)["data"]] == ["selective"]
    none = invoke(["leaderboard", str(tmp_path), "--tta", "none"])
    assert none.exit_code == 1 and none.stderr == "Error: no runs match --dataset/--model/--tta\n"


def test_a_run_still_training_is_listed_under_the_key_its_evaluation_will_have(tmp_path: Path) -> None:
    from cifarbudget import leaderboard as lb

    done = cifarbudget.run(
        "resnet20",
        results_dir=tmp_path,
        progress=False,
        tta="selective",
        tta_params={"fraction": 0.5, "shift": 1.0},  # shift 1.0 is the default: not in the key
        **TINY,
    )
    path = tmp_path / done.run_id / "result.json"
    data = json.loads(path.read_text())
    assert set(data["final"]["tta_evals"]) == {"selective(fraction=0.5)"}
    data["status"] = "running"  # as the record reads while the run trains: no final entry yet
    data.pop("final")
    path.write_text(json.dumps(data))
    runs, _ = lb.load_results(tmp_path)
    assert list(runs["tta"]) == ["selective(fraction=0.5)"]
    row = lb.not_ranked(runs).iloc[0]
    assert row["status"] == "running" and row["tta"] == "selective(fraction=0.5)"
    assert json.loads(runs["tta_spec_json"].iloc[0]) == {
        "tta": "selective",
        "tta_params": {"fraction": 0.5, "shift": 1.0},
    }


def test_predict_takes_the_policy_parameters_and_finds_their_recorded_accuracy(
    tmp_path: Path, invoke: Invoke
) -> None:
    run = cifarbudget.run(
        "airnet-small",
        results_dir=tmp_path,
        progress=False,
        tta="multicrop",
        tta_params={"weight": 0.25},
        optimizer="adamw",
        lr=3e-3,
        **TINY,
    )
    assert run.final["tta"] == "multicrop(weight=0.25)"
    split = load_inputs("synthetic")
    own = predict(run.run_dir, split)  # the run's policy, with the parameters it was evaluated with
    assert own.tta == "multicrop(weight=0.25)"
    assert (
        own.accuracy == own.recorded_accuracy == run.final["tta_evals"]["multicrop(weight=0.25)"]["test_acc"]
    )
    plain = predict(run.run_dir, split, tta="multicrop")  # the defaults: no recorded evaluation
    assert plain.tta == "multicrop" and plain.recorded_accuracy is None
    args = ["predict", str(run.run_dir), "synthetic", "-o", str(tmp_path / "s.csv"), "--quiet"]
    cli = invoke([*args, "--tta", "multicrop", "--tta-param", "weight=0.25", "--json"])
    assert cli.exit_code == 0, cli.output
    printed = json.loads(cli.stdout)
    assert printed["tta"] == "multicrop(weight=0.25)" and printed["recorded_accuracy"] == own.accuracy
    bad = invoke([*args, "--tta-param", "fraction=0.5"])  # the run's policy, multicrop, has no fraction
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    assert "TTA policy 'multicrop' has no parameter fraction" in bad.stderr


def test_tta_param_on_the_command_line(tmp_path: Path, invoke: Invoke) -> None:
    tta = ["--tta", "selective", "--tta-param", "fraction=1", "--tta-param", "score=margin"]
    out = invoke(["run", "resnet20", *TINY_ARGS, "--results-dir", str(tmp_path), "--quiet", "--json", *tta])
    assert out.exit_code == 0, out.output
    record = load_result(Path(json.loads(out.stdout)["run_dir"]))
    assert set(record.final["tta_evals"]) == {'selective(fraction=1,score="margin")'}
    assert record.spec["tta_params"] == {"fraction": 1, "score": "margin"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tta-param", "fraction=0.5"], "--tta-param needs a TTA policy (--tta NAME)"),
        (["--tta", "flip", "--tta-param", "fraction=0.5"], "TTA policy 'flip' has no parameter fraction"),
        (["--tta", "selective", "--tta-param", "fraction=2"], "fraction must be in [0, 1]"),
        (["--tta", "selective", "--tta-param", "fraction"], "--tta-param"),
    ],
)
def test_a_bad_tta_param_is_one_line_before_anything_trains(
    tmp_path: Path, invoke: Invoke, args: list[str], message: str
) -> None:
    result = invoke(["run", "resnet20", *TINY_ARGS, "--results-dir", str(tmp_path), "--quiet", *args])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # nothing was written: no run folder, no lock


class _RaisingTTA:
    n_views = 2

    def __call__(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images.flatten(1))  # a policy that flattened its views: the model refuses them


class _ShapelessTTA:
    n_views = 2

    def __call__(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(images), model(images.flip(3))])  # (views, N, C), not averaged


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("raising", "TTA policy 'raising' (plugin bad_tta) fails on a stand-in batch (2 random images"),
        ("shapeless", "TTA policy 'shapeless' (plugin bad_tta) returned (2, 2, 10) for 2 images"),
    ],
)
def test_a_broken_tta_policy_is_one_line_before_anything_trains(
    tmp_path: Path, invoke: Invoke, name: str, message: str
) -> None:
    """A plugin's policy that raises, or does not return logits (N, C), is tried on a stand-in
    before training: one line, nothing written (it used to fail after the training it evaluates)."""
    plugin = ModuleType("bad_tta")

    @cifarbudget.hookimpl
    def cifarbudget_register_tta_policies(registry) -> None:  # type: ignore[no-untyped-def]
        registry.add("raising", _RaisingTTA)
        registry.add("shapeless", _ShapelessTTA)

    plugin.cifarbudget_register_tta_policies = cifarbudget_register_tta_policies  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("bad_tta", plugin),))
    result = invoke(["run", "resnet20", *TINY_ARGS, "--results-dir", str(tmp_path), "--tta", name])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())


def test_library_errors_name_the_parameter() -> None:
    with pytest.raises(CifarBudgetError, match="TTA policy 'multicrop' has no parameter fraction"):
        cifarbudget.run("resnet20", tta="multicrop", tta_params={"fraction": 0.5}, **TINY)


def test_a_sweep_plans_one_training_and_one_evaluation_per_parameter_set(
    tmp_path: Path, invoke: Invoke
) -> None:
    """TTA variants share their run in a sweep plan: ``--tta none,selective --tta-param fraction=1``
    trains once; the point without TTA drops the parameters (it has no policy to give them to)."""
    args = ["sweep", "--model", "resnet20", *TINY_ARGS, "--results-dir", str(tmp_path), "--dry-run", "--json"]
    out = invoke([*args, "--tta", "none,selective", "--tta-param", "fraction=1"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)
    rows = plan["runs"] if isinstance(plan, dict) else plan
    assert sorted(r["tta"] for r in rows) == ["none", "selective(fraction=1)"]
    assert len({r["run_id"] for r in rows}) == 1
    bad = invoke([*args, "--tta", "flip,selective", "--tta-param", "fraction=1"])
    assert bad.exit_code == 1 and "TTA policy 'flip' has no parameter fraction" in bad.stderr
    assert bad.stderr.count("\n") == 1, bad.stderr
