"""The analysis package's layers, read from the source: cli -> views -> corpus -> report -> search -> minigpt2.

Every import counts, at the top of a module or inside a function (ast.walk sees both). A module may import
its own layer and the layers below it, never one above; there is no import cycle between modules, in a
layer or across; minigpt2 never imports analysis; nothing inside analysis imports the package root (the
public API that sits above every layer).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("search", "report", "corpus", "views", "cli")     # lowest first: a layer imports only itself and the earlier ones


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its source. `from .x import y` counts
    as x.y when that is a module, else as x (the package, whose __init__ runs)."""
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:                   # import a.b.c of a package: the deepest module known
                t = t.rpartition(".")[0]
            if t:
                out.add(t)
    return out - {name}


def graph(*packages: str) -> dict[str, set[str]]:
    mods = {n: p for pkg in packages for n, p in modules(pkg).items()}
    return {n: imported(n, p.read_text(encoding="utf-8"), p.name == "__init__.py", set(mods)) for n, p in mods.items()}


def layer(name: str) -> int | None:
    """The layer's rank (0 search ... 3 cli), None for the package root, or a ValueError for a stray module."""
    parts = name.split(".")
    if parts == ["analysis"]:
        return None
    if len(parts) < 2 or parts[1] not in LAYERS:
        raise ValueError(f"{name} is in no layer: every module of analysis lives in one of {LAYERS}")
    return LAYERS.index(parts[1])


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in g.items():
        for b in targets:
            if a.startswith("minigpt2") and b.startswith("analysis"):
                bad.append(f"{a} imports {b}: the core never imports the analysis")
            elif a.startswith("analysis") and b == "analysis":
                bad.append(f"{a} imports the package root (the public API above every layer)")
            elif a.startswith("analysis") and b.startswith("analysis") and layer(a) is not None \
                    and layer(b) > layer(a):
                bad.append(f"{a} ({LAYERS[layer(a)]}) imports {b} ({LAYERS[layer(b)]}), a layer above it")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each a list."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_analysis_module_is_in_a_layer():
    names = set(modules("analysis"))
    for name in names:
        layer(name)                                       # raises for a module outside the layers
    assert {f"analysis.{x}" for x in LAYERS} <= names


def test_imports_run_one_way_cli_views_report_search_minigpt2():
    assert layer_violations(graph("analysis", "minigpt2")) == []


def test_no_import_cycles():
    assert cycles(graph("analysis", "minigpt2")) == []


def test_the_checks_see_function_level_imports_and_cycles():
    """The checks themselves, on made-up modules: an upward import inside a function, and a cycle."""
    sources = {"analysis.search.a": "def f():\n    from ..views import x\n",
               "analysis.views": "", "analysis.views.x": "from ..search import a\n",
               "analysis.report.b": "import analysis.report.c\n", "analysis.report.c": "from . import b\n"}
    g = {n: imported(n, src, n == "analysis.views", set(sources)) for n, src in sources.items()}
    assert g["analysis.search.a"] == {"analysis.views.x"} and g["analysis.views.x"] == {"analysis.search.a"}
    assert layer_violations(g) == ["analysis.search.a (search) imports analysis.views.x (views), a layer above it"]
    assert cycles(g) == [["analysis.report.b", "analysis.report.c"], ["analysis.search.a", "analysis.views.x"]]
    del g["analysis.views.x"]
    assert cycles(g) == [["analysis.report.b", "analysis.report.c"]]


@pytest.mark.parametrize("name", sorted(modules("analysis")))
def test_each_module_states_its_job_and_stays_small(name):
    path = modules("analysis")[name]
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{path} has no docstring stating its job"
    assert len(text.splitlines()) <= 300, f"{path} has {len(text.splitlines())} lines"
