"""Large kernel outputs ask for transparent huge pages."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from dropkit.kernels import _hugepages


def _vm_flags(address: int) -> list[str]:
    # The VmFlags of the mapping that holds `address` (/proc/self/smaps).
    flags, inside = [], False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
    return flags


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is used on Linux only")
def test_large_buffers_are_advised_for_huge_pages():
    if _hugepages._MADVISE is None:
        pytest.skip("huge pages turned off (DROPKIT_FAST_DROPOUT_HUGEPAGES=0)")
    if not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("this kernel has no transparent huge pages (madvise is refused)")
    like = torch.empty(_hugepages.MIN_BYTES // 4 * 2, dtype=torch.float32)
    big = _hugepages.empty_like(like)
    assert big.shape == like.shape and big.dtype == like.dtype and big.is_contiguous()
    middle = big.data_ptr() + big.numel() * 2  # inside the advised whole 2 MiB pages
    assert "hg" in _vm_flags(middle)
