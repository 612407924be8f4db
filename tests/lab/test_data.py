"""prepare(config): validation split by seed, train_size subsampling, standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dropkit.lab import Config
from dropkit.lab._data import prepare
from tests.lab._helpers import TINY


def test_val_split_is_seeded_and_independent_of_train_size():
    a = prepare(Config.build({**TINY, "seed": 1}))
    b = prepare(Config.build({**TINY, "seed": 1, "train_size": 100}))
    c = prepare(Config.build({**TINY, "seed": 2}))
    n = len(a.x_train) + len(a.x_val)
    assert len(a.x_val) == round(0.2 * n) and len(b.x_train) == 100
    assert torch.equal(a.y_val, b.y_val) and not torch.equal(a.y_val, c.y_val)
    # The subsample is a prefix of the same shuffled training part.
    assert torch.equal(b.y_train, a.y_train[:100])
    # Standardised with training statistics.
    assert abs(a.x_train.double().mean().item()) < 1e-5
    assert abs(a.x_train.double().std().item() - 1) < 1e-3


def test_mnist1d_shapes():
    d = prepare(Config.build(val_fraction=0.0))
    assert d.x_train.shape == (4000, 1, 40) and d.x_val is None and d.n_outputs == 10


def test_uci_regression(shared_data):
    cfg = Config.build(dataset="uci", data_dir=str(shared_data / "uci" / "yacht"), uci_split=3)
    d = prepare(cfg)
    assert d.task == "regression" and d.n_outputs == 1 and d.x_train.dim() == 2
    np.testing.assert_allclose(d.y_train.double().mean().item(), 0, atol=1e-5)
    assert d.y_scale > 1  # yacht's target spreads over tens of units


def test_missing_data_dir_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset=uci needs data_dir"):
        prepare(Config.build(dataset="uci"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        prepare(Config.build(dataset="fashion_mnist", data_dir=str(tmp_path / "nothing")))
