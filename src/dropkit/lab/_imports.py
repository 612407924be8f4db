"""The user's own model factories and data loaders, named by import path ``pkg.module:name``."""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = ["is_import_path", "load_object"]

_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_import_path(text: str) -> bool:
    """``pkg.module:attr`` (the entry-point syntax), e.g. ``mylab.models:wide_mlp``."""
    return bool(_PATH.fullmatch(text))


def load_object(path: str, key: str) -> Any:
    """Import ``pkg.module`` and return its ``attr`` (dots allowed: ``Class.factory``).

    ``ValueError`` naming the config key and what failed: the module import, or the attribute.
    """
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{key}={path!r}: cannot import module '{module_name}' ({err}); is it on PYTHONPATH "
            "or installed?"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{key}={path!r}: module '{module_name}' has no '{attr}'") from None
    if not callable(obj):
        raise TypeError(f"{key}={path!r} must name a callable, but it is a {type(obj).__name__}")
    return obj
