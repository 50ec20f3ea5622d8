"""The command line's uniform contract: options generated from RunSpec, one pipeline syntax,
``--json`` everywhere, one-line errors and the documented exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import Result

from cifarbudget import spec as spec_module
from cifarbudget.spec import option

Invoke = Callable[..., Result]
TINY = [
    "--dataset",
    "synthetic",
    "--epochs",
    "1",
    "--train-subset",
    "256",
    "--val-size",
    "64",
    "--batch-size",
    "64",
]


# --- options generated from RunSpec --------------------------------------------------------------
@dataclass(frozen=True)
class ExtendedSpec(spec_module.RunSpec):
    """RunSpec with one more field, as a developer would add it."""

    head_dropout: float = field(default=0.0, metadata=option("Dropout before the classifier head."))


@pytest.fixture
def extended_spec(monkeypatch: pytest.MonkeyPatch) -> type[spec_module.RunSpec]:
    monkeypatch.setattr(spec_module, "RunSpec", ExtendedSpec)
    return ExtendedSpec


def test_a_new_runspec_field_is_a_run_and_sweep_option_and_a_sweep_key(
    extended_spec: type, invoke: Invoke, tmp_path: Path
) -> None:
    run_help = " ".join(invoke(["run", "--help"]).stdout.split())  # help text is wrapped
    sweep_help = " ".join(invoke(["sweep", "--help"]).stdout.split())
    assert (
        "--head-dropout FLOAT" in run_help and "Dropout before the classifier head. [default: 0]" in run_help
    )
    assert "--head-dropout V[,V...]" in sweep_help

    from cifarbudget.sweep import Sweep, expand_grid

    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        '[grid]\nmodel = ["resnet20"]\nhead_dropout = [0.0, 0.3]\n[fixed]\ndataset = "synthetic"\n'
    )
    specs = expand_grid(Sweep.from_toml(sweep_file))
    assert [s.head_dropout for s in specs] == [0.0, 0.3]  # type: ignore[attr-defined]
    assert specs[0].run_id != specs[1].run_id  # the new field is part of the identity
    out = invoke(
        ["sweep", "--model", "resnet20", "--head-dropout", "0.1,0.2", "--dataset", "synthetic", "--dry-run"]
    )
    assert out.exit_code == 0, out.output
    assert "head-dropout=0.1" in out.stdout and "head-dropout=0.2" in out.stdout


def test_run_and_sweep_options_are_not_declared_twice() -> None:
    """Every RunSpec field's flag comes from its metadata; the commands declare none of them."""
    from cifarbudget.commands import run as run_command
    from cifarbudget.commands import sweep as sweep_command

    flags = {f.flag for f in spec_module.spec_fields()}
    for command in (run_command.command, sweep_command.command):
        declared = {opt for p in command.params for opt in p.opts}
        assert declared.isdisjoint(flags), declared & flags


# --- one pipeline syntax -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 1-epoch run (resnet20 with crop-flip+cutmix on synthetic data)."""
    from click.testing import CliRunner

    from cifarbudget.cli import cli

    results = tmp_path_factory.mktemp("runs")
    args = ["run", "resnet20", "--aug", "crop-flip+cutmix", *TINY, "--results-dir", str(results), "--quiet"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    return results


def _run_id(out: Result) -> str:
    return json.loads(out.stdout)["run_id"]


def test_plus_and_repeated_aug_give_the_same_run(trained: Path, invoke: Invoke) -> None:
    (run_dir,) = [p for p in trained.iterdir() if p.is_dir() and p.name != ".locks"]
    joined = invoke(
        ["run", "resnet20", "--aug", "crop-flip+cutmix", *TINY, "--results-dir", str(trained), "--json"]
    )
    repeated = invoke(
        [
            "run",
            "resnet20",
            "--aug",
            "crop-flip",
            "--aug",
            "cutmix",
            *TINY,
            "--results-dir",
            str(trained),
            "--json",
        ]
    )
    only_cutmix = invoke(
        ["run", "resnet20", "--aug", "cutmix", *TINY, "--results-dir", str(trained), "--json"]
    )
    assert _run_id(joined) == _run_id(repeated) == _run_id(only_cutmix) == run_dir.name
    assert "already finished" in repeated.stderr  # found, not trained again


def test_the_leaderboards_pipeline_is_accepted_by_run_and_sweep(trained: Path, invoke: Invoke) -> None:
    board = invoke(["leaderboard", str(trained), "--json"])
    assert board.exit_code == 0, board.output
    (row,) = json.loads(board.stdout)["data"]
    assert row["augs"] == "crop-flip+cutmix"
    again = invoke(["run", "resnet20", "--aug", row["augs"], *TINY, "--results-dir", str(trained), "--json"])
    assert again.exit_code == 0 and _run_id(again) == next(
        p.name for p in trained.iterdir() if p.is_dir() and p.name != ".locks"
    )
    plan = invoke(
        [
            "sweep",
            "--model",
            "resnet20",
            "--aug",
            row["augs"],
            *TINY,
            "--results-dir",
            str(trained),
            "--dry-run",
            "--json",
        ]
    )
    assert plan.exit_code == 0, plan.output
    (planned,) = json.loads(plan.stdout)
    assert planned["run_id"] == _run_id(again) and planned["state"] == "finished"


# --- --json everywhere ---------------------------------------------------------------------------
def test_every_command_prints_valid_json(trained: Path, invoke: Invoke, tmp_path: Path) -> None:
    from cifarbudget.commands import COMMANDS

    run_dir = next(p for p in trained.iterdir() if p.is_dir() and p.name != ".locks")
    space = tmp_path / "space.toml"
    space.write_text("[params]\nlr = [0.1]\n")  # one point: the run trained above (found, not trained)
    argv = {
        "check": ["check", "resnet20"],
        "list": ["list", "augmentations"],
        "plugins": ["plugins"],
        "run": ["run", "resnet20", "--aug", "cutmix", *TINY, "--results-dir", str(trained)],
        "sweep": ["sweep", "--model", "resnet20", "--aug", "cutmix", *TINY, "--results-dir", str(trained)],
        "leaderboard": ["leaderboard", str(trained)],
        "report": ["report", str(trained), "-o", str(tmp_path / "report.html")],
        "predict": ["predict", str(run_dir), "synthetic", "-o", str(tmp_path / "sub.csv"), "--quiet"],
        "bench": [
            "bench",
            "resnet20",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--warmup-steps",
            "1",
            "--steps",
            "1",
        ],
        "export": ["export", str(run_dir), "-o", str(tmp_path / "m.safetensors"), "--check-images", "100"],
        "explain": ["explain", str(run_dir), "synthetic", "-o", str(tmp_path / "gradcam.png"), "-n", "2"],
        "tune": [
            "tune",
            "--space",
            str(space),
            "--seeds",
            "1",
            "--trials",
            "1",
            "--model",
            "resnet20",
            "--aug",
            "cutmix",
            *TINY,
            "--results-dir",
            str(trained),
        ],
    }
    assert set(argv) == set(COMMANDS)  # a new command must join this test
    for name, args in argv.items():
        out = invoke([*args, "--json"])
        assert out.exit_code == 0, (name, out.output)
        json.loads(out.stdout)  # the whole of standard output is one JSON document
    dry = invoke([*argv["sweep"], "--dry-run", "--json"])
    assert json.loads(dry.stdout)[0]["state"] == "finished"


# --- exit codes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "first_words"),
    [
        (["check", "preactresnet18"], 3, "Error: preactresnet18: 11,171,146 trainable parameters"),
        (["check", "resnet2"], 1, "Error: Unknown model 'resnet2'. Did you mean: resnet20"),
        (["check", "resnet20", "--no-such-option"], 2, "Usage: "),
        (
            ["check", "resnet20", "--model-param", "depth=32"],
            1,
            "Error: model 'resnet20': depth is fixed by its name",
        ),
        (["run", "resnet20", "--epochs", "many"], 2, "Usage: "),
        (["run", "--dataset", "synthetic"], 2, "Usage: "),  # no model: a missing argument
        (["sweep", "--model", "resnet20", "--seeds", "2", "--seed", "3", "--dry-run"], 2, "Usage: "),
        (["run", "preactresnet18", "--dataset", "synthetic"], 3, "Error: refusing to train: preactresnet18"),
        (["run", "resnet20", "--dataset", "cifar11"], 1, "Error: Unknown dataset 'cifar11'"),
    ],
)
def test_exit_codes(args: list[str], code: int, first_words: str, invoke: Invoke, tmp_path: Path) -> None:
    out = invoke([*args, *(["--results-dir", str(tmp_path)] if args[0] == "run" else [])])
    assert out.exit_code == code, out.output
    assert out.stderr.startswith(first_words), out.stderr
    if code != 2:  # click's usage errors print the usage line first; ours are one line
        assert [line for line in out.stderr.splitlines() if line.startswith("Error")] == [
            out.stderr.splitlines()[-1]
        ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "kd"], "loss 'kd' needs teacher, which has no default; pass --loss-param teacher=VALUE"),
        (
            ["--loss", "kd", "--loss-param", "teacher=TMP/none"],
            "no run at TMP/none: pass a run folder (result.json + checkpoint.pt) or its checkpoint",
        ),
        (
            ["--optimizer", "sam", "--opt-param", "rho=abc"],
            "optimizer sam: rho must be a finite number (got 'abc')",
        ),
        (
            ["--optimizer", "sam", "--opt-param", "nosuch=1"],
            "optimizer 'sgd' (the base of sam) has no parameter nosuch (it takes: bn_bias_lr_scale, "
            "norm_weight_decay)",
        ),
        (
            ["--optimizer", "muon", "--opt-param", "muon_lr=-1"],
            "optimizer muon: muon_lr must be positive (got -1)",
        ),
        (
            ["--aug", "blur", "--aug-param", "blur.p=abc"],
            "blur: p must be a probability in [0, 1], got 'abc'",
        ),
        (
            ["--sched", "cosine", "--sched-param", "min_lr_factor=abc"],
            "scheduler 'cosine': a parameter value it cannot use (min_lr_factor='abc'): '<=' not supported "
            "between instances of 'float' and 'str'",
        ),
        (
            ["--sched", "onecycle", "--sched-param", "div_factor=0"],
            "scheduler 'onecycle': a parameter value it cannot use (div_factor=0): float division by zero",
        ),
        (
            ["--tta", "multicrop", "--tta-param", "shift=abc"],
            "TTA policy 'multicrop': a parameter value it cannot use (shift='abc'): invalid literal for int() "
            "with base 10: 'abc'",
        ),
        (
            ["--model-param", "whiten_eps=abc"],
            "model 'airnet-small': a parameter value it cannot use (whiten_eps='abc'): could not convert "
            "string to float: 'abc'",
        ),
        (
            ["--model-param", "stem=0"],
            "model 'airnet-small' (stem=0) cannot run on a 3x32x32 image: Given groups=1, expected weight to be "
            "at least 1 at dimension 0, but got weight of size [0, 3, 2, 2] instead",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # stem=0 builds, then cannot run
def test_a_bad_component_parameter_is_one_line_before_any_data(
    args: list[str], message: str, invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing parameter, a bad value, text where a number belongs, a zero divisor, a width of 0:
    one line (the component's own error, naming the values given), exit 1, before the data are
    read (the folder given does not even exist) and before anything is written. The values of the
    second group came from giving every parameter of every builtin component "abc", [1, 2], -1,
    true, null, {}, NaN, 1e9 and 0."""
    monkeypatch.setattr("cifarbudget.runner.load_splits", lambda *a, **k: pytest.fail("data were decoded"))
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    runs = tmp_path / "runs"
    data = str(tmp_path / "no-data")
    out = invoke(["run", "airnet-small", *args, "--data-dir", data, "--results-dir", str(runs)])
    assert out.exit_code == 1, out.output
    assert out.stderr.strip() == "Error: " + message.replace("TMP", str(tmp_path)), out.stderr
    assert not runs.exists()


def test_call_with_params_reports_only_what_the_user_gave() -> None:
    from cifarbudget.errors import CifarBudgetError, RunError, describe
    from cifarbudget.registry import call_with_params

    # the one-line form every such message uses
    assert describe(ValueError("bad value\nsecond line")) == "ValueError: bad value"
    assert describe(ValueError("  padded  "), with_type=False) == "padded"
    assert describe(KeyError()) == describe(KeyError(), with_type=False) == "KeyError"

    def factory(*, size: int = 3, strict: bool = False) -> int:
        if strict:
            raise RunError("factory: its own message")
        return int(size) + int("x" if size == 0 else 1)

    assert call_with_params("thing 'f'", factory, {"size": 4}) == 5
    with pytest.raises(CifarBudgetError) as info:
        call_with_params("thing 'f'", factory, {"size": "abc"})
    assert (
        str(info.value)
        == "thing 'f': a parameter value it cannot use (size='abc'): invalid literal for int() with base 10: 'abc'"
    )
    with pytest.raises(RunError, match=r"^factory: its own message$"):  # the library's own error, as it is
        call_with_params("thing 'f'", factory, {"strict": True})
    with pytest.raises(
        ValueError, match="invalid literal"
    ):  # no parameter given: the factory's bug, as it is
        call_with_params("thing 'f'", lambda: int("x"), {})


def test_a_plugin_optimizer_that_needs_the_real_model_is_left_to_the_runs_own_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in model of the check before the data cannot judge every plugin: an optimizer that
    reads a part of the model the stand-in lacks is not refused there."""
    import torch
    from torch import nn

    from cifarbudget.plugins import get_registry
    from cifarbudget.runner import check_optimizer
    from cifarbudget.spec import RunSpec

    def head_only(
        model: nn.Module, *, lr: float, momentum: float, weight_decay: float, nesterov: bool
    ) -> object:
        return torch.optim.SGD(model.head.parameters(), lr=lr)  # the stand-in has no .head

    registry = get_registry("optimizers")
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))  # the addition is undone
    registry.add("head-only", head_only, plugin="test")
    check_optimizer(RunSpec(model="resnet20", optimizer="head-only"))  # no error
    with pytest.raises(AttributeError, match="head"):  # what the run's own build would meet
        head_only(nn.Linear(2, 2), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)


def test_deprecated_spellings_still_work_with_a_warning(
    trained: Path, invoke: Invoke, tmp_path: Path
) -> None:
    run_dir = next(p for p in trained.iterdir() if p.is_dir() and p.name != ".locks")
    csv = tmp_path / "old.csv"
    out = invoke(["predict", str(run_dir), "synthetic", "--out", str(csv), "--quiet"])
    assert out.exit_code == 0, out.output and csv.exists()
    assert "warning: --out is deprecated; use -o/--output" in out.stderr
    bench = invoke(
        [
            "bench",
            "resnet20",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--warmup",
            "0",
            "--steps",
            "1",
            "--json",
        ]
    )
    assert bench.exit_code == 0 and json.loads(bench.stdout)[0]["warmup"] == 0
    assert "warning: --warmup is deprecated; use --warmup-steps" in bench.stderr


RUN_TOML = Path(__file__).resolve().parents[1] / "docs" / "examples" / "run.toml"


def test_a_run_file_is_the_same_run_as_its_options(tmp_path: Path, invoke: Invoke) -> None:
    """Issue 11: `run --config docs/examples/run.toml` equals the options its comment spells out
    (the same run id: the second invocation finds the run finished); command-line options
    override the file's."""
    results = ["--train-subset", "256", "--val-size", "64", "--epochs", "1", "--results-dir", str(tmp_path)]
    from_file = invoke(["run", "--config", str(RUN_TOML), *results, "--quiet", "--json"])
    assert from_file.exit_code == 0, from_file.output
    spelled = ["run", "resnet20", "--dataset", "synthetic", "--aug", "crop-flip+cutmix"]
    spelled += ["--aug-param", "cutmix.p=1.0", "--sched", "cosine", "--batch-size", "64", "--lr", "0.05"]
    spelled += ["--label-smoothing", "0.1", "--tta", "flip"]
    from_options = invoke([*spelled, *results, "--quiet", "--json"])
    assert from_options.exit_code == 0, from_options.output
    assert _run_id(from_options) == _run_id(from_file)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".locks"] == [_run_id(from_file)]


def test_a_misspelled_key_in_a_run_file_is_one_line_with_a_suggestion(tmp_path: Path, invoke: Invoke) -> None:
    bad = tmp_path / "run.toml"
    bad.write_text('modle = "resnet20"\ndataset = "synthetic"\n')
    out = invoke(["run", "--config", str(bad), "--results-dir", str(tmp_path / "runs")])
    assert out.exit_code == 1, out.output
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "modle" in lines[0] and "Did you mean: model?" in lines[0], lines
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # the file names the place, not a [fixed] table it does not have (it did)
        ('model = "resnet20"\nepochz = 3\n', "unknown key 'epochz' in {path}. Did you mean: epochs?"),
        (
            '[fixed]\nmodel = "resnet20"\nepochz = 3\n',
            "unknown key 'epochz' in {path}. Did you mean: epochs?",
        ),
        # a setting is a known key: the suggestion comes from options and settings alike
        (
            'model = "resnet20"\ndata_dri = "x"\n',
            "unknown key 'data_dri' in {path}. Did you mean: data_dir, data_id?",
        ),
        ('model = "resnet20"\nworkers = 2\n', "{path}: 'workers' is a sweep setting; a run config holds one"),
    ],
)
def test_a_run_file_names_itself_in_its_errors(
    tmp_path: Path, invoke: Invoke, text: str, message: str
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    out = invoke(["run", "--config", str(path), "--results-dir", str(tmp_path / "runs")])
    assert out.exit_code == 1, out.output
    assert out.stderr.splitlines() == [out.stderr.splitlines()[0]]
    assert out.stderr.startswith("Error: " + message.format(path=path)), out.stderr


def test_a_run_file_may_allow_an_over_budget_model_as_the_option_does(tmp_path: Path, invoke: Invoke) -> None:
    """``allow_over_budget = true`` in a run file was refused with the sweep's rule ("a sweep never
    trains over-budget models"); a run may, when asked, and the file asks as the option does."""
    path = tmp_path / "run.toml"
    lines = [
        "model = 'resnet20'",
        "dataset = 'synthetic'",
        "epochs = 1",
        "train_subset = 128",
        "val_size = 0",
    ]
    path.write_text("\n".join([*lines, "batch_size = 64", "budget = 100000"]) + "\n")
    refused = invoke(["run", "--config", str(path), "--results-dir", str(tmp_path / "runs")])
    assert refused.exit_code == 3 and "pass --allow-over-budget" in refused.stderr, refused.output
    path.write_text(path.read_text() + "allow_over_budget = true\n")
    out = invoke(["run", "--config", str(path), "--results-dir", str(tmp_path / "runs"), "--quiet", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["out_of_budget"] is True


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_every_builtin_parameter_given_text_or_nothing_is_a_library_error() -> None:
    """Every keyword parameter of every builtin component (models, augmentations, schedules,
    optimizers, TTA policies, losses) given ``"abc"`` or ``None`` through the checks a run makes
    before the data: the library's one-line errors only (or a value the component accepts)."""
    import inspect

    from cifarbudget.budget import check_budget
    from cifarbudget.errors import CifarBudgetError
    from cifarbudget.identity import RUN_SUPPLIED
    from cifarbudget.plugins import get_registry
    from cifarbudget.registry import LazyFactory, bound_params
    from cifarbudget.runner import check_component_params, check_schedule, validate_components
    from cifarbudget.spec import RunSpec

    field = {
        "augmentations": lambda n, p: {"augs": (n,), "aug_params": {n: p}},
        "schedulers": lambda n, p: {"sched": n, "sched_params": p},
        "optimizers": lambda n, p: {"optimizer": n, "opt_params": p},
        "tta": lambda n, p: {"tta": n, "tta_params": p},
        "losses": lambda n, p: {"loss": n, "loss_params": p},
        "models": lambda n, p: {"model": n, "model_params": p},
    }
    others = []
    for kind, spec_fields in field.items():
        registry = get_registry(kind)
        for name in registry.names():
            factory = registry.get(name).factory
            target = factory.resolve() if isinstance(factory, LazyFactory) else factory
            fixed = bound_params(factory, positional_only=True)
            for param in inspect.signature(target).parameters.values():
                if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                    continue
                if param.name in RUN_SUPPLIED[kind] or param.name in fixed:
                    continue
                for value in ("abc", None):
                    spec = RunSpec(**{"model": "resnet20", **spec_fields(name, {param.name: value})})
                    try:
                        check_component_params(spec)
                        validate_components(spec)
                        check_schedule(spec, 10)
                        check_budget(spec.model, model_params=spec.model_params)
                    except CifarBudgetError:
                        pass
                    except Exception as exc:  # what the test is for: none of these
                        others.append(f"{kind} {name} {param.name}={value!r}: {type(exc).__name__}: {exc}")
    assert others == []


def test_a_schedule_without_a_warmup_is_one_line_with_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin schedule that has no ``warmup_epochs``, by its signature or by refusing it from its
    ``**kwargs``, is told apart from a bad value: drop --warmup."""
    import torch

    from cifarbudget.errors import RunError
    from cifarbudget.plugins import get_registry
    from cifarbudget.runner import build_scheduler
    from cifarbudget.spec import RunSpec

    def plain(optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int) -> object:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def strict(optimizer: torch.optim.Optimizer, **kwargs: object) -> object:
        unknown = set(kwargs) - {"epochs", "steps_per_epoch"}
        if unknown:
            raise TypeError(f"strict() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    registry = get_registry("schedulers")
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for name, factory in (("plain", plain), ("strict", strict)):
        registry.add(name, factory, plugin="test")
        assert build_scheduler(RunSpec(model="resnet20", sched=name, epochs=4), optimizer, 10) is not None
        with pytest.raises(RunError, match=f"^scheduler '{name}' does not support a warmup; drop --warmup$"):
            build_scheduler(RunSpec(model="resnet20", sched=name, epochs=4, warmup_epochs=1), optimizer, 10)


def test_run_checks_its_components_once(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run`` builds the components to check them once, before its lock; ``run_spec`` does not
    again (with ``--loss kd`` each check reads the teacher run)."""
    import cifarbudget.runner as runner

    calls = []
    original = runner.validate_components
    monkeypatch.setattr(
        runner, "validate_components", lambda spec: calls.append(spec.run_id) or original(spec)
    )
    out = invoke(["run", "resnet20", *TINY, "--results-dir", str(tmp_path), "--quiet"])
    assert out.exit_code == 0, out.output
    assert len(calls) == 1
