"""The CUDA fast path (Triton kernels) of dropout, dropout_add and bias_dropout_add.

``TestGlue*`` call the operators of ``dropkit.ops.dropout`` with the Triton backend
(``dropkit.ops.cuda``) directly: on CUDA when there is a GPU, else on CPU tensors with
the kernels in Triton's interpreter.
``TestCudaDispatch`` goes through the public ops and needs a GPU.
"""

from __future__ import annotations

import pytest
import torch

import dropkit
import dropkit.functional as DF
from dropkit.ops import cuda as fc
from dropkit.ops import dropout as _ops
from dropkit.random import draws
from tests.conftest import binomial_tol
from tests.kernels._triton import INTERPRETER_WARNINGS, load_triton_kernels

G, DEVICE = load_triton_kernels()
pytestmark = INTERPRETER_WARNINGS

ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SAVES = [True, False]  # save_bits
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def _gen(seed: int = 7) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def _mask_of(x: torch.Tensor, p: float, seed: int = 7) -> torch.Tensor:
    """The mask a call with generator ``_gen(seed)`` used: the seed drawn again, the CPU kernels'
    mask for it (in ``x``'s memory order)."""
    value = int(draws.device_seed(_gen(seed), DEVICE))
    return DF.fast_keep_mask(x, p, value).to(x.device)


def _triton_dropout(x, p, s, inplace, generator, save_bits):
    """The fast path's dropout on the Triton backend, whatever the tensor's device."""
    with dropkit.use_fast_dropout(True, save="bits" if save_bits else "seed"):
        return _ops.dropout(x, p, s, inplace, generator, backend=fc)


def _dropout(x, p, save_bits=True, inplace=False, seed=7):
    return _triton_dropout(x, p, 1 / (1 - p), inplace, _gen(seed), save_bits)


def _count_saved_bytes(fn):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved)


def _randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)


class TestGlueDropout:
    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    @pytest.mark.parametrize("save_bits", SAVES)
    def test_forward_and_backward_equal_the_plain_path(self, dtype, save_bits):
        p = 0.3
        x = _randn(9, 517, dtype=dtype, seed=1).requires_grad_()
        grad_out = _randn(9, 517, dtype=dtype, seed=2)
        out = _dropout(x, p, save_bits)
        out.backward(grad_out)
        mask = _mask_of(x, p)
        x_plain = x.detach().clone().requires_grad_()
        plain = DF.apply_mask(x_plain, mask, p)
        plain.backward(grad_out)
        assert out.dtype == dtype
        assert torch.equal(out, plain) and torch.equal(x.grad, x_plain.grad)

    @pytest.mark.parametrize("save_bits", SAVES)
    def test_transposed_input_keeps_its_strides_and_gradient_is_exact(self, save_bits):
        x = _randn(40, 30).t().requires_grad_()
        out = _dropout(x, 0.5, save_bits)
        mask = _mask_of(x, 0.5)
        assert out.stride() == x.stride()
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))
        grad_out = _randn(30, 40, seed=3)  # contiguous, unlike the output
        out.backward(grad_out)
        assert torch.equal(x.grad, DF.apply_mask(grad_out, mask, 0.5))

    def test_channels_last_kept_and_mask_in_memory_order(self):
        x = _randn(2, 3, 8, 9).to(memory_format=torch.channels_last)
        out = _dropout(x, 0.5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        mask = _mask_of(x, 0.5)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.5))
        flat = mask.permute(0, 2, 3, 1).reshape(-1)  # memory order: the kernels' sequence
        seed = int(draws.device_seed(_gen(), DEVICE))
        assert torch.equal(flat, G.keep_mask(x.numel(), 0.5, seed, DEVICE))

    def test_sliced_input_with_gaps(self):
        x = _randn(20, 40)[:, ::3]
        assert torch.equal(_dropout(x, 0.5), DF.apply_mask(x, _mask_of(x, 0.5), 0.5))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_inplace_without_grad_writes_into_the_input(self, dtype):
        x = _randn(5000, dtype=dtype)
        expected = DF.apply_mask(x, _mask_of(x, 0.3), 0.3)
        y = x.clone()
        out = _dropout(y, 0.3, inplace=True)
        assert out is y and torch.equal(y, expected)

    def test_inplace_on_a_non_leaf_with_grad(self):
        w = _randn(1000).requires_grad_()
        h = w * 1.0
        out = _dropout(h, 0.3, inplace=True)
        out.sum().backward()
        assert out is h
        assert torch.equal(w.grad, DF.apply_mask(torch.ones_like(w), _mask_of(w, 0.3), 0.3))

    @pytest.mark.parametrize("save_bits", SAVES)
    def test_gradcheck_and_gradgradcheck(self, save_bits):
        x = _randn(2, 3, dtype=torch.float64).requires_grad_()
        fn = lambda t: _dropout(t, 0.4, save_bits)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))

    def test_saved_for_backward_bytes(self):
        # bits: 1 bit per element; seed: nothing per element. The seed itself (one 8-byte device
        # tensor) is a saved tensor, so that saved-tensor hooks (save_on_cpu, checkpoint) see it.
        n = 2**15
        x = _randn(n).requires_grad_()
        bits = _count_saved_bytes(lambda: _dropout(x, 0.5, save_bits=True))
        seed = _count_saved_bytes(lambda: _dropout(x, 0.5, save_bits=False))
        assert (bits - 8, seed) == (n // 8, 8)

    def test_generator_reproduces_and_is_advanced_once(self):
        x = torch.ones(3000, device=DEVICE)
        gen = _gen(4)
        a, b = (
            _triton_dropout(x, 0.5, 2.0, False, gen, True),
            _triton_dropout(x, 0.5, 2.0, False, gen, True),
        )
        assert torch.equal(a, _dropout(x, 0.5, seed=4)) and not torch.equal(a, b)
        expected = _gen(4)
        draws.device_seed(expected, DEVICE)
        draws.device_seed(expected, DEVICE)
        assert torch.equal(gen.get_state(), expected.get_state())


class TestGlueFused:
    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    @pytest.mark.parametrize("save_bits", SAVES)
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_values_and_gradients_equal_the_composition(self, dtype, save_bits, with_bias):
        p, rows, h = 0.25, 70, 37
        x = (_randn(rows, h, dtype=dtype, seed=1) * 10).requires_grad_()
        res = _randn(rows, h, dtype=dtype, seed=2).requires_grad_()
        bias = _randn(h, dtype=dtype, seed=3).requires_grad_() if with_bias else None
        seed = draws.device_seed(_gen(), DEVICE)
        with _ops.using_backend(fc):
            out, _ = _ops.residual.eager(x, bias, res, seed, p, 1 / (1 - p), save_bits)
        grad_out = _randn(rows, h, dtype=dtype, seed=4)
        out.backward(grad_out)
        mask = DF.fast_keep_mask(x, p, int(seed)).to(DEVICE)
        leaves = [t.detach().clone().requires_grad_() for t in (x, res)]
        xb = leaves[0]
        if with_bias:
            leaves.append(bias.detach().clone().requires_grad_())
            xb = xb + leaves[2]
        expected = DF.apply_mask(xb, mask, p) + leaves[1]
        expected.backward(grad_out)
        assert torch.equal(out, expected)
        assert torch.equal(x.grad, leaves[0].grad) and torch.equal(res.grad, leaves[1].grad)
        if with_bias:
            assert torch.equal(bias.grad, leaves[2].grad)


class TestGlueCustomOp:
    def test_opcheck(self):
        seed = draws.device_seed(_gen(), DEVICE)
        for x in (_randn(50, 70).requires_grad_(), _randn(70, 50).t()):
            for save_bits in SAVES:
                args = (x, seed, 0.3, 1 / 0.7, save_bits)
                # the device's backend: Triton on CUDA, numba on CPU
                torch.library.opcheck(torch.ops.dropkit.philox_dropout.default, args)

    def test_torch_compile_fullgraph(self):
        # under torch.compile the path is the custom op (the device's backend): no graph break; the
        # gradient uses the forward's mask.
        def f(t):
            return _triton_dropout(t, 0.5, 2.0, False, None, True) * 3.0

        x = _randn(6000).requires_grad_()
        y = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
        y.sum().backward()
        assert torch.equal(y == 0, x.grad == 0)
        dropped = (y == 0).double().mean().item()
        assert abs(dropped - 0.5) < binomial_tol(0.5, x.numel())


def test_import_dropkit_does_not_import_triton():
    import subprocess
    import sys

    code = "import sys, dropkit, dropkit.functional; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False"], out.stderr


@needs_cuda
class TestCudaDispatch:
    """Through the public ops on CUDA tensors (skipped without a GPU)."""

    @pytest.fixture(autouse=True)
    def _fast(self):
        with dropkit.use_fast_dropout(True, save="bits", min_numel=1):
            yield

    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    @pytest.mark.parametrize("save", ["bits", "seed"])
    def test_dropout_takes_the_triton_path(self, dtype, save):
        x = _randn(33, 517, dtype=dtype).requires_grad_()
        with dropkit.use_fast_dropout(True, save=save, min_numel=1):
            out = DF.dropout(x, 0.3, generator=_gen())
        mask = _mask_of(x, 0.3)
        assert torch.equal(out, DF.apply_mask(x, mask, 0.3))
        out.backward(torch.ones_like(out))
        assert torch.equal(x.grad, DF.apply_mask(torch.ones_like(x), mask, 0.3))

    def test_manual_seed_reproduces(self):
        x = torch.ones(10_000, device="cuda")
        torch.cuda.manual_seed(3)
        a = DF.dropout(x, 0.5)
        torch.cuda.manual_seed(3)
        assert torch.equal(a, DF.dropout(x, 0.5))
        assert not torch.equal(a, DF.dropout(x, 0.5))

    def test_saved_bytes_through_the_public_op(self):
        n = 2**20
        x = torch.randn(n, device="cuda", requires_grad=True)
        with dropkit.use_fast_dropout(True, save="bits"):
            bits = _count_saved_bytes(lambda: DF.dropout(x, 0.5))
        with dropkit.use_fast_dropout(True, save="seed"):
            seed = _count_saved_bytes(lambda: DF.dropout(x, 0.5))
        assert (bits - 8, seed) == (n // 8, 8)

    def test_switch_off_and_min_numel_take_the_plain_path(self):
        x = torch.ones(5000, device="cuda")
        plain = DF.sample_mask(x.shape, 0.5, device="cuda", generator=_gen(3))
        with dropkit.use_fast_dropout(False):
            assert torch.equal(DF.dropout(x, 0.5, generator=_gen(3)) != 0, plain)
        with dropkit.use_fast_dropout(True, min_numel=5001):
            assert torch.equal(DF.dropout(x, 0.5, generator=_gen(3)) != 0, plain)

    @pytest.mark.parametrize("dtype", ALL_DTYPES)
    def test_fused_ops_equal_the_composition(self, dtype):
        x, res = _randn(64, 96, dtype=dtype, seed=1), _randn(64, 96, dtype=dtype, seed=2)
        bias = _randn(96, dtype=dtype, seed=3)
        mask = _mask_of(x, 0.1)
        out = DF.dropout_add(x, res, 0.1, generator=_gen())
        assert torch.equal(out, DF.apply_mask(x, mask, 0.1) + res)
        out = DF.bias_dropout_add(x, bias, res, 0.1, generator=_gen())
        assert torch.equal(out, DF.apply_mask(x + bias, mask, 0.1) + res)
        # a broadcast residual takes the composition, with the same mask
        out = DF.dropout_add(x, res[:1], 0.1, generator=_gen())
        assert torch.equal(out, DF.apply_mask(x, mask, 0.1) + res[:1])

    def test_torch_compile_fullgraph(self):
        def f(t):
            return DF.dropout(t, 0.5) * 3.0

        x = torch.randn(2**16, device="cuda", requires_grad=True)
        y = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
        y.sum().backward()
        assert torch.equal(y == 0, x.grad == 0)
