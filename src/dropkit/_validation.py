"""Argument checks shared by every public op, module and the NumPy reference.

Validation happens once, at the public boundary, through these helpers, so every op raises the same
errors with the same text. Errors name the op, the argument, the value received and what was expected.
``assert`` is never used on user input (it vanishes under ``python -O``).
"""

from __future__ import annotations

import math
import numbers

import torch

SCALES = ("inverted", "classic")


class _RankError(ValueError, RuntimeError):
    """A tensor of the wrong rank. A ValueError (dropkit's contract for bad values) that is also the
    RuntimeError torch raises for the same input (``torch.nn.functional.dropout1d`` on a 4-D
    tensor), so code written against torch's exception keeps working with a dropkit drop-in."""


class _DtypeError(TypeError, RuntimeError):
    """A tensor of the wrong dtype. A TypeError (dropkit's contract) that is also the RuntimeError
    torch raises when ``torch.nn.functional.dropout`` is given an integer tensor."""


def _check_p(p: object, op: str = "dropout", *, allow_one: bool = True) -> float:
    """Return ``p`` as a float after checking it is a real number in [0, 1] (or [0, 1)).

    The message for an out-of-range value is PyTorch's own, so code that matches on it keeps working.
    NaN and infinities are refused too (PyTorch lets NaN through silently).
    """
    if type(p) is float and 0.0 <= p < 1.0:  # the common case, without the ABC check below
        return p
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: p must be a real number, but got {type(p).__name__} ({p!r})")
    p = float(p)
    if not math.isfinite(p):
        raise ValueError(f"{op}: dropout probability has to be a finite number, but got {p}")
    if allow_one:
        if p < 0.0 or p > 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    elif p < 0.0 or p >= 1.0:
        raise ValueError(
            f"{op}: dropout probability has to be in [0, 1) (1/(1-p) is undefined at p=1), "
            f"but got {p}"
        )
    return p


def _check_scale(scale: object, op: str = "dropout") -> str:
    """Check the scaling convention: ``"inverted"`` (scale in training) or ``"classic"`` (at test)."""
    if not isinstance(scale, str):
        raise TypeError(
            f"{op}: scale must be one of {SCALES}, but got {type(scale).__name__} ({scale!r})"
        )
    if scale not in SCALES:
        raise ValueError(f"{op}: scale must be one of {SCALES}, but got {scale!r}")
    return scale


def _check_bool(value: object, name: str, op: str = "dropout") -> bool:
    """``value`` if it is a bool; a TypeError naming the argument otherwise (``training="no"`` or
    ``None`` would otherwise be read as truthy/falsy). ``type(...) is bool`` first: this runs on
    every call of every op."""
    if type(value) is bool:  # bool cannot be subclassed: this is isinstance, cheaper
        return value
    raise TypeError(f"{op}: {name} must be a bool, but got {type(value).__name__} ({value!r})")


def _check_float_tensor(input: object, op: str = "dropout", name: str = "input") -> torch.Tensor:
    """Dropout is defined on floating-point tensors only: integers and bools cannot hold 1/(1-p)."""
    if not isinstance(input, torch.Tensor):
        if isinstance(input, torch.fx.Proxy):
            raise TypeError(
                f"{op}: {name} is a torch.fx Proxy: this dropkit op was called through a name "
                f"torch.fx does not patch. Call it as dropkit.functional.{op}(...) (wrapped for "
                "torch.fx) or use its dropkit.nn module (a leaf under symbolic_trace)"
            )
        raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(input).__name__}")
    if not input.is_floating_point():
        raise _DtypeError(
            f"{op}: {name} must be a floating-point tensor, but got dtype {input.dtype}; "
            f"convert it first (e.g. {name}.float())"
        )
    return input


def _check_generator(generator: object, device: torch.device, op: str = "dropout") -> None:
    """``generator=``: None (torch's global generator), a ``torch.Generator`` on the data's device
    type, or a :class:`dropkit.random.RankStream` (whose base, if any, is checked the same way)."""
    if generator is None:
        return
    if type(generator).__name__ == "RankStream":
        from dropkit.random.ranks import RankStream

        if isinstance(generator, RankStream):
            if generator.base is not None:
                _check_generator(generator.base, device, op)
            return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{op}: generator must be a torch.Generator, a dropkit.random.RankStream or None, but "
            f"got {type(generator).__name__}"
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"{op}: generator is on device '{generator.device}' but the input is on '{device}'; "
            "create the generator on the input's device"
        )


def _keep_scale(p: float, scale: str, dtype: torch.dtype | None = None) -> float:
    """The factor survivors are multiplied by in training: 1/(1-p) (inverted) or 1 (classic).

    At p=1 nothing survives; the factor is 0 rather than inf so the output is zeros, never NaN.
    Given the input's ``dtype``, a factor beyond the dtype's range saturates at its largest finite
    value (float16 for p > 1 - 1/65504, where 1/(1-p) would round to inf and a dropped unit would be
    0 * inf = NaN): dropped units stay exact zeros and survivors finite where ``|x| <= 1``.
    """
    if scale == "classic":
        return 1.0
    if p == 1.0:
        return 0.0
    s = 1.0 / (1.0 - p)
    return _saturate(s, dtype) if dtype is not None and s > 65504.0 else s


def _saturate(value: float, dtype: torch.dtype) -> float:
    """``value`` clamped to the finite range of ``dtype`` (a float dtype)."""
    big = torch.finfo(dtype).max
    return max(-big, min(big, value))


def _check_rank(
    input: torch.Tensor, ranks: tuple[int, ...], op: str, hint: str = "", name: str = "input"
) -> int:
    """Check ``input.dim()`` is one of ``ranks``; the error says what was expected and why (hint).

    The message follows PyTorch's: ``op: expected input to be 2D or 3D, but received a 4D input``.
    """
    if input.dim() not in ranks:
        expected = " or ".join(f"{r}D" for r in ranks)
        raise _RankError(
            f"{op}: expected {name} to be {expected}, but received a {input.dim()}D {name} "
            f"of shape {tuple(input.shape)}" + (f"; {hint}" if hint else "")
        )
    return input.dim()


def _check_dims(
    dims: object, ndim: int | None, op: str, name: str = "shared_axes"
) -> tuple[int, ...]:
    """Normalise a sequence of dimension indices (negative allowed) for an ``ndim``-D tensor.

    Returns the sorted, non-negative, distinct indices; refuses non-ints, out-of-range and repeats.
    With ``ndim=None`` (rank not known yet) only the types and literal repeats are checked and the
    indices are returned as given.
    """
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        dims = (dims,)
    try:
        items = tuple(dims)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{op}: {name} must be an int or a sequence of ints, but got {type(dims).__name__}"
        ) from None
    out = []
    for d in items:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{op}: {name} must hold ints, but got {d!r} in {dims!r}")
        if ndim is None:
            out.append(int(d))
            continue
        if not -ndim <= d < ndim:
            raise ValueError(
                f"{op}: {name} entry {d} is out of range for a {ndim}-D input "
                f"(expected -{ndim} <= dim < {ndim})"
            )
        out.append(int(d) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: {name} has repeated dimensions: {dims!r}")
    return tuple(out) if ndim is None else tuple(sorted(out))


def _check_size_tuple(value: object, n: int, op: str, name: str = "block_size") -> tuple[int, ...]:
    """A positive int, or a sequence of ``n`` positive ints (one per spatial dimension)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * n
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{op}: {name} must be an int or a sequence of {n} ints, but got "
            f"{type(value).__name__} ({value!r})"
        ) from None
    if len(items) != n or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items
    ):
        raise TypeError(f"{op}: {name} must be an int or a sequence of {n} ints, but got {value!r}")
    if any(v < 1 for v in items):
        raise ValueError(f"{op}: {name} must be positive, but got {value!r}")
    return tuple(int(v) for v in items)


def _check_noise_args(
    input: object,
    p: object,
    training: object,
    inplace: object,
    generator: object,
    op: str,
) -> float:
    """The checks shared by the multiplicative-noise ops (Gaussian and alpha dropout), where p=1 is
    undefined: the input, p in [0, 1), the two flags and the generator. Returns p as a float."""
    _check_float_tensor(input, op)
    p = _check_p(p, op, allow_one=False)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    _check_generator(generator, input.device, op)
    return p
