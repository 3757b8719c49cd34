"""The house rules on imports, checked on the source (not by importing it).

* indexer (the write path) never imports search or the CLI; search never imports the CLI;
* search imports only the indexer's contract (config, errors, encoders, media, store, catalog);
* no import cycles between modules of indexer, search and vitrina, counting imports inside functions and
  under ``TYPE_CHECKING`` too (a cycle hidden there is still a cycle);
* pure modules import numpy and nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("indexer", "search", "vitrina")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports anywhere in its body (``from a import b`` counts ``a.b`` when
    that is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_are_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_indexer_never_imports_search_or_the_cli():
    for name, targets in import_graph().items():
        if name.split(".")[0] == "indexer":
            assert not {t.split(".")[0] for t in targets} & {"search", "vitrina"}, (name, targets)


def test_search_never_imports_the_cli_and_only_the_indexer_contract():
    contract = ("indexer.config", "indexer.errors", "indexer.encoders", "indexer.media", "indexer.store", "indexer.catalog")
    for name, targets in import_graph().items():
        if name.split(".")[0] == "search":
            for target in targets:
                assert not target.startswith("vitrina"), (name, target)
                assert target.split(".")[0] != "indexer" or target == "indexer" or target.startswith(contract), (name, target)


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").split(".")[0])
    return names


def test_pure_modules_import_numpy_and_nothing_of_ours():
    for pure in ("search/fusion.py", "search/evaluation/metrics.py", "search/rerank/features.py"):
        assert imported_roots(ROOT / pure) <= {"__future__", "numpy", "math", "re", "collections", "typing"}, pure
