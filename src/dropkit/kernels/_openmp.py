"""Run dropkit's kernels on torch's own OpenMP thread team.

torch runs its CPU operators on an OpenMP team (``at::parallel_for``). Between operators the team's
threads spin for a while, waiting for the next parallel region. A second pool of threads (numba's, or
Python threads) started right after a torch operator finds the other cores taken by those spinning
threads and waits for the scheduler: a tensor of 128K elements took longer on two such threads than
on one (docs/benchmarks.md). Calling ``GOMP_parallel`` of the OpenMP runtime that torch loaded instead
hands the kernel to the very threads that are spinning, as a torch operator would.

:func:`runtime` finds that runtime (Linux: the ``libgomp``/``libomp``/``libiomp5`` mapped into the
process by torch, when torch's parallel backend is OpenMP). Elsewhere, or with
``DROPKIT_FAST_DROPOUT_OPENMP=0``, it returns None and the kernels fall back to Python threads.

In a process forked from one whose OpenMP team has run, the team cannot be used (libgomp is not
fork-safe: torch's own parallel operators hang there too, unless the child calls
``torch.set_num_threads(1)``, as DataLoader workers do). :func:`runtime` returns None in such a child,
so dropkit's kernels run on Python threads there instead of hanging.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import torch

__all__ = ["runtime"]

_NAMES = ("libgomp", "libiomp5", "libomp")


def _loaded_runtimes() -> list[str]:
    # The OpenMP libraries mapped into this process, in the order /proc lists them.
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = [line.split(maxsplit=5)[-1].strip() for line in maps if "/" in line]
    except OSError:
        return []
    found = []
    for path in paths:
        name = os.path.basename(path)
        if name.startswith(_NAMES) and ".so" in name and path not in found:
            found.append(path)
    return found


_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True
    runtime.cache_clear()


@functools.cache
def runtime() -> ctypes.CDLL | None:
    """torch's OpenMP runtime (with ``GOMP_parallel``), or None when it cannot be used."""
    if _forked:
        return None
    if os.environ.get("DROPKIT_FAST_DROPOUT_OPENMP", "1").strip().lower() in ("0", "false", "off"):
        return None
    if not sys.platform.startswith("linux"):
        return None
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    found = _loaded_runtimes()
    # pip wheels ship it in torch/lib or torch.libs; a system torch may use the system's
    package = os.path.dirname(os.path.realpath(torch.__file__))
    prefixes = (package + os.sep, package + ".libs" + os.sep)
    own = [p for p in found if os.path.realpath(p).startswith(prefixes)]
    if len(own) != 1 and len(found) != 1:
        return None  # several candidates and none clearly torch's: do not guess
    lib = ctypes.CDLL((own or found)[0])
    try:
        parallel = lib.GOMP_parallel
    except AttributeError:
        return None
    parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return lib


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
