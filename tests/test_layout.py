"""The package's import graph is one-way: cli → run → {protocol, models, data, metrics, face} → registry.

Checked on the source (every ``import``, also those inside functions), so a lazy import cannot hide
a circle. Units are the subpackages and top-level modules of ``fsr_bench``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fsr_bench"
# What a unit may never import: everything above it in the graph.
FORBIDDEN = {
    "registry": {"cli", "run", "protocol", "models", "data", "metrics", "face", "reporting", "train"},
    "errors": {"cli", "run", "protocol", "models", "data", "metrics", "face", "reporting", "train"},
    "config_io": {"cli", "run", "protocol", "models", "data", "metrics", "face", "reporting", "train"},
    "results": {"cli", "run", "protocol", "models", "data", "metrics", "face", "reporting", "train"},
    "distributed": {"cli", "run", "protocol", "models", "data", "metrics", "face", "reporting", "train"},
    "protocol": {"cli", "run", "reporting", "train", "models", "face"},
    "models": {"cli", "run", "protocol", "reporting", "train"},
    "data": {"cli", "run", "protocol", "reporting", "train"},
    "metrics": {"cli", "run", "protocol", "reporting", "train", "face"},
    "face": {"cli", "run", "protocol", "reporting", "train"},
    "run": {"cli", "reporting", "train"},
    "reporting": {"cli", "run", "train"},
}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "fsr_bench" and len(parts) > 1 else None


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        me = _unit(".".join(rel.parts)) or "__init__"
        me = me if me != "__init__" else "fsr_bench"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "fsr_bench":
                names = [f"fsr_bench.{a.name}" for a in node.names]  # from fsr_bench import results
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                other = _unit(name)
                if other and other != me:
                    edges.setdefault(me, set()).add(other)
    return edges


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_no_unit_imports_what_sits_above_it(unit):
    bad = _graph().get(unit, set()) & FORBIDDEN[unit]
    assert not bad, f"fsr_bench.{unit} imports {sorted(bad)}"


def test_no_import_circle_between_units():
    graph = _graph()
    graph.pop("fsr_bench", None)  # the package root's lazy re-exports are not a unit

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted(u for u in graph if u in reach(u))
    assert not circles, f"import circles through {circles}: " + "; ".join(
        f"{u} -> {sorted(graph[u])}" for u in circles)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never run, so never a circle)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _module_graph() -> dict[str, set[str]]:
    """Module -> the fsr_bench modules it imports (also inside functions: a lazy import still runs)."""
    modules = _modules()

    def resolve(name: str) -> str | None:  # `from fsr_bench.run import caches` names a module
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    edges: dict[str, set[str]] = {}
    for me, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                other = resolve(name)
                if other and other != me:
                    edges.setdefault(me, set()).add(other)
    return edges


def test_no_import_circle_between_modules():
    """Within a unit too: two modules importing each other (even lazily) are one concern split badly."""
    graph = _module_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(_modules()):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_the_module_graph_sees_lazy_imports():
    """The check above must see an import inside a function (what hid the recognition circle)."""
    graph = _module_graph()
    assert "fsr_bench.run.recognition" in graph["fsr_bench.run"]  # the kinds registry imports its runners lazily
    assert "fsr_bench.face.detect" not in graph["fsr_bench.face"]  # under TYPE_CHECKING only: never runs
