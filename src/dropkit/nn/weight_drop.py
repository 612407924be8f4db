"""``WeightDropLSTM`` and ``WeightDropGRU``: ``nn.LSTM`` / ``nn.GRU`` with DropConnect on the
hidden-to-hidden weights (AWD-LSTM's weight-dropped LSTM), on PyTorch's fused kernel.

How it stays lossless and fused. Earlier implementations (AWD-LSTM, fastai) deleted ``weight_hh_l0``,
registered ``weight_hh_l0_raw`` instead and wrote the dropped matrix back as a plain attribute before
each call, which renames the state_dict keys, hides the parameter from ``nn.LSTM`` and triggers the
"weights are not part of single contiguous chunk of memory" warning on cuDNN. Here the parameters stay
exactly those of ``nn.LSTM``. ``nn.LSTM.forward`` hands the list ``self._flat_weights`` to the fused
kernel (``_VF.lstm``); in training this module swaps in, for the duration of one call, a list in
which the ``weight_hh`` entries are replaced by their dropped copies, then restores it. Autograd
carries the gradient through the mask to the real parameter. On CUDA, when the parameters are one
flattened cuDNN buffer, the new list is made one contiguous buffer too (``torch.cat`` + views), so
cuDNN gets the layout it expects (not verified on a GPU yet: written and unit-tested on CPU only).
The alternatives were tried on torch 2.13 (CPU): ``torch.nn.utils.parametrize`` works but renames the
key to ``parametrizations.weight_hh_l0.original``; ``torch.func.functional_call`` keeps the keys but
leaves ``_flat_weights`` holding the swapped-in tensor after the call (until the next forward
re-initialises it), and used from inside this module's ``forward`` it would re-enter that ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from dropkit._validation import _check_p
from dropkit.functional.weight_drop import weight_drop
from dropkit.nn._base import _Stochastic
from dropkit.ops import sharding as _sharding

__all__ = ["WeightDropGRU", "WeightDropLSTM"]


def _one_chunk(
    originals: list[torch.Tensor], weights: list[torch.Tensor]
) -> list[torch.Tensor] | None:
    """Views of one new contiguous buffer holding ``weights``, laid out as ``originals`` are.

    Only when ``originals`` sit back to back in one storage from offset 0 (a flattened cuDNN buffer);
    None otherwise. The buffer is built with ``torch.cat``, so gradients reach every input tensor.
    """
    storage = originals[0].untyped_storage().data_ptr()
    offset = 0
    for w in originals:
        if (
            w.untyped_storage().data_ptr() != storage
            or w.storage_offset() != offset
            or not w.is_contiguous()
        ):
            return None
        offset += w.numel()
    flat = torch.cat([w.reshape(-1) for w in weights])
    views, offset = [], 0
    for w in weights:
        views.append(flat[offset : offset + w.numel()].view(w.shape))
        offset += w.numel()
    return views


class _WeightDropRNN(_Stochastic):
    """Mixed in before ``nn.LSTM`` / ``nn.GRU``; holds ``weight_dropout`` and swaps the weights."""

    _not_scriptable_why = (
        "its training forward swaps DropConnect-masked weights into nn.LSTM/nn.GRU's flat "
        "weight list for one call, which TorchScript cannot express"
    )

    def _init_weight_drop(self, weight_dropout: float, generator: torch.Generator | None) -> None:
        self.weight_dropout = weight_dropout
        self.generator = generator

    def __setattr__(self, name: str, value: object) -> None:
        if name == "weight_dropout":
            value = _check_p(value, f"{type(self).__name__}: {name}", allow_one=False)
        super().__setattr__(name, value)

    @property
    def dropped_weight_names(self) -> list[str]:
        """The parameters DropConnect applies to: every ``weight_hh_l*`` (both directions)."""
        return [name for name in self._flat_weights_names if name.startswith("weight_hh_l")]

    @classmethod
    def from_module(cls, rnn: nn.RNNBase, weight_dropout: float = 0.5, **kwargs):
        """Wrap an existing ``nn.LSTM`` / ``nn.GRU``: the new module uses the *same* parameter
        objects (an optimizer built on ``rnn.parameters()`` keeps working), same names and keys."""
        base = next(c for c in cls.__mro__ if c in (nn.LSTM, nn.GRU))
        if type(rnn) is not base:
            raise TypeError(
                f"{cls.__name__}.from_module: expected a torch.nn.{base.__name__}, "
                f"but got {type(rnn).__name__}"
            )
        config = dict(
            input_size=rnn.input_size,
            hidden_size=rnn.hidden_size,
            num_layers=rnn.num_layers,
            bias=rnn.bias,
            batch_first=rnn.batch_first,
            dropout=rnn.dropout,
            bidirectional=rnn.bidirectional,
        )
        if getattr(rnn, "proj_size", 0):
            config["proj_size"] = rnn.proj_size
        new = cls(**config, weight_dropout=weight_dropout, device="meta", **kwargs)
        for name, param in rnn.named_parameters():
            setattr(new, name, param)  # RNNBase.__setattr__ keeps _flat_weights in step
        new.flatten_parameters()
        new.train(rnn.training)
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_dropout={self.weight_dropout}"

    def forward(self, input, hx=None):
        if type(input) is not torch.Tensor and _sharding.is_dtensor(input):
            _sharding.refuse(type(self).__name__, "torch's RNN kernels take no DTensor")
        if not self.training or self.weight_dropout == 0.0:
            return super().forward(input, hx)
        # nn.LSTM.forward first re-reads the parameters into _flat_weights when they were
        # reassigned since the last call (``m.weight_hh_l0 = ...``, torch.func.functional_call),
        # which would discard the swapped list below for that call. Let it do so now, before the swap.
        refresh = getattr(self, "_update_flat_weights", None)  # absent in some older torch
        if refresh is not None:
            refresh()
        originals = list(self._flat_weights)
        dropped = set(self.dropped_weight_names)
        weights = [
            weight_drop(w, self.weight_dropout, generator=self.generator) if name in dropped else w
            for name, w in zip(self._flat_weights_names, originals, strict=True)
        ]
        if weights[0].is_cuda:
            weights = _one_chunk(originals, weights) or weights
        self._flat_weights = weights
        try:
            return super().forward(input, hx)
        finally:
            self._flat_weights = originals


_DOC = """A drop-in ``torch.nn.{name}`` with DropConnect on its hidden-to-hidden weights (AWD-LSTM).

    Training: for each forward pass every ``weight_hh_l*`` entry is zeroed with probability
    ``weight_dropout`` (one mask for the whole batch and all time steps; survivors times 1/(1-p)), and
    the fused ``nn.{name}`` kernel runs with those weights. Eval: exactly ``nn.{name}``. Parameters,
    names and ``state_dict`` keys are those of ``nn.{name}``; ``.to()``, ``deepcopy``, multi-layer and
    bidirectional work as for ``nn.{name}``. Use :meth:`from_module` to convert an existing one.

    Paper: Merity et al., "Regularizing and Optimizing LSTM Language Models", ICLR 2018; DropConnect:
    Wan et al., ICML 2013.

    Args:
        as ``torch.nn.{name}``, plus
        weight_dropout: probability that an entry of ``weight_hh_l*`` is dropped (keyword only).
            Default: 0.5
        generator: optional ``torch.Generator`` for the masks (keyword only).

    Shape:
        - Those of ``torch.nn.{name}``.

    Example::

        >>> rnn = dropkit.nn.WeightDrop{name}(10, 20, 2, weight_dropout=0.5)
        >>> output, hidden = rnn(torch.randn(5, 3, 10))
    """


class WeightDropLSTM(_WeightDropRNN, nn.LSTM):
    __doc__ = _DOC.format(name="LSTM")

    def __init__(
        self,
        *args,
        weight_dropout: float = 0.5,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_drop(weight_dropout, generator)


class WeightDropGRU(_WeightDropRNN, nn.GRU):
    __doc__ = _DOC.format(name="GRU")

    def __init__(
        self,
        *args,
        weight_dropout: float = 0.5,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_drop(weight_dropout, generator)
