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
