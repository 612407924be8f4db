"""A user's own data loader and model factory, named by import path in the import-path tests."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def blobs(config):
    # Two Gaussian blobs in 5-D: an easy problem any working model separates.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 5)) + 2.0 * y[:, None]
    return x[:300], y[:300], torch.as_tensor(x[300:]), torch.as_tensor(y[300:])


def bad_labels(config):
    x = np.zeros((10, 3))
    return x, -np.ones(10, dtype=np.int64), x, np.zeros(10, dtype=np.int64)


def linear(config, input_shape, n_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), n_outputs))


def not_a_module(config, input_shape, n_outputs):
    return "linear"


SLOW_SECONDS = 1.0


class _SlowFirstCall(nn.Module):
    """An MLP whose first forward call sleeps, as a kernel that compiles on first use does."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.compiled = False  # not a buffer: the state_dict does not hold it

    def forward(self, x):
        if not self.compiled:
            time.sleep(SLOW_SECONDS)
            self.compiled = True
        return self.inner(x)


def slow_first_call(config, input_shape, n_outputs):
    from dropkit.lab.models import build_model

    return _SlowFirstCall(build_model(config.replace(model="mlp"), input_shape, n_outputs))
