"""Imports run one way: indexer never imports search; pure modules import only numpy."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add(".")
    return names


def test_indexer_never_imports_search_or_the_cli():
    for path in (ROOT / "indexer").rglob("*.py"):
        assert not imported_modules(path) & {"search", "vitrina"}, path


def test_search_imports_only_the_indexer_contract():
    contract = {"config", "errors", "encoder", "images", "schema", "store", "vectors", "catalog"}
    for path in (ROOT / "search").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("indexer."):
                assert node.module.split(".")[1] in contract, f"{path}: {node.module}"
            assert not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vitrina")), path


def test_pure_modules_import_numpy_and_nothing_of_ours():
    for name in ("fusion.py",):
        assert imported_modules(ROOT / "search" / name) <= {"__future__", "numpy"}
