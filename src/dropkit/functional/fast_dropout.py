"""The fast path of :func:`dropkit.functional.dropout` on CPU, and the switch that controls it.

``dropout`` calls the fast path by itself when it applies: a CPU tensor of float32, float64, float16 or
bfloat16 with at least ``min_numel`` elements, ``0 < p < 1``, in training. Everything else, and
everything while the switch is off, takes the plain path, which stays the definition of correct.

How it differs from the plain path:

* The mask comes from a counter-based generator (Philox4x32-10, numba kernels in
  :mod:`dropkit.kernels.cpu`), keyed by a 63-bit seed drawn from torch's generator (``generator=`` or
  the global one). ``torch.manual_seed`` and ``generator=`` reproduce runs, but the masks differ from
  the ones ``torch.nn.functional.dropout`` (and the plain path) draw from the same seed. The mask of
  element ``i`` (in memory order) depends only on the seed and ``i``: not on the number of threads.
  :func:`draw_seed` and :func:`fast_keep_mask` give the mask a call used, for tests and debugging.
* Backward keeps either a bit-packed mask (``save="bits"``, 1 bit per element, the default) or nothing
  (``save="seed"``: the mask is regenerated from the seed in backward), where PyTorch's CPU dropout
  keeps a mask of the input's dtype (4 bytes per element for float32).
* Values are identical to the plain path given the same mask: the multiplier is ``s`` or ``0`` in the
  input's dtype and each output is one product (float16/bfloat16 go through float32, where the product
  of two half-precision numbers is exact, then round once). NaN and Inf behave as in the plain path:
  a dropped NaN or Inf gives NaN.

The switch: :func:`set_fast_dropout` (the process default), the :func:`use_fast_dropout` context
manager (the calling thread only), and the environment variables ``DROPKIT_FAST_DROPOUT=0`` (off at
import), ``DROPKIT_FAST_DROPOUT_SAVE`` (``bits`` or ``seed``) and ``DROPKIT_FAST_DROPOUT_MIN_NUMEL``.

This module is the fast path's public face: the switch (implemented in :mod:`dropkit.ops.switch`),
:func:`draw_seed` (:mod:`dropkit.random`) and :func:`fast_keep_mask`. The operator itself
(``dropkit::philox_dropout`` and its rules) and the choice of a backend live in
:mod:`dropkit.ops.dropout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit._validation import _check_p
from dropkit.ops.switch import (
    DEFAULT_MIN_NUMEL,
    SAVE_MODES,
    _from_memory_order,
    _memory_order,
    fast_dropout_enabled,
    set_fast_dropout,
    use_fast_dropout,
)
from dropkit.random import draw_seed

__all__ = [
    "DEFAULT_MIN_NUMEL",
    "SAVE_MODES",
    "draw_seed",
    "fast_dropout_enabled",
    "fast_keep_mask",
    "set_fast_dropout",
    "use_fast_dropout",
]


def fast_keep_mask(
    shape_or_like: torch.Tensor | Sequence[int], p: float, seed: int
) -> torch.Tensor:
    """The keep-mask (bool, True = keep) the fast path draws for ``seed``.

    Given a tensor, the mask has its shape and follows its memory order (a channels_last tensor gets
    the mask of its memory order); given a shape, the mask is that of a contiguous tensor.
    Use with :func:`draw_seed` on an identically seeded generator to get the mask of a call::

        >>> out = dropkit.functional.dropout(x, 0.5, generator=torch.Generator().manual_seed(0))
        >>> seed = draw_seed(torch.Generator().manual_seed(0))
        >>> mask = fast_keep_mask(x, 0.5, seed)  # out == apply_mask(x, mask, 0.5)
    """
    p = _check_p(p, "fast_keep_mask")
    try:
        from dropkit.kernels import cpu as k
    except ImportError as err:
        raise RuntimeError(
            "fast_keep_mask: numba could not be imported; the fast path is off"
        ) from err
    like = shape_or_like if isinstance(shape_or_like, torch.Tensor) else None
    shape = torch.Size(like.shape if like is not None else shape_or_like)
    perm = _memory_order(like) if like is not None else None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"fast_keep_mask: seed must be an int in [0, 2**64), but got {seed!r}")
    if p == 1.0:
        flat = torch.zeros(shape.numel(), dtype=torch.bool)
    else:
        flat = torch.from_numpy(k.keep_mask(shape.numel(), p, seed).copy())
    if perm is None:
        return flat.view(shape)
    permuted = torch.Size(shape[d] for d in perm)
    return _from_memory_order(flat.view(permuted), perm)
