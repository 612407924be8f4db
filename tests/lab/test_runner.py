"""run(config, workdir): the files of a run directory, resume after an interrupt, config clashes."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

import dropkit.lab.runner as runner_mod
import dropkit.nn as dnn
from dropkit.lab import Config, load_run, run
from dropkit.lab._data import prepare
from dropkit.lab.models import build_model
from tests.lab._helpers import TINY, interrupted_at


def test_one_epoch_smoke(tmp_path):
    cfg = Config.build({**TINY, "plots": True})
    summary = run(cfg, tmp_path)

    assert json.loads((tmp_path / "config.json").read_text()) == cfg.model_dump(mode="json")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["epoch"] == 1
    rec = records[0]
    for part in ("train", "val", "test"):
        assert 0.0 <= rec[f"{part}_acc"] <= 1.0 and rec[f"{part}_loss"] > 0
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["test_acc"]) == rec["test_acc"]

    # summary.json is the last epoch's metrics, and model.pt reproduces its test accuracy.
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (
        summary["test_acc"] == rec["test_acc"]
        and summary["gap"] == rec["train_acc"] - rec["test_acc"]
    )
    data = prepare(cfg)
    model = build_model(cfg, data.input_shape, data.n_outputs)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert acc == pytest.approx(rec["test_acc"], abs=1e-6)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Finished: no checkpoint, no temporary files left behind.
    assert not (tmp_path / "checkpoint.pt").exists()
    assert not list(tmp_path.glob(".*tmp"))
    # Atomic writes keep the usual file mode (mkstemp's 0600 is not left behind).
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask
    # A second call returns the saved summary without training.
    assert run(cfg, tmp_path) == summary


@pytest.mark.parametrize(
    "extra",
    [
        {},
        # the lr schedule's state and the dropout schedule's time must resume too
        {"lr_schedule": "cosine", "dropout_schedule": "early", "schedule_length": 2.5},
    ],
)
def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, extra):
    # Dropout and input noise draw from the RNG: the resumed run must replay the same draws.
    cfg = Config.build({**TINY, "epochs": 3, "p_hidden": 0.5, "augment_noise": 0.1, **extra})
    straight = run(cfg, tmp_path / "straight")

    with interrupted_at(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed")
    kept = load_run(tmp_path / "resumed")
    assert [r["epoch"] for r in kept["metrics"]] == [1, 2] and kept["summary"] is None
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()

    resumed = run(cfg, tmp_path / "resumed")
    a = load_run(tmp_path / "straight")["metrics"]
    b = load_run(tmp_path / "resumed")["metrics"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)
    assert resumed["test_acc"] == straight["test_acc"]


def test_early_stopping_keeps_best_epoch(tmp_path):
    cfg = Config.build({**TINY, "epochs": 40, "early_stopping": 2, "lr": 0.05})
    summary = run(cfg, tmp_path)
    metrics = load_run(tmp_path)["metrics"]
    best = min(metrics, key=lambda r: r["val_loss"])
    assert summary["final_epoch"] == best["epoch"] and summary["test_acc"] == best["test_acc"]
    # Stopped `patience` epochs after the best one (or ran out of epochs).
    assert len(metrics) == min(40, best["epoch"] + 2) == summary["epochs_run"]


def test_max_norm_caps_every_unit(tmp_path):
    cfg = Config.build({**TINY, "epochs": 2, "lr": 0.5, "max_norm": 0.5})
    run(cfg, tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    norms = [w.flatten(1).norm(dim=1) for k, w in state.items() if k.endswith("weight")]
    assert max(n.max().item() for n in norms) <= 0.5 + 1e-5


def test_regularizers_and_models_train(tmp_path):
    # Every model and regularizer path runs one epoch and beats chance (10 classes) on digits.
    variants = [
        {"l1": 1e-4, "l2": 1e-4, "batchnorm": "after_dropout", "p_hidden": 0.2},
        {
            "model": "cnn",
            "channels": [4],
            "hidden_size": 16,
            "conv_dropout": "channel",
            "p_hidden": 0.1,
            "batchnorm": "before_dropout",
            "augment_shift": 1,
        },
        *(
            {
                "model": "cnn",
                "channels": [4],
                "hidden_size": 16,
                "conv_dropout": kind,
                "p_hidden": 0.1,
            }
            for kind in ("dropblock", "dropconnect")
        ),
        {"model": "gru", "hidden_size": 16, "p_input": 0.1, "p_hidden": 0.1, "rnn_layers": 2},
        {"model": "lstm", "hidden_size": 16, "rnn_dropout": "variational", "p_hidden": 0.1},
    ]
    for i, extra in enumerate(variants):
        summary = run(Config.build({**TINY, "epochs": 3, **extra}), tmp_path / str(i))
        assert summary["test_acc"] > 0.2, extra


def test_different_config_in_same_workdir_is_refused(tmp_path):
    run(Config.build(TINY), tmp_path)
    with pytest.raises(ValueError, match=r"different config \(lr, seed differ\)"):
        run(Config.build({**TINY, "lr": 0.5, "seed": 3}), tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="config must be a Config or a mapping"):
        run(3, tmp_path)
    with pytest.raises(ValueError, match="unknown key"):
        run({"nope": 1}, tmp_path)
    with pytest.raises(ValueError, match=r"conv_dropout: must be one of element, channel,"):
        run({**TINY, "model": "cnn", "conv_dropout": "spatial"}, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused with the config, before any folder
    with pytest.raises(ValueError, match="train_size=5000 but only"):
        run(Config.build({**TINY, "train_size": 5000}), tmp_path / "y")


def test_uci_regression_reports_rmse_in_target_units(tmp_path):
    # A tiny folder in the standard split format: y = 3 * x0 + 100, so a fitted model's RMSE in
    # target units must be far below the target's spread (std ~ 3 * 1 = 3) only if units are right.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    rows = np.column_stack([x, 3 * x[:, 0] + 100])
    folder = tmp_path / "toy"
    folder.mkdir()
    np.savetxt(folder / "data.txt", rows)
    np.savetxt(folder / "index_features.txt", [0, 1], fmt="%d")
    (folder / "index_target.txt").write_text("2\n")
    (folder / "n_splits.txt").write_text("1\n")
    np.savetxt(folder / "index_train_0.txt", np.arange(180), fmt="%d")
    np.savetxt(folder / "index_test_0.txt", np.arange(180, 200), fmt="%d")
    cfg = Config.build(
        dataset="uci",
        data_dir=str(folder),
        widths=[16],
        epochs=30,
        lr=0.01,
        batch_size=32,
        plots=False,
    )
    summary = run(cfg, tmp_path / "run")
    assert "test_acc" not in summary and "gap" not in summary
    first = load_run(tmp_path / "run")["metrics"][0]
    # RMSE = sqrt(MSE on standardised targets) * the training targets' std (about 3 here).
    y_scale = prepare(cfg).y_scale
    assert abs(y_scale - 3.0) < 0.6
    assert first["test_rmse"] == pytest.approx(math.sqrt(first["test_loss"]) * y_scale, rel=1e-9)
    assert summary["test_rmse"] < 0.5  # the linear target is learnt: far below its std of ~3


def test_ctrl_c_in_cli_exits_130(tmp_path, monkeypatch, capsys):
    from dropkit.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "_run", interrupted)
    code = main(["run", "--quiet", "--workdir", str(tmp_path), "dataset=digits", "plots=false"])
    assert code == 130 and "rerun the same command to resume" in capsys.readouterr().err


def test_dropkit_layers_are_wired_into_the_models():
    from dropkit.lab.config import Config as C
    from dropkit.lab.models import build_model

    def kinds(cfg, shape):
        return {type(m).__name__ for m in build_model(C.build(cfg), shape, 10).modules()}

    base = {"model": "cnn", "channels": [4], "hidden_size": 8, "p_hidden": 0.1}
    assert "Dropout2d" in kinds({**base, "conv_dropout": "channel"}, (1, 8, 8))
    assert "Dropout1d" in kinds({**base, "conv_dropout": "channel"}, (1, 40))
    assert "DropBlock2d" in kinds({**base, "conv_dropout": "dropblock"}, (1, 8, 8))
    assert "DropConnectConv2d" in kinds({**base, "conv_dropout": "dropconnect"}, (1, 8, 8))
    mlp = {"widths": [8, 8], "p_hidden": 0.2, "p_input": 0.1}
    assert [k for k in kinds({**mlp, "mlp_dropout": "gaussian"}, (1, 40)) if "Dropout" in k] == [
        "GaussianDropout"
    ]
    assert {"DropConnectLinear", "Dropout"} <= kinds({**mlp, "mlp_dropout": "dropconnect"}, (1, 40))
    assert "_DropBlock1d" in kinds({**base, "conv_dropout": "dropblock"}, (1, 40))
    rnn = {"model": "gru", "hidden_size": 8, "p_hidden": 0.1, "rnn_dropout": "variational"}
    assert "LockedDropout" in kinds(rnn, (1, 40))
    assert "VariationalGRU" in kinds({**rnn, "rnn_dropout": "recurrent"}, (1, 40))
    assert "VariationalLSTM" in kinds({**rnn, "model": "lstm", "rnn_dropout": "recurrent"}, (1, 40))
    awd = kinds({**rnn, "model": "lstm", "weight_dropout": 0.3}, (1, 40))
    assert {"WeightDropLSTM", "LockedDropout"} <= awd
    with pytest.raises(ValueError, match="cannot be combined"):
        kinds({**rnn, "rnn_dropout": "recurrent", "weight_dropout": 0.3}, (1, 40))


def test_dropblock_on_signals_drops_runs_of_three():
    from dropkit.lab.models import _DropBlock1d

    torch.manual_seed(0)
    layer = _DropBlock1d(0.3).train()
    out = layer(torch.ones(64, 8, 40))
    assert out.shape == (64, 8, 40)
    zero = out == 0
    frac = zero.float().mean().item()
    assert 0.15 < frac < 0.45  # about p, blocks overlapping and clipped at the ends
    # every dropped sample sits in a run of >= 3 zeros (a run may be clipped by an end): the
    # opening (erosion, then dilation, window 3) of the zero mask keeps every zero
    F = torch.nn.functional
    z = zero.float().flatten(0, 1)[:, None]
    eroded = -F.max_pool1d(-F.pad(z, (1, 1), value=1.0), 3, 1)
    opened = F.max_pool1d(F.pad(eroded, (1, 1), value=0.0), 3, 1)
    assert opened.shape == z.shape and bool((opened >= z).all())
    # element dropout at the same rate would leave isolated zeros
    iso = (torch.rand(512, 1, 40) < 0.3).float()
    assert not bool(
        (
            F.max_pool1d(F.pad(-F.max_pool1d(-F.pad(iso, (1, 1), value=1.0), 3, 1), (1, 1)), 3, 1)
            >= iso
        ).all()
    )
    assert layer.eval()(torch.ones(2, 3, 40)).eq(1).all()


@pytest.mark.parametrize(
    ("schedule", "per", "want"),
    [
        # time t in steps (per="step") or epochs; the switch at 1.5 epochs
        ("early", "step", lambda t, spe: 0.5 if t < 1.5 * spe else 0.0),
        ("late", "step", lambda t, spe: 0.0 if t < 1.5 * spe else 0.5),
        ("early", "epoch", lambda t, spe: 0.5 if t < 1.5 else 0.0),
        ("curriculum", "epoch", lambda t, spe: 0.5 * (1 - math.exp(-0.7 * t))),
        ("curriculum", "step", lambda t, spe: 0.5 * (1 - math.exp(-0.7 * t / spe))),
    ],
)
def test_dropout_schedule_drives_every_layer(tmp_path, monkeypatch, schedule, per, want):
    cfg = Config.build(
        {
            **TINY,
            "epochs": 3,
            "widths": [16, 16],
            "p_hidden": 0.5,
            "dropout_schedule": schedule,
            "schedule_length": 1.5,
            "schedule_gamma": 0.7,
            "schedule_per": per,
        }
    )
    models, seen = [], []
    build, loss = runner_mod.build_model, runner_mod._loss

    def build_spy(*args):
        models.append(build(*args))
        return models[-1]

    def loss_spy(out, y, task):
        if models[0].training:  # one call per optimiser step; evaluation runs in eval mode
            seen.append(dnn.get_dropout_p(models[0]))
        return loss(out, y, task)

    monkeypatch.setattr(runner_mod, "build_model", build_spy)
    monkeypatch.setattr(runner_mod, "_loss", loss_spy)
    monkeypatch.setattr(runner_mod, "_warm_up", lambda *args: 0.0)  # its step is not training
    run(cfg, tmp_path)
    spe = len(seen) // 3
    assert spe * 3 == len(seen) and spe > 10
    for k, rates in enumerate(seen):
        t = k if per == "step" else k // spe
        assert rates["1"] == 0.0  # the input layer (p_input=0) stays off
        hidden = [p for name, p in rates.items() if name != "1"]
        assert len(hidden) == 2 and hidden == pytest.approx([want(t, spe)] * 2, abs=1e-12), k


def test_dropout_schedule_needs_its_length():
    with pytest.raises(ValueError, match="schedule_length"):
        Config.build({**TINY, "dropout_schedule": "early"})


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"lr_schedule": "step", "lr_step": 2, "lr_gamma": 0.5}, [0.04, 0.04, 0.02, 0.02]),
        ({"lr_schedule": "exponential", "lr_gamma": 0.5}, [0.04, 0.02, 0.01, 0.005]),
        # cosine over 4 epochs: lr * (1 + cos(pi * t / 4)) / 2 for t = 0..3
        ({"lr_schedule": "cosine"}, [0.04 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]),
    ],
)
def test_lr_schedules_and_their_exact_resume(tmp_path, monkeypatch, schedule, expected):
    cfg = Config.build({**TINY, "epochs": 4, "lr": 0.04, "p_hidden": 0.3, **schedule})
    run(cfg, tmp_path / "straight")
    straight = load_run(tmp_path / "straight")["metrics"]
    assert [r["lr"] for r in straight] == pytest.approx(expected, rel=1e-12)

    with interrupted_at(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed")
    run(cfg, tmp_path / "resumed")
    resumed = load_run(tmp_path / "resumed")["metrics"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rs]  # noqa: E731
    assert strip(resumed) == strip(straight)


def test_user_dataset_and_model_by_import_path(tmp_path):
    cfg = Config.build(
        {**TINY, "dataset": "tests.lab._user_lab:blobs", "model": "tests.lab._user_lab:linear"}
    )
    summary = run({**cfg.model_dump(), "epochs": 5}, tmp_path / "r")
    assert summary["test_acc"] > 0.9 and summary["n_params"] == 5 * 2 + 2
    # The built-in model on the user's data, too.
    assert run(cfg.replace(model="mlp"), tmp_path / "mlp")["test_acc"] > 0.5


@pytest.mark.parametrize(
    ("changes", "err", "message"),
    [
        ({"dataset": "no_such_pkg.mod:load"}, ValueError, "cannot import module 'no_such_pkg.mod'"),
        ({"dataset": "tests.lab._user_lab:nope"}, ValueError, "has no 'nope'"),
        ({"dataset": "tests.lab._user_lab:bad_labels"}, ValueError, "labels must be 0..K-1"),
        (
            {"dataset": "tests.lab._user_lab:blobs", "model": "tests.lab._user_lab:not_a_module"},
            TypeError,
            "returned a str, not a torch.nn.Module",
        ),
    ],
)
def test_import_path_errors(tmp_path, changes, err, message):
    with pytest.raises(err, match=message):
        run(Config.build({**TINY, **changes}), tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()
    with pytest.raises(
        ValueError, match=r"model: .*or an import path pkg.module:build; got 'resnet'"
    ):
        Config.build(model="resnet")


def test_timing_leaves_out_the_first_calls_compilation(tmp_path):
    # A model whose first call sleeps SLOW_SECONDS, as numba's dropout kernels compile on first
    # use (issue 23 measured 36 s of seed 0's first epoch). Before: wall_s held it.
    from tests.lab._user_lab import SLOW_SECONDS

    cfg = Config.build({**TINY, "epochs": 2, "model": "tests.lab._user_lab:slow_first_call"})
    summary = run(cfg, tmp_path)
    assert summary["warmup_s"] >= SLOW_SECONDS > summary["wall_s"]
    elapsed = [r["elapsed_s"] for r in load_run(tmp_path)["metrics"]]
    assert elapsed[-1] == pytest.approx(summary["wall_s"], abs=1e-3)


@pytest.mark.parametrize(
    "extra",
    [
        {"p_input": 0.2, "p_hidden": 0.5, "augment_noise": 0.1},
        {"batchnorm": "before_dropout", "p_hidden": 0.3},
        {"model": "gru", "hidden_size": 8, "weight_dropout": 0.3, "p_hidden": 0.2},
        {"model": "cnn", "channels": [4], "hidden_size": 8, "conv_dropout": "dropblock",
         "p_hidden": 0.2},
    ],
)  # fmt: skip
def test_warm_up_leaves_no_trace(tmp_path, monkeypatch, extra):
    # The warm-up step draws masks and updates BatchNorm statistics: the RNGs are forked and the
    # weights and buffers restored, so a run gives exactly what it gives without the step.
    cfg = Config.build({**TINY, "epochs": 2, **extra})
    warm = run(cfg, tmp_path / "warm")
    monkeypatch.setattr(runner_mod, "_warm_up", lambda *args: 0.0)
    cold = run(cfg, tmp_path / "cold")
    strip = lambda s: {k: v for k, v in s.items() if k not in ("wall_s", "warmup_s")}  # noqa: E731
    assert strip(warm) == strip(cold)
    a = torch.load(tmp_path / "warm" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cold" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_provenance_names_code_machine_command_seed_and_data(tmp_path, monkeypatch):
    # before: dropkit, torch and Python versions only
    import hashlib
    import platform
    import subprocess
    import sys

    from dropkit.lab.provenance import cpu_model, git_state

    monkeypatch.setattr(sys, "argv", ["dropkit", "run", "seed=3", "data_dir=/a b"])
    cfg = Config.build({**TINY, "seed": 3})
    run(cfg, tmp_path / "r")
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["command"] == "dropkit run seed=3 'data_dir=/a b'"
    assert prov["host"] == platform.node() and prov["cpu"] == cpu_model() and prov["cpu"]
    assert prov["threads"] == 1 and prov["device"] == "cpu" and prov["seed"] == 3
    assert prov["torch"] == torch.__version__ and prov["numba"] and prov["python"]
    data = prepare(cfg)
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes())
    assert prov["data_sha256"] == digest.hexdigest()
    # the git commit when dropkit runs from a checkout, None (no failure) when not
    src = os.path.dirname(runner_mod.__file__)
    found = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True)
    assert prov["git_commit"] == (found.stdout.strip() or None) or found.returncode != 0
    assert git_state(tmp_path) == (None, None)


def test_provenance_hashes_the_data_files_and_records_a_resume(tmp_path, monkeypatch):
    import hashlib

    from tests.uncertainty.test_ensemble import fake_fashion

    folder = fake_fashion(tmp_path / "fm")
    cfg = Config.build({**TINY, "dataset": "fashion_mnist", "data_dir": str(folder), "epochs": 2})
    with interrupted_at(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "r")
    run(cfg, tmp_path / "r")
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    files = sorted(p for p in folder.iterdir())
    assert (
        prov["data_files"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        and len(files) == 4
    )
    (resume,) = prov["resumes"]
    assert resume["from_epoch"] == 1 and resume["data_sha256"] == prov["data_sha256"]


def test_failed_start_leaves_no_folder(tmp_path):
    # before: the run folder stayed behind, holding only .lock
    cfg = Config.build({**TINY, "dataset": "uci", "data_dir": str(tmp_path / "absent")})
    with pytest.raises(FileNotFoundError):
        run(cfg, tmp_path / "a" / "b")
    assert sorted(os.listdir(tmp_path)) == []
