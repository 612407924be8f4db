"""Every Python code block of README.md and docs/**/*.md runs as written.

The rule, for whoever writes a page:

- A fenced block labelled ```python is an example and runs. Each page's ```python blocks run in
  order, in one namespace (a later block may use a name an earlier one made), in a fresh Python
  process whose working directory is an empty temporary folder, so that a page can neither lean on
  another page nor leave state behind (``dropkit.set_fast_dropout``, files it writes).
- Every other block is not run: shell commands are fenced ```bash (or ```console), and records
  (measured output, tables of numbers, file layouts) are fenced ```text or indented by four spaces,
  as in docs/benchmarks.md and docs/results.md. Every fence names its language, and Python is never
  labelled otherwise (``py``, ``python3``, ``pycon``...): an example cannot escape the runner by its
  label.
- A page whose Python imports timm or torchvision runs where they can be imported: they load only
  against the torch build their wheels were made for, so the torch 2.13 environment skips the page
  (saying why) and CI's vision environment runs it (.ci/run runs this file there, where
  DROPKIT_REQUIRE_INTEROP=1 turns the skip into a failure).

Run one page by hand: ``python tests/docs/test_code_blocks.py docs/deployment.md``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# docs/api holds the site's sources: its .md files only include the pages below.
PAGES = [ROOT / "README.md"] + [
    p for p in sorted((ROOT / "docs").rglob("*.md")) if not p.is_relative_to(ROOT / "docs" / "api")
]

# An opening fence at the start of a line (``` or ~~~, 3 or more), its info string, its body, and
# the closing fence of the same kind and at least that length (CommonMark).
FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[`~]*[ \t]*$", re.M | re.S
)
PYTHON_ALIASES = {"py", "py3", "python3", "pycon", "ipython", "python-repl", "pyi"}
NEEDS_VISION = re.compile(r"^\s*(?:import|from)\s+(timm|torchvision)\b", re.M)
TIMEOUT_S = 600


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, line of the first code line, code)`` of every fenced block, in page order."""
    return [
        (m["info"].strip().split(" ")[0].lower(), text.count("\n", 0, m.start()) + 2, m["body"])
        for m in FENCE.finditer(text)
    ]


def python_blocks(page: Path) -> list[tuple[int, str]]:
    return [
        (line, code) for lang, line, code in fenced_blocks(page.read_text()) if lang == "python"
    ]


def run_page(page: Path) -> None:
    """Execute the page's Python blocks in order in one namespace (this process)."""
    namespace: dict = {"__name__": "__main__"}
    for line, code in python_blocks(page):
        # Pad with newlines so that a traceback names the page and the line of the page.
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_are_found():
    names = {_page_id(p) for p in PAGES}
    assert {"README.md", "docs/deployment.md", "docs/fast_dropout.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_fence_names_its_language(page):
    blocks = fenced_blocks(page.read_text())
    unnamed = [line for lang, line, _ in blocks if not lang]
    assert not unnamed, f"{_page_id(page)}: fences without a language at lines {unnamed}"
    aliased = [(lang, line) for lang, line, _ in blocks if lang in PYTHON_ALIASES]
    assert not aliased, (
        f"{_page_id(page)}: Python labelled other than 'python' (the label that runs): {aliased}; "
        "an example is ```python, a record ```text"
    )


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_python_blocks_run(page, tmp_path):
    vision = sorted({m for _, code in python_blocks(page) for m in NEEDS_VISION.findall(code)})
    for name in vision:
        if os.environ.get("DROPKIT_REQUIRE_INTEROP") == "1":
            importlib.import_module(name)  # CI's vision environment: a failed import fails
        else:
            pytest.importorskip(
                name,
                reason=f"{_page_id(page)} imports {name}, whose wheels load only against the torch "
                "build they were made for: this page runs in the vision environment "
                "(.ci/run's vision step)",
            )
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(page)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, (
        f"{_page_id(page)}: a Python block failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    )


def test_relative_links_point_to_files():
    """A link to a file of the repository (not a URL, not an anchor) names one that exists."""
    link = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s]+)\)")
    missing = [
        f"{_page_id(page)}: {target}"
        for page in PAGES
        for target in link.findall(re.sub(FENCE, "", page.read_text()))
        if not (page.parent / target.split("#")[0]).exists()
    ]
    assert not missing, missing


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    command = next(
        line for line in readme.splitlines() if line.startswith(".venv/bin/ruff check .")
    )
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == command  # the last line: its exit status is CI's
    assert "sphinx -W" in command  # the site: a broken docstring or guide fails CI


def test_ci_runs_the_vision_pages_in_the_vision_environment():
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")  # continued lines as one
    vision_step = [line for line in ci.splitlines() if ".venv-vision/bin/python -m pytest" in line]
    # Either this file by name, or the whole suite (pytest given no test path).
    assert any(
        "tests/docs/test_code_blocks.py" in line or not re.search(r"-m pytest.*\btests\b", line)
        for line in vision_step
    ), vision_step


if __name__ == "__main__":  # one page, as test_python_blocks_run runs it
    run_page(Path(sys.argv[1]).resolve())
