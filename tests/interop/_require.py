"""Import a peer library for the interop tests: skip with a reason where it cannot be imported,
fail instead where CI set DROPKIT_REQUIRE_INTEROP=1 (the environment built to run them)."""

from __future__ import annotations

import importlib
import os

import pytest


def require(name: str, reason: str):
    if os.environ.get("DROPKIT_REQUIRE_INTEROP") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason)
