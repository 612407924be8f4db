"""Sphinx configuration of dropkit's API reference (built from the docstrings).

Build (as the README's test command does, warnings as errors):
    python -m sphinx -W --keep-going -q -b html docs/api build/docs
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(__file__, "..", "..", "..", "src")))

from importlib.metadata import PackageNotFoundError  # noqa: E402
from importlib.metadata import version as _installed_version  # noqa: E402

project = "dropkit"
author = "dropkit contributors"
try:
    release = _installed_version("dropkit")
except PackageNotFoundError:  # a source tree that was never installed
    release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
