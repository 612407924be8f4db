"""The numba kernels against the NumPy Philox reference: same bits, any size, any thread count."""

from __future__ import annotations

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


@pytest.mark.parametrize("n", [ph.BLOCK * 3 + 11, 2**20 + 3])
def test_identical_at_one_and_two_threads(n):
    from dropkit.kernels._numba import sync_threads

    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    results = []
    for threads in (1, 2):
        sync_threads(threads)
        out = np.empty_like(x)
        bits = K.dropout_forward(x, out, SEED, 0.5, np.float32(2.0), True)
        results.append((out, bits, K.keep_mask(n, 0.5, SEED)))
    sync_threads(torch.get_num_threads())
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_serial_and_parallel_drivers_agree():
    # The parallel drivers split blocks over threads; the serial ones walk them in order.
    n, s = K.PARALLEL_MIN_NUMEL + 3 * ph.BLOCK + 5, np.float32(1 / 0.7)
    x = np.random.default_rng(2).standard_normal(n).astype(np.float32)
    outs = []
    for threshold in (1, 2**62):  # everything parallel, then everything serial
        K.PARALLEL_MIN_NUMEL, saved = threshold, K.PARALLEL_MIN_NUMEL
        try:
            out, gin = np.empty_like(x), np.empty_like(x)
            bits = K.dropout_forward(x, out, SEED, 0.3, s, True)
            K.dropout_backward_bits(x, gin, bits, s)
            outs.append((out, bits, gin))
        finally:
            K.PARALLEL_MIN_NUMEL = saved
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


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
