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

This module is the bottom layer of the fast path: the switch, the seeds and the memory-order helpers.
The operator itself (``dropkit::philox_dropout`` and its registrations) and the choice of a backend
(:mod:`dropkit.functional._fast_cpu`, :mod:`dropkit.functional._fast_cuda`) live in
:mod:`dropkit.functional._ops`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from dropkit._validation import _check_bool, _check_generator, _check_p

__all__ = [
    "draw_seed",
    "fast_dropout_enabled",
    "fast_keep_mask",
    "set_fast_dropout",
    "use_fast_dropout",
]

SAVE_MODES = ("bits", "seed")
# Below this many elements the plain path is as fast (see docs/benchmarks.md: the fixed cost of the
# fast path, about 20-30 us per forward+backward, is more than what its generator saves).
DEFAULT_MIN_NUMEL = 4096

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NATIVE = {torch.float32: np.float32, torch.float64: np.float64}


@dataclasses.dataclass
class _Settings:
    enabled: bool
    save: str
    min_numel: int


def _check_save(save: object, op: str) -> str:
    if save not in SAVE_MODES:
        raise ValueError(f"{op}: save must be one of {SAVE_MODES}, but got {save!r}")
    return save  # type: ignore[return-value]


def _check_min_numel(value: object, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: min_numel must be a positive int, but got {value!r}")
    return value


def _settings_from_env() -> _Settings:
    op = "dropkit (environment)"
    enabled = os.environ.get("DROPKIT_FAST_DROPOUT", "1").strip().lower()
    if enabled not in ("0", "1", "false", "true", "off", "on", ""):
        raise ValueError(f"{op}: DROPKIT_FAST_DROPOUT must be 0 or 1, but got {enabled!r}")
    save = _check_save(os.environ.get("DROPKIT_FAST_DROPOUT_SAVE", "bits"), op)
    min_numel = os.environ.get("DROPKIT_FAST_DROPOUT_MIN_NUMEL", str(DEFAULT_MIN_NUMEL))
    try:
        min_numel_int = int(min_numel)
    except ValueError:
        min_numel_int = -1
    return _Settings(
        enabled=enabled not in ("0", "false", "off"),
        save=save,
        min_numel=_check_min_numel(min_numel_int, op),
    )


# The process default, and a per-thread override set by ``use_fast_dropout`` blocks. Readers call
# ``_current()`` (one attribute lookup on a threading.local, about 50 ns).
_default = _settings_from_env()
_local = threading.local()


def _current() -> _Settings:
    """The settings the calling thread sees: its innermost ``use_fast_dropout`` block, else the
    process default."""
    return getattr(_local, "settings", None) or _default


def _updated(base: _Settings, enabled: bool, save: str | None, min_numel: int | None, op: str):
    _check_bool(enabled, "enabled", op)
    return _Settings(
        enabled=enabled,
        save=base.save if save is None else _check_save(save, op),
        min_numel=base.min_numel if min_numel is None else _check_min_numel(min_numel, op),
    )


def set_fast_dropout(
    enabled: bool = True, *, save: str | None = None, min_numel: int | None = None
) -> None:
    """Set the process-wide default of the fast path of ``dropout`` (and ``dropout_add``,
    ``bias_dropout_add``): every thread that is not inside a :func:`use_fast_dropout` block sees it.

    Called inside a ``use_fast_dropout`` block, it also changes that block's settings for the calling
    thread until the block ends (the process default keeps the new value).

    Args:
        enabled: use the fast path where it applies.
        save: what backward keeps: ``"bits"`` (a 1-bit mask) or ``"seed"`` (nothing; the mask is
            regenerated). Unchanged when None.
        min_numel: smallest tensor (in elements) that takes the fast path. Unchanged when None.
    """
    global _default
    op = "set_fast_dropout"
    new = _updated(_default, enabled, save, min_numel, op)
    override = getattr(_local, "settings", None)
    if override is not None:
        _local.settings = _updated(override, enabled, save, min_numel, op)
    _default = new


def fast_dropout_enabled() -> bool:
    """Whether the fast path is on for the calling thread (it is still used only where it applies)."""
    return _current().enabled


@contextlib.contextmanager
def use_fast_dropout(
    enabled: bool = True, *, save: str | None = None, min_numel: int | None = None
) -> Iterator[None]:
    """Turn the fast path on or off for the calling thread only, for a block of code; on exit the
    thread sees what it saw before (an outer block, or the process default of
    :func:`set_fast_dropout`). Other threads are not affected. Unset arguments keep their current
    value.

    Example::

        >>> with dropkit.use_fast_dropout(False):  # the plain path: torch's own masks
        ...     y = dropkit.functional.dropout(x, 0.5)
    """
    previous = getattr(_local, "settings", None)
    _local.settings = _updated(_current(), enabled, save, min_numel, "use_fast_dropout")
    try:
        yield
    finally:
        _local.settings = previous


def draw_seed(generator: torch.Generator | None = None) -> int:
    """The 63-bit seed the fast path draws for one call: one draw from ``generator`` (or torch's
    global CPU generator), so ``torch.manual_seed`` reproduces it."""
    _check_generator(generator, torch.device("cpu"), "draw_seed")
    return _draw_seed(generator)


_SEED_END = 2**63 - 1
_seed_buffers = threading.local()


def _draw_seed(generator: torch.Generator | None) -> int:
    # torch.randint(0, _SEED_END, ()) without a new tensor per call: the same value from the same
    # generator state, about a third of the cost. One buffer per thread, read through a NumPy view
    # (tensor.item() would be a second operator call).
    buffers = getattr(_seed_buffers, "pair", None)
    if buffers is None:
        # a normal tensor even when the first call runs under inference_mode (an inference tensor
        # could not be updated in place outside it)
        with torch.inference_mode(False):
            tensor = torch.empty((), dtype=torch.int64)
        buffers = _seed_buffers.pair = (tensor, tensor.numpy())
    buffers[0].random_(0, _SEED_END, generator=generator)
    return int(buffers[1])


def _seed_tensor(generator: torch.Generator | None) -> torch.Tensor:
    # Under torch.compile (dynamo traces randint but not random_): the same draw as _draw_seed.
    return torch.randint(0, _SEED_END, (), generator=generator, dtype=torch.int64)


# ---- memory order --------------------------------------------------------------------------------


def _memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation that lists ``t``'s dims from the largest stride down; None if contiguous."""
    if t.is_contiguous():
        return None
    return tuple(sorted(range(t.dim()), key=lambda d: -t.stride(d)))


def _to_memory_order(t: torch.Tensor, perm: tuple[int, ...] | None) -> torch.Tensor:
    # A contiguous tensor whose flat order is `t`'s memory order: a view for dense tensors
    # (contiguous, channels_last, transposed, ...), a copy for others (slices with gaps).
    return t.contiguous() if perm is None else t.permute(perm).contiguous()


def _from_memory_order(t: torch.Tensor, perm: tuple[int, ...] | None) -> torch.Tensor:
    if perm is None:
        return t
    inverse = [0] * len(perm)
    for i, d in enumerate(perm):
        inverse[d] = i
    return t.permute(inverse)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _NATIVE else torch.float32


@functools.lru_cache(maxsize=64)
def _scale_scalar(s: float, dtype: torch.dtype) -> float:
    # The multiplier rounded once to the input's dtype (the kernels compute in the compute dtype).
    return torch.tensor(s, dtype=dtype).item()


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
