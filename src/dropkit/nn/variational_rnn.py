"""``VariationalLSTM`` and ``VariationalGRU``: drop-in ``nn.LSTM`` / ``nn.GRU`` with Gal's dropout."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from dropkit._validation import _check_bool, _check_p
from dropkit.functional.variational_rnn import RNNMasks, sample_rnn_masks, variational_rnn
from dropkit.nn._base import _Stochastic

__all__ = ["VariationalGRU", "VariationalLSTM"]

_P_NAMES = ("input_dropout", "recurrent_dropout", "output_dropout")


class _VariationalRNN(_Stochastic):
    """Shared by the LSTM and GRU forms; mixed in before ``nn.LSTM`` / ``nn.GRU``."""

    _not_scriptable_why = (
        "its training forward is a Python time loop (functional/variational_rnn.py) with "
        "optional RNNMasks"
    )

    def _init_variational(
        self,
        input_dropout: float,
        recurrent_dropout: float,
        output_dropout: float,
        per_gate: bool,
        generator: torch.Generator | None,
    ) -> None:
        op = type(self).__name__
        if getattr(self, "proj_size", 0) > 0:
            raise ValueError(f"{op}: proj_size > 0 is not supported, but got {self.proj_size}")
        self.input_dropout = input_dropout
        self.recurrent_dropout = recurrent_dropout
        self.output_dropout = output_dropout
        self.per_gate = _check_bool(per_gate, "per_gate", op)
        self.generator = generator

    def __setattr__(self, name: str, value: object) -> None:
        if name in _P_NAMES:
            value = _check_p(value, f"{type(self).__name__}: {name}", allow_one=False)
        super().__setattr__(name, value)

    def _has_dropout(self) -> bool:
        return any(getattr(self, name) > 0 for name in (*_P_NAMES, "dropout"))

    def sample_masks(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> RNNMasks:
        """Draw the masks one training forward pass uses, e.g. to pass as ``masks=`` or to inspect."""
        return sample_rnn_masks(
            self.mode,
            batch_size,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            input_dropout=self.input_dropout,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            output_dropout=self.output_dropout,
            per_gate=self.per_gate,
            device=device if device is not None else self.weight_hh_l0.device,
            generator=generator,
        )

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        for name in _P_NAMES:
            if getattr(self, name) > 0:
                extra += f", {name}={getattr(self, name)}"
        return extra + (", per_gate=True" if self.per_gate else "")

    def forward(self, input, hx=None, *, masks: RNNMasks | None = None):
        if not self.training or (masks is None and not self._has_dropout()):
            # The deterministic network: PyTorch's fused kernel.
            return super().forward(input, hx)
        return variational_rnn(
            input,
            hx,
            [w for ws in self.all_weights for w in ws],
            mode=self.mode,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            batch_first=self.batch_first,
            input_dropout=self.input_dropout,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            output_dropout=self.output_dropout,
            per_gate=self.per_gate,
            training=True,
            masks=masks,
            generator=self.generator,
        )


_DOC = """A drop-in ``torch.nn.{name}`` with variational (Gal) dropout on input, h_{{t-1}} and output.

    Training: one keep-mask per sequence for each layer's input (``input_dropout`` on the first
    layer, ``dropout`` between layers: ``nn.{name}``'s argument, here locked along time), one for
    h_{{t-1}} in each layer (``recurrent_dropout``), one for the last layer's output
    (``output_dropout``); every mask is reused at every time step and survivors are scaled by 1/(1-p).
    With ``per_gate=True`` each gate draws its own input and recurrent masks (Keras's
    ``recurrent_dropout`` semantics). Training runs a Python time loop (see
    :mod:`dropkit.functional.variational_rnn`). Eval, or every p = 0, is exactly ``nn.{name}``
    (its fused kernel).

    Parameters, their names and ``state_dict`` keys are those of ``nn.{name}``: its checkpoints load
    as they are. ``proj_size`` is not supported.

    Paper: Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
    Networks", NeurIPS 2016.

    ``forward(input, hx=None, *, masks=None)``: as ``nn.{name}``; ``masks`` (from
    :meth:`sample_masks`) replaces the masks drawn in training.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype: as ``torch.nn.{name}``.
        input_dropout: p for the first layer's input x_t (keyword only). Default: 0
        recurrent_dropout: p for h_{{t-1}} (keyword only). Default: 0
        output_dropout: p for the last layer's output (keyword only). Default: 0
        per_gate: separate masks for each gate (keyword only). Default: False
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Shape:
        - Those of ``torch.nn.{name}``: padded, ``batch_first``, unbatched or ``PackedSequence`` input.

    Example::

        >>> rnn = dropkit.nn.Variational{name}(10, 20, 2, recurrent_dropout=0.25, output_dropout=0.3)
        >>> output, hidden = rnn(torch.randn(5, 3, 10))
    """


class VariationalLSTM(_VariationalRNN, nn.LSTM):
    __doc__ = _DOC.format(name="LSTM")

    def __init__(
        self,
        *args,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        output_dropout: float = 0.0,
        per_gate: bool = False,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_variational(
            input_dropout, recurrent_dropout, output_dropout, per_gate, generator
        )

    def forward(
        self,
        input: torch.Tensor | PackedSequence,
        hx: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        masks: RNNMasks | None = None,
    ):
        return super().forward(input, hx, masks=masks)


class VariationalGRU(_VariationalRNN, nn.GRU):
    __doc__ = _DOC.format(name="GRU")

    def __init__(
        self,
        *args,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        output_dropout: float = 0.0,
        per_gate: bool = False,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_variational(
            input_dropout, recurrent_dropout, output_dropout, per_gate, generator
        )

    def forward(
        self,
        input: torch.Tensor | PackedSequence,
        hx: torch.Tensor | None = None,
        *,
        masks: RNNMasks | None = None,
    ):
        return super().forward(input, hx, masks=masks)
