"""The house's layers, read from the source: ``models/`` never imports ``engine/`` or ``training/``,
``engine/`` never imports ``training/``, and no package's modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "engine", "training")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }


def _resolve(found: set[str], known: dict[str, Path]) -> set[str]:
    """Each imported name, as the longest known module it names (``a.b.c`` -> ``a.b`` when ``c`` is an
    attribute)."""
    out = set()
    for name in found:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module that ``module`` imports at run time, at any level (function bodies too)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {  # ``if TYPE_CHECKING:`` blocks run for the type checker, never at run time
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return _resolve(found, known) - {module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: imports(m, p, known) for m, p in known.items()}


@pytest.mark.parametrize(
    ("layer", "forbidden"), [("models", ("engine", "training")), ("engine", ("training",))]
)
def test_layers_hold(graph: dict[str, set[str]], layer: str, forbidden: tuple[str, ...]) -> None:
    crossing = sorted(
        f"{m} -> {dep}"
        for m, deps in graph.items()
        if m.split(".")[0] == layer
        for dep in deps
        if dep.split(".")[0] in forbidden
    )
    assert crossing == [], f"{layer}/ imports what it must not: {crossing}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle(graph: dict[str, set[str]]) -> None:
    # a package's __init__ re-exporting its own modules is not a circle of work: leave those edges out
    edges = {
        m: {d for d in deps if not (m.startswith(d + ".") and d in graph and d.count(".") < m.count("."))}
        for m, deps in graph.items()
    }
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
