"""Gaussian dropout: multiply by noise drawn from N(1, p/(1-p)) instead of a scaled Bernoulli.

Srivastava et al. 2014, section 10 ("Multiplicative Gaussian Noise"): inverted Bernoulli dropout
multiplies each unit by a variable of mean 1 and variance p/(1-p); Gaussian noise with the same two
moments works as well or better and is never exactly zero. Eval is the identity (the noise has mean 1).

Sampling is separate from applying: :func:`gaussian_noise` draws the multiplier, :func:`apply_noise`
multiplies by it.

Fast path (a contiguous CPU float32/float64 tensor of at least ``dropkit.ops.family.NOISE_MIN_NUMEL``
elements, the switch of :func:`dropkit.set_fast_dropout` on; under torch.compile and torch.export
too, through the op ``dropkit::gaussian_mul``): the noise comes from the Philox
stream of dropout's kernels, keyed by the seed :func:`dropkit.functional.draw_seed` gives, turned
into standard normals by Box-Muller inside the numba kernel (``kernels/cpu_family.py``) and applied in
the same pass. Backward regenerates it from the seed: nothing per element is saved. Its values
differ from torch's normal draws under the same seed; :func:`fast_gaussian_noise` gives the noise of
a seed, and given that noise the output is the plain path's (``input * noise``), bit for bit.
Smaller tensors (from dropout's ``min_numel``) keep torch's normal draws, so that they get the noise
:func:`gaussian_noise` draws under the same seed, as before; one numba pass forms and applies it in
eager mode (graphs run the plain path, which computes the same values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_noise_args,
    _check_p,
)
from dropkit.ops import family as _fast_family
from dropkit.ops import sharding as _sharding
from dropkit.random import draws as _random

__all__ = ["gaussian_noise", "apply_noise", "gaussian_dropout", "fast_gaussian_noise"]


def _noise_std(p: float) -> float:
    return math.sqrt(p / (1.0 - p))


def gaussian_noise(
    shape: Sequence[int],
    p: float,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiplicative noise ``1 + sqrt(p/(1-p)) * eps``, ``eps ~ N(0, 1)``, of the given shape/dtype.

    ``p`` must be in [0, 1): the variance p/(1-p) is infinite at p=1.
    """
    op = "gaussian_noise"
    p = _check_p(p, op, allow_one=False)
    if not dtype.is_floating_point:
        raise TypeError(f"{op}: dtype must be a floating-point dtype, but got {dtype}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    _check_generator(generator, device, op)
    eps = _random.randn(shape, dtype, device, generator)
    # 1 + std * eps, with std rounded once to the dtype (the reference does the same).
    return eps.mul_(torch.tensor(_noise_std(p), dtype=dtype, device=device)).add_(1.0)


@_sharding.rule()
def apply_noise(input: torch.Tensor, noise: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``input * noise`` (noise broadcast to the input). The gradient is ``grad_out * noise``."""
    op = "apply_noise"
    _check_float_tensor(input, op)
    _check_float_tensor(noise, op, "noise")
    _check_bool(inplace, "inplace", op)
    if noise.dtype != input.dtype:
        raise TypeError(f"{op}: noise has dtype {noise.dtype} but the input has {input.dtype}")
    try:
        broadcast = torch.broadcast_shapes(noise.shape, input.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != input.shape:
        raise ValueError(
            f"{op}: noise of shape {tuple(noise.shape)} does not broadcast to the input's shape "
            f"{tuple(input.shape)}"
        )
    return input.mul_(noise) if inplace else input * noise


@_sharding.rule()
def gaussian_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiply each element by independent noise from N(1, p/(1-p)) in training; identity in eval.

    ``p`` plays the role it has in Bernoulli dropout (the noise has the same mean and variance as
    inverted dropout's multiplier), so swapping ``Dropout(p)`` for ``GaussianDropout(p)`` keeps the
    regularisation strength comparable.

    Paper: Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
    JMLR 2014, section 10.

    Args:
        input: floating-point tensor of any shape.
        p: equivalent drop probability, in [0, 1). Default: 0.5
        training: apply noise if True. Default: True
        inplace: do the operation in place. Default: False
        generator: optional ``torch.Generator`` for the noise.

    Example::

        >>> y = dropkit.functional.gaussian_dropout(torch.randn(4, 8), p=0.2)
    """
    op = "gaussian_dropout"
    p = _check_noise_args(input, p, training, inplace, generator, op)
    if not training:
        return input
    if p == 0.0:
        return input if inplace else input.clone()
    if (
        input.numel() >= _fast_family.NOISE_MIN_NUMEL
        and input.is_contiguous()
        and _fast_family.applies(input)
    ):
        # Philox normals drawn and applied in the kernel (kernels/cpu_family.py), in graphs through
        # dropkit::gaussian_mul with the same seed
        out = _fast_family.gaussian(input, _noise_std(p), generator)
        return input.copy_(out) if inplace else out
    if input.is_contiguous() and _fast_family.applies(input) and not _fast_family.graph(input):
        # smaller tensors: torch's own normal draws (the plain path's noise), formed into the noise
        # and applied in one pass
        out = _fast_family.gaussian_torch_noise(input, _noise_std(p), generator)
        return input.copy_(out) if inplace else out
    noise = gaussian_noise(
        input.shape, p, dtype=input.dtype, device=input.device, generator=generator
    )
    return input.mul_(noise) if inplace else input * noise


def fast_gaussian_noise(
    shape_or_like: torch.Tensor | Sequence[int],
    p: float,
    seed: int,
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The multiplicative noise the fast path of :func:`gaussian_dropout` draws for ``seed``.

    ``1 + sqrt(p/(1-p)) * z`` in ``dtype`` (float32 or float64; default: the tensor's dtype, or
    float32 given a shape), ``z`` the kernel's Box-Muller normals of the Philox stream of ``seed``
    (:func:`dropkit.reference.philox_normal` gives them in NumPy), for a contiguous tensor of that
    shape. With :func:`dropkit.functional.draw_seed` on an identically seeded generator::

        >>> out = gaussian_dropout(x, 0.3, generator=torch.Generator().manual_seed(0))
        >>> seed = draw_seed(torch.Generator().manual_seed(0))
        >>> noise = fast_gaussian_noise(x, 0.3, seed)  # out == apply_noise(x, noise)
    """
    op = "fast_gaussian_noise"
    like = shape_or_like if isinstance(shape_or_like, torch.Tensor) else None
    shape = torch.Size(like.shape if like is not None else shape_or_like)
    if dtype is None:
        dtype = like.dtype if like is not None else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: dtype must be torch.float32 or torch.float64, but got {dtype}")
    p = _check_p(p, op, allow_one=False)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be an int in [0, 2**64), but got {seed!r}")
    kernels = _fast_family.kernels()
    if kernels is None:
        raise RuntimeError(f"{op}: numba could not be imported; the fast path is off")
    return kernels.gaussian_noise(shape.numel(), seed, _noise_std(p), dtype).view(shape)
