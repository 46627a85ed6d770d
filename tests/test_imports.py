"""Every module of ``tdlcourse`` imports on its own, and no two modules depend on each other.

A module that imports only after another one was imported first, or two modules that import each
other, break as soon as someone moves an import or a function: Python then fails with "cannot
import name ... (most likely due to a circular import)", far from the change that caused it.

- ``test_module_imports_alone``: each module is imported in a fresh interpreter, nothing of
  ``tdlcourse`` loaded before it (one subprocess per module).
- ``test_no_import_cycles_at_import_time``: the module graph of the import statements that run when
  a module is loaded (module level, including ``if``/``try`` blocks; not function bodies, not
  ``if TYPE_CHECKING:``) has no cycle.
- ``test_no_cycles_through_deferred_imports``: the same graph with the imports inside functions
  added. A deferred import that closes a cycle works only as long as nobody moves it to the top of
  the file; the shared code belongs in a module both can import.

The graph is read from the source with ``ast`` (nothing is imported), so the cycle tests take
milliseconds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = "tdlcourse"


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module of the package, subpackages included."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, *, deferred: bool) -> dict[str, int]:
    """The package's modules that module ``name`` imports -> line of the first such import.
    ``deferred=False``: only the statements that run when the module is loaded; ``True``: also those
    inside functions (and lambdas). ``from pkg import sub`` counts as importing the module ``pkg.sub``
    when it is one, else ``pkg``; importing ``pkg.sub`` also imports the package ``pkg`` (its
    ``__init__`` runs first) unless the importer is inside ``pkg``; ``if TYPE_CHECKING:`` blocks
    never run and are skipped."""
    path, is_package = MODULES[name]
    here = name if is_package else name.rpartition(".")[0]
    found: dict[str, int] = {}

    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}  # name and its packages

    def add(target: str, line: int) -> None:
        if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
            return
        # Importing a.b.c first runs the __init__ of a and a.b: an edge to each of them too, except
        # to the packages the importer itself belongs to (they are already being initialized).
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in own:
                found.setdefault(prefix, line)

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if deferred:
                    visit(ast.iter_child_nodes(node))
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    add(sub if sub in MODULES else source, node.lineno)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def cycles(deferred: bool) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a closed path
    through its modules, with the import lines that make it."""
    graph = {m: sorted(t for t in imports(m, deferred=deferred) if t in MODULES) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def describe(component: list[str], deferred: bool) -> str:
    """The shortest cycle through the component's first module, with file:line of each import."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while start not in parent:  # breadth-first, back to start (it is reachable: a component)
        nxt = []
        for v in frontier:
            for w in sorted(imports(v, deferred=deferred)):
                if w in members and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(parent[path[-1]])
    path.reverse()
    steps = []
    for a, b in zip(path, path[1:]):
        file = MODULES[a][0].relative_to(ROOT) if MODULES[a][0].is_relative_to(ROOT) else MODULES[a][0]
        steps.append(f"{a} imports {b} ({file}:{imports(a, deferred=deferred)[b]})")
    return "; ".join(steps) + f"  [component: {', '.join(component)}]"


def test_the_walk_finds_the_package():
    assert PACKAGE in MODULES and f"{PACKAGE}.grading" in MODULES and f"{PACKAGE}.grading.cli" in MODULES
    assert len(MODULES) > 20


def test_no_import_cycles_at_import_time():
    found = cycles(deferred=False)
    assert not found, "import cycles between tdlcourse modules:\n" + "\n".join(describe(c, False) for c in found)


def test_no_cycles_through_deferred_imports():
    found = cycles(deferred=True)
    assert not found, ("tdlcourse modules that depend on each other through an import inside a function "
                       "(move the shared code to a module both import):\n"
                       + "\n".join(describe(c, True) for c in found))


def test_the_cycle_finder_finds_cycles(monkeypatch, tmp_path):
    """The detector itself, on a made-up package: a -> b -> c -> a at import time, d <-> a deferred."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\n")
    (pkg / "b.py").write_text(f"import {PACKAGE}.c\n")
    (pkg / "c.py").write_text(f"from {PACKAGE}.a import thing\n")
    (pkg / "d.py").write_text("def f():\n    from .a import thing\n")
    (pkg / "e.py").write_text("from . import a\n")
    (pkg / "a.py").write_text((pkg / "a.py").read_text() + "def g():\n    from . import d\n")
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    monkeypatch.setitem(globals(), "MODULES", modules())
    # a subpackage whose __init__ imports its submodule m, which imports tdlcourse.q, which imports
    # only p.n: importing p.n runs p/__init__ first, so q -> p -> p.m -> q is a cycle; m's own
    # imports of its sibling p.n (inside p) are not.
    (pkg / "p").mkdir()
    (pkg / "p" / "__init__.py").write_text("from .m import x\n")
    (pkg / "p" / "m.py").write_text(f"from {PACKAGE} import q\nfrom .n import y\nfrom {PACKAGE}.p import n\n")
    (pkg / "p" / "n.py").write_text("")
    (pkg / "q.py").write_text(f"from {PACKAGE}.p.n import y\n")
    monkeypatch.setitem(globals(), "MODULES", modules())
    names = [f"{PACKAGE}.{x}" for x in "abc"]
    through_init = [f"{PACKAGE}.p", f"{PACKAGE}.p.m", f"{PACKAGE}.q"]
    assert sorted(cycles(deferred=False)) == sorted([names, through_init])
    assert sorted(cycles(deferred=True)) == sorted([sorted(names + [f"{PACKAGE}.d"]), through_init])
    assert f"{PACKAGE}.a imports {PACKAGE}.b" in describe(names, False)
    assert f"{PACKAGE}.q imports {PACKAGE}.p " in describe([f"{PACKAGE}.q", f"{PACKAGE}.p", f"{PACKAGE}.p.m"], False)


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_alone(module, tmp_path):
    """``python -c "import tdlcourse.X"`` in a fresh interpreter, from an empty folder."""
    code = ("import importlib, sys\n"
            f"importlib.import_module({module!r})\n"
            f"assert {module!r} in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"`import {module}` alone fails:\n{r.stderr[-4000:]}"
