"""The house rules of the package, checked on its source with ``ast`` (nothing is imported).

1. No import circle among the modules of ``cifarbudget``.
2. The core never imports ``cifarbudget.builtin``: builtin plugins are found by the plugin manager
   (by module name), exactly as third-party plugins are; core code cannot depend on them.
3. Only the CLI (``cifarbudget.cli`` and the commands themselves) imports ``cifarbudget.commands``.
4. ``import cifarbudget.cli`` imports no torch (the CLI starts fast; commands import it when run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cifarbudget"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every cifarbudget module ``name`` imports (at module level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            # the longest known module that the import names (``a.b.c`` names ``a.b`` for a function c)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("cifarbudget"):
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def _is_package_face(name: str) -> bool:
    """``cifarbudget`` itself re-exports lazily; sub-package ``__init__``s only hand names on."""
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def test_there_is_no_import_circle(graph: dict[str, set[str]]) -> None:
    # a package's __init__ that re-exports its submodules is not a participant of a circle
    edges = {
        m: {t for t in ts if not _is_package_face(t)} for m, ts in graph.items() if not _is_package_face(m)
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_core_does_not_import_the_builtin_plugins(graph: dict[str, set[str]]) -> None:
    offenders = {
        m: sorted(t for t in ts if t.startswith("cifarbudget.builtin"))
        for m, ts in graph.items()
        if not m.startswith("cifarbudget.builtin")
    }
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_only_the_cli_imports_the_commands(graph: dict[str, set[str]]) -> None:
    offenders = {
        m: sorted(t for t in ts if t.startswith("cifarbudget.commands"))
        for m, ts in graph.items()
        if m != "cifarbudget.cli" and not m.startswith("cifarbudget.commands")
    }
    assert {m: ts for m, ts in offenders.items() if ts} == {}


def test_the_walk_sees_real_imports(graph: dict[str, set[str]]) -> None:
    """Guard the guard: the walk finds imports we know are there (module level and in functions)."""
    assert "cifarbudget.engine" in graph["cifarbudget.runner"]
    assert "cifarbudget.commands" in graph["cifarbudget.cli"]
    assert "cifarbudget.spec" in graph["cifarbudget.commands.options"]
    assert "cifarbudget.runner" in graph["cifarbudget.sweep.worker"]  # imported inside a function


def test_importing_the_cli_imports_no_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cifarbudget.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "cifarbudget.cli" in imported  # the listing is what we think it is
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
