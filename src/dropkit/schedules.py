"""Dropout schedules: the drop rate of every dropout layer of a model as a function of training time.

A schedule holds a model and a factor ``f(t)`` in [0, 1]; at time ``t`` (a step or an epoch: whatever
the caller counts) each dropout layer gets ``p = f(t) * p_peak`` through
:func:`dropkit.nn.set_dropout_p`, where ``p_peak`` is the schedule's ``p`` or, when ``p`` is None,
the rate each layer had when the schedule was made (so layers with different rates keep their
ratios, and a layer at 0 stays at 0).

=====================  ========================================================================
``ConstantDropout``    f = 1
``LinearDropout``      f goes linearly from ``start`` to ``end`` over ``total`` steps, then stays
``EarlyDropout``       f = 1 for t < ``until``, then 0 (Liu et al. 2023, for underfitting models)
``LateDropout``        f = 0 for t < ``start``, then 1 (Liu et al. 2023, for overfitting models)
``CurriculumDropout``  f = 1 - exp(-gamma t): the drop rate rises from 0 towards p
                       (Morerio et al. 2017, whose retain probability is 1 - p (1 - exp(-gamma t)))
=====================  ========================================================================

Use it like a learning-rate scheduler: call :meth:`DropoutSchedule.step` once per step (or epoch);
``step(t)`` jumps to time ``t`` (what a resumed run does: the rate depends on ``t`` alone)::

    >>> schedule = dropkit.schedules.EarlyDropout(model, until=1000)
    >>> for batch in loader:
    ...     loss = ...; loss.backward(); optimizer.step()
    ...     schedule.step()

Papers: Liu, Xu, Jin, Shen, Darrell, "Dropout Reduces Underfitting", ICML 2023; Morerio, Cavazza,
Volpi, Vidal, Murino, "Curriculum Dropout", ICCV 2017.
"""

from __future__ import annotations

import math

from torch import nn

from dropkit._validation import _check_p
from dropkit.nn.convert import get_dropout_p, set_dropout_p

__all__ = [
    "ConstantDropout",
    "CurriculumDropout",
    "DropoutSchedule",
    "EarlyDropout",
    "LateDropout",
    "LinearDropout",
    "make_schedule",
]


def _check_time(value: float, name: str, op: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, but got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{op}: {name} must be finite and {bound}, but got {value}")
    return value


class DropoutSchedule:
    """Base class: sets every dropout layer's rate to ``factor(t) * p_peak``; see the module doc.

    Args:
        model: the module whose dropout rates (:func:`dropkit.nn.get_dropout_p`) are driven.
        p: peak rate of every layer; None (default) keeps each layer's own rate as its peak.
    """

    def __init__(self, model: nn.Module, p: float | None = None) -> None:
        op = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(f"{op}: model must be an nn.Module, but got {type(model).__name__}")
        # every rate of every stochastic module, by name (a module with several rates, such as an
        # attention's dropout and attention_dropout, has one entry for each)
        rates = get_dropout_p(model)
        if not rates:
            raise ValueError(f"{op}: the model has no dropout layers to schedule")
        if p is not None:
            p = _check_p(p, f"{op}: p")
        self.model = model
        self.peaks = {name: float(rate) if p is None else p for name, rate in rates.items()}
        self.t: float = 0
        self.step(0)

    def factor(self, t: float) -> float:
        raise NotImplementedError

    def rates(self, t: float | None = None) -> dict[str, float]:
        """``{layer name: p}`` at time ``t`` (default: now)."""
        f = self.factor(self.t if t is None else t)
        return {name: f * peak for name, peak in self.peaks.items()}

    def step(self, t: float | None = None) -> dict[str, float]:
        """Advance one unit (or jump to ``t``) and set every layer's rate; returns the rates."""
        self.t = self.t + 1 if t is None else _check_time(t, "t", type(self).__name__)
        rates = self.rates()
        set_dropout_p(self.model, rates)
        return rates

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.step(state["t"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t={self.t}, layers={len(self.peaks)})"


class ConstantDropout(DropoutSchedule):
    """Every layer at its peak rate at all times."""

    def factor(self, t: float) -> float:
        return 1.0


class LinearDropout(DropoutSchedule):
    """The factor goes linearly from ``start`` to ``end`` over ``total`` units, then stays at ``end``."""

    def __init__(
        self,
        model: nn.Module,
        total: float,
        p: float | None = None,
        *,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        op = type(self).__name__
        self.total = _check_time(total, "total", op, positive=True)
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{op}: {name} must be in [0, 1], but got {value!r}")
        self.start, self.end = float(start), float(end)
        super().__init__(model, p)

    def factor(self, t: float) -> float:
        frac = min(t / self.total, 1.0)
        return self.start + (self.end - self.start) * frac


class EarlyDropout(DropoutSchedule):
    """Peak rate for ``t < until``, then 0 (early dropout, for models that underfit)."""

    def __init__(self, model: nn.Module, until: float, p: float | None = None) -> None:
        self.until = _check_time(until, "until", type(self).__name__)
        super().__init__(model, p)

    def factor(self, t: float) -> float:
        return 1.0 if t < self.until else 0.0


class LateDropout(DropoutSchedule):
    """0 for ``t < start``, then the peak rate (late dropout, for models that overfit)."""

    def __init__(self, model: nn.Module, start: float, p: float | None = None) -> None:
        self.start = _check_time(start, "start", type(self).__name__)
        super().__init__(model, p)

    def factor(self, t: float) -> float:
        return 0.0 if t < self.start else 1.0


class CurriculumDropout(DropoutSchedule):
    """Drop rate ``p_peak * (1 - exp(-gamma * t))``: no dropout at first, rising towards the peak."""

    def __init__(self, model: nn.Module, gamma: float, p: float | None = None) -> None:
        self.gamma = _check_time(gamma, "gamma", type(self).__name__, positive=True)
        super().__init__(model, p)

    def factor(self, t: float) -> float:
        return 1.0 - math.exp(-self.gamma * t)


_KINDS = {
    "constant": ConstantDropout,
    "linear": LinearDropout,
    "early": EarlyDropout,
    "late": LateDropout,
    "curriculum": CurriculumDropout,
}


def make_schedule(
    kind: str, model: nn.Module, *, length: float = 0.0, gamma: float = 1.0
) -> DropoutSchedule:
    """The schedule named ``kind`` over each layer's own rate: ``length`` is ``until`` (early),
    ``start`` (late) or ``total`` (linear, from 0 up to the peak); ``gamma`` is curriculum's."""
    if kind not in _KINDS:
        raise ValueError(f"make_schedule: kind={kind!r} is not one of {', '.join(_KINDS)}")
    if kind == "early":
        return EarlyDropout(model, until=length)
    if kind == "late":
        return LateDropout(model, start=length)
    if kind == "linear":
        return LinearDropout(model, total=length)
    if kind == "curriculum":
        return CurriculumDropout(model, gamma=gamma)
    return ConstantDropout(model)
