"""The numba kernels against the NumPy Philox reference: same bits, any size, any thread count."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from dropkit.kernels import cpu as K
from dropkit.reference import philox as ph
from tests.reference.test_philox import KAT_PHILOX4X32_10

SIZES = [0, 1, 7, 8, 9, ph.BLOCK - 1, ph.BLOCK + 3, 2**20 + 3]
SEED = 0x1234_5678_9ABC_DEF


def test_kernel_philox_known_answer_vectors():
    counters = np.array([c for c, _, _ in KAT_PHILOX4X32_10])
    keys = np.array([k for _, k, _ in KAT_PHILOX4X32_10])
    expected = np.array([e for _, _, e in KAT_PHILOX4X32_10], dtype=np.uint32)
    np.testing.assert_array_equal(K.philox4x32_10(counters, keys), expected)


@pytest.mark.parametrize("n", SIZES)
def test_keep_mask_equals_reference(n):
    np.testing.assert_array_equal(K.keep_mask(n, 0.3, SEED), ph.philox_keep_mask(n, 0.3, SEED))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 9, ph.BLOCK + 3, 2**20 + 3])
def test_forward_backward_and_bits(dtype, n):
    p = 0.3
    s = dtype(1 / (1 - p))
    rng = np.random.default_rng(n)
    x, g = rng.standard_normal((2, n)).astype(dtype)
    keep = ph.philox_keep_mask(n, p, SEED)
    expected = x * (keep.astype(dtype) * s)
    out = np.empty_like(x)
    bits = K.dropout_forward(x, out, SEED, p, s, True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.unpackbits(bits, count=n, bitorder="little"), keep)
    assert K.dropout_forward(x, out, SEED, p, s, False).size == 0
    np.testing.assert_array_equal(out, expected)
    for backward in (
        lambda gin: K.dropout_backward_bits(g, gin, bits, s),
        lambda gin: K.dropout_backward_seed(g, gin, SEED, p, s),
    ):
        gin = np.empty_like(g)
        backward(gin)
        np.testing.assert_array_equal(gin, g * (keep.astype(dtype) * s))


LAUNCHES = {
    "1 thread": dict(threads=1),
    "torch's OpenMP team": dict(threads=2),
    "Python threads": dict(threads=2, openmp=False),
    "7 chunks per thread": dict(threads=2, chunks_per_thread=7),
    "3 threads on 2 cores": dict(threads=3),
}


def _launch_as(monkeypatch, threads, openmp=True, chunks_per_thread=1):
    monkeypatch.setattr(K, "PARALLEL_MIN_NUMEL", 1)
    if not openmp:
        monkeypatch.setattr(K, "runtime", lambda: None)
    monkeypatch.setattr(K, "_CHUNKS_PER_THREAD", chunks_per_thread)
    return threads


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("n", [ph.BLOCK * 3 + 11, 2**20 + 3])
def test_identical_however_the_work_is_split(n, launch, monkeypatch):
    # Masks and outputs depend on (seed, i) only: not on threads, chunks or who runs them.
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    s = np.float32(1 / 0.7)
    keep = K.keep_mask(n, 0.3, SEED, threads=1)
    threads = _launch_as(monkeypatch, **LAUNCHES[launch])
    out, gin_bits, gin_seed = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    bits = K.dropout_forward(x, out, SEED, 0.3, s, True, threads=threads)
    K.dropout_backward_bits(x, gin_bits, bits, s, threads=threads)
    K.dropout_backward_seed(x, gin_seed, SEED, 0.3, s, threads=threads)
    expected = x * (keep.astype(np.float32) * s)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.unpackbits(bits, count=n, bitorder="little"), keep)
    np.testing.assert_array_equal(gin_bits, expected)
    np.testing.assert_array_equal(gin_seed, expected)
    np.testing.assert_array_equal(K.keep_mask(n, 0.3, SEED, threads=threads), keep)


def test_tensors_and_arrays_give_the_same_result():
    # The kernels read tensors' memory directly (fast_dropout passes tensors); a view with a
    # storage offset starts at its own first element.
    base = torch.randn(ph.BLOCK * 5 + 3, dtype=torch.float64)
    x = base[3:]
    out = torch.empty_like(x)
    bits = K.dropout_forward(x, out, SEED, 0.4, 1 / 0.6, True)
    out_np = np.empty(x.numel())
    bits_np = K.dropout_forward(x.numpy(), out_np, SEED, 0.4, np.float64(1 / 0.6), True)
    assert isinstance(bits, torch.Tensor) and bits.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), out_np)
    np.testing.assert_array_equal(bits.numpy(), bits_np)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info(),
    reason="torch's OpenMP runtime is looked for on Linux builds whose parallel backend is OpenMP",
)
def test_the_openmp_runtime_is_torchs_own():
    from dropkit.kernels import _openmp

    lib = _openmp.runtime()
    assert lib is not None
    loaded = _openmp._loaded_runtimes()
    assert lib._name in loaded  # one of the runtimes mapped into this process
    package = os.path.dirname(os.path.realpath(torch.__file__))
    if any(os.path.realpath(p).startswith(package) for p in loaded):
        assert os.path.realpath(lib._name).startswith(package)


def test_fused_kernels_round_like_the_unfused_ops():
    # No fused multiply-add: (x * m) and (+ res) are rounded separately, as torch does.
    n, h, p = 37 * 130, 37, 0.25  # rows of 37 straddle the block boundary at 4096
    s = np.float32(1 / (1 - p))
    rng = np.random.default_rng(1)
    x, r = rng.standard_normal((2, n)).astype(np.float32)
    bias = rng.standard_normal(h).astype(np.float32)
    m = ph.philox_keep_mask(n, p, SEED).astype(np.float32) * s
    out = np.empty_like(x)
    K.dropout_add_forward(x, r, out, SEED, p, s, False)
    np.testing.assert_array_equal(out, x * m + r)
    bits = K.bias_dropout_add_forward(x, bias, r, out, SEED, p, s, True)
    np.testing.assert_array_equal(out, (x.reshape(-1, h) + bias).reshape(-1) * m + r)
    np.testing.assert_array_equal(np.unpackbits(bits, count=n, bitorder="little"), m != 0)


_FORK_SCRIPT = """
import os, sys, torch
import dropkit.functional as DF
torch.set_num_threads(2)
x = torch.randn(1 << 18, generator=torch.Generator().manual_seed(0))
expected = DF.dropout(x, 0.3, generator=torch.Generator().manual_seed(1)).numpy().copy()
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # no torch operator here: torch's own would hang after fork (its OpenMP team)
    z = DF.dropout(x, 0.3, generator=torch.Generator().manual_seed(1)).numpy()
    os.write(write, b"same" if (z == expected).all() else b"diff")
    os._exit(0)
os.waitpid(pid, 0)
sys.exit(0 if os.read(read, 4) == b"same" else 3)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_the_kernels_without_torchs_team():
    # libgomp cannot run a team in a child forked after it ran one (it hangs); the kernels notice
    # the fork and use Python threads there, with the same results.
    import subprocess

    result = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], timeout=120)
    assert result.returncode == 0


def test_calls_from_several_python_threads_at_once():
    # Each Python thread packs its own record and leads its own OpenMP team; results are unchanged.
    import threading

    n, t, s = 2**18 + 3, K.threshold(0.3), 1 / 0.7
    xs = [torch.randn(n, generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def run(i):
        out, bits = torch.empty_like(xs[i]), torch.empty((n + 7) // 8, dtype=torch.uint8)
        K.forward_tensor(xs[i], out, bits, n, 1000 + i, t, s, True)
        return out, bits

    expected = [run(i) for i in range(4)]
    mismatches = []

    def work(i):
        for _ in range(10):
            out, bits = run(i)
            if not (torch.equal(out, expected[i][0]) and torch.equal(bits, expected[i][1])):
                mismatches.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert mismatches == []
    keep = torch.from_numpy(K.keep_mask(n, 0.3, 1000))
    assert torch.equal(
        expected[0][0], xs[0] * (keep.float() * torch.tensor(s, dtype=torch.float32))
    )
