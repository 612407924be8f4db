"""The Fig. 11 experiment (weight scaling vs MC averaging): runner smoke test, error curve (the IDX reader is tested in tests/data)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from dropkit.uncertainty import mc_mode
from dropkit.uncertainty.ensemble import (
    MCvsScalingConfig,
    _mc_errors,
    build_mlp,
    run_mc_vs_scaling,
)


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_fashion(folder, n_train=64, n_test=32):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


def test_runner_on_idx_files(tmp_path):
    data = fake_fashion(tmp_path / "fm")
    cfg = MCvsScalingConfig(
        dataset="fashion-mnist", data_dir=str(data), hidden=(16,), epochs=1, max_k=5, repeats=2
    )
    result = run_mc_vs_scaling(cfg, tmp_path / "out", log=lambda m: None)
    assert result["ks"] == [1, 2, 3, 5]
    assert 0.0 <= result["weight_scaling_error"] <= 1.0
    assert result["n_train"] == 64 and result["n_test"] == 32
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["mc_error_mean"] == pytest.approx(result["mc_error_mean"])
    assert (tmp_path / "out" / "mc_vs_weight_scaling.png").stat().st_size > 0
    assert (tmp_path / "out" / "reliability_mc_average.png").is_file()
    assert set(result["calibration"]) == {"weight_scaling", "mc_average"}


def test_mc_errors_of_cumulative_average():
    # two samples: sample 0 votes class 0 strongly, sample 1 votes class 1 weakly; label 0
    probs = torch.tensor([[[0.9, 0.1]], [[0.4, 0.6]]])
    y = torch.tensor([0])
    err = _mc_errors(probs, y, [1, 2], repeats=50, gen=torch.Generator().manual_seed(0))
    # k = 2 averages both: (0.65, 0.35) -> right every time; k = 1 is wrong when sample 1 comes first
    assert (err[:, 1] == 0).all()
    assert set(np.unique(err[:, 0])) == {0.0, 1.0}


def test_build_mlp_layers():
    model = build_mlp(4, (8, 8), 3, 0.2, 0.5)
    with mc_mode(model):
        assert sum(m.training for m in model.modules()) == 3  # three dropout layers on


def test_config_errors():
    with pytest.raises(ValueError, match="dataset must be one of"):
        MCvsScalingConfig(dataset="cifar")
    with pytest.raises(ValueError, match="fashion-mnist needs data_dir"):
        MCvsScalingConfig(dataset="fashion-mnist")
