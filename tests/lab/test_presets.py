"""Every preset's grid resolves to valid configs (a typo in a preset fails here, not hours into a
sweep), and its variants exist."""

from __future__ import annotations

import pytest

from dropkit.lab import Config
from dropkit.lab.presets import PRESETS
from dropkit.lab.sweep import _point_config, grid_points


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_grid_point_is_a_valid_config(name):
    preset = PRESETS[name]
    base = Config.build(dict(preset.base))
    points = grid_points(preset.grid)
    assert points, f"{name}: empty grid"
    names = set()
    for params in points:
        config = _point_config(base, params, preset.variants)
        assert isinstance(config, Config)
        if "variant" in params:
            assert params["variant"] in preset.variants
            names.add(config.name)
    if "variant" in preset.grid:  # each variant on the grid names its runs
        assert names == set(preset.grid["variant"])


@pytest.mark.parametrize(
    ("name", "source", "dropout", "changed"),
    [
        # the Fashion-MNIST MLP of fashion-mlp-small, unchanged (its batch is 256 already)
        ("mask-share-mlp", "fashion-mlp-small", "input 0.2, hidden 0.5", set()),
        # the overfitting GRU at batch 256 (every k divides it), 150 epochs = the same 600 steps
        ("mask-share-gru", "mnist1d-rnn-overfit", "variational 0.1", {"batch_size", "epochs"}),
    ],
)
def test_mask_share_presets(name, source, dropout, changed):
    # Issue 25: k = 1, 4, 16, 64 and 256 = the batch (one sample a rank: batchwise dropout), each
    # k dividing the batch; the dropout of the source preset's best variant; no dropout as the
    # floor; 5 seeds; nothing else differs from the source preset.
    preset, src = PRESETS[name], PRESETS[source]
    base = Config.build(dict(preset.base))
    assert base.batch_size == 256
    ks = [preset.variants[v].get("mask_share") for v in preset.grid["variant"]]
    assert ks == [None, 1, 4, 16, 64, 256] and preset.grid["seed"] == [0, 1, 2, 3, 4]
    src_base = Config.build(dict(src.base))
    differ = {k for k, v in base.model_dump().items() if v != getattr(src_base, k)}
    assert differ == changed
    want = _point_config(src_base, {"variant": dropout}, src.variants)
    for variant, k in zip(preset.grid["variant"], ks, strict=True):
        config = _point_config(base, {"variant": variant}, preset.variants)
        if k is None:
            assert config.p_input == 0 and config.p_hidden == (0.0,)
            continue
        assert config.mask_share == k and base.batch_size % k == 0
        same = {"p_input", "p_hidden", "rnn_dropout", "mlp_dropout", "weight_dropout"}
        assert {f: getattr(config, f) for f in same} == {f: getattr(want, f) for f in same}


def test_run_time_estimate_follows_the_arithmetic():
    from dropkit.lab._cost import estimate_seconds, format_duration

    base = Config.build({"dataset": "mnist1d", "epochs": 10, "eval_every": 10})
    one = estimate_seconds(base)
    # the training part doubles with the epochs (the one evaluation stays), and grows with width
    two = estimate_seconds(base.replace(epochs=20, eval_every=20))
    assert 1.9 * one < two < 2.0 * one
    assert estimate_seconds(base.replace(widths=(1000, 1000))) > 5 * one
    assert estimate_seconds(base.replace(dataset="fashion_mnist")) > 10 * one
    for cfg in (base.replace(model="cnn"), base.replace(model="gru", p_hidden=0.2)):
        assert estimate_seconds(cfg) > 0
    # data it cannot size: unknown, not a guess
    assert estimate_seconds(base.replace(dataset="uci", data_dir="/x")) is None
    assert estimate_seconds(base.replace(model="tests.lab._user_lab:linear")) is None
    assert [format_duration(s) for s in (None, 0.2, 40, 720, 3 * 3600)] == [
        "?",
        "~1 s",
        "~40 s",
        "~12 min",
        "~3.0 h",
    ]
