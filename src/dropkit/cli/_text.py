"""Help text: docstrings shown in the terminal without their reStructuredText markup."""

from __future__ import annotations

import re

__all__ = ["plain"]


def plain(text: str | None) -> str:
    """A docstring as terminal text: reStructuredText roles and literals without their markup."""
    text = text or ""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")
