"""The fast CPU path of dropkit.functional.dropout against the plain path and the NumPy reference."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from scipy import stats

import dropkit
import dropkit.functional as DF
from dropkit import reference as ref
from dropkit.functional import fast_dropout as fd
from dropkit.random import draws
from tests.conftest import Z, binomial_tol

ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SAVES = ["bits", "seed"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def fast():
    """The fast path for every size (min_numel=1), bit-packed mask."""
    with DF.use_fast_dropout(True, save="bits", min_numel=1):
        yield


def _fast_call(x, p, seed=7, **kwargs):
    """dropout on the fast path and the mask it used (drawn again from the same generator state)."""
    out = DF.dropout(x, p, generator=_seeded(seed), **kwargs)
    mask = DF.fast_keep_mask(x, p, DF.draw_seed(_seeded(seed)))
    return out, mask


def _count_saved_bytes(fn):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved)


class TestDispatch:
    def test_large_tensors_take_the_fast_path_small_ones_the_plain_path(self):
        torch.manual_seed(0)
        big = torch.ones(fd.DEFAULT_MIN_NUMEL)
        out = DF.dropout(big, 0.5, generator=_seeded(3))
        assert torch.equal(out != 0, DF.fast_keep_mask(big, 0.5, DF.draw_seed(_seeded(3))))
        small = torch.ones(fd.DEFAULT_MIN_NUMEL - 1)
        out = DF.dropout(small, 0.5, generator=_seeded(3))
        assert torch.equal(out != 0, DF.sample_mask(small.shape, 0.5, generator=_seeded(3)))

    def test_switch_and_context_manager(self):
        x = torch.ones(fd.DEFAULT_MIN_NUMEL)
        plain = DF.sample_mask(x.shape, 0.5, generator=_seeded(3))
        assert dropkit.fast_dropout_enabled()
        with dropkit.use_fast_dropout(False):
            assert not dropkit.fast_dropout_enabled()
            assert torch.equal(DF.dropout(x, 0.5, generator=_seeded(3)) != 0, plain)
        assert dropkit.fast_dropout_enabled()
        try:
            dropkit.set_fast_dropout(False)
            assert torch.equal(DF.dropout(x, 0.5, generator=_seeded(3)) != 0, plain)
        finally:
            dropkit.set_fast_dropout(True)

    def test_environment_variable_turns_it_off_and_import_does_not_load_numba(self):
        code = "import sys, dropkit; print(dropkit.fast_dropout_enabled(), 'numba' in sys.modules)"
        env = {**os.environ, "DROPKIT_FAST_DROPOUT": "0"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.split() == ["False", "False"], out.stderr

    def test_settings_errors(self):
        with pytest.raises(
            ValueError, match=r"save must be one of \('bits', 'seed'\), but got 'x'"
        ):
            dropkit.set_fast_dropout(True, save="x")
        with pytest.raises(ValueError, match="min_numel must be a positive int"):
            dropkit.set_fast_dropout(True, min_numel=0)
        with pytest.raises(TypeError, match="enabled must be a bool"):
            dropkit.set_fast_dropout("yes")
        with pytest.raises(ValueError, match="seed must be an int"):
            DF.fast_keep_mask((3,), 0.5, -2)


@pytest.mark.usefixtures("fast")
class TestParity:
    """Given the kernel's mask, the fast path equals the plain path and the reference exactly."""

    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    @pytest.mark.parametrize("save", SAVES)
    @pytest.mark.parametrize("scale", ["inverted", "classic"])
    def test_forward_and_backward(self, dtype, save, scale):
        p = 0.3
        x = torch.randn(33, 517, generator=_seeded(1)).to(dtype).requires_grad_()
        grad_out = torch.randn(x.shape, generator=_seeded(2)).to(dtype)
        with DF.use_fast_dropout(True, save=save, min_numel=1):
            out, mask = _fast_call(x, p, scale=scale)
        out.backward(grad_out)
        x_plain = x.detach().clone().requires_grad_()
        plain = DF.apply_mask(x_plain, mask, p, scale=scale)
        plain.backward(grad_out)
        assert out.dtype == dtype
        assert torch.equal(out, plain) and torch.equal(x.grad, x_plain.grad)
        if dtype in (torch.float32, torch.float64, torch.float16):  # NumPy has no bfloat16
            m = mask.numpy()
            expected = ref.dropout_forward(x.detach().numpy(), m, p, scale=scale)
            expected_grad = ref.dropout_backward(grad_out.numpy(), m, p, scale=scale)
            np.testing.assert_array_equal(out.detach().numpy(), expected)
            np.testing.assert_array_equal(x.grad.numpy(), expected_grad)

    @pytest.mark.parametrize("n", [0, 1, 7, 2**20 + 3])
    def test_odd_sizes(self, n):
        x = torch.randn(n, generator=_seeded(n))
        out, mask = _fast_call(x, 0.5)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))
        np.testing.assert_array_equal(mask.numpy(), ref.philox_keep_mask(n, 0.5, _seed(7)))

    def test_zero_dim(self):
        x = torch.tensor(3.0)
        outs = {DF.dropout(x, 0.5, generator=_seeded(s)).item() for s in range(30)}
        assert outs == {0.0, 6.0}

    def test_masks_identical_at_one_and_two_threads(self):
        x = torch.randn(2**20 + 4096 * 3 + 5)  # above the kernels' parallel threshold (2^19)
        before = torch.get_num_threads()
        try:
            outs = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                outs.append(DF.dropout(x, 0.4, generator=_seeded(9)))
        finally:
            torch.set_num_threads(before)
        assert torch.equal(outs[0], outs[1])

    def test_mask_of_an_element_depends_on_seed_and_index_only(self):
        # A prefix of a tensor gets the prefix of the longer tensor's mask.
        long, short = torch.ones(50_000), torch.ones(12_345)
        a = DF.dropout(long, 0.5, generator=_seeded(4))
        b = DF.dropout(short, 0.5, generator=_seeded(4))
        assert torch.equal(a[: short.numel()], b)


def _seed(generator_seed: int) -> int:
    return DF.draw_seed(_seeded(generator_seed))


@pytest.mark.usefixtures("fast")
class TestLayouts:
    def test_channels_last_kept_and_exact(self):
        x = torch.randn(2, 3, 8, 9).to(memory_format=torch.channels_last)
        out, mask = _fast_call(x, 0.5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))
        # The mask follows memory order: flat in channels_last order it is the kernel's sequence.
        flat = mask.permute(0, 2, 3, 1).reshape(-1).numpy()
        np.testing.assert_array_equal(flat, ref.philox_keep_mask(x.numel(), 0.5, _seed(7)))

    @pytest.mark.parametrize("save", SAVES)
    def test_transposed_input_keeps_its_strides_and_gradient_is_exact(self, save):
        x = torch.randn(40, 30).t().requires_grad_()
        with DF.use_fast_dropout(True, save=save, min_numel=1):
            out, mask = _fast_call(x, 0.5)
        assert out.stride() == x.stride()
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))
        grad_out = torch.randn(30, 40)  # contiguous, unlike the output
        out.backward(grad_out)
        assert torch.equal(x.grad, DF.apply_mask(grad_out, mask, 0.5))

    def test_sliced_input_with_gaps(self):
        x = torch.randn(20, 40)[:, ::3]
        out, mask = _fast_call(x, 0.5)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))

    def test_inplace_without_grad_writes_into_the_input(self):
        x = torch.randn(10_000)
        expected, _ = _fast_call(x.clone(), 0.3)
        y = x.clone()
        out = DF.dropout(y, 0.3, inplace=True, generator=_seeded(7))
        assert out is y and torch.equal(y, expected)

    def test_inplace_on_a_non_leaf_with_grad(self):
        w = torch.randn(1000, requires_grad=True)
        h = w * 1.0
        out = DF.dropout(h, 0.3, inplace=True, generator=_seeded(7))
        out.sum().backward()
        mask = DF.fast_keep_mask((1000,), 0.3, _seed(7))
        assert out is h and torch.equal(w.grad, DF.apply_mask(torch.ones(1000), mask, 0.3))


@pytest.mark.usefixtures("fast")
class TestGradients:
    @pytest.mark.parametrize("save", SAVES)
    def test_gradcheck_and_gradgradcheck(self, save):
        x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
        with DF.use_fast_dropout(True, save=save, min_numel=1):
            fn = lambda t: DF.dropout(t, 0.4, generator=_seeded(5))  # noqa: E731
            assert torch.autograd.gradcheck(fn, (x,))
            assert torch.autograd.gradgradcheck(fn, (x,))

    def test_saved_for_backward_bytes(self):
        # torch's CPU dropout keeps a mask of the input's dtype (4 bytes/element for float32).
        n = 2**16
        x = torch.randn(n, requires_grad=True)
        theirs = _count_saved_bytes(lambda: torch.nn.functional.dropout(x, 0.5))
        with DF.use_fast_dropout(True, save="bits"):
            bits = _count_saved_bytes(lambda: DF.dropout(x, 0.5))
        with DF.use_fast_dropout(True, save="seed"):
            seed = _count_saved_bytes(lambda: DF.dropout(x, 0.5))
        assert (theirs / n, bits / n, seed / n) == (4.0, 0.125, 0.0)


@pytest.mark.usefixtures("fast")
class TestStatistics:
    n = 2**20

    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1e-3])
    def test_fraction_dropped(self, p):
        out = DF.dropout(torch.ones(self.n), p, generator=_seeded(11))
        dropped = (out == 0).double().mean().item()
        assert abs(dropped - p) < binomial_tol(p, self.n), (dropped, p)

    def test_chi_square_over_mask_bytes(self):
        # At p=0.5 the bytes of the packed mask are uniform on 0..255 if the bits are independent
        # fair coins. Chi-square with 255 degrees of freedom; fail below probability 1e-6.
        keep = DF.fast_keep_mask((self.n,), 0.5, _seed(12)).numpy()
        counts = np.bincount(np.packbits(keep, bitorder="little"), minlength=256)
        chi2, pvalue = stats.chisquare(counts)
        assert pvalue > 1e-6, (chi2, pvalue)

    def test_neighbouring_elements_are_independent(self):
        # P(i and i+1 both kept) = (1-p)^2, for neighbours in the same Philox word group and not.
        p, keep = 0.5, DF.fast_keep_mask((self.n,), 0.5, _seed(13))
        for lag in (1, 1024):
            both = (keep[:-lag] & keep[lag:]).double().mean().item()
            q = (1 - p) ** 2
            assert abs(both - q) < binomial_tol(q, self.n - lag), (lag, both)

    def test_calls_are_independent(self):
        p, gen = 0.5, _seeded(4)
        a = DF.dropout(torch.ones(self.n), p, generator=gen) != 0
        b = DF.dropout(torch.ones(self.n), p, generator=gen) != 0
        both = (a & b).double().mean().item()
        q = (1 - p) ** 2
        assert abs(both - q) < binomial_tol(q, self.n)

    def test_expectation_equals_eval_output(self):
        p, x = 0.2, torch.ones(self.n, dtype=torch.float64)
        mean = DF.dropout(x, p, generator=_seeded(3)).mean().item()
        tol = Z * (1 / (1 - p)) * math.sqrt(p * (1 - p) / self.n)
        assert abs(mean - 1.0) < tol


@pytest.mark.usefixtures("fast")
class TestSeeds:
    def test_manual_seed_reproduces(self):
        x = torch.ones(10_000)
        torch.manual_seed(3)
        a = DF.dropout(x, 0.5)
        torch.manual_seed(3)
        assert torch.equal(a, DF.dropout(x, 0.5))
        assert not torch.equal(a, DF.dropout(x, 0.5))

    def test_generator_is_advanced_once_per_call(self):
        gen = _seeded(8)
        DF.dropout(torch.ones(100), 0.5, generator=gen)
        expected = _seeded(8)
        DF.draw_seed(expected)
        assert torch.equal(gen.get_state(), expected.get_state())


@pytest.mark.usefixtures("fast")
class TestNanAndInf:
    # Documented contract, shared with the plain path: dropout multiplies, so a dropped NaN or Inf
    # becomes NaN (NaN * 0, Inf * 0) and a kept one stays NaN / Inf.
    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    def test_nan_and_inf(self, dtype):
        x = torch.tensor([math.nan, math.inf, -math.inf] * 1000).to(dtype)
        out, mask = _fast_call(x, 0.5)
        assert 0 < mask.sum() < x.numel()
        assert out[~mask].isnan().all()
        # kept: NaN * 2 = NaN, +-Inf * 2 = +-Inf
        torch.testing.assert_close(out[mask], x[mask], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(out, DF.apply_mask(x, mask, 0.5), rtol=0, atol=0, equal_nan=True)

    def test_large_finite_values_stay_finite_or_overflow_like_the_plain_path(self):
        x = torch.full((5000,), torch.finfo(torch.float16).max, dtype=torch.float16)
        out, mask = _fast_call(x, 0.1)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.1))  # kept: max * 1.111 -> inf in float16


class TestCompile:
    def test_torch_compile_fullgraph(self):
        # The custom op and its fake let dynamo trace dropout without a graph break.
        def f(t):
            return DF.dropout(t, 0.5) * 3.0

        x = torch.randn(fd.DEFAULT_MIN_NUMEL * 2, requires_grad=True)
        y = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
        y.sum().backward()
        assert torch.equal(y == 0, x.grad == 0)
        dropped = (y == 0).double().mean().item()
        assert abs(dropped - 0.5) < binomial_tol(0.5, x.numel())

    def test_opcheck(self):
        seed = torch.tensor(123)
        for x in (torch.randn(100, 70, requires_grad=True), torch.randn(70, 100).t()):
            for save_bits in (True, False):
                args = (x, seed, 0.3, 1 / 0.7, save_bits)
                torch.library.opcheck(torch.ops.dropkit.philox_dropout.default, args)


def test_cache_dir_falls_back_when_the_requested_one_is_not_writable(tmp_path):
    # NUMBA_CACHE_DIR pointing somewhere that cannot be written (here: below a regular file, which
    # fails even for root) must not break the kernels: another cache folder is used.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = blocker / "numba-cache"
    code = (
        "from dropkit.kernels import _numba, cpu; "
        "print(_numba.CACHE_DIR); print(cpu.keep_mask(5, 0.5, 1).size)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(unwritable)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = out.stdout.split()
    assert len(lines) == 2 and lines[0] != str(unwritable) and lines[1] == "5", out.stderr


def test_concurrent_calls_from_python_threads():
    # numba's workqueue layer aborts on concurrent parallel regions; dropkit serialises them.
    from concurrent.futures import ThreadPoolExecutor

    x = torch.randn(2**20 + 7)
    expected = [DF.dropout(x, 0.5, generator=_seeded(s)) for s in range(6)]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda s: DF.dropout(x, 0.5, generator=_seeded(s)), range(6)))
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_the_seed_is_torch_randints_draw():
    # Eager calls reuse one buffer per thread; the value is the one torch.randint draws from the same
    # generator state (which the torch.compile path uses), so both paths see the same seeds.
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    eager = [draws.draw_seed(g1) for _ in range(50)]
    traced = [int(draws.seed_tensor(g2)) for _ in range(50)]
    assert eager == traced
    assert len(set(eager)) == 50 and all(0 <= s < 2**63 - 1 for s in eager)


def test_first_call_under_inference_mode_then_training(monkeypatch):
    # The per-thread seed buffer must stay usable outside inference_mode when it was created inside.
    monkeypatch.setattr(draws, "_seed_buffers", threading.local())
    x = torch.randn(fd.DEFAULT_MIN_NUMEL * 2)
    with torch.inference_mode():
        inside = DF.dropout(x, 0.5, generator=torch.Generator().manual_seed(3))
    outside = DF.dropout(x, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(inside, outside)


@pytest.mark.parametrize("inplace_ok", [False])
def test_an_expanded_input_gives_torchs_layout(inplace_ok):
    # issue 22: torch.randn(1, 64).expand(128, 64) came out with strides (1, 128) on the fast path
    # (its memory order), where torch, the plain path and torch.compile give a contiguous (64, 1)
    x = torch.randn(1, 64).expand(128, 64)
    out = DF.dropout(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.stride() == (64, 1) == F_dropout_stride(x)
    out.view(-1)  # raised on the fast path before
    seed = DF.draw_seed(torch.Generator().manual_seed(0))
    mask = DF.fast_keep_mask(x, 0.5, seed)  # C order: x is not dense
    assert torch.equal(out, DF.apply_mask(x, mask, 0.5))


def F_dropout_stride(x: torch.Tensor) -> tuple[int, ...]:
    return torch.nn.functional.dropout(x, 0.5).stride()
