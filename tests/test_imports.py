"""The package's import graph has no cycle (issue 12.6): data flows one way, and a module
never needs another that needs it back, not even through an import deferred into a
function (``daemon`` ↔ ``serve`` was one). Read from the source with ``ast``, so every
import counts, wherever it stands, except those only for type checkers."""

from __future__ import annotations

import ast
from pathlib import Path

import errord

ROOT = Path(errord.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = ["errord", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The errord modules ``path`` imports (a package counts for each module in it)."""
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            todo += node.orelse
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            todo += ast.iter_child_nodes(node)
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    edges: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps = imports_of(path, modules)
        # importing errord.a.b runs errord/a/__init__.py first: an edge to that package too,
        # except from inside it (a package's own modules run after its __init__ began)
        outer = {p for d in deps for p in _packages(d)} - _packages(name)
        edges[name] = (deps | outer) - {name}
    return edges


def _packages(name: str) -> set[str]:
    """The packages ``name`` sits in, below ``errord`` itself (which every module is in)."""
    return {name.rsplit(".", k)[0] for k in range(1, name.count("."))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_reader_sees_real_imports() -> None:
    edges = graph()
    assert "errord.batch" in edges["errord.daemon"]
    assert "errord.daemon" in edges["errord.serve"]  # deferred into a function: still an edge
    assert "errord.sinks" in edges["errord.daemon"]  # from errord.sinks.base: the package runs first
    assert "errord.settings" not in edges["errord.sinks.mongo"]  # for the type checker only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []
