"""Import numba configured for dropkit: a writable kernel cache.

The setting is made here, before any kernel is compiled, and defers to the user's environment:

* **Cache directory.** Compiled kernels are cached on disk so that only the first run on a machine
  pays the compile time. ``NUMBA_CACHE_DIR`` (or ``DROPKIT_NUMBA_CACHE_DIR``) is used when set and
  writable; otherwise ``$XDG_CACHE_HOME/dropkit/numba`` (``~/.cache/dropkit/numba``), then a
  per-user folder in the temporary directory. When none can be written, kernels compile without a
  cache (every process pays the compile time, nothing fails).

The kernels do not use numba's own threading (``parallel=True``): they run on torch's OpenMP team
(:mod:`dropkit.kernels._openmp`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba

__all__ = ["CACHE_DIR", "numba"]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _choose_cache_dir() -> Path | None:
    candidates = [os.environ.get(v) for v in ("DROPKIT_NUMBA_CACHE_DIR", "NUMBA_CACHE_DIR")]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(os.path.join(xdg, "dropkit", "numba"))
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(os.path.join(tempfile.gettempdir(), f"dropkit-numba-{uid}"))
    for folder in candidates:
        if folder and _writable(Path(folder)):
            return Path(folder)
    return None


CACHE_DIR = _choose_cache_dir()
if CACHE_DIR is not None:
    numba.config.CACHE_DIR = str(CACHE_DIR)
