"""Third-party plugins found through real entry points, without pip.

Each test writes fake installed distributions into ``tmp_path`` (``<name>-<version>.dist-info``
with ``METADATA`` and an ``entry_points.txt`` in the group ``cifarbudget``, plus the plugin
module), puts that folder on ``sys.path`` and rebuilds the plugin system with
``reset_plugins(autoload=True)``: exactly what ``pip install cifarbudget-example`` followed by a
fresh process gives. The plugin sources are the real packages in ``tests/fixtures/plugins``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

import cifarbudget
from cifarbudget.cli import cli
from cifarbudget.errors import DuplicateNameError, UnknownNameError
from cifarbudget.plugins import AUTOLOAD_ENV, reset_plugins

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"
EXAMPLE_SRC = (FIXTURES / "cifarbudget-example" / "cifarbudget_example.py").read_text()
BROKEN_SRC = (FIXTURES / "cifarbudget-broken" / "cifarbudget_broken.py").read_text()
EXAMPLE_VERSION = "0.2.0"
BROKEN_VERSION = "1.0.0"
BROKEN_ERROR = (
    "ImportError: cifarbudget-broken needs the package 'cifarbudget-missing-dependency', "
    "which is not installed"
)
EXAMPLE_HOOKS = [
    "cifarbudget_register_augmentations",
    "cifarbudget_register_callbacks",
    "cifarbudget_register_datasets",
    "cifarbudget_register_losses",
    "cifarbudget_register_models",
    "cifarbudget_register_optimizers",
    "cifarbudget_register_recipes",
    "cifarbudget_register_schedulers",
    "cifarbudget_register_tta_policies",
]


def write_dist(
    site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write what pip would install for ``dist``: its metadata, entry points and modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cifarbudget]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


def models_plugin(body: str) -> str:
    """Source of a plugin module whose ``cifarbudget_register_models(registry)`` hook runs ``body``."""
    return (
        "from torch import nn\n\nfrom cifarbudget import hookimpl\n\n\n@hookimpl\n"
        "def cifarbudget_register_models(registry):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    )


@pytest.fixture(autouse=True)
def restore_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Autoload is decided by each test; afterwards, forget the fake plugins' modules and rebuild."""
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    reset_plugins(autoload=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty 'site-packages' on ``sys.path``."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


@pytest.fixture
def install_example(site: Path) -> Callable[[], None]:
    def install() -> None:
        write_dist(
            site,
            "cifarbudget-example",
            EXAMPLE_VERSION,
            {"example": "cifarbudget_example"},
            {"cifarbudget_example": EXAMPLE_SRC},
        )

    return install


@pytest.fixture
def install_broken(site: Path) -> Callable[[], None]:
    def install() -> None:
        write_dist(
            site,
            "cifarbudget-broken",
            BROKEN_VERSION,
            {"broken": "cifarbudget_broken"},
            {"cifarbudget_broken": BROKEN_SRC},
        )

    return install


def run(*args: str) -> Result:
    """The CLI in-process (it uses the process-wide plugin system that the test just reset)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def plugins_json() -> dict[str, list[dict[str, Any]]]:
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- a working third-party plugin --------------------------------------------------------------------
def test_example_plugin_is_listed_under_its_name_with_its_version(
    install_example: Callable[[], None],
) -> None:
    install_example()
    reset_plugins(autoload=True)
    report = plugins_json()
    [example] = [p for p in report["plugins"] if p["name"] == "example"]
    assert example == {
        "name": "example",
        "version": EXAMPLE_VERSION,
        "distribution": "cifarbudget-example",
        "builtin": False,
        "hooks": EXAMPLE_HOOKS,
    }
    assert report["failed"] == []
    table = run("plugins").stdout
    [row] = [line for line in table.splitlines() if line.startswith("example ")]
    assert row.split()[:3] == ["example", EXAMPLE_VERSION, "cifarbudget-example"]
    assert (
        "augmentations, callbacks, datasets, losses, models, optimizers, recipes, schedulers, tta_policies"
        in row
    )


def test_an_outside_optimizer_loss_and_tracker_train_a_run_end_to_end(
    install_example: Callable[[], None], tmp_path: Path
) -> None:
    """The example distribution's optimizer, loss and callback, chosen by name on the command line."""
    install_example()
    reset_plugins(autoload=True)
    import cifarbudget_example as example

    example.STEPS.clear()
    example.CALLS.clear()
    args = ["run", "example-small", "--dataset", "synthetic", "--train-subset", "256", "--val-size", "64"]
    args += ["--batch-size", "64", "--epochs", "2", "--lr", "0.001", "--optimizer", "example-signsgd"]
    args += ["--opt-param", "scale=0.5", "--loss", "example-focal", "--loss-param", "gamma=1.5"]
    args += ["--track", "example-log", "--results-dir", str(tmp_path / "runs"), "--json", "--quiet"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["status"] == "finished"
    assert (record["spec"]["optimizer"], record["spec"]["opt_params"]) == ("example-signsgd", {"scale": 0.5})
    assert (record["spec"]["loss"], record["spec"]["loss_params"]) == ("example-focal", {"gamma": 1.5})
    assert len(example.STEPS) == 2 * 4  # 256 images / batch 64 = 4 steps per epoch, 2 epochs
    assert example.CALLS == [64] * 8  # the loss saw every training batch
    history = record["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    log = (Path(record["run_dir"]) / "example-log.txt").read_text().splitlines()
    assert log == [
        f"start {record['run_id']}",
        f"epoch 1 {history[0]['train_loss']:.6f}",
        f"epoch 2 {history[1]['train_loss']:.6f}",
        f"evaluation {record['final']['test_acc']}",
        "end finished 2",
    ]
    bad = run(*args[:-4], "--opt-param", "momentum_decay=1", "--results-dir", str(tmp_path / "bad"))
    assert bad.exit_code == 1 and not (tmp_path / "bad").exists()
    assert (
        bad.stderr.strip()
        == "Error: optimizer 'example-signsgd' has no parameter momentum_decay (it takes: scale)"
    )


def test_example_fixture_version_matches_its_pyproject() -> None:
    pyproject = (FIXTURES / "cifarbudget-example" / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.+)"$', pyproject, re.M).group(1) == EXAMPLE_VERSION  # type: ignore[union-attr]
    assert 'example = "cifarbudget_example"' in pyproject


def test_example_entries_are_listed_with_their_plugin(install_example: Callable[[], None]) -> None:
    install_example()
    reset_plugins(autoload=True)
    expected = {
        "models": ["example-huge", "example-small"],
        "augmentations": ["example-flip"],
        "schedulers": ["example-linear"],
        "tta": ["example-fliptta"],
        "datasets": ["example-synthetic"],
        "recipes": ["example-quick"],
    }
    for kind, names in expected.items():
        result = run("list", kind, "example-*", "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert [(r["name"], r["plugin"]) for r in rows] == [(n, "example") for n in names], kind
    table = run("list", "models").stdout
    assert re.search(r"^example-small\s+example\s+Example plugin: one conv and a linear head$", table, re.M)
    assert re.search(r"^resnetsmall\s+cifarbudget\.builtin\.models\s", table, re.M)


def test_small_model_passes_check_and_huge_model_fails(install_example: Callable[[], None]) -> None:
    install_example()
    reset_plugins(autoload=True)
    ok = run("check", "example-small", "--json")
    assert ok.exit_code == 0, ok.output
    [report] = json.loads(ok.stdout)
    assert (report["params"], report["macs"], report["within_budget"]) == (634, 442_528, True)

    over = run("check", "example-huge")
    assert over.exit_code == 3
    assert over.stderr == (
        "Error: example-huge: 5,241,110 trainable parameters >= budget 5,000,000 (is over budget), "
        "5.24M MACs\n"
    )
    assert re.search(r"^example-huge\s+5,241,110\s+5\.24M\s+5\.00M\s+OVER$", over.stdout, re.M)


def test_example_factories_follow_the_documented_contracts(install_example: Callable[[], None]) -> None:
    install_example()
    reset_plugins(autoload=True)
    model = cifarbudget.create_model("example-small", num_classes=7)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)

    # cifarbudget_register_augmentations: aug(images, targets) -> (images, targets), seeded
    aug = cifarbudget.augmentations().create("example-flip")
    images, targets = torch.randn(8, 3, 32, 32), torch.eye(4).repeat(2, 1)
    torch.manual_seed(0)
    out1, t1 = aug(images, targets)
    torch.manual_seed(0)
    out2, _ = aug(images, targets)
    assert torch.equal(out1, out2) and torch.equal(t1, targets)
    flipped = [bool(torch.equal(o, i.flip(2))) for o, i in zip(out1, images, strict=True)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out1, images, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    assert aug.params() == {"p": 0.5}

    # cifarbudget_register_schedulers: factory(optimizer, *, epochs, steps_per_epoch), stepped per step
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = cifarbudget.schedulers().create("example-linear", opt, epochs=2, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[4] == pytest.approx(0.2) and lrs[-1] == 0.0

    # cifarbudget_register_tta_policies: policy.n_views, policy(model, images) -> logits
    policy = cifarbudget.tta_policies().create("example-fliptta")
    model.eval()
    with torch.no_grad():
        logits = policy(model, images[:2])
        expected = (model(images[:2]) + model(images[:2].flip(3))) / 2
    assert policy.n_views == 2
    assert torch.allclose(logits, expected)

    # cifarbudget_register_datasets: factory(root, *, train, download) -> split
    split = cifarbudget.datasets().create("example-synthetic", Path("unused"), train=True, download=False)
    assert split.images.dtype == torch.uint8 and split.images.shape == (64, 3, 32, 32)
    assert split.labels.dtype == torch.int64 and split.labels.tolist()[:5] == [0, 1, 2, 3, 0]
    assert split.classes == ["a", "b", "c", "d"]

    # cifarbudget_register_recipes: factory() -> dict of run() keyword arguments
    assert cifarbudget.recipes().create("example-quick") == {
        "model": "example-small",
        "augs": ["example-flip"],
        "sched": "example-linear",
        "epochs": 2,
    }


# --- failing plugins ------------------------------------------------------------------------------
def test_plugin_that_fails_to_import_is_reported_and_the_rest_works(
    install_example: Callable[[], None], install_broken: Callable[[], None]
) -> None:
    install_example()
    install_broken()
    reset_plugins(autoload=True)
    report = plugins_json()
    assert report["failed"] == [
        {
            "name": "broken",
            "version": BROKEN_VERSION,
            "distribution": "cifarbudget-broken",
            "stage": "import",
            "error": BROKEN_ERROR,
        }
    ]
    assert "broken" not in [p["name"] for p in report["plugins"]]
    assert "example" in [p["name"] for p in report["plugins"]]
    text = run("plugins").stdout
    assert "\nFailed plugins:\n" in text
    assert re.search(rf"^broken\s+{BROKEN_VERSION}\s+import\s+ImportError: cifarbudget-broken", text, re.M)

    listed = run("list", "models")
    assert listed.exit_code == 0
    assert re.search(r"^resnetsmall\s", listed.stdout, re.M)
    assert re.search(r"^example-small\s", listed.stdout, re.M)
    assert listed.stderr == f"warning: plugin 'broken' failed to load: {BROKEN_ERROR}\n"

    checked = run("check", "resnetsmall", "--json")
    assert checked.exit_code == 0
    assert json.loads(checked.stdout)[0]["params"] == 4_754_218


def test_unknown_name_error_names_the_failed_plugin(install_broken: Callable[[], None]) -> None:
    install_broken()
    reset_plugins(autoload=True)
    result = run("check", "broken-net")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unknown model 'broken-net'. Run 'cifarbudget list models' to see the available ones. "
        f"These plugins failed to load and may have provided it: broken ({BROKEN_ERROR}).\n"
    )
    with pytest.raises(UnknownNameError, match=r"may have provided it: broken \(ImportError: "):
        cifarbudget.create_model("broken-net")


def test_plugin_whose_hook_raises_is_reported_with_the_hook_name(site: Path) -> None:
    source = models_plugin("raise RuntimeError('CUDA driver not found')\n") + textwrap.dedent(
        """

        @hookimpl
        def cifarbudget_register_schedulers(registry):
            pass
        """
    )
    write_dist(
        site, "cifarbudget-flaky", "0.0.1", {"flaky": "cifarbudget_flaky"}, {"cifarbudget_flaky": source}
    )
    reset_plugins(autoload=True)
    report = plugins_json()
    assert report["failed"] == [
        {
            "name": "flaky",
            "version": "0.0.1",
            "distribution": "cifarbudget-flaky",
            "stage": "cifarbudget_register_models",
            "error": "RuntimeError: CUDA driver not found",
        }
    ]
    assert "flaky" not in [p["name"] for p in report["plugins"]]
    result = run("check", "flaky-net")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Unknown model 'flaky-net'.")
    assert result.stderr.endswith(
        "These plugins failed to load and may have provided it: "
        "flaky (RuntimeError: CUDA driver not found).\n"
    )
    assert cifarbudget.list_models("resnet2*") == ["resnet20"]


def test_invalid_name_marks_the_plugin_failed(site: Path) -> None:
    source = models_plugin("registry.add('MyNet', lambda num_classes=10: nn.Linear(3072, num_classes))\n")
    write_dist(
        site, "cifarbudget-shouty", "0.1", {"shouty": "cifarbudget_shouty"}, {"cifarbudget_shouty": source}
    )
    reset_plugins(autoload=True)
    [failed] = plugins_json()["failed"]
    assert (failed["name"], failed["stage"]) == ("shouty", "cifarbudget_register_models")
    assert failed["error"] == (
        "PluginError: plugin 'shouty': invalid model name 'MyNet' "
        "(use lower-case letters, digits, '-', '_' or '.')"
    )


# --- duplicate names ------------------------------------------------------------------------------
TWIN = "registry.add('twin-net', lambda num_classes=10: nn.Linear(3072, num_classes))\n"


def install_twins(site: Path) -> None:
    """Two distributions whose plugins ``twin-a`` and ``twin-b`` both register ``twin-net``."""
    for suffix in ("a", "b"):
        module = f"cifarbudget_twin_{suffix}"
        write_dist(
            site,
            f"cifarbudget-twin-{suffix}",
            "1.0",
            {f"twin-{suffix}": module},
            {module: models_plugin(TWIN)},
        )


DUPLICATE_MESSAGE = (
    "model 'twin-net' is registered twice: by plugin 'twin-a' and by plugin 'twin-b'; "
    "uninstall or disable one of them"
)


def test_two_plugins_with_the_same_model_name_are_an_error_naming_both(site: Path) -> None:
    install_twins(site)
    reset_plugins(autoload=True)
    with pytest.raises(DuplicateNameError) as info:
        cifarbudget.list_models()
    assert str(info.value) == DUPLICATE_MESSAGE
    for args in (["list", "models"], ["check", "twin-net"], ["plugins"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.stderr == f"Error: {DUPLICATE_MESSAGE}\n", args
        assert result.stdout == ""


def test_a_plugin_cannot_shadow_a_builtin_name(site: Path) -> None:
    source = models_plugin("registry.add('resnetsmall', lambda num_classes=10: nn.Linear(3072, 10))\n")
    write_dist(site, "cifarbudget-evil", "6.6.6", {"evil": "cifarbudget_evil"}, {"cifarbudget_evil": source})
    reset_plugins(autoload=True)
    with pytest.raises(
        DuplicateNameError,
        match=re.escape(
            "model 'resnetsmall' is registered twice: by plugin 'cifarbudget.builtin.models' and by plugin 'evil'"
        ),
    ):
        cifarbudget.create_model("resnetsmall")


# --- switches and test helpers --------------------------------------------------------------------
def test_env_switch_skips_entry_points(
    install_example: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_example()
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    reset_plugins()
    assert "example" not in [p["name"] for p in plugins_json()["plugins"]]
    assert cifarbudget.list_models("example-*") == []
    result = run("check", "example-small")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Unknown model 'example-small'.")

    monkeypatch.delenv(AUTOLOAD_ENV)
    reset_plugins()
    assert cifarbudget.list_models("example-*") == ["example-huge", "example-small"]


def test_extra_plugins_helper_registers_an_in_memory_plugin() -> None:
    """The helper docs/plugins.md recommends for testing a plugin without installing it."""

    class Inline:
        @staticmethod
        @cifarbudget.hookimpl
        def cifarbudget_register_models(registry: Any) -> None:
            registry.add("inline-net", lambda num_classes=10: torch.nn.Linear(3072, num_classes))

        @staticmethod
        @cifarbudget.hookimpl
        def cifarbudget_register_recipes(registry: Any) -> None:
            registry.add("inline-recipe", lambda: {"model": "inline-net", "epochs": 1})

    system = reset_plugins(autoload=False, extra_plugins=(("inline", Inline),))
    assert system.infos["inline"].hooks == ["cifarbudget_register_models", "cifarbudget_register_recipes"]
    assert cifarbudget.models().get("inline-net").plugin == "inline"
    assert cifarbudget.recipes().create("inline-recipe") == {"model": "inline-net", "epochs": 1}
    assert [p["name"] for p in system.report()["plugins"]][-1] == "inline"


# --- the real console path --------------------------------------------------------------------------
def console(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != AUTOLOAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "cifarbudget.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_console_finds_entry_points_on_pythonpath(
    site: Path, install_example: Callable[[], None], install_broken: Callable[[], None]
) -> None:
    install_example()
    install_broken()
    proc = console(site, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    [example] = [p for p in report["plugins"] if p["name"] == "example"]
    assert (example["version"], example["distribution"]) == (EXAMPLE_VERSION, "cifarbudget-example")
    failed = [(f["name"], f["stage"], f["error"]) for f in report["failed"]]
    assert failed == [("broken", "import", BROKEN_ERROR)]

    proc = console(site, "check", "example-small", "example-huge")
    assert proc.returncode == 3  # over budget
    assert "Traceback" not in proc.stderr
    assert proc.stderr.endswith(
        "Error: example-huge: 5,241,110 trainable parameters >= budget 5,000,000 (is over budget), "
        "5.24M MACs\n"
    )
    assert re.search(r"^example-small\s+634\s+442\.53k\s+5\.00M\s+ok$", proc.stdout, re.M)


def test_console_duplicate_is_one_line_without_traceback(site: Path) -> None:
    install_twins(site)
    proc = console(site, "list", "models")
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {DUPLICATE_MESSAGE}\n"
    assert proc.stdout == ""


def test_fake_dist_is_what_importlib_metadata_sees(install_example: Callable[[], None]) -> None:
    """Guard for the fixtures above: the fake distribution is a real one to importlib.metadata."""
    from importlib import metadata

    install_example()
    assert metadata.version("cifarbudget-example") == EXAMPLE_VERSION
    [ep] = [e for e in metadata.entry_points(group="cifarbudget") if e.name == "example"]
    assert ep.value == "cifarbudget_example"
    assert ep.load().__name__ == "cifarbudget_example"


# --- robustness of the manager ------------------------------------------------------------------------
def test_a_hook_may_read_another_registry() -> None:
    """A recipe hook that checks its model exists must not deadlock the (re-entrant) lock."""

    class Reader:
        @staticmethod
        @cifarbudget.hookimpl
        def cifarbudget_register_recipes(registry: Any) -> None:
            assert "resnet20" in cifarbudget.models()
            registry.add("reader-recipe", lambda: {"model": "resnet20", "epochs": 1})

    reset_plugins(autoload=False, extra_plugins=(("reader", Reader),))
    assert "reader-recipe" in cifarbudget.recipes()


def test_a_hook_that_raises_halfway_leaves_nothing_behind(site: Path) -> None:
    source = models_plugin(
        "registry.add('half-net', lambda num_classes=10: nn.Linear(3072, num_classes))\n"
        "raise RuntimeError('second model failed')\n"
    )
    write_dist(site, "cifarbudget-half", "0.1.0", {"half": "cifarbudget_half"}, {"cifarbudget_half": source})
    reset_plugins(autoload=True)
    assert "half-net" not in cifarbudget.models()
    with pytest.raises(UnknownNameError, match=r"half \(RuntimeError: second model failed\)"):
        cifarbudget.create_model("half-net")


def test_a_misspelled_hook_is_reported_not_ignored(site: Path) -> None:
    source = "from cifarbudget import hookimpl\n\n\n@hookimpl\ndef cifarbudget_register_model(registry):\n    pass\n"
    write_dist(site, "cifarbudget-typo", "0.1.0", {"typo": "cifarbudget_typo"}, {"cifarbudget_typo": source})
    reset_plugins(autoload=True)
    (failed,) = plugins_json()["failed"]
    assert failed["name"] == "typo"
    assert failed["error"].startswith(
        "PluginError: plugin 'typo' implements unknown hook cifarbudget_register_model (the hooks are: "
    )
    assert run("check", "resnet20").exit_code == 0


def test_the_same_plugin_name_from_two_distributions_is_reported(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The distribution first on sys.path loads and works; the second is reported as not loaded,
    naming both distributions, and the working plugin is blamed nowhere."""
    first = tmp_path / "site-first"
    first.mkdir()
    monkeypatch.syspath_prepend(str(first))  # before ``site``: its distribution is found first
    one = models_plugin("registry.add('one-net', lambda num_classes=10: nn.Linear(3072, num_classes))\n")
    two = models_plugin("registry.add('two-net', lambda num_classes=10: nn.Linear(3072, num_classes))\n")
    write_dist(first, "cifarbudget-one", "1.0", {"shared": "cifarbudget_one"}, {"cifarbudget_one": one})
    write_dist(site, "cifarbudget-two", "2.10", {"shared": "cifarbudget_two"}, {"cifarbudget_two": two})
    reset_plugins(autoload=True)
    clash = (
        "PluginError: the plugin name 'shared' is used by both cifarbudget-one and cifarbudget-two; "
        "cifarbudget-two was not loaded: uninstall one of them"
    )
    report = plugins_json()
    [loaded] = [p for p in report["plugins"] if p["name"] == "shared"]
    assert (loaded["distribution"], loaded["version"]) == ("cifarbudget-one", "1.0")
    assert report["failed"] == [
        {
            "name": "shared",
            "version": "2.10",
            "distribution": "cifarbudget-two",
            "stage": "import",
            "error": clash,
        }
    ]
    assert cifarbudget.models().get("one-net").plugin == "shared"
    assert "two-net" not in cifarbudget.models()
    table = run("plugins").stdout
    assert re.search(r"^shared\s+1\.0\s+cifarbudget-one\s+models$", table, re.M)
    assert re.search(rf"^shared\s+2\.10\s+import\s+{re.escape(clash)}$", table, re.M)  # not 2.1
    with pytest.raises(UnknownNameError) as info:
        cifarbudget.create_model("two-nett")
    assert str(info.value).endswith(
        f"These plugins failed to load and may have provided it: shared from cifarbudget-two ({clash})."
    )
