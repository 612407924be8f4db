"""Large output buffers backed by transparent huge pages, as NumPy does for its own large arrays.

A fresh 64 MB tensor is 16384 pages of 4 KiB, and the first write to each one is a page fault: on the
benchmark machine those faults cost more than the dropout kernel's own work (docs/benchmarks.md).
When the kernel allows transparent huge pages on request (``/sys/kernel/mm/transparent_hugepage/enabled``
set to ``madvise``, a common default), ``madvise(MADV_HUGEPAGE)`` on the buffer before its first write
makes the same memory 32 faults of 2 MiB. The buffer stays an ordinary tensor from torch's allocator.

PyTorch does the same for all its CPU allocations when ``THP_MEM_ALLOC_ENABLE=1`` is set; dropkit does
it only for the buffers its kernels write, from 4 MiB up (NumPy's threshold). Linux only;
``DROPKIT_FAST_DROPOUT_HUGEPAGES=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

__all__ = ["MIN_BYTES", "empty", "empty_like"]

MIN_BYTES = 4 << 20
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DROPKIT_FAST_DROPOUT_HUGEPAGES", "1").strip().lower() in (
        "0",
        "false",
        "off",
    ):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(t)`` (contiguous ``t``), asking for huge pages when it is large enough."""
    return _advised(torch.empty_like(t))


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)`` on the CPU, asking for huge pages when it is large enough."""
    return _advised(torch.empty(shape, dtype=dtype))


def _advised(out: torch.Tensor) -> torch.Tensor:
    nbytes = out.numel() * out.element_size()
    if _MADVISE is not None and nbytes >= MIN_BYTES:
        start = out.data_ptr()
        lo = (start + _HUGE - 1) & ~(_HUGE - 1)  # the whole 2 MiB pages inside the buffer
        hi = (start + nbytes) & ~(_HUGE - 1)
        if hi > lo:
            _MADVISE(lo, hi - lo, _MADV_HUGEPAGE)  # advice only: a refusal changes nothing
    return out
