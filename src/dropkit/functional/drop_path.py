"""DropPath / stochastic depth: drop a residual branch for whole samples.

Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016. In a residual block
``x + f(x)``, ``f(x)`` is replaced by ``drop_path(f(x), p)``: for each sample the branch is kept with
probability 1-p (and scaled by 1/(1-p)) or dropped entirely, so the block is the identity for that
sample. It is :func:`dropkit.functional.shared_dropout` with every axis but the batch axis shared.

The name follows timm: "DropConnect" means dropping weights (Wan et al. 2013, see
:mod:`dropkit.functional.dropconnect`), not paths.
"""

from __future__ import annotations

import numbers

import torch

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_scale,
)
from dropkit.functional.shared_dropout import _shared_dropout
from dropkit.ops import sharding as _sharding

__all__ = ["drop_path", "drop_path_rates"]

MODES = ("row", "batch")


def _check_mode(mode: object, op: str) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES}, but got {mode!r}")
    return mode


@_sharding.rule()
def drop_path(
    input: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    inplace: bool = False,
    *,
    scale: str = "inverted",
    mode: str = "row",
    scale_by_keep: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole samples (dimension 0) of a residual branch's output with probability ``p``.

    Training: one Bernoulli(1-p) draw per sample, shared by all its elements; survivors scaled by
    1/(1-p) (inverted) or 1 (classic). ``mode="batch"`` (torchvision's ``StochasticDepth`` mode):
    one draw for the whole batch. Eval: the identity (inverted) or times 1-p (classic, as in
    Huang et al.).

    ``scale_by_keep=False`` (timm's option of that name): survivors are not rescaled in training
    (``input * mask``) and eval is the identity, so the expected output in training is (1-p) times
    the eval output. It goes with ``scale="inverted"`` only (``"classic"`` already leaves survivors
    unscaled and multiplies by 1-p in eval; combining the two is a ValueError).

    Paper: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.

    Args:
        input: ``(N, *)`` floating-point tensor, at least 1-D: the branch output for a batch.
        p: probability of dropping the branch for a sample. Default: 0.1
        training: apply if True. Default: True
        inplace: do the operation in place. Default: False
        scale: ``"inverted"`` or ``"classic"``. Default: ``"inverted"``
        mode: ``"row"`` (one draw per sample) or ``"batch"`` (one for the batch). Default: ``"row"``
        scale_by_keep: rescale survivors by 1/(1-p) in training. Default: True
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> x = torch.randn(8, 64, 16, 16)
        >>> y = x + dropkit.functional.drop_path(block(x), p=0.1)
    """
    op = "drop_path"
    _check_float_tensor(input, op)
    p = _check_p(p, op)
    scale = _check_scale(scale, op)
    _check_bool(training, "training", op)
    _check_bool(inplace, "inplace", op)
    if input.dim() == 0:
        raise ValueError(
            f"{op}: expected an input with a batch dimension, (N, *), but got a 0-D input"
        )
    _check_generator(generator, input.device, op)
    _check_mode(mode, op)
    scale = _training_scale(scale, scale_by_keep, training, op)
    axes = tuple(range(0 if mode == "batch" else 1, input.dim()))
    return _shared_dropout(input, p, axes, training, inplace, scale, generator)


def _training_scale(scale: str, scale_by_keep: bool, training: bool, op: str) -> str:
    """The scale the op runs with: ``scale_by_keep=False`` is ``"classic"`` arithmetic in training
    (survivors times 1) and ``"inverted"`` in eval (the identity)."""
    _check_bool(scale_by_keep, "scale_by_keep", op)
    if scale_by_keep:
        return scale
    if scale == "classic":
        raise ValueError(
            f"{op}: scale_by_keep=False goes with scale='inverted' (scale='classic' already keeps "
            "survivors unscaled in training, and scales by 1-p in eval), but got scale='classic'"
        )
    return "classic" if training else "inverted"


_RULES = ("huang", "linspace")


def drop_path_rates(p: float, num_blocks: int, *, rule: str = "huang") -> list[float]:
    """Per-block drop rates rising linearly with depth to ``p`` at the last of ``num_blocks``.

    ``rule="huang"`` (default): stochastic depth's linear decay rule, block ``l`` of ``L`` drops with
    ``p_l = p * l / L`` (Huang et al. 2016, eq. 4, written there for the survival probability
    ``1 - l/L (1 - p_L)``): the first block drops with ``p / L``, the last with ``p``.

    ``rule="linspace"``: ``p * l / (L - 1)`` for ``l = 0 .. L-1``, timm's ``drop_path_rate`` schedule
    (``torch.linspace(0, p, L)``, here in float64): the first block never drops.

    Example::

        >>> dropkit.functional.drop_path_rates(0.5, 4)
        [0.125, 0.25, 0.375, 0.5]
        >>> dropkit.functional.drop_path_rates(0.3, 4, rule="linspace")
        [0.0, 0.1, 0.2, 0.3]
    """
    op = "drop_path_rates"
    p = _check_p(p, op)
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, numbers.Integral):
        raise TypeError(f"{op}: num_blocks must be an int, but got {type(num_blocks).__name__}")
    if num_blocks < 1:
        raise ValueError(f"{op}: num_blocks must be positive, but got {num_blocks}")
    if rule not in _RULES:
        raise ValueError(f"{op}: rule must be one of {_RULES}, but got {rule!r}")
    if rule == "linspace":
        if num_blocks == 1:
            return [0.0]
        return [p * layer / (num_blocks - 1) for layer in range(num_blocks)]
    return [p * (layer / num_blocks) for layer in range(1, num_blocks + 1)]
