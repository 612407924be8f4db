"""The README's Python usage block runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_block_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_ci_runs_the_readme_test_command_verbatim():
    command = next(
        line
        for line in README.read_text().splitlines()
        if line.startswith(".venv/bin/ruff check .")
    )
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == command  # the last line: its exit status is CI's
    assert "sphinx -W" in command  # the API reference: a broken docstring fails CI
