"""Models built from a :class:`~dropkit.lab.config.Config`, with dropkit's dropout layers.

Which dropout layer a CNN or an RNN uses is looked up by name in :data:`CONV_DROPOUT` and
:data:`RNN_DROPOUT`: plain dicts from the config's name to a layer factory. New dropkit layers (channel
dropout, DropBlock, DropConnect, variational RNN dropout) are wired in by adding one entry each, and
its name to the config's choices (``ConvDropout`` / ``RnnDropout`` in :mod:`dropkit.lab.config`,
which validates a config without importing torch; a test keeps the two lists equal).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.lab.config import Config

__all__ = ["CONV_DROPOUT", "RNN_DROPOUT", "build_model"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}


class _DropBlock1d(nn.Module):
    """DropBlock on ``(N, C, L)`` signals: DropBlock2d over ``(N, C, L, 1)`` with blocks of 3 x 1."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.block = dnn.DropBlock2d(p, block_size=(3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.unsqueeze(-1)).squeeze(-1)


def _dropblock(p: float, dims: int) -> nn.Module:
    if dims == 1:
        return _DropBlock1d(p)
    return dnn.DropBlock2d(p, block_size=3)  # 3x3 blocks suit the small maps of 8x8-28x28 inputs


# factory(p, spatial_dims) -> module applied to (N, C, *spatial) feature maps after the activation.
# "dropconnect" drops conv weights instead of activations: the block's conv becomes a DropConnect
# conv with rate p and the activation dropout slot holds nn.Identity (see _cnn).
CONV_DROPOUT: dict[str, Callable[[float, int], nn.Module]] = {
    "element": lambda p, dims: dnn.Dropout(p),
    "channel": lambda p, dims: (dnn.Dropout1d if dims == 1 else dnn.Dropout2d)(p),
    "dropblock": _dropblock,
    "dropconnect": lambda p, dims: nn.Identity(),
}

# factory(p) -> module applied to the RNN's (N, T, F) input and output sequences. "standard" samples
# a new mask at every time step; "variational" (locked dropout) one mask per sequence; "recurrent"
# (Gal & Ghahramani 2016) one mask per sequence on each layer's input, on h_{t-1} and on the output,
# inside dropkit's VariationalGRU/LSTM (the slots between layers then hold nn.Identity).
RNN_DROPOUT: dict[str, Callable[[float], nn.Module]] = {
    "standard": lambda p: dnn.Dropout(p),
    "variational": lambda p: dnn.LockedDropout(p, batch_first=True),
    "recurrent": lambda p: nn.Identity(),
}


def _lookup(table: dict, name: str, field: str):
    if name not in table:
        raise ValueError(f"{field}={name!r} is not available; choose one of {', '.join(table)}")
    return table[name]


def _block(
    layer: nn.Module,
    width: int,
    norm: Callable[[int], nn.Module],
    config: Config,
    dropout: nn.Module,
) -> list[nn.Module]:
    """``layer, act, dropout`` with BatchNorm placed per ``config.batchnorm``.

    before_dropout: layer -> BN -> act -> dropout (BN never sees dropped units in the same block);
    after_dropout:  layer -> act -> dropout -> BN (BN normalises the dropped activations; the
    train/test "variance shift" of Li et al. 2019 hits it directly).
    """
    act = _ACTIVATIONS[config.activation]()
    if config.batchnorm == "before_dropout":
        return [layer, norm(width), act, dropout]
    if config.batchnorm == "after_dropout":
        return [layer, act, dropout, norm(width)]
    return [layer, act, dropout]


def _mlp(config: Config, input_shape: tuple[int, ...], n_outputs: int) -> nn.Sequential:
    n_in = int(torch.Size(input_shape).numel())
    noise = dnn.GaussianDropout if config.mlp_dropout == "gaussian" else dnn.Dropout
    layers: list[nn.Module] = [nn.Flatten(), noise(config.p_input)]
    for width, p in zip(config.widths, config.rates(len(config.widths)), strict=True):
        if config.mlp_dropout == "dropconnect":  # the weights are dropped, not the activations
            linear, drop = dnn.DropConnectLinear(n_in, width, p=p), nn.Identity()
        else:
            linear, drop = nn.Linear(n_in, width), noise(p)
        layers += _block(linear, width, nn.BatchNorm1d, config, drop)
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)


def _cnn(config: Config, input_shape: tuple[int, ...], n_outputs: int) -> nn.Sequential:
    dims = len(input_shape) - 1  # (C, L) -> 1, (C, H, W) -> 2
    if dims not in (1, 2):
        raise ValueError(f"model=cnn needs signals or images, but the input shape is {input_shape}")
    conv, norm, pool = (
        (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        if dims == 1
        else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
    )
    factory = _lookup(CONV_DROPOUT, config.conv_dropout, "conv_dropout")
    rates = config.rates(len(config.channels) + 1)
    layers: list[nn.Module] = [dnn.Dropout(config.p_input)]
    c_in, size = input_shape[0], list(input_shape[1:])
    for c_out, p in zip(config.channels, rates[:-1], strict=True):
        if config.conv_dropout == "dropconnect":
            dc_conv = dnn.DropConnectConv1d if dims == 1 else dnn.DropConnectConv2d
            layer = dc_conv(c_in, c_out, 3, padding=1, p=p)
        else:
            layer = conv(c_in, c_out, 3, padding=1)
        layers += _block(layer, c_out, norm, config, factory(p, dims))
        layers.append(pool(2))
        c_in, size = c_out, [s // 2 for s in size]
    n_flat = c_in * int(torch.Size(size).numel())
    layers.append(nn.Flatten())
    layers += _block(
        nn.Linear(n_flat, config.hidden_size),
        config.hidden_size,
        nn.BatchNorm1d,
        config,
        dnn.Dropout(rates[-1]),
    )
    layers.append(nn.Linear(config.hidden_size, n_outputs))
    return nn.Sequential(*layers)


class RNNClassifier(nn.Module):
    """GRU/LSTM over a sequence; classifies from the last time step's state.

    Signals ``(N, 1, L)`` are read as L steps of 1 feature, images ``(N, 1, H, W)`` as H rows of W
    features. Dropout (``config.rnn_dropout``) on the input sequence (p_input), between stacked layers
    and on the final state (p_hidden); with ``rnn_dropout="recurrent"`` also on h_{t-1} (p_hidden).
    ``config.weight_dropout`` > 0 drops the hidden-to-hidden weights (AWD-LSTM's weight drop).
    """

    def __init__(self, config: Config, input_shape: tuple[int, ...], n_outputs: int) -> None:
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ValueError(f"model={config.model} needs signals or images, got {input_shape}")
        factory = _lookup(RNN_DROPOUT, config.rnn_dropout, "rnn_dropout")
        n_features = input_shape[0] if len(input_shape) == 2 else input_shape[-1]
        p = config.p_hidden[0]
        gru = config.model == "gru"
        recurrent = config.rnn_dropout == "recurrent"
        if recurrent and config.weight_dropout:
            raise ValueError(
                "rnn_dropout='recurrent' and weight_dropout > 0 cannot be combined (two RNN "
                "wrappers); use rnn_dropout='variational' with weight_dropout for AWD-LSTM's mix"
            )
        self.input_dropout = factory(config.p_input)
        self.layers = nn.ModuleList()
        self.between = nn.ModuleList()
        for i in range(config.rnn_layers):
            size_in = n_features if i == 0 else config.hidden_size
            kwargs: dict = {"batch_first": True}
            if recurrent:
                rnn = dnn.VariationalGRU if gru else dnn.VariationalLSTM
                kwargs.update(
                    input_dropout=config.p_input if i == 0 else p,
                    recurrent_dropout=p,
                    output_dropout=p,
                )
            elif config.weight_dropout:
                rnn = dnn.WeightDropGRU if gru else dnn.WeightDropLSTM
                kwargs["weight_dropout"] = config.weight_dropout
            else:
                rnn = nn.GRU if gru else nn.LSTM
            self.layers.append(rnn(size_in, config.hidden_size, **kwargs))
            self.between.append(factory(p))
        self.head = nn.Linear(config.hidden_size, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 1, L) -> (N, L, 1); (N, 1, H, W) -> (N, H, W)
        seq = x.transpose(1, 2) if x.dim() == 3 else x[:, 0]
        seq = self.input_dropout(seq)
        for rnn, drop in zip(self.layers, self.between, strict=True):
            seq = drop(rnn(seq)[0])  # (N, T, hidden)
        return self.head(seq[:, -1])


def build_model(config: Config, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The model ``config.model`` for inputs of ``input_shape`` (without the batch axis).

    ``config.model`` is a built-in family or an import path ``pkg.module:build``; ``build(config,
    input_shape, n_outputs)`` must return a ``torch.nn.Module`` mapping ``(N, *input_shape)`` to
    ``(N, n_outputs)``.
    """
    if ":" in config.model:
        from dropkit.lab._imports import load_object

        model = load_object(config.model, "model")(config, tuple(input_shape), n_outputs)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model={config.model!r} returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model
    if config.model == "mlp":
        return _mlp(config, input_shape, n_outputs)
    if config.model == "cnn":
        return _cnn(config, input_shape, n_outputs)
    if config.batchnorm != "none":
        raise ValueError(f"batchnorm is for mlp and cnn models, not model={config.model}")
    return RNNClassifier(config, input_shape, n_outputs)
