"""The switch of the fast path and the layout helpers every backend shares.

The fast path of :func:`dropkit.functional.dropout` (and of ``dropout_add``, ``bias_dropout_add`` and
the family's kernels) applies where :func:`dropkit.ops.dropout.applies` says so; this module holds what
it reads: whether the fast path is on (:func:`set_fast_dropout`, the per-thread
:func:`use_fast_dropout`, the environment variables ``DROPKIT_FAST_DROPOUT=0``,
``DROPKIT_FAST_DROPOUT_SAVE`` and ``DROPKIT_FAST_DROPOUT_MIN_NUMEL``), what backward keeps
(``save="bits"``: a 1-bit mask; ``"seed"``: nothing, the mask is regenerated) and the smallest tensor
that takes it. The public names are re-exported by :mod:`dropkit.functional.fast_dropout` and
:mod:`dropkit`.

The layout helpers: the kernels index the mask by memory order (``_memory_order`` gives the
permutation of a dense tensor's dims, largest stride first), and compute half precision in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Iterator

import numpy as np
import torch

from dropkit._validation import _check_bool

__all__ = ["fast_dropout_enabled", "set_fast_dropout", "use_fast_dropout"]

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


# ---- memory order --------------------------------------------------------------------------------


def _memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The permutation that lists ``t``'s dims from the largest stride down, for a dense tensor in
    another order than C's (channels_last, transposed); None if contiguous or not dense (a slice
    with gaps, an expanded tensor): those are processed as a C-order copy, the layout torch's
    dropout gives them (``empty_like``), and their mask is indexed in C order."""
    if t.is_contiguous():
        return None
    perm = tuple(sorted(range(t.dim()), key=lambda d: -t.stride(d)))
    expected = 1
    for d in reversed(perm):  # dense and non-overlapping in that order?
        size = t.size(d)
        if size != 1 and t.stride(d) != expected:
            return None
        expected *= size
    return perm


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
