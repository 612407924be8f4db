"""The family kernels (kernels/cpu_family.py) and the fast paths of DropBlock, alpha, feature-alpha and
Gaussian dropout that use them: exact parity with the NumPy reference given each kernel's mask or
noise, the draws' statistics (binomial tolerances, see tests/conftest.py), and independence from the
thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dropkit
import dropkit.functional as DF
from dropkit import reference as ref
from dropkit.functional.alpha_dropout import ALPHA_PRIME, alpha_affine
from dropkit.kernels import cpu, cpu_family
from dropkit.ops import family as _fast_family
from tests.conftest import Z, binomial_tol

pytest.importorskip("numba")


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _seed_grid(shape, block, share, gamma, seed):
    # the kernel's contract: corners are the positions dropout's kernel drops for p = gamma
    grid = (
        shape[0],
        1 if share else shape[1],
        *(s - b + 1 for s, b in zip(shape[2:], block, strict=True)),
    )
    return ~cpu.keep_mask(int(np.prod(grid)), gamma, seed).reshape(grid)


# ---- DropBlock ------------------------------------------------------------------------------------

DB_CASES = [
    ((3, 5, 33, 31), (7, 7), False),
    ((3, 5, 33, 31), (3, 5), True),
    ((2, 3, 9, 10, 11), (2, 3, 4), False),
    ((2, 3, 9, 10, 11), (3, 3, 3), True),
]


@pytest.mark.parametrize("shape, block, share", DB_CASES)
def test_dropblock_mask_is_the_reference_painting_of_the_philox_corners(shape, block, share):
    p, seed = 0.3, 123456789
    mask = DF.fast_dropblock_mask(shape, p, block, seed, share_channels=share)
    gamma = DF.dropblock_gamma(p, shape[2:], block)
    expected = ref.dropblock_mask(_seed_grid(shape, block, share, gamma, seed), block)
    np.testing.assert_array_equal(mask.numpy(), expected)
    keep, kept = cpu_family.dropblock_keep(
        int(np.prod(mask.shape[:2])), shape[2:], block, gamma, seed
    )
    assert kept == int(keep.sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, block, share", DB_CASES)
def test_dropblock_fast_path_matches_the_reference_given_its_mask(dtype, shape, block, share):
    op = DF.dropblock2d if len(shape) == 4 else DF.dropblock3d
    x = torch.randn(shape, dtype=dtype, generator=_seeded(1), requires_grad=True)
    assert _fast_family.applies(x)
    out = op(x, 0.25, block_size=block, share_channels=share, generator=_seeded(2))
    seed = DF.draw_seed(_seeded(2))
    mask = DF.fast_dropblock_mask(shape, 0.25, block, seed, share_channels=share)
    g = torch.randn(shape, dtype=dtype, generator=_seeded(3))
    out.backward(g)
    m = mask.expand(shape).numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.dropblock_forward(x.detach().numpy(), m)
    )
    np.testing.assert_array_equal(x.grad.numpy(), ref.dropblock_backward(g.numpy(), m))
    torch.testing.assert_close(out, DF.apply_dropblock(x, mask), rtol=0, atol=0)


def test_dropblock_fast_path_double_backward_inplace_and_switch():
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    seed = 99
    gamma = DF.dropblock_gamma(0.3, (6, 6), (3, 3))
    keep, s = _fast_family.dropblock_keep(x.shape, gamma, (3, 3), False, seed)
    assert torch.autograd.gradgradcheck(
        lambda t: _fast_family.byte_mask.function.apply(t, keep, s), x
    )
    y = torch.randn(4, 8, 16, 16)
    expected = DF.dropblock2d(y, 0.2, block_size=3, generator=_seeded(4))
    assert DF.dropblock2d(y, 0.2, inplace=True, block_size=3, generator=_seeded(4)) is y
    assert torch.equal(y, expected)
    # the switch off: torch's own seeds, as before
    with dropkit.use_fast_dropout(False):
        plain = DF.dropblock2d(y, 0.2, block_size=3, generator=_seeded(5))
    seeds = DF.dropblock_seeds(y.shape, 0.2, 3, generator=_seeded(5))
    assert torch.equal(plain, DF.apply_dropblock(y, DF.dropblock_mask(seeds, 3)))


def test_dropblock_corners_are_bernoulli_gamma():
    # block 1: the dropped units are the corners themselves
    p, shape = 0.2, (50, 20, 30, 30)
    mask = DF.fast_dropblock_mask(shape, p, 1, 2024)
    assert abs((~mask).double().mean().item() - p) < binomial_tol(p, mask.numel())
    # and a 7x7 block covers (about) 49 corners' worth: the exact expectation per unit, averaged
    mask7 = DF.fast_dropblock_mask(shape, 0.1, 7, 2025)
    gamma = DF.dropblock_gamma(0.1, (30, 30), (7, 7))
    cover = np.minimum(np.arange(30), 23) - np.maximum(0, np.arange(30) - 6) + 1  # corners per axis
    expected = (1 - (1 - gamma) ** np.outer(cover, cover)).mean()
    per_map = (~mask7).double().flatten(2).mean(-1).flatten()
    tol = 5 * per_map.std().item() / per_map.numel() ** 0.5
    assert abs(per_map.mean().item() - expected) < tol


def test_masks_do_not_depend_on_the_thread_count():
    x = torch.randn(64, 4096)
    old = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(
                (
                    DF.fast_dropblock_mask((8, 16, 40, 40), 0.1, 7, 5),
                    DF.alpha_dropout(x, 0.2, generator=_seeded(6)),
                )
            )
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("chunks", [1, 3], ids=["even", "uneven"])
def test_family_kernels_do_not_depend_on_the_thread_count(monkeypatch, chunks):
    # the kernels on the launcher's threads (above PARALLEL_MIN_NUMEL), in chunks of whole blocks
    # taken in turn: DropBlock's painting (threads writing zeros into each other's rows), the byte
    # mask applied per channel and shared, alpha dropout's forward and mask, and its backward
    monkeypatch.setattr(cpu, "_CHUNKS_PER_THREAD", chunks)
    x = torch.randn(8, 16, 40, 40, generator=_seeded(21))
    gamma = DF.dropblock_gamma(0.2, (40, 40), (7, 7))
    assert 8 * 16 * 34 * 34 >= cpu.PARALLEL_MIN_NUMEL

    def run(threads):
        keep, kept = cpu_family.dropblock_keep(8 * 16, (40, 40), (7, 7), gamma, 77, threads)
        shared, _ = cpu_family.dropblock_keep(8, (40, 40), (7, 7), gamma, 78, threads)
        out = cpu_family.apply_byte_mask(x, keep.view(8, 16, 40, 40), 1.25, threads)
        out_shared = cpu_family.apply_byte_mask(x, shared.view(8, 1, 40, 40), 1.25, threads)
        y, bits = cpu_family.alpha_forward(x.view(-1), 99, 0.2, 1.5, 0.25, -0.75, threads)
        gin = cpu_family.alpha_backward(x.view(-1), bits, 1.5, threads)
        return keep, torch.tensor(kept), shared, out, out_shared, y, bits, gin

    one = run(1)
    keep, kept, shared, out, out_shared, *_ = one
    assert int(kept) == int(keep.sum())
    s = torch.tensor(1.25)
    assert torch.equal(out, x * (keep.view(8, 16, 40, 40) * s))
    assert torch.equal(out_shared, x * (shared.view(8, 1, 40, 40) * s))
    for a, b in zip(run(2), one, strict=True):
        assert torch.equal(a, b)


# ---- alpha, feature alpha, Gaussian ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [_fast_family.NOISE_MIN_NUMEL, 3 * cpu.BLOCK * 11 + 5])
def test_alpha_dropout_is_the_plain_map_of_dropouts_mask(dtype, n):
    n = max(n, _fast_family.NOISE_MIN_NUMEL)
    x = torch.randn(n, dtype=dtype, generator=_seeded(7), requires_grad=True)
    out = DF.alpha_dropout(x, 0.3, generator=_seeded(8))
    mask = DF.fast_keep_mask(x, 0.3, DF.draw_seed(_seeded(8)))
    g = torch.randn(n, dtype=dtype, generator=_seeded(9))
    out.backward(g)
    m = mask.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.alpha_dropout_forward(x.detach().numpy(), m, 0.3)
    )
    np.testing.assert_array_equal(x.grad.numpy(), ref.alpha_dropout_backward(g.numpy(), m, 0.3))
    torch.testing.assert_close(out, DF.apply_alpha_mask(x, mask, 0.3), rtol=0, atol=0)


def test_alpha_fast_double_backward_and_small_tensors_keep_torchs_mask():
    x = torch.randn(40, dtype=torch.float64, requires_grad=True)
    a, b = alpha_affine(0.4)
    abc = (a, b, a * ALPHA_PRIME + b)
    alpha = _fast_family.alpha_dropout_op.function
    assert torch.autograd.gradgradcheck(lambda t: alpha.apply(t, 77, 0.4, *abc)[0], x)
    y = torch.randn(_fast_family.NOISE_MIN_NUMEL - 1)
    torch.manual_seed(3)
    theirs = F.alpha_dropout(y, 0.4, True)
    torch.manual_seed(3)
    torch.testing.assert_close(DF.alpha_dropout(y, 0.4), theirs)  # torch's rounding differs


def test_feature_alpha_fast_path_applies_torchs_mask():
    x = torch.randn(16, 32, 8, 8, requires_grad=True)
    assert _fast_family.applies(x)
    torch.manual_seed(3)
    theirs = F.feature_alpha_dropout(x, 0.4, True)
    torch.manual_seed(3)
    ours = DF.feature_alpha_dropout(x, 0.4)
    torch.testing.assert_close(ours, theirs)
    mask = DF.sample_mask((16, 32, 1, 1), 0.4, generator=_seeded(10))
    out = DF.feature_alpha_dropout(x, 0.4, generator=_seeded(10))
    torch.testing.assert_close(out, DF.apply_alpha_mask(x, mask, 0.4), rtol=0, atol=0)
    g = torch.randn_like(x)
    out.backward(g)
    a, _ = DF.alpha_affine(0.4)
    torch.testing.assert_close(x.grad, g * (mask * torch.tensor(a, dtype=x.dtype)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_fast_path_applies_torchs_noise(dtype):
    x = torch.randn(64, 100, dtype=dtype, requires_grad=True)
    assert _fast_family.applies(x)
    out = DF.gaussian_dropout(x, 0.3, generator=_seeded(11))
    noise = DF.gaussian_noise(x.shape, 0.3, dtype=dtype, generator=_seeded(11))
    g = torch.randn_like(x)
    out.backward(g)
    n = noise.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.gaussian_dropout_forward(x.detach().numpy(), n)
    )
    np.testing.assert_array_equal(x.grad.numpy(), ref.gaussian_dropout_backward(g.numpy(), n))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_fast_path_is_the_reference_given_its_noise(dtype):
    n = _fast_family.NOISE_MIN_NUMEL + 3 * cpu.BLOCK + 9
    x = torch.randn(n, dtype=dtype, generator=_seeded(13), requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = DF.gaussian_dropout(x, 0.3, generator=_seeded(14))
    assert saved == []  # backward regenerates the noise from the seed: 0 bytes per element
    noise = DF.fast_gaussian_noise(x, 0.3, DF.draw_seed(_seeded(14)))
    assert noise.dtype == dtype
    g = torch.randn(n, dtype=dtype, generator=_seeded(15))
    out.backward(g)
    nz = noise.numpy()
    np.testing.assert_array_equal(
        out.detach().numpy(), ref.gaussian_dropout_forward(x.detach().numpy(), nz)
    )
    np.testing.assert_array_equal(x.grad.numpy(), ref.gaussian_dropout_backward(g.numpy(), nz))
    torch.testing.assert_close(out, DF.apply_noise(x, noise), rtol=0, atol=0)
    y = x.detach().clone()
    assert DF.gaussian_dropout(y, 0.3, inplace=True, generator=_seeded(14)) is y
    torch.testing.assert_close(y, out.detach(), rtol=0, atol=0)


def test_gaussian_fast_double_backward_and_checkpoint():
    x = torch.randn(40, dtype=torch.float64, requires_grad=True)
    gaussian = _fast_family.gaussian_mul.function
    assert torch.autograd.gradgradcheck(lambda t: gaussian.apply(t, 77, 0.5), x)
    w = torch.randn(_fast_family.NOISE_MIN_NUMEL, requires_grad=True)

    def f(t):
        return (DF.gaussian_dropout(t * 2, 0.4) ** 2).sum()

    torch.manual_seed(5)
    f(w).backward()
    expected, w.grad = w.grad, None
    torch.manual_seed(5)
    torch.utils.checkpoint.checkpoint(f, w, use_reentrant=False).backward()
    torch.testing.assert_close(w.grad, expected, rtol=0, atol=0)


def test_fast_gaussian_noise_errors():
    with pytest.raises(TypeError, match="fast_gaussian_noise: dtype must be torch.float32"):
        DF.fast_gaussian_noise((3,), 0.5, 1, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"fast_gaussian_noise: seed must be an int"):
        DF.fast_gaussian_noise((3,), 0.5, -1)
    with pytest.raises(ValueError, match=r"fast_gaussian_noise: dropout probability"):
        DF.fast_gaussian_noise((3,), 1.0, 1)


# ---- Gaussian dropout's Philox normals (Box-Muller in the kernel) --------------------------------

_STD = 0.6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, cpu.BLOCK // 4 + 3, 3 * cpu.BLOCK + 77])
def test_gaussian_noise_is_the_reference_normals(dtype, n):
    # The kernel's own log/sqrt/sin/cos against NumPy's on the same words: a few roundings of
    # dtype (the polynomials' truncation errors are far below eps), scaled by the noise's size.
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    seed = 2**40 + 12345
    noise = cpu_family.gaussian_noise(n, seed, _STD, dtype).numpy().astype(np.float64)
    z = ref.philox_normal(n, seed, np_dtype)
    expected = 1.0 + float(np_dtype(_STD)) * z
    eps = float(np.finfo(np_dtype).eps)
    np.testing.assert_array_less(np.abs(noise - expected), 16 * eps * (1.0 + _STD * np.abs(z)))
    # element i's noise depends on (seed, i) only: a prefix of a longer draw
    longer = cpu_family.gaussian_noise(n + cpu.BLOCK, seed, _STD, dtype).numpy()
    np.testing.assert_array_equal(longer[:n], noise.astype(np_dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [cpu.BLOCK - 1, 2 * cpu.BLOCK + 5])
def test_gaussian_mul_is_the_product_with_its_noise(dtype, n):
    x = torch.randn(n, dtype=dtype, generator=_seeded(12))
    x[:5] = torch.tensor([0.0, -0.0, float("inf"), float("nan"), 1e30], dtype=dtype)
    noise = cpu_family.gaussian_noise(n, 99, _STD, dtype)
    out = cpu_family.gaussian_mul(x, 99, _STD)
    np.testing.assert_array_equal(
        out.numpy(), ref.gaussian_dropout_forward(x.numpy(), noise.numpy())
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_kernel_normals_statistics(dtype):
    # n standard normals (fixed seed): the mean within Z standard errors (1/sqrt(n)), the variance
    # within Z of its standard error sqrt(2/(n-1)), the two members of a Box-Muller pair
    # uncorrelated (standard error 1/sqrt(n/2)), the fraction beyond 3 sigma within the binomial
    # tolerance, and the Kolmogorov-Smirnov distance to N(0, 1) below its 1e-6 critical value
    # sqrt(ln(2/alpha)/2)/sqrt(n).
    n = 1 << 20
    z = (cpu_family.gaussian_noise(n, 31337, 1.0, dtype).double() - 1.0).numpy()
    assert abs(z.mean()) < Z * (1 / np.sqrt(n))
    assert abs(z.var() - 1.0) < Z * np.sqrt(2 / (n - 1))
    q = cpu.BLOCK // 4
    blocks = z[: n // cpu.BLOCK * cpu.BLOCK].reshape(-1, 4, q)
    first, second = blocks[:, 0::2].reshape(-1), blocks[:, 1::2].reshape(-1)
    assert abs(np.mean(first * second)) < Z / np.sqrt(first.size)
    tail = 2 * 0.0013498980316301  # P(|z| > 3)
    assert abs(np.mean(np.abs(z) > 3) - tail) < binomial_tol(tail, n)
    cdf = torch.special.ndtr(torch.from_numpy(np.sort(z))).numpy()
    i = np.arange(1, n + 1)
    ks = max((i / n - cdf).max(), (cdf - (i - 1) / n).max())
    assert ks < np.sqrt(np.log(2 / 1e-6) / 2) / np.sqrt(n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [5, cpu.BLOCK - 1, 2 * cpu.BLOCK + 5])
def test_gaussian_mul_keep_writes_the_noise_of_the_seed(dtype, n):
    # keep=True: the same product, and the noise gaussian_noise gives (full blocks and the tail)
    x = torch.randn(n, dtype=dtype, generator=_seeded(13))
    out, noise = cpu_family.gaussian_mul(x, 77, _STD, keep=True)
    assert torch.equal(noise, cpu_family.gaussian_noise(n, 77, _STD, dtype))
    assert torch.equal(out, cpu_family.gaussian_mul(x, 77, _STD))


@pytest.mark.parametrize("keep", [False, True])
def test_gaussian_mul_does_not_depend_on_the_thread_count(monkeypatch, keep):
    x = torch.randn(5 * cpu.BLOCK * 4 + 3, generator=_seeded(16))  # above PARALLEL_MIN_NUMEL

    def run(threads):
        got = cpu_family.gaussian_mul(x, 4242, _STD, threads=threads, keep=keep)
        return torch.stack(got) if keep else got  # (out, noise) when keep

    one = run(1)
    assert torch.equal(run(2), one)
    monkeypatch.setattr(cpu, "_CHUNKS_PER_THREAD", 3)  # uneven chunks taken in turn
    assert torch.equal(run(2), one)


def test_gaussian_noise_depends_on_the_seed():
    a, b = (cpu_family.gaussian_noise(1000, s, 1.0, torch.float32) for s in (1, 2))
    assert torch.equal(a, cpu_family.gaussian_noise(1000, 1, 1.0, torch.float32))
    assert not torch.equal(a, b)


# ---- DropConnect, one mask per sample ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_per_sample_dropconnect_uses_dropouts_mask_on_the_weight_copies(kind):
    n = 32
    if kind == "linear":
        x = torch.randn(n, 64, dtype=torch.float64, generator=_seeded(12))
        w = torch.randn(48, 64, dtype=torch.float64, generator=_seeded(13), requires_grad=True)
        op = lambda m=None, **kw: (  # noqa: E731
            DF.dropconnect_linear(x, w, None, 0.3, per_sample=True, **kw)
            if m is None
            else DF.apply_dropconnect_linear(x, w, None, m, 0.3)
        )
    else:
        x = torch.randn(n, 8, 6, 6, dtype=torch.float64, generator=_seeded(12))
        w = torch.randn(16, 8, 3, 3, dtype=torch.float64, generator=_seeded(13), requires_grad=True)
        op = lambda m=None, **kw: (  # noqa: E731
            DF.dropconnect_conv(x, w, None, 0.3, padding=1, per_sample=True, **kw)
            if m is None
            else DF.apply_dropconnect_conv(x, w, None, m, 0.3, padding=1)
        )
    assert n * w.numel() >= _fast_family.NOISE_MIN_NUMEL
    out = op(generator=_seeded(14))
    mask = DF.fast_keep_mask((n, *w.shape), 0.3, DF.draw_seed(_seeded(14)))
    expected = op(mask)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), w)
    (expected_grad,) = torch.autograd.grad(expected.sum(), w)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
