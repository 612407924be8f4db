"""Import numba configured for dropkit: a writable kernel cache and a threading layer that shares the
machine with torch.

Two settings are made here, before any kernel is compiled, and both defer to the user's environment:

* **Cache directory.** Compiled kernels are cached on disk so that only the first run on a machine
  pays the compile time. ``NUMBA_CACHE_DIR`` (or ``DROPKIT_NUMBA_CACHE_DIR``) is used when set and
  writable; otherwise ``$XDG_CACHE_HOME/dropkit/numba`` (``~/.cache/dropkit/numba``), then a
  per-user folder in the temporary directory. When none can be written, kernels compile without a
  cache (every process pays the compile time, nothing fails).
* **Threading layer.** torch runs its own OpenMP pool. numba's ``omp`` layer starts a second one, and
  two OpenMP pools that spin-wait stall each other whenever a core is busy. numba's ``workqueue``
  layer uses plain threads that sleep when idle; it is chosen unless ``NUMBA_THREADING_LAYER`` is set
  (see docs/benchmarks.md for the measurements behind this choice).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba

__all__ = ["CACHE_DIR", "numba", "sync_threads"]


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

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def sync_threads(num_threads: int) -> None:
    """Run numba's parallel regions on ``num_threads`` threads (dropkit follows torch's setting)."""
    n = max(1, min(int(num_threads), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
