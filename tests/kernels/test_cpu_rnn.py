"""The LSTM step kernels (kernels/cpu_rnn.py): their float32 sigmoid and tanh against float64 over
every exponent in range, and one step forward and backward against torch's operators and autograd,
with and without a recurrent mask, on one thread and on torch's team (the same values).

The whole recurrence against the step-by-step loop is tests/functional/test_fused_rnn.py.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

from dropkit.kernels import cpu_rnn  # noqa: E402

F32_EPS = torch.finfo(torch.float32).eps  # 2**-23


def _float32_grid() -> torch.Tensor:
    # 512 random mantissas at every binary exponent from 2**-40 to 2**7 (|x| < 256), both signs,
    # and the values where the formulas switch or saturate
    g = torch.Generator().manual_seed(0)
    mant = 1 + torch.rand(48, 512, generator=g, dtype=torch.float64)
    scale = 2.0 ** torch.arange(-40, 8, dtype=torch.float64)
    x = (mant * scale[:, None]).flatten()
    edges = torch.tensor([0.0, 0.625, 87.0, 87.5, 88.0, 1e4, float("inf")], dtype=torch.float64)
    x = torch.cat([x, edges, torch.nextafter(edges, torch.zeros(()).double())])
    return torch.cat([x, -x]).float()


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_float32_functions_are_within_two_ulp(name):
    x = _float32_grid()
    got = getattr(cpu_rnn, name)(x).double()
    want = getattr(torch, name)(x.double())  # float64: exact to 1e-16 relative here
    # 2.5 ulp of the result, or 1e-37 absolute where sigmoid saturates below float32's normals
    bound = torch.maximum(2.5 * F32_EPS * want.abs(), torch.full_like(want, 1e-37))
    err = (got - want).abs()
    assert (err <= bound).all(), f"worst at x={x[(err / bound).argmax()].item()}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_nan_stays_nan_and_infinities_saturate(name, dtype):
    x = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
    got = getattr(cpu_rnn, name)(x)
    assert got[0].isnan()
    lo = 0.0 if name == "sigmoid" else -1.0
    torch.testing.assert_close(got[1:], torch.tensor([1.0, lo], dtype=dtype), atol=1e-37, rtol=0)


def test_float64_functions_are_torchs_within_4_ulp():
    x = torch.linspace(-40, 40, 100_001, dtype=torch.float64)
    for name in ("sigmoid", "tanh"):
        got, want = getattr(cpu_rnn, name)(x), getattr(torch, name)(x)
        torch.testing.assert_close(
            got, want, rtol=4 * 2**-52, atol=1e-300
        )  # two libms, ~1 ulp each


# ---- one step --------------------------------------------------------------------------------------

N, H = 7, 13  # odd sizes: the vector loops' remainders run too


def _inputs(dtype, masked):
    # pre: the step's pre-activations; the forward kernel gets them as (xg + bias) + product
    g = torch.Generator().manual_seed(3)
    pre = torch.randn(N, 4 * H, generator=g, dtype=dtype) * 3
    c = torch.randn(N, H, generator=g, dtype=dtype)
    mult = None
    if masked:
        mult = (torch.rand(N, H, generator=g, dtype=dtype) >= 0.3).to(dtype) / 0.7
    return pre, c, mult


def _split(pre):
    # (xg, bias, product) whose sum (xg + bias) + product is pre, up to rounding: the kernel's
    # three operands
    g = torch.Generator().manual_seed(5)
    xg = torch.randn(pre.shape, generator=g, dtype=pre.dtype)
    bias = torch.randn(pre.shape[1], generator=g, dtype=pre.dtype)
    return xg, bias, pre - (xg + bias)


def _torch_step(pre, c, mult):
    # the step as torch's operators compute it (the loop of ops/rnn.py)
    i, f, g, o = pre.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c_new = f * c + i * g
    h = o * c_new.tanh()
    return torch.cat([i, f, g, o], 1), c_new, c_new.tanh(), h, h if mult is None else h * mult


def _tol(dtype):
    # float32: the kernels' functions (2.5 ulp) against torch's, through a few roundings
    if dtype == torch.float32:
        return dict(rtol=8 * F32_EPS, atol=8 * F32_EPS)
    return dict(rtol=8 * 2**-52, atol=8 * 2**-52)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_step_is_torchs(dtype, masked, threads, monkeypatch):
    monkeypatch.setattr(cpu_rnn, "MIN_PER_THREAD", 1)  # split even these few rows
    pre, c, mult = _inputs(dtype, masked)
    xg, bias, prod = _split(pre)
    want = _torch_step((xg + bias) + prod, c, mult)  # the kernel's sum, rounded as it rounds it
    gates, c_new, tanh_c, out, h_next = (torch.full_like(t, float("nan")) for t in want)
    args = (prod, xg, bias, c, c_new, gates, tanh_c, out)
    cpu_rnn.lstm_step_forward(*args, h_next, mult, threads=threads)
    for got, w in zip((gates, c_new, tanh_c, out, h_next), want, strict=True):
        torch.testing.assert_close(got, w, **_tol(dtype))
    # the last step writes no next input
    h_next.fill_(7.0)
    cpu_rnn.lstm_step_forward(*args, None, mult, threads=threads)
    assert (h_next == 7.0).all()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_step_is_autograds(dtype, masked, threads, monkeypatch):
    monkeypatch.setattr(cpu_rnn, "MIN_PER_THREAD", 1)
    pre, c, mult = _inputs(dtype, masked)
    g = torch.Generator().manual_seed(4)
    d_out, d_in, d_cnew = (torch.randn(N, H, generator=g, dtype=dtype) for _ in range(3))
    # autograd: h's gradient is d_out + d_in * mult (mult only on the path into the next step),
    # c_new's is d_cnew from the next step
    pre_, c_ = pre.clone().requires_grad_(), c.clone().requires_grad_()
    _, c_new, _, h, _ = _torch_step(pre_, c_, mult)
    d_h = d_out + (d_in if mult is None else d_in * mult)
    want_pre, want_c = torch.autograd.grad((c_new, h), (pre_, c_), (d_cnew, d_h))

    with torch.no_grad():
        gates, c_next, tanh_c, out, _ = _torch_step(pre, c, mult)
    dc = d_cnew.clone()
    d_pre = torch.full_like(pre, float("nan"))
    cpu_rnn.lstm_step_backward(gates, c, tanh_c, d_out, d_in, mult, dc, d_pre, threads=threads)
    torch.testing.assert_close(d_pre, want_pre, **_tol(dtype))
    torch.testing.assert_close(dc, want_c, **_tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_threads_do_not_change_the_values(dtype, monkeypatch):
    monkeypatch.setattr(cpu_rnn, "MIN_PER_THREAD", 1)
    pre, c, mult = _inputs(dtype, True)
    results = []
    for threads in (1, 2, 3):
        bufs = [torch.empty_like(t) for t in (c, pre, c, c, c)]
        c_new, gates, tanh_c, out, h_next = bufs
        xg, bias, prod = _split(pre)
        args = (prod, xg, bias, c, c_new, gates, tanh_c, out, h_next, mult)
        cpu_rnn.lstm_step_forward(*args, threads=threads)
        results.append(torch.cat([b.flatten() for b in bufs]))
    assert all(torch.equal(results[0], r) for r in results[1:])
