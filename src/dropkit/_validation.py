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


def _check_p(p: object, op: str = "dropout", *, allow_one: bool = True) -> float:
    """Return ``p`` as a float after checking it is a real number in [0, 1] (or [0, 1)).

    The message for an out-of-range value is PyTorch's own, so code that matches on it keeps working.
    NaN and infinities are refused too (PyTorch lets NaN through silently).
    """
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
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a bool, but got {type(value).__name__} ({value!r})")
    return value


def _check_float_tensor(input: object, op: str = "dropout", name: str = "input") -> torch.Tensor:
    """Dropout is defined on floating-point tensors only: integers and bools cannot hold 1/(1-p)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(
            f"{op}: {name} must be a floating-point tensor, but got dtype {input.dtype}; "
            f"convert it first (e.g. {name}.float())"
        )
    return input


def _check_generator(generator: object, device: torch.device, op: str = "dropout") -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{op}: generator must be a torch.Generator or None, but got {type(generator).__name__}"
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"{op}: generator is on device '{generator.device}' but the input is on '{device}'; "
            "create the generator on the input's device"
        )


def _keep_scale(p: float, scale: str) -> float:
    """The factor survivors are multiplied by in training: 1/(1-p) (inverted) or 1 (classic).

    At p=1 nothing survives; the factor is 0 rather than inf so the output is zeros, never NaN.
    """
    if scale == "classic":
        return 1.0
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def _check_rank(
    input: torch.Tensor, ranks: tuple[int, ...], op: str, name: str = "input", hint: str = ""
) -> torch.Tensor:
    """Refuse a tensor whose number of dimensions is not one of ``ranks``, saying what each means."""
    if input.dim() not in ranks:
        expected = " or ".join(f"{r}D" for r in ranks)
        raise ValueError(
            f"{op}: expected {name} to be {expected}, but received a {input.dim()}D {name} "
            f"of shape {tuple(input.shape)}" + (f". {hint}" if hint else "")
        )
    return input
