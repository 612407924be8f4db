"""A rough run time for a config, from its arithmetic, without building the model or loading data.

``estimate_seconds(config)``: multiply-adds per example (dense layers, convolutions, recurrent steps)
times the examples trained (3x a forward pass: forward and backward) and evaluated, at rates measured
on one CPU thread of the development machine (December 2026, a shared 2-core x86 VM: about 25 GMAC/s
in large matrix products, 12 in convolutions, 6 in recurrent steps), plus a per-step overhead (the
optimiser, the dropout layers' calls). Good to a factor of about 2: it tells a 10-second preset from a
10-minute one. None for data it cannot size (UCI folders, a user's loader, a user's model).
"""

from __future__ import annotations

import math

from dropkit.lab.config import Config

__all__ = ["estimate_seconds", "format_duration"]

# (training examples, test examples, input shape without the batch axis, classes)
_DATA = {
    "mnist1d": (4000, 1000, (1, 40), 10),
    "fashion_mnist": (60000, 10000, (1, 28, 28), 10),
    "mnist": (60000, 10000, (1, 28, 28), 10),
    "digits": (1257, 540, (1, 8, 8), 10),  # scikit-learn's 1,797 digits, 30% held out
}
_DENSE_RATE = 25e9  # multiply-adds per second, one thread
_CONV_RATE = 12e9
_RNN_RATE = 6e9
_STEP_S = 1e-3  # per optimiser step
_DROPOUT_STEP_S = 1e-3  # per dropout layer (p > 0) and step


def _macs(config: Config, shape: tuple[int, ...], n_out: int) -> tuple[float, float, float, int]:
    """Multiply-adds per example in (dense, conv, recurrent) layers, and the dropout layers."""
    rates = [config.p_input, *config.p_hidden]
    n_dropout = sum(p > 0 for p in rates) + (config.weight_dropout > 0)
    if config.model == "mlp":
        dims = [math.prod(shape), *config.widths, n_out]
        dense = sum(a * b for a, b in zip(dims, dims[1:], strict=False))
        return dense, 0.0, 0.0, n_dropout
    if config.model == "cnn":
        c_in, size = shape[0], list(shape[1:])
        kernel = 3 ** len(size)
        conv = 0.0
        for c_out in config.channels:
            conv += c_in * c_out * kernel * math.prod(size)
            c_in, size = c_out, [s // 2 for s in size]
        n_flat = c_in * math.prod(size)
        dense = n_flat * config.hidden_size + config.hidden_size * n_out
        return dense, conv, 0.0, n_dropout
    # gru / lstm: signals are L steps of one value, images H rows of W values
    steps, features = (shape[1], shape[0]) if len(shape) == 2 else (shape[1], shape[2])
    gates = 3 if config.model == "gru" else 4
    h = config.hidden_size
    rnn = 0.0
    for layer in range(config.rnn_layers):
        rnn += gates * ((features if layer == 0 else h) * h + h * h) * steps
    return h * n_out, 0.0, rnn, n_dropout


def estimate_seconds(config: Config) -> float | None:
    """Rough seconds one run of ``config`` takes on one CPU thread (see the module's notes)."""
    if config.dataset not in _DATA or config.model not in ("mlp", "cnn", "gru", "lstm"):
        return None
    n_total, n_test, shape, n_out = _DATA[config.dataset]
    n_val = round(config.val_fraction * n_total)
    n_train = n_total - n_val
    if config.train_size is not None:
        n_train = min(n_train, config.train_size)
    dense, conv, rnn, n_dropout = _macs(config, shape, n_out)
    per_example = dense / _DENSE_RATE + conv / _CONV_RATE + rnn / _RNN_RATE
    evaluations = math.ceil(config.epochs / config.eval_every)
    evaluated = min(n_train, config.eval_train_max) + n_val + n_test
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    return per_example * (3 * n_train * config.epochs + evaluations * evaluated) + steps * (
        _STEP_S + n_dropout * _DROPOUT_STEP_S
    )  # for one thread: more threads help the large products, far from linearly


def format_duration(seconds: float | None) -> str:
    """``~40 s``, ``~12 min``, ``~3.5 h``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"
