"""The ``cifarbudget`` command line: check, list, plugins, --version, --help.

In-process through click's CliRunner (the ``invoke`` fixture fails on any traceback), plus one
real subprocess of the installed console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

import cifarbudget
from cifarbudget.cli import cli
from cifarbudget.plugins import DEFAULT_PLUGINS, KINDS

pytestmark = pytest.mark.usefixtures("single_thread")

Invoke = Callable[..., Result]
CIFAR_RESNETS = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
}


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- check -------------------------------------------------------------------------------------
def test_check_json(invoke: Invoke) -> None:
    result = invoke(["check", "resnetsmall", "--json"])
    assert result.exit_code == 0, result.output
    [report] = json.loads(result.stdout)
    assert {"model", "params", "macs", "within_budget"} <= set(report)
    assert report["model"] == "resnetsmall"
    assert report["params"] == 4_754_218
    assert report["total_params"] == 4_754_218
    assert report["budget"] == 5_000_000
    assert report["within_budget"] is True
    assert report["macs"] == pytest.approx(271.42e6, rel=0.005)
    assert report["macs"] == report["macs_by_operator"]["conv"] + report["macs_by_operator"]["linear"]
    assert result.stderr == ""


def test_check_table(invoke: Invoke) -> None:
    result = invoke(["check", "resnet20", "airnet-small"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "params", "MACs", "budget", "verdict"]
    assert lines[2].split() == ["resnet20", "269,722", "40.55M", "5.00M", "ok"]
    assert lines[3].split() == ["airnet-small", "292,688", "21.43M", "5.00M", "ok"]


def test_check_several_models_and_wildcard_with_budget(invoke: Invoke) -> None:
    """`check 'resnet*' --budget 1M`: every CIFAR ResNet and resnetsmall, the two big ones over."""
    result = invoke(["check", "resnet*", "--budget", "1M", "--json"])
    assert result.exit_code == 3  # the over-budget exit code
    reports = {r["model"]: r for r in json.loads(result.stdout)}
    assert list(reports) == [*CIFAR_RESNETS, "resnetsmall"]  # natural order
    for name, params in CIFAR_RESNETS.items():
        assert reports[name]["params"] == params
        assert reports[name]["budget"] == 1_000_000
    over = [name for name, r in reports.items() if not r["within_budget"]]
    assert over == ["resnet110", "resnetsmall"]
    assert _error_lines(result) == [
        f"Error: {name}: {reports[name]['params']:,} trainable parameters >= budget 1,000,000 "
        f"(is over budget), {cifarbudget.budget.format_count(reports[name]['macs'])} MACs"
        for name in over
    ]


def test_check_explicit_list_json(invoke: Invoke) -> None:
    result = invoke(["check", "resnet20", "resnet32", "resnet[45]*", "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [(r["model"], r["params"]) for r in reports] == [
        (name, CIFAR_RESNETS[name]) for name in ("resnet20", "resnet32", "resnet44", "resnet56")
    ]
    assert all(r["within_budget"] for r in reports)


def test_check_over_budget(invoke: Invoke) -> None:
    result = invoke(["check", "preactresnet18"])
    assert result.exit_code == 3
    assert _error_lines(result) == [
        "Error: preactresnet18: 11,171,146 trainable parameters >= budget 5,000,000 (is over budget), "
        "555.42M MACs"
    ]
    assert "OVER" in result.stdout


def test_check_shows_a_budget_the_short_form_would_round_in_full(invoke: Invoke) -> None:
    """``269.72k`` beside ``269,722 ... OVER`` looked like a wrong verdict: the budget is exact."""
    (row,) = [
        line
        for line in invoke(["check", "resnet20", "--budget", "269722"]).stdout.splitlines()
        if "resnet20" in line
    ]
    assert row.split() == ["resnet20", "269,722", "40.55M", "269,722", "OVER"]
    (row,) = [
        line
        for line in invoke(["check", "resnet20", "--budget", "300k"]).stdout.splitlines()
        if "resnet20" in line
    ]
    assert row.split()[3] == "300.00k"


def test_check_num_classes(invoke: Invoke) -> None:
    result = invoke(["check", "resnet20", "--num-classes", "100", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["params"] == 269_722 + 90 * 65


def test_check_unknown_model_suggests(invoke: Invoke) -> None:
    result = invoke(["check", "resnet2"])
    assert result.exit_code != 0
    [line] = _error_lines(result)
    assert line.startswith("Error: Unknown model 'resnet2'. Did you mean: ")
    assert "resnet20" in line


def test_check_wildcard_without_match(invoke: Invoke) -> None:
    result = invoke(["check", "vit*"])
    assert result.exit_code == 1
    assert _error_lines(result) == ["Error: no model matches 'vit*'; see 'cifarbudget list models'"]


@pytest.mark.parametrize("budget", ["5Q", "", "-1M", "1.5"])
def test_check_bad_budget(invoke: Invoke, budget: str) -> None:
    result = invoke(["check", "resnetsmall", "--budget", budget])
    assert result.exit_code != 0
    [line] = _error_lines(result)
    assert line.startswith(f"Error: invalid budget {budget!r}")
    assert result.stdout == ""  # nothing was built or printed


def test_check_needs_a_model(invoke: Invoke) -> None:
    result = invoke(["check"])
    assert result.exit_code == 2
    assert "Missing argument 'MODELS...'" in result.stderr


# --- list ----------------------------------------------------------------------------------------
def test_list_default_is_models(invoke: Invoke) -> None:
    result = invoke(["list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[2:] if line and not line.startswith(" ")]
    assert names == cifarbudget.list_models()
    assert "cifarbudget.builtin.models" in result.stdout
    assert result.stderr == ""


def test_list_models_wildcard(invoke: Invoke) -> None:
    result = invoke(["list", "models", "resnet*", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [*CIFAR_RESNETS, "resnetsmall"]
    assert all(r["plugin"] == "cifarbudget.builtin.models" for r in rows)
    table = invoke(["list", "models", "resnet*"])
    assert "resnet110" in table.stdout and "airnet" not in table.stdout


def test_list_json(invoke: Invoke) -> None:
    result = invoke(["list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == cifarbudget.list_models()
    assert set(rows[0]) == {"name", "plugin", "description"}
    by_name = {r["name"]: r for r in rows}
    assert "4,754,218 parameters" in by_name["resnetsmall"]["description"]


def test_list_unknown_kind(invoke: Invoke) -> None:
    result = invoke(["list", "lossess"])
    assert result.exit_code == 2
    assert "'lossess' is not one of" in result.stderr


def test_list_duplicate_is_one_line(invoke: Invoke) -> None:
    from types import ModuleType

    import torch

    @cifarbudget.hookimpl
    def cifarbudget_register_models(registry) -> None:
        registry.add("resnet20", lambda num_classes=10: torch.nn.Linear(1, num_classes))

    plugin = ModuleType("copycat")
    plugin.cifarbudget_register_models = cifarbudget_register_models  # type: ignore[attr-defined]
    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("copycat", plugin),))
    result = invoke(["list"])
    assert result.exit_code == 1
    assert _error_lines(result) == [
        "Error: model 'resnet20' is registered twice: by plugin 'cifarbudget.builtin.models' and by "
        "plugin 'copycat'; uninstall or disable one of them"
    ]


# --- plugins ----------------------------------------------------------------------------------------
def test_plugins_json(invoke: Invoke) -> None:
    result = invoke(["plugins", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["failed"] == []
    plugins = {p["name"]: p for p in report["plugins"]}
    assert list(plugins)[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    all_hooks = {k.hook for k in KINDS.values()}
    for name in DEFAULT_PLUGINS:
        p = plugins[name]
        assert p["builtin"] is True
        assert p["distribution"] == "cifarbudget"
        assert p["version"] == cifarbudget.__version__
        assert set(p["hooks"]) <= all_hooks
    assert plugins["cifarbudget.builtin.models"]["hooks"] == ["cifarbudget_register_models"]


def test_plugins_table(invoke: Invoke) -> None:
    result = invoke(["plugins"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split() == ["plugin", "version", "distribution", "hooks"]
    [models_row] = [line for line in result.stdout.splitlines() if "cifarbudget.builtin.models" in line]
    assert models_row.split()[-1] == "models"  # hook names without the cifarbudget_register_ prefix


# --- --version and --help ------------------------------------------------------------------------------
def test_version(invoke: Invoke) -> None:
    for flag in ("--version", "-V"):
        result = invoke([flag])
        assert result.exit_code == 0
        assert result.stdout == f"cifarbudget, version {cifarbudget.__version__}\n"


@pytest.mark.parametrize("command", [None, *sorted(cli.commands)])
def test_help_has_examples(invoke: Invoke, command: str | None) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = invoke(args)
    assert result.exit_code == 0
    assert "Examples" in result.stdout
    assert invoke([*args[:-1], "-h"]).stdout == result.stdout


# --- the installed console script ---------------------------------------------------------------------
def _console_script() -> str | None:
    here = Path(sys.executable).parent / ("cifarbudget.exe" if os.name == "nt" else "cifarbudget")
    return str(here) if here.exists() else shutil.which("cifarbudget")


def test_console_script_over_budget() -> None:
    script = _console_script()
    if script is None:
        pytest.skip("the cifarbudget console script is not installed")
    env = {**os.environ, "CIFARBUDGET_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [script, "check", "preactresnet18"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: preactresnet18: 11,171,146 trainable parameters >= budget 5,000,000")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "preactresnet18" in proc.stdout and "OVER" in proc.stdout
