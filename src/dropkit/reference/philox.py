"""NumPy reference for the counter-based generator behind dropkit's fast kernels: Philox4x32-10.

Philox (Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11) maps a
128-bit counter and a 64-bit key to 128 random bits with ten rounds of a multiply-based Feistel
network. It keeps no state, so the random bits of any element can be computed on their own, in any
order, on any thread: the property the kernels need to be identical across thread counts.

This module is written for clarity and is the oracle the numba kernels (``dropkit.kernels``) are
tested against; it is checked itself against the published known-answer vectors.

How a dropout mask is read from the stream (the contract every kernel keeps):

* the 64-bit ``seed`` is the key: ``key = (seed mod 2**32, seed div 2**32)``;
* elements are grouped in blocks of ``BLOCK = 4096`` in memory order; element ``i`` lies in block
  ``b = i // BLOCK`` at offset ``r = i % BLOCK``, and takes 32-bit word ``r // (BLOCK // 4)`` of the
  Philox output for counter ``(b * BLOCK // 4 + r % (BLOCK // 4), 0, 0, 0)`` (low word first; the
  counter fits in the first two words). The words of one counter go to four elements a quarter of a
  block apart so that a kernel writes four unit-stride runs (vectorisable) from each Philox call;
* element ``i`` is dropped when its word ``u`` satisfies ``u < t`` with ``t = round(p * 2**32)``,
  so P(drop) = t / 2**32, within 2**-33 of ``p``.

The mask of element ``i`` therefore depends on ``(seed, i, p)`` only: not on the tensor's size, the
number of threads or how the work is split.

Standard normals (Gaussian dropout's noise, :func:`philox_normal`) come from the same counters by
Box-Muller: words 0 and 1 of counter ``c`` give the normals of its elements with words 0 and 1, words 2
and 3 those with words 2 and 3; of a pair ``(a, b)`` of words, the first element gets
``sqrt(-2 ln u) cos(theta)``, the second ``sqrt(-2 ln u) sin(theta)``, with ``u`` from ``a`` and
``theta`` from ``b`` as :func:`philox_normal` says.
"""

from __future__ import annotations

import numpy as np

from dropkit._validation import _check_p

__all__ = [
    "BLOCK",
    "philox4x32_10",
    "philox_drop_threshold",
    "philox_keep_mask",
    "philox_normal",
]

BLOCK = 4096
_QUARTER = BLOCK // 4

# Multipliers and Weyl key increments from the Random123 paper.
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32 with 10 rounds.

    Args:
        counter: integer array of shape ``(..., 4)``, 32-bit words (word 0 first).
        key: integer array of shape ``(..., 2)`` broadcastable to the counter's batch shape.

    Returns:
        uint32 array of shape ``(..., 4)``.
    """
    c = np.asarray(counter, dtype=np.uint64)
    k = np.asarray(key, dtype=np.uint64)
    if c.shape[-1:] != (4,) or k.shape[-1:] != (2,):
        raise ValueError(
            f"philox4x32_10: counter must have shape (..., 4) and key (..., 2), "
            f"but got {c.shape} and {k.shape}"
        )
    c0, c1, c2, c3 = (c[..., j] & _LO32 for j in range(4))
    k0, k1 = (k[..., j] & _LO32 for j in range(2))
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
        p0, p1 = _M0 * c0, _M1 * c2  # exact: 32 x 32 -> 64 bits
        c0, c1, c2, c3 = (
            (p1 >> _S32) ^ c1 ^ k0,
            p1 & _LO32,
            (p0 >> _S32) ^ c3 ^ k1,
            p0 & _LO32,
        )
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def philox_drop_threshold(p: float) -> int:
    """The integer ``t`` with P(drop) = t / 2**32: element dropped when its word is below ``t``."""
    p = _check_p(p, "philox_drop_threshold")
    return min(int(round(p * 2.0**32)), 2**32)


def philox_keep_mask(numel: int, p: float, seed: int) -> np.ndarray:
    """The keep-mask (True = keep) the fast kernels draw for ``numel`` elements in memory order."""
    if isinstance(numel, bool) or not isinstance(numel, int | np.integer) or numel < 0:
        raise ValueError(f"philox_keep_mask: numel must be a non-negative int, but got {numel!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        raise ValueError(f"philox_keep_mask: seed must be an int in [0, 2**64), but got {seed!r}")
    t = philox_drop_threshold(p)
    i = np.arange(numel, dtype=np.uint64)
    block, r = i // np.uint64(BLOCK), i % np.uint64(BLOCK)
    word = (r // np.uint64(_QUARTER)).astype(np.intp)
    ctr = block * np.uint64(_QUARTER) + r % np.uint64(_QUARTER)
    counter = np.stack([ctr & _LO32, ctr >> _S32, 0 * ctr, 0 * ctr], axis=-1)
    key = np.array([int(seed) & 0xFFFFFFFF, int(seed) >> 32], dtype=np.uint64)
    words = philox4x32_10(counter, key)[np.arange(numel), word]
    return words.astype(np.uint64) >= np.uint64(t) if t < 2**32 else np.zeros(numel, dtype=bool)


def _words(numel: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # The Philox output of each element's counter (numel, 4) and the index of its own word.
    i = np.arange(numel, dtype=np.uint64)
    block, r = i // np.uint64(BLOCK), i % np.uint64(BLOCK)
    word = (r // np.uint64(_QUARTER)).astype(np.intp)
    ctr = block * np.uint64(_QUARTER) + r % np.uint64(_QUARTER)
    counter = np.stack([ctr & _LO32, ctr >> _S32, 0 * ctr, 0 * ctr], axis=-1)
    key = np.array([int(seed) & 0xFFFFFFFF, int(seed) >> 32], dtype=np.uint64)
    return philox4x32_10(counter, key), word


def philox_normal(numel: int, seed: int, dtype=np.float32) -> np.ndarray:
    """The standard normals behind the fast kernels' Gaussian noise, exactly (float64 results).

    For an element with words ``(a, b)`` (see the module's docstring), in the precision the kernel
    uses for ``dtype``:

    * ``u``: float64: ``(a + 1/2) / 2**32``; float32: ``(float32(a >> 1) + 1/4) / 2**31`` rounded
      in float32 (so ``u`` may be 1, where the radius is 0);
    * ``theta = k pi/2 + phi`` or ``k pi/2 - phi`` (octant ``o = b >> 29``: ``k = (o + 1) // 2``,
      minus for odd ``o``) with ``phi = (l + 1/2) / 2**29 * pi/4`` (float64) or
      ``phi = (l // 64 + 1/2) / 2**23 * pi/4`` (float32), where ``l`` is ``b``'s low 29 bits,
      reflected (``2**29 - 1 - l``) for odd ``o``. In float64 this is ``theta = 2 pi (b + 1/2) / 2**32``.

    The kernels evaluate log, sqrt, sin and cos with their own polynomials in ``dtype``; they agree
    with these values to a few units in the last place of ``dtype``.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"philox_normal: dtype must be float32 or float64, but got {dtype}")
    if isinstance(numel, bool) or not isinstance(numel, int | np.integer) or numel < 0:
        raise ValueError(f"philox_normal: numel must be a non-negative int, but got {numel!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
        raise ValueError(f"philox_normal: seed must be an int in [0, 2**64), but got {seed!r}")
    words, word = _words(numel, seed)
    rows = np.arange(numel)
    first = word - word % 2  # the pair's first word
    a = words[rows, first].astype(np.uint64)
    b = words[rows, first + 1].astype(np.uint64)
    if dtype == np.float64:
        u = (a.astype(np.float64) + 0.5) / 2.0**32
    else:
        u32 = (a >> np.uint64(1)).astype(np.int32).astype(np.float32) + np.float32(0.25)
        u = (u32 * np.float32(2.0**-31)).astype(np.float64)
    radius = np.sqrt(-2.0 * np.log(u))
    o = (b >> np.uint64(29)).astype(np.int64)
    low = (b & np.uint64((1 << 29) - 1)).astype(np.int64)
    odd = o % 2 == 1
    low = np.where(odd, (1 << 29) - 1 - low, low)
    if dtype == np.float64:
        phi = (low + 0.5) / 2.0**29 * (np.pi / 4)
    else:
        phi = ((low >> 6) + 0.5) / 2.0**23 * (np.pi / 4)
    k = (o + 1) // 2
    theta = k * (np.pi / 2) + np.where(odd, -phi, phi)
    return radius * np.where(word % 2 == 0, np.cos(theta), np.sin(theta))
