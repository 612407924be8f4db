"""The machinery sits under the public ops: nothing in ops/, random/ or kernels/ imports upwards.

Every import points down (functional -> ops/random -> kernels), so data flows down without coming
back up; tests/functional/test_fast_ops.py checks the order inside the dispatch layers.
"""

from __future__ import annotations

import ast
import pathlib

import dropkit

ROOT = pathlib.Path(dropkit.__file__).parent
UPPER = ("dropkit.functional", "dropkit.nn", "dropkit.lab", "dropkit.uncertainty", "dropkit.cli")


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_the_machinery_never_imports_the_public_layers():
    for package in ("ops", "random", "kernels"):
        for path in sorted((ROOT / package).rglob("*.py")):
            upward = {m for m in _imports(path) if m.startswith(UPPER)}
            assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"


def test_functional_holds_public_ops_only():
    # the machinery's old private modules (functional/_ops.py, _fast_*.py, _random.py, ...) moved
    private = [p.name for p in (ROOT / "functional").glob("_*.py") if p.name != "__init__.py"]
    assert private == []
