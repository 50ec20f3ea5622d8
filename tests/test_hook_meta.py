"""Every hook in ``cifarbudget.hookspecs`` is wired up, tested and documented.

As in datasette's ``test_plugin_hooks_have_tests``: adding a hook spec without a test that names
it, without a ``### <hook>`` section in docs/plugins.md, or without a registry kind that calls it
fails here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import cifarbudget
from cifarbudget import hookspecs
from cifarbudget.plugins import KINDS

TESTS = Path(__file__).parent
DOCS = TESTS.parent / "docs" / "plugins.md"
HOOKS = sorted(
    name
    for name, obj in vars(hookspecs).items()
    if name.startswith("cifarbudget_") and inspect.isfunction(obj)
)


def doc_section(hook: str) -> str:
    """The text of docs/plugins.md from ``### hook`` to the next heading."""
    match = re.search(rf"^### {hook}$(.*?)(?=^#)", DOCS.read_text(encoding="utf-8") + "\n#", re.M | re.S)
    assert match, f"docs/plugins.md has no '### {hook}' section"
    return match.group(1)


def test_hook_specs_are_found() -> None:
    assert len(HOOKS) >= 6
    assert "cifarbudget_register_models" in HOOKS
    for name in HOOKS:  # pluggy marks a spec with <project>_spec
        assert hasattr(getattr(hookspecs, name), f"{hookspecs.PROJECT_NAME}_spec"), name


def test_every_hook_is_called_by_a_registry_kind() -> None:
    assert sorted(kind.hook for kind in KINDS.values()) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    files = [p for p in TESTS.rglob("test_*.py") if p.resolve() != Path(__file__).resolve()]
    mentioned = [p.name for p in files if hook in p.read_text(encoding="utf-8")]
    assert mentioned, f"no test file under tests/ mentions {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    assert re.search(rf"^### {hook}$", text, re.M), f"docs/plugins.md has no '### {hook}' section"


def test_docs_document_no_hook_that_does_not_exist() -> None:
    documented = re.findall(r"^### (cifarbudget_\w+)", DOCS.read_text(encoding="utf-8"), re.M)
    assert sorted(documented) == HOOKS


# --- each section's example is a working plugin -----------------------------------------------------
def _model(model: torch.nn.Module) -> None:
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _aug(aug: Callable[..., Any]) -> None:
    images, targets = torch.randn(4, 3, 32, 32), torch.full((4, 10), 0.1)
    out, out_targets = aug(images, targets)
    assert out.shape == images.shape and out_targets.shape == targets.shape


def _sched(factory: Callable[..., Any]) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = factory(opt, epochs=2, steps_per_epoch=3)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    for _ in range(6):
        opt.step()
        sched.step()
    assert 0.0 <= opt.param_groups[0]["lr"] < 1.0


def _tta(policy: Any) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    with torch.no_grad():
        assert policy(model, torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(policy.n_views, int | float) and policy.n_views >= 1


def _dataset(factory: Callable[..., Any]) -> None:
    split = factory(Path("unused"), train=True, download=False)
    assert split.images.dtype == torch.uint8 and split.images.ndim == 4 and split.images.shape[1] == 3
    assert split.labels.dtype == torch.int64 and split.labels.shape == (split.images.shape[0],)
    assert all(isinstance(c, str) for c in split.classes)


def _recipe(recipe: Any) -> None:
    assert isinstance(recipe, dict) and "model" in recipe


def _optimizer(factory: Callable[..., Any]) -> None:
    model = torch.nn.Linear(4, 2)
    before = model.weight.detach().clone()
    opt = factory(model, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    assert not torch.equal(before, model.weight)
    opt.load_state_dict(opt.state_dict())


def _loss(loss: Any) -> None:
    logits = torch.randn(4, 10, requires_grad=True)
    value = loss(logits, torch.full((4, 10), 0.1), images=torch.randn(4, 3, 32, 32))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None


def _callback(callback: Any) -> None:
    assert any(
        callable(getattr(callback, m, None))
        for m in ("on_run_start", "on_epoch_end", "on_evaluation", "on_run_end")
    )
    if callable(getattr(callback, "on_epoch_end", None)):
        callback.on_epoch_end(1, {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5})


CONTRACTS: dict[str, Callable[[Any], None]] = {
    "models": lambda f: _model(f()),
    "augmentations": lambda f: _aug(f()),
    "schedulers": _sched,
    "tta": lambda f: _tta(f()),
    "datasets": _dataset,
    "recipes": lambda f: _recipe(f()),
    "optimizers": _optimizer,
    "losses": lambda f: _loss(f()),
    "callbacks": lambda f: _callback(f()),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_doc_example_is_a_working_plugin(kind: str, tmp_path: Path) -> None:
    hook = KINDS[kind].hook
    blocks = re.findall(r"```python\n(.*?)```", doc_section(hook), re.S)
    assert blocks, f"the {hook} section has no python example"
    module = ModuleType(f"docs_example_{kind}")
    exec(compile(blocks[0], f"docs/plugins.md ({hook})", "exec"), module.__dict__)
    system = cifarbudget.reset_plugins(autoload=False, extra_plugins=(("docs", module),))
    try:
        assert system.infos["docs"].hooks == [hook]
        entries = [e for e in system.registry(kind).entries() if e.plugin == "docs"]
        assert len(entries) == 1 and entries[0].name.startswith("docs-") and entries[0].description
        CONTRACTS[kind](entries[0].factory)
        assert system.failed == {}
        if kind == "datasets":  # and a run trains on it: the runner reads what the contract promises
            result = cifarbudget.run(
                "resnet20",
                dataset=entries[0].name,
                epochs=1,
                train_subset=64,
                val_size=32,
                batch_size=32,
                results_dir=tmp_path,
                progress=False,
            )
            assert result.status == "finished" and result.data["source"] == f"{entries[0].name}:train"
    finally:
        cifarbudget.reset_plugins(autoload=False)
