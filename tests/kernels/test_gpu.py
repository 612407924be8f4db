"""The Triton kernels against the NumPy Philox reference and the numba kernels: same bits, same values.

Runs on CUDA when there is a GPU, else in Triton's CPU interpreter (slow: sizes are kept small there).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import dropkit.functional as DF
from dropkit.kernels import cpu as K
from dropkit.reference import philox as ph
from tests.conftest import binomial_tol
from tests.kernels._triton import INTERPRETER_WARNINGS, load_triton_kernels
from tests.reference.test_philox import KAT_PHILOX4X32_10

G, DEVICE = load_triton_kernels()
pytestmark = INTERPRETER_WARNINGS

ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SEED = 0x1234_5678_9ABC_DEF  # both key words nonzero
BIG = 2**20 + 3


def _seed(seed: int = SEED) -> torch.Tensor:
    return torch.tensor([seed], dtype=torch.int64, device=DEVICE)


def _keep(n: int, p: float, seed: int = SEED) -> torch.Tensor:
    return torch.from_numpy(ph.philox_keep_mask(n, p, seed)).to(DEVICE)


def _scale(p: float, dtype: torch.dtype) -> float:
    return torch.tensor(1 / (1 - p), dtype=dtype).item()


def _randn(*shape, dtype=torch.float32, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


class TestPhilox:
    def test_known_answer_vectors(self):
        counters = np.array([c for c, _, _ in KAT_PHILOX4X32_10])
        keys = np.array([k for _, k, _ in KAT_PHILOX4X32_10])
        expected = np.array([e for _, _, e in KAT_PHILOX4X32_10], dtype=np.int64)
        np.testing.assert_array_equal(G.philox4x32_10(counters, keys, DEVICE).cpu(), expected)

    def test_tritons_own_philox_gives_the_same_words(self):
        # tl.philox (Random123 rounds and constants, key = seed low and high words) is the same
        # generator: dropkit uses its own copy only so that the interpreter can run it.
        import triton.language as tl

        if G.interpreted() and type(tl.philox).__name__ != "InterpretedFunction":
            pytest.skip("triton was imported before TRITON_INTERPRET=1 was set")
        rng = np.random.default_rng(1)
        counters = rng.integers(0, 2**32, (200, 4), dtype=np.uint64).astype(np.int64)
        keys = rng.integers(0, 2**32, (200, 2), dtype=np.uint64).astype(np.int64)
        counters[:3], keys[:3] = (
            [c for c, _, _ in KAT_PHILOX4X32_10],
            [k for _, k, _ in KAT_PHILOX4X32_10],
        )
        ours = G.philox4x32_10(counters, keys, DEVICE)
        assert torch.equal(G.philox4x32_10(counters, keys, DEVICE, triton_philox=True), ours)

    def test_equals_reference_on_random_words(self):
        rng = np.random.default_rng(0)
        counters = rng.integers(0, 2**32, (300, 4), dtype=np.uint64)
        keys = rng.integers(0, 2**32, (300, 2), dtype=np.uint64)
        got = G.philox4x32_10(counters.astype(np.int64), keys.astype(np.int64), DEVICE).cpu()
        np.testing.assert_array_equal(got.numpy(), ph.philox4x32_10(counters, keys))


class TestKeepMask:
    @pytest.mark.parametrize("n", [0, 1, 7, ph.BLOCK - 1, ph.BLOCK + 1, BIG])
    def test_equals_reference_and_cpu_kernels(self, n):
        got = G.keep_mask(n, 0.3, SEED, DEVICE).cpu().numpy()
        np.testing.assert_array_equal(got, K.keep_mask(n, 0.3, SEED))
        if n < BIG:
            np.testing.assert_array_equal(got, ph.philox_keep_mask(n, 0.3, SEED))

    # t = 1 (a value Triton would specialise), t >= 2**31 (a uint32 argument), a seed >= 2**63
    @pytest.mark.parametrize(("p", "seed"), [(2.0**-32, SEED), (0.75, SEED), (0.5, 2**64 - 5)])
    def test_thresholds_and_seeds(self, p, seed):
        n = ph.BLOCK + 9
        got = G.keep_mask(n, p, seed, DEVICE).cpu().numpy()
        np.testing.assert_array_equal(got, ph.philox_keep_mask(n, p, seed))

    def test_seed_tensor_and_int_agree(self):
        a = G.keep_mask(100, 0.5, SEED, DEVICE)
        assert torch.equal(a, G.keep_mask(100, 0.5, _seed(), DEVICE))
        assert not torch.equal(a, G.keep_mask(100, 0.5, SEED + 1, DEVICE))

    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
    def test_fraction_dropped(self, p):
        n = 2**16 if DEVICE.type == "cpu" else 2**22
        dropped = 1 - G.keep_mask(n, p, SEED, DEVICE).double().mean().item()
        assert abs(dropped - p) < binomial_tol(p, n), (dropped, p)


class TestDropoutKernels:
    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    @pytest.mark.parametrize("n", [1, 7, 2 * ph.BLOCK + 5])
    def test_forward_backward_and_bits(self, dtype, n):
        p = 0.3
        s = _scale(p, dtype)
        x, g = _randn(n, dtype=dtype, seed=n), _randn(n, dtype=dtype, seed=n + 1)
        keep = _keep(n, p)
        out = torch.empty_like(x)
        bits = G.dropout_forward(x, out, _seed(), p, s, True)
        assert torch.equal(out, DF.apply_mask(x, keep, p))  # the plain path given the mask
        cpu_bits = K.dropout_forward(np.ones(n), np.empty(n), SEED, p, np.float64(1), True)
        assert bits.dtype == torch.uint8
        np.testing.assert_array_equal(bits.cpu().numpy(), cpu_bits)  # byte-identical
        assert G.dropout_forward(x, out, _seed(), p, s, False).numel() == 0
        assert torch.equal(out, DF.apply_mask(x, keep, p))
        expected_grad = DF.apply_mask(g, keep, p)
        gin = torch.empty_like(g)
        G.dropout_backward_bits(g, gin, bits, s)
        assert torch.equal(gin, expected_grad)
        gin = torch.empty_like(g)
        G.dropout_backward_seed(g, gin, _seed(), p, s)
        assert torch.equal(gin, expected_grad)

    def test_float32_against_the_numpy_reference(self):
        from dropkit import reference as ref

        n, p = ph.BLOCK + 33, 0.4
        x = _randn(n, seed=3)
        out = torch.empty_like(x)
        G.dropout_forward(x, out, _seed(), p, _scale(p, torch.float32), False)
        expected = ref.dropout_forward(x.cpu().numpy(), ph.philox_keep_mask(n, p, SEED), p)
        np.testing.assert_array_equal(out.cpu().numpy(), expected)

    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    def test_in_place(self, dtype):
        n, p = ph.BLOCK + 17, 0.5
        x = _randn(n, dtype=dtype, seed=4)
        expected = DF.apply_mask(x, _keep(n, p), p)
        G.dropout_forward(x, x, _seed(), p, _scale(p, dtype), False)
        assert torch.equal(x, expected)

    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    def test_nan_and_inf(self, dtype):
        # As in torch: a dropped NaN or +-Inf becomes NaN (x * 0); a kept one stays NaN / +-Inf.
        x = torch.tensor([math.nan, math.inf, -math.inf, 1.0] * 1000, dtype=dtype, device=DEVICE)
        keep = _keep(x.numel(), 0.5)
        out = torch.empty_like(x)
        bits = G.dropout_forward(x, out, _seed(), 0.5, 2.0, True)
        assert out[~keep & ~x.isfinite()].isnan().all()
        assert _equal(out[keep], 2 * x[keep])
        assert _equal(out, DF.apply_mask(x, keep, 0.5))
        gin = torch.empty_like(x)
        G.dropout_backward_bits(x, gin, bits, 2.0)
        assert _equal(gin, out)

    def test_large_values_overflow_like_the_plain_path(self):
        for dtype in (torch.float16, torch.bfloat16):
            x = torch.full((3000,), torch.finfo(dtype).max, dtype=dtype, device=DEVICE)
            out = torch.empty_like(x)
            G.dropout_forward(x, out, _seed(), 0.1, _scale(0.1, dtype), False)
            assert torch.equal(out, DF.apply_mask(x, _keep(3000, 0.1), 0.1))  # kept -> inf


class TestFusedKernels:
    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    def test_round_like_the_unfused_ops(self, dtype):
        # Rows of 37 straddle the block boundary; values of mixed magnitude make every rounding
        # step visible.
        rows, h, p = 130, 37, 0.25
        s = _scale(p, dtype)
        x = _randn(rows, h, dtype=dtype, seed=1) * 100
        res = _randn(rows, h, dtype=dtype, seed=2)
        bias = _randn(h, dtype=dtype, seed=3) / 7
        keep = _keep(rows * h, p).view(rows, h)
        out = torch.empty_like(x)
        bits = G.dropout_add_forward(x, res, out, _seed(), p, s, False)
        assert bits.numel() == 0
        assert torch.equal(out, DF.apply_mask(x, keep, p) + res)
        bits = G.bias_dropout_add_forward(x, bias, res, out, _seed(), p, s, True)
        assert torch.equal(out, DF.apply_mask(x + bias, keep, p) + res)
        expected_bits = K.dropout_forward(
            np.ones(x.numel()), np.empty(x.numel()), SEED, p, 1.0, True
        )
        np.testing.assert_array_equal(bits.cpu().numpy(), expected_bits)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_no_fused_multiply_add(self, dtype):
        # residual = -(x * s) rounded: the unfused ops give exactly 0 for kept elements, a fused
        # multiply-add gives the rounding error of x * s (nonzero for most x).
        n, p = ph.BLOCK + 100, 0.3
        s = _scale(p, dtype)
        x = _randn(n, dtype=dtype, seed=5)
        res = -(x * s)
        out = torch.empty_like(x)
        G.dropout_add_forward(x, res, out, _seed(), p, s, False)
        keep = _keep(n, p)
        assert torch.equal(out[keep], torch.zeros_like(out[keep]))
        assert torch.equal(out[~keep], res[~keep])


def test_kernels_compile_for_a_gpu_without_fused_multiply_add():
    # Triton's compiler (and ptxas) run without a GPU: compiling for sm_90 catches code the
    # interpreter accepts but the compiler rejects, and shows that the fused kernels, launched
    # with enable_fp_fusion=False, keep x * m and + r as two rounded operations.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "tests.kernels._compile_gpu"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["fused_multiply_adds"] == {d: [] for d in ("fp32", "fp64", "fp16", "bf16")}
