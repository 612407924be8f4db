# ruff: noqa: NPY002  (the test checks the legacy global generator is left as it was)
"""MNIST-1D regenerated offline by the mnist1d package."""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest

from dropkit.data import load_mnist1d


def test_generated_offline_and_deterministic(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_mnist1d tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    np.random.seed(7)
    random.seed(7)
    before = (np.random.random(), random.random())
    np.random.seed(7)
    random.seed(7)

    x_tr, y_tr, x_te, y_te = load_mnist1d()
    # The caller's global RNG state is untouched by make_dataset's reseeding.
    assert (np.random.random(), random.random()) == before

    assert x_tr.shape == (4000, 40) and x_te.shape == (1000, 40) and x_tr.dtype == np.float32
    assert y_tr.dtype == np.int64 and set(np.unique(y_tr)) == set(range(10))
    # The package standardises the whole set: mean 0, std 1 over train and test together.
    both = np.concatenate([x_tr, x_te]).astype(np.float64)
    assert abs(both.mean()) < 1e-5 and abs(both.std() - 1) < 1e-5
    again = load_mnist1d()
    np.testing.assert_array_equal(again[0], x_tr)
    np.testing.assert_array_equal(again[3], y_te)
    assert not np.array_equal(load_mnist1d(seed=1)[0], x_tr)


def test_num_samples_sets_the_size_and_is_checked():

    x_tr, y_tr, x_te, y_te = load_mnist1d(num_samples=200)
    assert (len(x_tr), len(x_te)) == (160, 40)
    assert set(np.unique(np.concatenate([y_tr, y_te]))) <= set(range(10))
    with pytest.raises(ValueError, match="num_samples must be an int >= 10, but got 5"):
        load_mnist1d(num_samples=5)
