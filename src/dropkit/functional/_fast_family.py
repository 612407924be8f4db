"""When the dropout family's CPU kernels (:mod:`dropkit.kernels.cpu_family`) replace the plain path.

The same switch and threshold as dropout's fast path (:func:`dropkit.set_fast_dropout`, its
``min_numel``): a CPU float32/float64 tensor with at least ``min_numel`` elements, in eager mode.
Under ``torch.compile``, torch.func transforms or forward-mode AD the plain path runs (it is traced
and differentiated as torch ops); so does everything when numba cannot be imported. The seed is one
draw from torch's generator, as for dropout (:func:`dropkit.functional.draw_seed`).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as _fwad

from dropkit.functional import _checkpoint_rng
from dropkit.functional import fast_dropout as _fast

__all__ = ["NOISE_MIN_NUMEL", "applies", "draw_seed", "kernels"]

# Alpha dropout's fast path starts at this many elements (or dropout's min_numel if larger): below
# it the op keeps torch's generator, so that alpha_dropout matches torch.nn.functional.alpha_dropout
# under the same seed on small tensors as before (the fixed cost of an autograd function is a
# large part of a call this small anyway).
NOISE_MIN_NUMEL = 1 << 15

_DTYPES = (torch.float32, torch.float64)
_module = None
_failed = False


def kernels():
    """:mod:`dropkit.kernels.cpu_family`, or None when numba cannot be imported."""
    global _module, _failed
    if _module is None and not _failed:
        try:
            from dropkit.kernels import cpu_family
        except ImportError:
            _failed = True
        else:
            _module = cpu_family
    return _module


def applies(input: torch.Tensor, numel: int | None = None) -> bool:
    """Whether a family op takes its kernel for ``input`` (the op checks its own ``p``); ``numel``:
    the size the kernel works on when it is not ``input``'s (DropConnect's N weight copies)."""
    settings = _fast._current()  # the calling thread's switch
    return (
        settings.enabled
        and input.is_cpu
        and input.dtype in _DTYPES
        and input.layout == torch.strided
        and (input.numel() if numel is None else numel) >= settings.min_numel
        and _fwad._current_level < 0
        and not torch.compiler.is_compiling()
        and torch._C._functorch.peek_interpreter_stack() is None
        and kernels() is not None
    )


def draw_seed(generator: torch.Generator | None) -> int:
    """One 63-bit seed from ``generator`` (or torch's global CPU generator); a draw from an explicit
    generator is replayed by torch.utils.checkpoint's recomputation (functional/_checkpoint_rng.py)."""
    if generator is None:
        return _fast._draw_seed(None)
    return _checkpoint_rng.draw(generator, lambda: _fast._draw_seed(generator))
