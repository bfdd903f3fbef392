"""The package layout is the architecture: imports point downward only, there are no import
cycles, and no top-level package holds more than a fifth of the source.

Layers, top to bottom (a module may import its own layer and the ones below it):

0. interfaces: ``cli`` (and ``__main__``)
1. the app factory: ``server``
2. the web console: ``console``
3. the HTTP layer: ``api``
4. inference and the search over jobs: ``inference``, ``tuning``, ``client``
5. the job service: ``jobs``
6. workflows: ``quickstart``, ``distillation``, ``export``, ``evaluation``, ``multi_adapter`` (jobs trained together)
7. the engine: ``training``
8. the domain: advisor, models, tiers, hyperparameters, data formats, the guide, statuses

Function-level imports count too: an import inside a function is for start-up time, not for
hiding a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "tunesmith"
LAYERS: list[set[str]] = [
    {"cli", "__main__"},
    {"server"},
    {"console"},
    {"api"},
    {"inference", "tuning", "client"},
    {"jobs"},
    {"quickstart", "distillation", "export", "evaluation", "multi_adapter"},
    {"training"},
    {"advisor", "deviations", "models", "tiers", "hyperparameters", "datasets", "guide", "devices", "files",
     "errors", "statuses", "kinds", "__init__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_SHARE = 0.20


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every tunesmith module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tunesmith"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tunesmith"):
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    found.add(full if full in known else target)
    return found - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in edges.items() for target in targets
                  if RANK[top(target)] < RANK[top(source)])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_top_level_module_has_a_layer():
    assert sorted({top(name) for name in modules()} - set(RANK)) == []


def test_no_module_imports_one_above_it():
    assert upward_imports(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_top_level_package_holds_more_than_a_fifth_of_the_source():
    lines: dict[str, int] = defaultdict(int)
    for name, path in modules().items():
        lines[top(name)] += len(path.read_text(encoding="utf-8").splitlines())
    total = sum(lines.values())
    shares = {name: round(count / total, 3) for name, count in lines.items()}
    assert {name: share for name, share in shares.items() if share > MAX_SHARE} == {}


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_the_layer_check_sees_an_upward_import():
    edges = {"tunesmith.jobs.store": {"tunesmith.api.protocol"}, "tunesmith.api.protocol": set()}
    assert upward_imports(edges) == ["tunesmith.jobs.store -> tunesmith.api.protocol"]
