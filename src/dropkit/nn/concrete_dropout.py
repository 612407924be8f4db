"""``ConcreteDropout``: a dropout layer whose rate is learned (Gal, Hron & Kendall 2017).

This file deliberately has no ``from __future__ import annotations``: ``torch.jit.script`` reads
the annotations of ``ConcreteDropout.input_dim`` and of its TorchScript branch as written.
"""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from dropkit._validation import _check_p
from dropkit.functional.concrete_dropout import (
    _check_temperature,
    concrete_dropout,
    concrete_regularizer,
)
from dropkit.nn._base import _Stochastic

__all__ = ["ConcreteDropout", "concrete_regularization"]


class ConcreteDropout(_Stochastic, nn.Module):
    """Concrete dropout, optionally wrapping the layer it feeds: ``layer(concrete_dropout(x))``.

    Training: the input is multiplied by a relaxed Bernoulli keep-mask ``(1 - z) / (1 - p)`` whose
    drop probability ``p = sigmoid(p_logit)`` is a parameter. Eval: identity (then ``layer``).
    Add :meth:`regularizer` (or :func:`concrete_regularization` of the whole model) to the loss, or
    ``p`` only learns to shrink towards 0.

    Paper: Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.

    Args:
        p: initial drop probability, in (0, 1). Default: 0.1
        layer: the module the dropout feeds (its parameters get the weight term of the regulariser);
            None for dropout alone. Default: None
        temperature: the Concrete temperature. Default: 0.1
        weight_regularizer: ``l^2 / N`` in the paper. Default: 1e-6
        dropout_regularizer: ``2 / (tau N)`` in the paper. Default: 1e-5
        generator: optional ``torch.Generator`` for the noise.

    Example::

        >>> cd = dropkit.nn.ConcreteDropout(p=0.2, layer=torch.nn.Linear(16, 4))
        >>> out = cd(torch.randn(8, 16))
        >>> loss = out.pow(2).mean() + cd.regularizer()
    """

    _allow_one = False  # p is sigmoid(p_logit): 0 and 1 are out of reach
    _scriptable = True  # forward has a TorchScript branch (_concrete_dropout_script)
    # Units dropped per sample, seen at the last forward (None before the first): typed for
    # TorchScript, which then records it on the scripted module as eager does.
    input_dim: Optional[int]  # noqa: UP045 (TorchScript reads typing.Optional)
    __jit_unused_properties__ = ["p"]  # a Python float view of p_logit, with a validating setter

    def __init__(
        self,
        p: float = 0.1,
        layer: nn.Module | None = None,
        *,
        temperature: float = 0.1,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        op = type(self).__name__
        p = _check_p(p, op, allow_one=False)
        if p == 0.0:
            raise ValueError(f"{op}: the initial p must be in (0, 1) (its logit is used), got 0.0")
        self.p_logit = nn.Parameter(torch.tensor(math.log(p) - math.log1p(-p)))
        self.layer = layer
        self.temperature = _check_temperature(temperature, op)
        self.weight_regularizer = float(weight_regularizer)
        self.dropout_regularizer = float(dropout_regularizer)
        self.generator = generator
        self.input_dim: int | None = None  # units dropped per sample, seen at the last forward

    @property
    def p(self) -> float:
        """The current drop probability ``sigmoid(p_logit)``, as a float."""
        return torch.sigmoid(self.p_logit.detach()).item()

    @p.setter
    def p(self, value: float) -> None:
        value = _check_p(value, type(self).__name__, allow_one=False)
        if value == 0.0:
            raise ValueError(f"{type(self).__name__}: p must be in (0, 1), but got 0.0")
        with torch.no_grad():
            self.p_logit.fill_(math.log(value) - math.log1p(-value))

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}, temperature={self.temperature}"

    def forward(self, input: Tensor) -> Tensor:
        # K in the regulariser: the number of units dropped per sample (all but dimension 0).
        self.input_dim = input[0].numel() if input.dim() > 1 else input.numel()
        if torch.jit.is_scripting():  # the same arithmetic, in the subset TorchScript compiles
            out = _concrete_dropout_script(
                input, self.p_logit, self.temperature, self.training, self.generator
            )
        else:
            out = concrete_dropout(
                input, self.p_logit, self.temperature, self.training, generator=self.generator
            )
        if self.layer is not None:
            out = self.layer(out)
        return out

    def regularizer(self) -> torch.Tensor:
        """The term to add to the loss: the weight term over ``layer``'s parameters (if any) and
        the dropout (entropy) term for the input size seen at the last forward.
        """
        if self.input_dim is None:
            raise RuntimeError(
                f"{type(self).__name__}.regularizer: call the module once first (the dropout "
                "term scales with the number of units it drops, known from the input)"
            )
        weights = [] if self.layer is None else list(self.layer.parameters())
        return concrete_regularizer(
            self.p_logit,
            weights,
            self.input_dim,
            weight_regularizer=self.weight_regularizer,
            dropout_regularizer=self.dropout_regularizer,
        )


def _tiny(dtype: torch.dtype) -> float:
    # torch.finfo(dtype).tiny (TorchScript has no finfo)
    if dtype == torch.float64:
        return 2.2250738585072014e-308
    if dtype == torch.float16:
        return 6.103515625e-05
    return 1.1754943508222875e-38  # float32, bfloat16


def _largest(dtype: torch.dtype) -> float:
    # torch.finfo(dtype).max
    if dtype == torch.float64:
        return 1.7976931348623157e308
    if dtype == torch.float16:
        return 65504.0
    if dtype == torch.bfloat16:
        return 3.3895313892515355e38
    return 3.4028234663852886e38


def _concrete_dropout_script(
    input: Tensor,
    p_logit: Tensor,
    temperature: float,
    training: bool,
    generator: Optional[torch.Generator],  # noqa: UP045
) -> Tensor:
    """functional.concrete_dropout's plain path (concrete_noise, then apply_concrete) for
    TorchScript: the same noise draw and arithmetic."""
    if not training:
        return input
    u = torch.rand(input.shape, dtype=input.dtype, device=input.device, generator=generator)
    u = u.clamp(min=_tiny(input.dtype))
    noise = torch.log(u) - torch.log1p(-u)
    logit = p_logit.reshape(()).to(input.dtype)
    drop = torch.sigmoid((logit + noise) / temperature)
    keep = (1 - drop) / torch.sigmoid(-logit)
    return input * keep.clamp(max=_largest(input.dtype))


def concrete_regularization(model: nn.Module) -> torch.Tensor:
    """The sum of :meth:`ConcreteDropout.regularizer` over every concrete dropout layer in
    ``model`` (0 if there are none): add it to the training loss.
    """
    terms = [m.regularizer() for m in model.modules() if isinstance(m, ConcreteDropout)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
