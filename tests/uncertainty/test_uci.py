"""The UCI benchmark runner on a tiny generated dataset folder (fast), and its evaluation maths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dropkit.data import load_uci
from dropkit.uncertainty import uci as uci_mod
from dropkit.uncertainty.uci import (
    UCIConfig,
    _BatchedMLP,
    _evaluate,
    find_uci_datasets,
    run_uci,
    summarise_uci,
)

FAST = UCIConfig(max_epochs=3, val_samples=8, test_samples=16)


def make_dataset(root, name="toy", n=60, d=3, splits=2, seed=0):
    """A linear problem in the standard split format: y = x @ w + 0.1 noise."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    x = rng.normal(size=(n, d))
    y = x @ np.array([1.0, -2.0, 0.5][:d]) + 0.1 * rng.normal(size=n)
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", np.arange(d), fmt="%d")
    (folder / "index_target.txt").write_text(f"{d}\n")
    (folder / "n_splits.txt").write_text(f"{splits}\n")
    (folder / "n_hidden.txt").write_text("16\n")
    (folder / "n_epochs.txt").write_text("4\n")
    (folder / "dropout_rates.txt").write_text("0.01\n0.05\n")
    (folder / "tau_values.txt").write_text("10\n100\n")
    for i in range(splits):
        perm = rng.permutation(n)
        np.savetxt(folder / f"index_train_{i}.txt", perm[: int(0.8 * n)], fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", perm[int(0.8 * n) :], fmt="%d")
    return folder


def test_runs_writes_per_split_results_and_summary(tmp_path):
    make_dataset(tmp_path / "data")
    summaries = run_uci(tmp_path / "data", tmp_path / "out", FAST, log=lambda m: None)
    out = tmp_path / "out" / "toy"
    results = [json.loads((out / f"split_{i}.json").read_text()) for i in range(2)]
    assert {r["split"] for r in results} == {0, 1}
    for r in results:
        assert min(abs(r["dropout_rate"] - p) for p in (0.01, 0.05)) < 1e-6
        assert r["tau"] in (10.0, 100.0)
        assert len(r["validation_ll"]) == 4 and r["epochs"] == 3
        assert all(math.isfinite(r[k]) for k in ("rmse_mc", "ll_mc", "rmse_ws", "ll_ws"))
    s = summaries["toy"]
    rmse = np.array([r["rmse_mc"] for r in results])
    assert s["rmse_mc"] == pytest.approx(rmse.mean())
    assert s["rmse_mc_se"] == pytest.approx(rmse.std() / math.sqrt(2))
    assert json.loads((out / "summary.json").read_text()) == pytest.approx(s)
    assert json.loads((out / "config.json").read_text())["max_epochs"] == 3


def test_rerun_skips_finished_splits(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data")
    run_uci(tmp_path / "data", tmp_path / "out", UCIConfig(**{**FAST.__dict__, "splits": (0,)}))
    calls = []
    real = uci_mod._run_splits

    def spy(data, splits, config, generator):
        calls.append(list(splits))
        return real(data, splits, config, generator)

    monkeypatch.setattr(uci_mod, "_run_splits", spy)
    run_uci(tmp_path / "data", tmp_path / "out", FAST, log=lambda m: None)
    assert calls == [[1]]  # split 0 was on disk already
    run_uci(tmp_path / "data", tmp_path / "out", FAST, log=lambda m: None)
    assert calls == [[1]]  # nothing left to do


def test_learns_the_linear_problem(tmp_path):
    make_dataset(tmp_path / "data", n=150, splits=1)
    cfg = UCIConfig(max_epochs=30, batch_size=16, val_samples=16, test_samples=64)
    s = run_uci(tmp_path / "data", tmp_path / "out", cfg, log=lambda m: None)["toy"]
    data = load_uci(tmp_path / "data" / "toy")
    # the target's std is ~2.3; a trained net is far better than predicting the mean
    assert s["rmse_mc"] < 0.5 * data.y.std(), s


def test_evaluate_without_dropout_is_the_gaussian_closed_form():
    # p = 0: every MC sample equals the deterministic output, so MC and weight scaling agree and the
    # LL is the Gaussian log density with precision tau around it
    g = torch.Generator().manual_seed(0)
    model = _BatchedMLP(2, 3, 5, torch.zeros(2), g)
    x = torch.randn(1, 7, 3, generator=g)
    y = torch.randn(1, 7, generator=g, dtype=torch.float64)
    owner = torch.zeros(2, dtype=torch.long)
    mu, sd = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])
    tau = torch.tensor([0.5, 4.0], dtype=torch.float64)
    res = _evaluate(model, x, y, owner, mu, sd, tau, 10, FAST, g)
    with torch.no_grad():
        pred = model(x.expand(2, 7, 3), mc=False).double() * 2.0 + 1.0  # (2, 7)
    ref_ll = (-0.5 * tau[:, None] * (y - pred) ** 2 - 0.5 * math.log(2 * math.pi)).mean(1)
    ref_ll = ref_ll + 0.5 * torch.log(tau)
    assert torch.allclose(res["ll_mc"], ref_ll, atol=1e-5)
    assert torch.allclose(res["ll_ws"], ref_ll, atol=1e-5)
    assert torch.allclose(res["rmse_mc"], res["rmse_ws"], atol=1e-6)


def test_batched_models_are_independent():
    # the gradient of model 0 does not depend on model 1's data or parameters
    g = torch.Generator().manual_seed(1)
    model = _BatchedMLP(2, 3, 4, torch.tensor([0.0, 0.0]), g)
    x = torch.randn(2, 5, 3, generator=g)
    out = model(x, mc=False)
    out[1].sum().backward()
    assert model.w1.grad[0].abs().sum() == 0 and model.w1.grad[1].abs().sum() > 0


def test_find_and_errors(tmp_path):
    folder = make_dataset(tmp_path / "data")
    assert find_uci_datasets(folder) == [folder]
    assert find_uci_datasets(tmp_path / "data") == [folder]
    with pytest.raises(FileNotFoundError, match="no dataset folders"):
        find_uci_datasets(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        run_uci(tmp_path / "data", tmp_path / "out", FAST, datasets=["nope"])
    with pytest.raises(ValueError, match="has splits 0..1, got 5"):
        run_uci(tmp_path / "data", tmp_path / "out", UCIConfig(splits=(5,)), log=lambda m: None)
    with pytest.raises(ValueError, match="val_samples must be a positive int"):
        UCIConfig(val_samples=0)


def test_summarise_single_split():
    s = summarise_uci(
        [{"rmse_mc": 1.0, "ll_mc": -1.0, "rmse_ws": 1.5, "ll_ws": -2.0, "seconds": 3}]
    )
    assert s["rmse_mc"] == 1.0 and s["rmse_mc_se"] == 0.0 and s["n_splits"] == 1


def test_compare_with_published_criterion():
    from dropkit.uncertainty.uci import compare_with_published

    def summary(rmse, rmse_se, ll, ll_se):
        return {
            "n_splits": 20, "rmse_mc": rmse, "rmse_mc_se": rmse_se, "ll_mc": ll, "ll_mc_se": ll_se,
            "rmse_ws": rmse, "rmse_ws_se": rmse_se, "ll_ws": ll, "ll_ws_se": ll_se,
        }  # fmt: skip

    # published Boston: 2.90 ± 0.18 / -2.40 ± 0.04
    table = compare_with_published(
        {
            "bostonHousing": summary(3.10, 0.10, -2.44, 0.01),  # 0.20 <= hypot(.1,.18); ok
            "concrete": summary(4.50, 0.10, -3.10, 0.02),  # LL worse by 0.17 > hypot(.02,.02)
            "naval-propulsion-plant": summary(0.0012, 0.0001, 4.60, 0.01),  # 0.00 and better LL
        }
    )
    lines = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
    assert lines["bostonHousing"].endswith("| yes |")
    assert lines["concrete"].endswith("| no |")
    assert lines["naval-propulsion-plant"].endswith("| yes |")
    assert "2 of 3 datasets agree" in table
