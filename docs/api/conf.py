"""Sphinx configuration of dropkit's documentation site: the guides (docs/*.md and the README, read by
MyST) beside the API reference (built from the docstrings).

Build (as the README's test command does, warnings as errors):
    python -m sphinx -W --keep-going -q -b html docs/api build/docs
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "..", "src"))
sys.path.insert(0, os.path.join(_HERE, "_ext"))  # dropkit_docs: generated pages and tables

from importlib.metadata import PackageNotFoundError  # noqa: E402
from importlib.metadata import version as _installed_version  # noqa: E402
from importlib.util import find_spec  # noqa: E402

project = "dropkit"
author = "dropkit contributors"
try:
    release = _installed_version("dropkit")
except PackageNotFoundError:  # a source tree that was never installed
    release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",  # the guides are Markdown
    "dropkit_docs",
]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
# dropkit.kernels.gpu imports Triton (the gpu extra): without it, the module is read against a
# stand-in, so that the site builds from the README's set-up (lab, test, docs) and is the same.
autodoc_mock_imports = [] if find_spec("triton") else ["triton"]
# The API reference: one page per package (each public submodule, with the names of its __all__),
# and the index's table of every public name. dropkit's own __all__ re-exports names of these.
dropkit_api_packages = [
    "dropkit.functional",
    "dropkit.nn",
    "dropkit.reference",
    "dropkit.uncertainty",
    "dropkit.schedules",
    "dropkit.random",
    "dropkit.lab",
    "dropkit.data",
    "dropkit.kernels",
]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
html_theme = "alabaster"
html_theme_options = {"sidebar_width": "240px", "body_max_width": "none"}
html_static_path = ["_static"]  # custom.css: wide enough for 100-column code, unclipped
