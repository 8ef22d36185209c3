"""The validator stays independent of the build: its modules import only the shared
contract, layout and reference pieces, never the engine that made the partition."""

from __future__ import annotations

import ast
from pathlib import Path

import tileindex.validate

# what the validator may share with the build: the contract and layout, file and
# sealed-input readers, the grid and country geometry, the legacy oracle
SHARED = {
    "tileindex.contract",
    "tileindex.errors",
    "tileindex.fsio",
    "tileindex.geometry",
    "tileindex.grid",
    "tileindex.inputs",
    "tileindex.layout",
    "tileindex.legacy",
    "tileindex.predicates",
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "tileindex":  # from tileindex import legacy
                found |= {f"tileindex.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "tileindex"} - {"tileindex"}


def test_the_validator_imports_nothing_of_the_build() -> None:
    folder = Path(tileindex.validate.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) > 5  # the package, not a single module
    outside = {
        f"{path.name}: {name}"
        for path in modules
        for name in _imports(path)
        if name not in SHARED and not name.startswith("tileindex.validate")
    }
    assert outside == set()
