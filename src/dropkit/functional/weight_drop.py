"""Weight-drop: DropConnect on a weight matrix, one mask per forward pass (AWD-LSTM).

Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013; applied to the
hidden-to-hidden matrices of an LSTM by Merity et al., "Regularizing and Optimizing LSTM Language
Models", ICLR 2018. The mask is drawn once per forward and shared by the whole batch and every time
step, so the recurrence is a fixed (thinned) network for that batch and PyTorch's fused RNN kernel can
run it unchanged. Survivors are scaled by 1/(1-p); eval uses the weight itself.
"""

from __future__ import annotations

import torch

from dropkit._validation import _check_bool, _check_float_tensor, _check_generator, _check_p
from dropkit.functional.dropout import _apply, _bernoulli_keep, _check_mask
from dropkit.ops import sharding as _sharding

__all__ = ["weight_drop"]


@_sharding.rule()
def weight_drop(
    weight: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero each entry of ``weight`` with probability ``p`` (DropConnect), survivors times 1/(1-p).

    Differentiable in ``weight``: the gradient is the incoming gradient times the same mask and scale.
    Eval returns ``weight`` itself.

    Paper: Wan et al., ICML 2013; Merity et al., ICLR 2018 (weight-dropped LSTM).

    Args:
        weight: floating-point tensor (e.g. an RNN's ``weight_hh_l0``).
        p: probability that an entry is dropped. Default: 0.5
        training: apply DropConnect if True. Default: True
        mask: optional bool keep-mask of ``weight``'s shape to use instead of drawing one.
        generator: optional ``torch.Generator`` for the mask.

    Example::

        >>> w = torch.randn(80, 20)
        >>> w_dropped = dropkit.functional.weight_drop(w, p=0.5)
    """
    op = "weight_drop"
    _check_float_tensor(weight, op, "weight")
    p = _check_p(p, op, allow_one=False)
    _check_bool(training, "training", op)
    if not training or (p == 0.0 and mask is None):
        return weight
    _check_generator(generator, weight.device, op)
    if mask is None:
        mask = _bernoulli_keep(torch.empty_like(weight, dtype=torch.bool), p, generator)
    else:
        _check_mask(mask, weight, op)
    return _apply(weight, mask, p, "inverted", False)
