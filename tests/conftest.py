"""Shared fixtures: a plugin system with the builtin plugins only, a CLI runner, the real data.

Every test starts (and ends) with ``cifarbudget.reset_plugins(autoload=False)``, so the
third-party plugins installed on a developer's machine never leak into a test; a test that wants
them calls ``cifarbudget.reset_plugins(autoload=True)`` itself. The same reset runs once at
configure time so that tests parametrized at collection time (``cifarbudget.list_models()``) see
the builtin names only.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

import cifarbudget
from cifarbudget.budget import BudgetReport
from cifarbudget.cli import cli

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_ENV = "CIFARBUDGET_SHARED_DATA"


def pytest_configure(config: pytest.Config) -> None:
    cifarbudget.reset_plugins(autoload=False)


@pytest.fixture(autouse=True)
def builtin_plugins_only() -> Iterator[None]:
    """A fresh plugin system with the builtin plugins only, before and after every test."""
    cifarbudget.reset_plugins(autoload=False)
    yield
    cifarbudget.reset_plugins(autoload=False)


@pytest.fixture
def cli_runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(cli_runner: CliRunner) -> Callable[..., Result]:
    """``invoke(["check", "resnet20"])``: run the CLI in-process; fail on any traceback.

    Returns click's ``Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``). A user mistake
    must end in a one-line message and a non-zero exit, never in an exception escaping the command.
    """

    def _invoke(args: Sequence[str], **kwargs: object) -> Result:
        result = cli_runner.invoke(cli, list(args), **kwargs)  # type: ignore[arg-type]
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            pytest.fail(f"cifarbudget {' '.join(args)} raised:\n{tb}")
        assert "Traceback" not in result.output, result.output
        return result

    return _invoke


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run the test's torch ops on one CPU thread, then restore the previous setting.

    The model tests do many tiny forwards; with two intra-op threads on two cores they slow
    down 4-5x as soon as anything else runs on the machine (OpenMP threads wait for each other).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def single_thread_module() -> Iterator[None]:
    """:func:`single_thread` for a whole module, its module-scoped fixtures (trained runs) included:
    ``pytestmark = pytest.mark.usefixtures("single_thread_module")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished run (resnet20, 1 epoch on 256 synthetic images, no validation split),
    trained once per session on one thread and shared by the modules that only read it (export,
    explain, predict's file handling). A test that changes a run copies it first."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cifarbudget.reset_plugins(autoload=False)
        result = cifarbudget.run(
            "resnet20",
            dataset="synthetic",
            epochs=1,
            train_subset=256,
            val_size=0,
            lr=0.05,
            batch_size=64,
            results_dir=tmp_path_factory.mktemp("tiny-run"),
            progress=False,
        )
    finally:
        torch.set_num_threads(before)
    assert result.status == "finished" and result.run_dir is not None
    return result.run_dir


@pytest.fixture(scope="session")
def budget_report() -> Callable[[str], BudgetReport]:
    """``budget_report("resnet20")``: ``check_budget`` of a builtin model, computed once per session.

    Counting runs torchinfo and fvcore on the model; several tests read the same numbers.
    """

    @functools.cache
    def _report(name: str) -> BudgetReport:
        return cifarbudget.check_budget(name)

    return _report


@pytest.fixture
def real_data_dir() -> Path:
    """The real CIFAR-10 JPEG archives: ``../shared/data`` next to the repo, or $CIFARBUDGET_SHARED_DATA.

    Skips the test when the directory is absent.
    """
    path = Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set {SHARED_DATA_ENV})")
    return path
