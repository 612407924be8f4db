"""Helpers the benchmark scripts share: wall-clock medians, a forward+backward closure, saved bytes.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and they import
this module as ``_common``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["fwd_bwd", "median_time", "saved_bytes"]


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fwd_bwd(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor):
    """A closure running ``op(x).backward(g)`` with ``x.grad`` cleared first."""

    def run():
        x.grad = None
        op(x).backward(g)

    return run


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)
