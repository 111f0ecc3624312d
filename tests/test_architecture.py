"""The house rules of docs/design.md, "Layout", checked on the source: layers, cycles, sizes, one version."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import fleetq
from support.fleets import ROOT

PACKAGE = ROOT / "fleetq"
MAX_LINES = 400
MAX_TOP_MODULES = 12
# Lower may not import higher; the same layer may import across packages, never in a cycle.
LAYERS = {
    "fleetq.errors": 0,
    "fleetq.layout": 0,
    "fleetq.yamlio": 1,
    "fleetq.git": 1,
    "fleetq.core": 2,
    "fleetq.run": 3,
    "fleetq.handlerapi": 3,
    "fleetq.worker": 4,
    "fleetq.fleet": 4,
    "fleetq.trust": 4,
    "fleetq.review": 4,
    "fleetq.cli": 5,
    "fleetq.hooks": 6,
    "fleetq.__main__": 6,
    "fleetq": 6,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every fleetq module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def test_top_level_is_small_and_the_packages_show_the_architecture() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    assert {"git", "core", "run", "worker", "fleet", "trust", "review", "cli"} <= set(packages), packages


def test_no_module_is_over_the_limit() -> None:
    sizes = {name: len(p.read_text(encoding="utf-8").splitlines()) for name, p in _modules().items()}
    assert not {n: s for n, s in sizes.items() if s > MAX_LINES}


def test_dependencies_point_down() -> None:
    upward = sorted(
        f"{m} -> {d}" for m, deps in _graph().items() for d in deps if d != "fleetq" and _layer(d) > _layer(m)
    )
    assert not upward, upward


def test_no_import_cycle() -> None:
    graph = _graph()
    graph = {m: {d for d in deps if d != "fleetq"} for m, deps in graph.items()}  # the root package is version only
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    """The cycle check counts an import inside a function as an edge (the old lazy-import dodge)."""
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from fleetq.core import task\n    from . import errors\n")
    assert _imports("fleetq.m", mod, {"fleetq.core.task", "fleetq.errors", "fleetq.m"}) == {
        "fleetq.core.task",
        "fleetq.errors",
    }


def test_the_version_is_typed_once() -> None:
    assert fleetq.__version__ == importlib.metadata.version("fleetq")
    version = re.escape(fleetq.__version__)
    typed = [
        str(p.relative_to(ROOT))
        for p in [*PACKAGE.rglob("*.py"), ROOT / "setup.py", ROOT / "pyproject.toml"]
        if re.search(rf"['\"]{version}['\"]", p.read_text(encoding="utf-8"))
    ]
    assert typed == ["setup.py"]
