"""The generic Registry and the plugin manager that fills it.

Plugins fill registries through hooks such as ``cifarbudget_register_models(registry)``; these
tests drive :class:`cifarbudget.registry.Registry` directly and through
``cifarbudget.reset_plugins(extra_plugins=...)``.
"""

from __future__ import annotations

import sys
import traceback
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

import cifarbudget
from cifarbudget.errors import CifarBudgetError, DuplicateNameError, PluginError, UnknownNameError, describe
from cifarbudget.plugins import DEFAULT_PLUGINS
from cifarbudget.registry import Entry, Registry, natural_key


def _factory(num_classes: int = 10) -> nn.Module:
    return nn.Linear(3 * 32 * 32, num_classes)


def _registry(*names: str) -> Registry:
    reg = Registry("model")
    for name in names:
        reg.add(name, _factory, description=f"the {name} net", plugin="tests")
    return reg


def _plugin(name: str, register, hook: str = "cifarbudget_register_models") -> ModuleType:
    """A plugin module whose ``hook`` (``cifarbudget_register_models``) is ``register``."""
    module = ModuleType(name)
    register.__name__ = hook
    setattr(module, hook, cifarbudget.hookimpl(register))
    return module


# --- add / get / create ----------------------------------------------------------------------------
def test_add_get_create() -> None:
    reg = _registry("tiny")
    entry = reg.get("tiny")
    assert entry == Entry("tiny", _factory, "the tiny net", "tests")
    model = reg.create("tiny", num_classes=7)
    assert isinstance(model, nn.Linear) and model.out_features == 7
    assert "tiny" in reg and "other" not in reg
    assert len(reg) == 1
    assert list(reg) == ["tiny"]
    assert repr(reg) == "Registry('model', 1 entries)"


def test_description_is_stripped_and_defaults_to_empty() -> None:
    reg = Registry("model")
    reg.add("a", _factory, description="  padded\n")
    reg.add("b", _factory)
    assert reg.get("a").description == "padded"
    assert reg.get("b").description == ""
    assert reg.get("b").plugin == "<unknown>"


def test_names_are_naturally_sorted() -> None:
    reg = _registry("resnet110", "resnetsmall", "resnet32", "resnet20", "airnet")
    assert reg.names() == ["airnet", "resnet20", "resnet32", "resnet110", "resnetsmall"]
    assert [e.name for e in reg.entries()] == reg.names()
    assert sorted(["resnet110", "resnet20", "resnet32"], key=natural_key) == [
        "resnet20",
        "resnet32",
        "resnet110",
    ]


def test_wildcard_filter() -> None:
    reg = _registry("resnet110", "resnet20", "resnetsmall", "wrn16-4", "airnet", "airnet-small")
    assert reg.names("resnet*") == ["resnet20", "resnet110", "resnetsmall"]
    assert reg.names("resnet?0") == ["resnet20"]
    assert reg.names("air*") == ["airnet", "airnet-small"]
    assert reg.names("*-*") == ["airnet-small", "wrn16-4"]
    assert reg.names("RESNET*") == []  # case-sensitive, like the names themselves
    assert reg.names("nothing*") == []


def test_list_models_wildcard_on_builtins() -> None:
    assert cifarbudget.list_models("resnet*") == [
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "resnetsmall",
    ]
    assert cifarbudget.list_models("resnet[0-9]*") == [
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ]
    assert cifarbudget.list_models("nothing*") == []


@pytest.mark.parametrize(
    "bad", ["ResNet20", "my net", "", "-leading-dash", "_x", "a/b", "tab\tname", "ümlaut"]
)
def test_invalid_names_raise(bad: str) -> None:
    reg = Registry("model")
    with pytest.raises(PluginError, match=r"plugin 'someplugin': invalid model name") as info:
        reg.add(bad, _factory, plugin="someplugin")
    assert "lower-case" in str(info.value)
    assert len(reg) == 0


def test_trailing_newline_is_invalid() -> None:
    with pytest.raises(PluginError, match="invalid model name"):
        Registry("model").add("resnet20\n", _factory)


@pytest.mark.parametrize("good", ["resnet20", "wrn16-4", "airnet_v2", "vit.tiny", "9lives"])
def test_valid_names(good: str) -> None:
    reg = Registry("model")
    reg.add(good, _factory)
    assert reg.names() == [good]


def test_factory_must_be_callable() -> None:
    with pytest.raises(PluginError, match=r"plugin 'p': the factory for model 'x' is not callable"):
        Registry("model").add("x", "not a function", plugin="p")  # type: ignore[arg-type]


def test_duplicate_names_both_plugins() -> None:
    reg = Registry("model")
    reg.add("resnet20", _factory, plugin="first-plugin")
    with pytest.raises(DuplicateNameError) as info:
        reg.add("resnet20", _factory, plugin="second-plugin")
    msg = str(info.value)
    assert msg == (
        "model 'resnet20' is registered twice: by plugin 'first-plugin' and by plugin 'second-plugin'; "
        "uninstall or disable one of them"
    )
    assert reg.get("resnet20").plugin == "first-plugin"  # the first registration is kept


def test_unknown_name_suggests_close_matches() -> None:
    reg = _registry("resnet20", "resnet32", "resnet110", "resnetsmall", "airnet")
    with pytest.raises(UnknownNameError) as info:
        reg.get("resnet2")
    msg = str(info.value)
    assert msg.startswith("Unknown model 'resnet2'. Did you mean: ")
    assert "resnet20" in msg
    assert "failed to load" not in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, CifarBudgetError)


def test_unknown_name_prefix_suggestions() -> None:
    reg = _registry("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
    with pytest.raises(UnknownNameError, match=r"Did you mean: resnet20, resnet32, resnet44\?"):
        reg.get("res")


def test_unknown_name_without_match_points_at_list() -> None:
    reg = Registry("TTA policy", plural="tta")
    reg.add("flip", _factory)
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzz")
    assert (
        str(info.value)
        == "Unknown TTA policy 'zzzzzz'. Run 'cifarbudget list tta' to see the available ones."
    )


def test_unknown_name_lists_failed_plugins() -> None:
    reg = _registry("resnet20")
    reg.failed_plugins = {"cifarbudget-vit": "ImportError: No module named 'einops'"}
    with pytest.raises(UnknownNameError) as info:
        reg.get("vit-tiny")
    assert str(info.value).endswith(
        "These plugins failed to load and may have provided it: "
        "cifarbudget-vit (ImportError: No module named 'einops')."
    )


def test_unknown_builtin_model_via_api() -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown model 'resnet2'\. Did you mean: .*resnet20"):
        cifarbudget.create_model("resnet2")


# --- entries record their plugin -------------------------------------------------------------------
def test_builtin_entries_record_plugin_and_description() -> None:
    entry = cifarbudget.models().get("resnetsmall")
    assert entry.plugin == "cifarbudget.builtin.models"
    assert "4,754,218 parameters" in entry.description
    for e in cifarbudget.describe("models"):
        assert e.plugin == "cifarbudget.builtin.models"
        assert e.description, f"{e.name} has no description"


def test_plugin_view_records_provider() -> None:
    reg = Registry("model")
    view = reg.for_plugin("my-plugin")
    assert view.kind == "model"
    view.add("mynet", _factory, description="My net (Doe et al. 2025)")
    assert reg.get("mynet") == Entry("mynet", _factory, "My net (Doe et al. 2025)", "my-plugin")
    assert view.names() == ["mynet"] and "mynet" in view


# --- through the plugin manager ---------------------------------------------------------------------
def test_extra_plugin_registers_models() -> None:
    def register(registry) -> None:
        registry.add("tinynet", _factory, description="A linear probe")

    cifarbudget.reset_plugins(
        autoload=False, extra_plugins=(("tiny-plugin", _plugin("tiny_plugin", register)),)
    )
    entry = cifarbudget.models().get("tinynet")
    assert entry.plugin == "tiny-plugin"
    assert entry.description == "A linear probe"
    assert cifarbudget.create_model("tinynet", num_classes=3).out_features == 3
    assert "resnet20" in cifarbudget.list_models()  # the builtins are still there


def test_duplicate_across_plugins_names_both() -> None:
    def register(registry) -> None:
        registry.add("resnet20", _factory)

    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("copycat", _plugin("copycat", register)),))
    with pytest.raises(DuplicateNameError) as info:
        cifarbudget.list_models()
    msg = str(info.value)
    assert "model 'resnet20' is registered twice" in msg
    assert "'cifarbudget.builtin.models'" in msg and "'copycat'" in msg


def test_failing_hook_is_recorded_and_named_in_unknown_errors() -> None:
    def register(registry) -> None:
        registry.add("halfnet", _factory)
        raise RuntimeError("boom\nsecond line")

    system = cifarbudget.reset_plugins(
        autoload=False, extra_plugins=(("broken", _plugin("broken", register)),)
    )
    assert "resnet20" in cifarbudget.list_models()  # one broken plugin does not take the host down
    assert system.failed["broken"].stage == "cifarbudget_register_models"
    assert system.failed["broken"].error == "RuntimeError: boom"
    with pytest.raises(UnknownNameError) as info:
        cifarbudget.create_model("vit-tiny")
    assert "These plugins failed to load and may have provided it: broken (RuntimeError: boom)." in str(
        info.value
    )
    report = system.report()
    assert [f["name"] for f in report["failed"]] == ["broken"]
    assert "broken" not in [p["name"] for p in report["plugins"]]


def test_builtin_plugins_come_first() -> None:
    system = cifarbudget.get_plugin_system()
    assert list(system.infos)[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    assert all(system.infos[name].builtin for name in DEFAULT_PLUGINS)
    assert "cifarbudget_register_models" in system.infos["cifarbudget.builtin.models"].hooks


def test_parameter_errors_list_only_what_the_user_can_set() -> None:
    """The run passes a schedule its optimizer, epochs and steps: a typo's message lists the others."""
    from cifarbudget.identity import RUN_SUPPLIED
    from cifarbudget.registry import check_params

    factory = cifarbudget.get_registry("schedulers").get("onecycle").factory
    with pytest.raises(CifarBudgetError) as info:
        check_params("scheduler 'onecycle'", factory, {"bogus": 1}, RUN_SUPPLIED["schedulers"])
    message = str(info.value)
    assert message.startswith("scheduler 'onecycle' has no parameter bogus (it takes: ")
    taken = message.split("(it takes: ")[1].rstrip(")").split(", ")
    assert "pct_start" in taken and not set(taken) & RUN_SUPPLIED["schedulers"]
    with pytest.raises(CifarBudgetError, match="epochs, steps_per_epoch are set by the run"):
        check_params("s", factory, {"epochs": 1, "steps_per_epoch": 2}, RUN_SUPPLIED["schedulers"])


def _needs_two(depth: int, widen: int, *, dropout: float = 0.0, **extra: object) -> None:
    """A factory with two parameters that have no default (bound by registrations below)."""


def _needs_two_strict(depth: int, widen: int, *, dropout: float = 0.0) -> None:
    """The same without ``**extra``: its parameters can be listed."""


def test_a_parameter_without_a_default_is_required_unless_bound_or_supplied() -> None:
    from cifarbudget.identity import RUN_SUPPLIED
    from cifarbudget.registry import check_params, lazy, required_params

    target = f"{__name__}:_needs_two"
    assert required_params(_needs_two) == ["depth", "widen"]
    assert required_params(lazy(target, 16)) == ["widen"]  # bound positionally, as resnet20's depth
    assert required_params(lazy(target, depth=16, widen=4)) == []  # bound by name, as wrn16-4's
    assert required_params(_needs_two, given=["widen"], supplied=["depth"]) == []
    with pytest.raises(CifarBudgetError) as info:
        check_params("model 'x'", lazy(target, 16), {"dropout": 0.1}, flag="--model-param ")
    assert str(info.value) == "model 'x' needs widen, which has no default; pass --model-param widen=VALUE"
    with pytest.raises(CifarBudgetError, match=r"needs depth, widen, which have no default$"):
        check_params("model 'x'", _needs_two, {})
    # a bound parameter is not the user's to set: one line that says its value
    with pytest.raises(CifarBudgetError) as info:
        check_params("model 'x'", lazy(target, 16, widen=4), {"depth": 32})
    assert str(info.value) == "model 'x': depth is fixed by its name (depth=16)"
    strict = lazy(f"{__name__}:_needs_two_strict", 16, widen=4)
    with pytest.raises(CifarBudgetError, match=r"has no parameter bogus \(it takes: dropout, widen\)$"):
        check_params("model 'x'", strict, {"bogus": 1})
    check_params("model 'x'", strict, {"widen": 8})  # bound by keyword: a default, as airnet-small's widths
    # every builtin component builds with no parameter at all, except kd (its teacher)
    for kind in ("models", "optimizers", "schedulers", "losses", "augmentations", "tta"):
        registry = cifarbudget.get_registry(kind)
        for name in registry.names():
            missing = required_params(registry.get(name).factory, (), RUN_SUPPLIED[kind])
            assert missing == (["teacher"] if (kind, name) == ("losses", "kd") else []), (kind, name)


def test_a_parameter_the_run_sets_is_a_one_line_error_in_check_and_run(invoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["check", "airnet-small", "--model-param", "num_classes=3"],
        ["run", "airnet-small", "--dataset", "synthetic", "--epochs", "1", "--model-param", "num_classes=3"],
    ):
        out = invoke([*args, *(["--results-dir", str(tmp_path)] if args[0] == "run" else [])])
        assert out.exit_code == 1
        assert out.stderr.strip() == (
            "Error: model 'airnet-small': num_classes is set by the run (its own option, or the data), "
            "not by a parameter"
        )
    assert not any(tmp_path.iterdir())  # refused before anything was written


# --- plugin errors name the plugin --------------------------------------------------------------------
def _typo_schedule(optimizer: Any, *, epochs: int, steps_per_epochs: int) -> Any:
    """Declares ``steps_per_epochs`` where the library passes ``steps_per_epoch``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _peak_schedule(optimizer: Any, *, epochs: int, steps_per_epoch: int, peak: float) -> Any:
    """Needs a parameter of its own (``peak``) that only the user can give."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: peak)


def test_a_factory_that_misspells_what_the_run_passes_is_the_plugins_error(invoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def register(registry) -> None:
        registry.add("typo-sched", _typo_schedule)
        registry.add("peak-sched", _peak_schedule)

    cifarbudget.reset_plugins(
        autoload=False,
        extra_plugins=(
            ("sched-plugin", _plugin("sched_plugin", register, "cifarbudget_register_schedulers")),
        ),
    )
    args = ["run", "airnet-small", "--dataset", "synthetic", "--epochs", "1", "--results-dir", str(tmp_path)]
    typo = invoke([*args, "--sched", "typo-sched"])
    assert typo.exit_code == 1
    assert typo.stderr.strip() == (
        "Error: scheduler 'typo-sched' (plugin 'sched-plugin'): its factory "
        f"{__name__}._typo_schedule does not match what the library passes: it declares "
        "steps_per_epochs where the library passes steps_per_epoch"
    )
    # a parameter of the factory's own that the user did not give keeps its advice
    peak = invoke([*args, "--sched", "peak-sched"])
    assert peak.exit_code == 1
    assert peak.stderr.strip() == (
        "Error: scheduler 'peak-sched' needs peak, which has no default; pass --sched-param peak=VALUE"
    )
    assert not any(tmp_path.iterdir())  # refused before anything was written


def _opt_named_schedule(opt: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int) -> object:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / (epochs * steps_per_epoch))


def test_the_argument_the_run_passes_by_position_may_have_any_name(invoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The run passes a scheduler's optimizer (an optimizer's model) by position: a factory that
    calls it ``opt`` is not told to pass ``--sched-param opt=VALUE``, and cannot be given one."""
    from cifarbudget.runner import build_scheduler, check_component_params, resolve_spec

    def register(registry) -> None:
        registry.add("opt-sched", _opt_named_schedule)

    cifarbudget.reset_plugins(
        autoload=False,
        extra_plugins=(("opt-plugin", _plugin("opt_plugin", register, "cifarbudget_register_schedulers")),),
    )
    spec = resolve_spec("resnet20", dataset="synthetic", epochs=2, sched="opt-sched")
    check_component_params(spec)  # used to raise: "needs opt, which has no default"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_scheduler(spec, optimizer, steps=5)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 5 / 10))
    out = invoke(["check", "resnet20"])  # nothing else is disturbed
    assert out.exit_code == 0
    given = invoke(
        ["run", "resnet20", "--dataset", "synthetic", "--sched", "opt-sched", "--sched-param", "opt=1",
         "--results-dir", str(tmp_path)]
    )  # fmt: skip
    assert given.exit_code == 1
    assert "scheduler 'opt-sched': opt is set by the run" in given.stderr and not any(tmp_path.iterdir())


def test_one_plugin_registering_a_name_twice_is_named_alone() -> None:
    def register(registry) -> None:
        registry.add("twice-net", _factory)
        registry.add("twice-net", _factory)

    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("twice", _plugin("twice", register)),))
    with pytest.raises(DuplicateNameError) as info:
        cifarbudget.list_models()
    assert str(info.value) == "plugin 'twice' registers model 'twice-net' twice"


def test_a_description_that_is_not_text_fails_the_plugin_that_gave_it() -> None:
    def register(registry) -> None:
        registry.add("quiet-net", _factory, description=None)

    system = cifarbudget.reset_plugins(autoload=False, extra_plugins=(("quiet", _plugin("quiet", register)),))
    assert "quiet-net" not in cifarbudget.models()
    assert system.failed["quiet"].error == (
        "PluginError: plugin 'quiet': the description of model 'quiet-net' is NoneType, not text"
    )


def test_a_hook_pluggy_refuses_is_one_line_naming_the_plugin() -> None:
    def typo(registry) -> None:  # cifarbudget_register_model: no such hook
        pass

    with pytest.raises(PluginError) as info:
        cifarbudget.reset_plugins(
            autoload=False, extra_plugins=(("typo", _plugin("typo", typo, "cifarbudget_register_model")),)
        )
    assert str(info.value).startswith(
        "plugin 'typo' implements unknown hook cifarbudget_register_model (the hooks are: "
    )

    def extra_argument(registry, extra):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(PluginError) as info:
        cifarbudget.reset_plugins(
            autoload=False, extra_plugins=(("greedy", _plugin("greedy", extra_argument)),)
        )
    assert str(info.value) == (
        "plugin 'greedy': hookimpl definition: cifarbudget_register_models(registry, extra); "
        "Argument(s) {'extra'} are declared in the hookimpl but can not be found in the hookspec"
    )


def test_an_exception_from_a_factory_names_its_plugin(invoke) -> None:  # type: ignore[no-untyped-def]
    """The factory's own exception (type and message kept: callers tell a plugin's failure from the
    library's errors by type) says where it came from: in its one-line description, so the CLI's
    ``unexpected`` line names the plugin, and on Python 3.11+ as a note in its traceback."""

    def boom(num_classes: int = 10) -> nn.Module:
        raise RuntimeError("CUDA driver not found")

    def register(registry) -> None:
        registry.add("boom-net", boom)

    cifarbudget.reset_plugins(autoload=False, extra_plugins=(("boom", _plugin("boom", register)),))
    source = "raised by the factory of model 'boom-net', plugin 'boom'"
    for build in (
        lambda: cifarbudget.models().create("boom-net"),
        lambda: cifarbudget.create_model("boom-net"),
    ):
        with pytest.raises(RuntimeError) as info:
            build()
        assert str(info.value) == "CUDA driver not found"  # the factory's type and message, kept
        assert describe(info.value) == f"RuntimeError: CUDA driver not found ({source})"
        if sys.version_info >= (3, 11):
            assert info.value.__notes__ == [source]  # once, though two layers saw it
            assert source in "".join(traceback.format_exception(info.value))
    out = invoke(["check", "boom-net"])
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        f"Error: unexpected RuntimeError: CUDA driver not found ({source}) (cifarbudget -v shows the traceback)"
    )


@pytest.mark.parametrize(
    ("returned", "what"),
    [
        (["model", "resnet20"], "list"),
        (None, "None"),
        ({"model": "resnet20", 1: 2}, "a dict with the key 1, not an option name"),
    ],
)
def test_a_recipe_that_returns_no_mapping_of_options_names_recipe_and_plugin(
    invoke,  # type: ignore[no-untyped-def]
    tmp_path,
    returned: Any,
    what: str,
) -> None:
    def register(registry) -> None:
        registry.add("odd-recipe", lambda: returned)

    cifarbudget.reset_plugins(
        autoload=False,
        extra_plugins=(("odd", _plugin("odd", register, "cifarbudget_register_recipes")),),
    )
    message = (
        f"recipe 'odd-recipe' (plugin 'odd'): its factory returned {what}; expected a dict of run "
        "options (keyword arguments of cifarbudget.run), e.g. {'model': 'resnet20', 'epochs': 10}"
    )
    with pytest.raises(PluginError) as info:
        cifarbudget.recipes().create("odd-recipe")
    assert str(info.value) == message
    out = invoke(["run", "--recipe", "odd-recipe", "--dataset", "synthetic", "--results-dir", str(tmp_path)])
    assert out.exit_code == 1
    assert out.stderr.strip() == f"Error: {message}"
