"""share_masks / mask_share=k: the masks of k data-parallel ranks seeded alike.

Exactness: chunk c of every layer's mask equals chunk 0, and the layer's output is its input times
that tiled mask. k = 1: nothing installed, a run bit-identical to one without the key. Statistics:
the keep fraction of each chunk is Binomial(cells, 1 - p) / cells; every check allows 4.5 standard
deviations, sqrt(p (1 - p) / cells) (a two-sided miss has probability 7e-6 under a fair mask; seeds
are fixed, so a pass is reproducible). Errors: k that does not divide the batch, weight-level noise,
layers without a rule, unbatched input.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.lab import Config, load_run, run
from dropkit.lab.mask_share import share_masks, tile_rows
from dropkit.lab.models import build_model
from dropkit.lab.sweep import sweep
from tests.lab._helpers import TINY, interrupted_at

K = 4
CHUNK = 3  # rows a chunk: batches of K * CHUNK = 12 rows

# (layer factory, one chunk's input shape, batch axis)
LAYERS = {
    "Dropout": (lambda: dnn.Dropout(0.5), (CHUNK, 40), 0),
    "torch Dropout": (lambda: nn.Dropout(0.5), (CHUNK, 40), 0),
    "Dropout1d": (lambda: dnn.Dropout1d(0.5), (CHUNK, 16, 9), 0),
    "Dropout2d": (lambda: dnn.Dropout2d(0.5), (CHUNK, 16, 5, 5), 0),
    "LockedDropout batch_first": (
        lambda: dnn.LockedDropout(0.5, batch_first=True),
        (CHUNK, 7, 30),
        0,
    ),
    "LockedDropout (T, N, H)": (lambda: dnn.LockedDropout(0.5), (7, CHUNK, 30), 1),
    "GaussianDropout": (lambda: dnn.GaussianDropout(0.5), (CHUNK, 40), 0),
    "DropBlock2d": (lambda: dnn.DropBlock2d(0.2, block_size=3), (CHUNK, 4, 10, 10), 0),
    "DropPath": (lambda: dnn.DropPath(0.5), (CHUNK * 8, 5), 0),
}


def _tiled(shape: tuple[int, ...], dim: int, k: int = K) -> tuple[int, ...]:
    out = list(shape)
    out[dim] *= k
    return tuple(out)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_tiling_is_exact_for_every_layer_kind(kind):
    factory, chunk_shape, dim = LAYERS[kind]
    layer = factory()
    sharing = share_masks(layer, K)
    assert sharing.names == [""] and len(sharing.handles) == 2
    shape = _tiled(chunk_shape, dim)
    torch.manual_seed(0)
    mask = layer(torch.ones(shape))  # mask * scale (the noise, for Gaussian dropout)
    chunks = mask.chunk(K, dim)
    for c, chunk in enumerate(chunks):
        assert torch.equal(chunk, chunks[0]), f"{kind}: chunk {c} differs from chunk 0"
    # ... and within a chunk the rows are independent (not one mask for the whole batch)
    rows = chunks[0].unbind(dim)
    assert any(not torch.equal(r, rows[0]) for r in rows[1:]), f"{kind}: rows of a chunk agree"
    # The output is the input times that tiled mask, with the same draw.
    x = torch.rand(shape) + 0.5
    torch.manual_seed(0)
    assert torch.equal(layer(x), x * mask)
    # Eval is untouched; remove() gives independent masks again.
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    sharing.remove()
    torch.manual_seed(0)
    free = layer(torch.ones(shape)).chunk(K, dim)
    assert not all(torch.equal(c, free[0]) for c in free[1:])


@pytest.mark.parametrize("cls", [dnn.VariationalGRU, dnn.VariationalLSTM])
def test_tiling_is_exact_for_variational_rnn_masks(cls):
    rnn = cls(
        3,
        16,
        2,
        batch_first=True,
        input_dropout=0.3,
        dropout=0.2,
        recurrent_dropout=0.3,
        output_dropout=0.4,
    )
    sharing = share_masks(rnn, K)
    assert sharing.names == [""]
    seen = []
    rnn.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["masks"]), with_kwargs=True
    )
    x = torch.randn(CHUNK, 5, 3).repeat(K, 1, 1)  # (N, T, I), the same chunk K times
    torch.manual_seed(0)
    out, h = rnn(x)
    (masks,) = seen
    tensors = [(f"input[{i}]", m, 1) for i, m in enumerate(masks.input)]
    tensors += [(f"recurrent[{i}]", m, 1) for i, m in enumerate(masks.recurrent)]
    tensors += [("output", masks.output, 0)]
    for name, mask, dim in tensors:
        assert mask is not None and mask.shape[dim] == K * CHUNK, name
        chunks = mask.chunk(K, dim)
        assert all(torch.equal(c, chunks[0]) for c in chunks), f"{name}: chunks differ"
        assert not torch.equal(chunks[0].select(dim, 0), chunks[0].select(dim, 1)), name
    # identical chunks of input through identical masks: identical chunks of output and state
    for a, b in ((out, 0), (h[0] if isinstance(h, tuple) else h, 1)):
        parts = a.chunk(K, b)
        assert all(torch.equal(p, parts[0]) for p in parts)
    # the masks are those sample_masks draws for one chunk, tiled
    torch.manual_seed(0)
    chunk = rnn.sample_masks(CHUNK)
    assert torch.equal(masks.recurrent[1], tile_rows(chunk.recurrent[1], K, K * CHUNK, 1))
    assert torch.equal(masks.output, tile_rows(chunk.output, K, K * CHUNK, 0))


def test_batch_not_divisible_tiles_the_first_chunk_and_cuts_the_last():
    # The last batch of an epoch: n = 10 rows, k = 4 -> chunks of ceil(10 / 4) = 3 rows, the 4th cut
    # to 1 row (rows 9 = row 0), as an uneven last batch splits over ranks.
    layer = dnn.Dropout(0.5)
    share_masks(layer, 4)
    torch.manual_seed(1)
    mask = layer(torch.ones(10, 64))
    for start in (3, 6):
        assert torch.equal(mask[start : start + 3], mask[:3])
    assert torch.equal(mask[9], mask[0])
    # fewer rows than k: one row's mask for all (batchwise)
    mask = layer(torch.ones(3, 64))
    assert torch.equal(mask[1], mask[0]) and torch.equal(mask[2], mask[0])


@pytest.mark.parametrize(
    ("factory", "chunk_shape", "cells_per_row"),
    [
        (lambda: dnn.Dropout(0.3), (32, 500), 500),  # elements
        (lambda: dnn.Dropout2d(0.3), (32, 200, 3, 3), 200),  # channels
        (lambda: dnn.LockedDropout(0.3, batch_first=True), (32, 6, 250), 250),  # features
    ],
)
def test_keep_fraction_of_every_chunk_is_binomial(factory, chunk_shape, cells_per_row):
    # Each chunk's mask has rows * cells_per_row independent cells kept with probability 0.7; over 20
    # draws the chunk-0 fractions must each be within 4.5 sd, differ between draws (a new mask each
    # step), and their mean (20x the cells) within 4.5 of its own sd.
    p, k, draws = 0.3, 8, 20
    layer = factory()
    share_masks(layer, k)
    torch.manual_seed(2)
    cells = chunk_shape[0] * cells_per_row
    sd = math.sqrt(p * (1 - p) / cells)
    fractions = []
    for _ in range(draws):
        kept = layer(torch.ones(_tiled(chunk_shape, 0, k))) != 0
        per_chunk = [c.float().mean().item() for c in kept.chunk(k)]
        assert len(set(per_chunk)) == 1  # the chunks are copies
        assert abs(per_chunk[0] - (1 - p)) < 4.5 * sd, (per_chunk[0], sd)
        fractions.append(per_chunk[0])
    assert len(set(fractions)) > 1
    mean = sum(fractions) / draws
    assert abs(mean - (1 - p)) < 4.5 * sd / math.sqrt(draws), (mean, sd)


def test_variational_rnn_chunk_keep_fraction_and_gaussian_noise_moments():
    p, k = 0.25, 4
    rnn = dnn.VariationalGRU(8, 400, batch_first=True, recurrent_dropout=p, output_dropout=p)
    share_masks(rnn, k)
    seen = []
    rnn.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["masks"]), with_kwargs=True)
    torch.manual_seed(3)
    rnn(torch.randn(k * 25, 2, 8))
    masks = seen[0]
    for mask, dim in ((masks.recurrent[0], 1), (masks.output, 0)):
        chunk = mask.chunk(k, dim)[0]
        sd = math.sqrt(p * (1 - p) / chunk.numel())  # 25 rows x 400 units
        assert abs(chunk.float().mean().item() - (1 - p)) < 4.5 * sd
    # Gaussian dropout: each chunk's noise has mean 1 and variance p / (1 - p); the mean over
    # cells is within 4.5 sd of 1, sd = sqrt(p / (1 - p) / cells).
    layer = dnn.GaussianDropout(p)
    share_masks(layer, k)
    noise = layer(torch.ones(k * 25, 400)).chunk(k)[0]
    sd = math.sqrt(p / (1 - p) / noise.numel())
    assert abs(noise.mean().item() - 1) < 4.5 * sd
    assert noise.var().item() == pytest.approx(p / (1 - p), rel=0.05)  # sd of s^2 ~ 1.4%


def test_k1_installs_nothing_and_keeps_todays_masks():
    cfg = Config.build({**TINY, "p_input": 0.2, "p_hidden": 0.5})
    torch.manual_seed(0)
    model = build_model(cfg, (64,), 10)
    torch.manual_seed(0)
    untouched = build_model(cfg, (64,), 10)
    sharing = share_masks(model, 1)
    assert sharing.names == [] and sharing.handles == []
    x = torch.randn(16, 64)
    torch.manual_seed(5)
    out = model(x)
    torch.manual_seed(5)
    assert torch.equal(out, untouched(x))


def test_k1_run_is_bit_identical_to_a_run_without_the_key(tmp_path):
    base = {**TINY, "epochs": 2, "p_input": 0.2, "p_hidden": 0.5}
    plain = run(Config.build(base), tmp_path / "plain")
    k1 = run(Config.build({**base, "mask_share": 1}), tmp_path / "k1")
    run(Config.build({**base, "mask_share": 4}), tmp_path / "k4")
    drop = lambda s: {k: v for k, v in s.items() if k not in ("wall_s", "warmup_s")}  # noqa: E731
    assert drop(plain) == drop(k1)
    w_plain = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)
    w_k1 = torch.load(tmp_path / "k1" / "model.pt", weights_only=True)
    w_k4 = torch.load(tmp_path / "k4" / "model.pt", weights_only=True)
    assert w_plain.keys() == w_k1.keys() == w_k4.keys()  # hooks only: the same state_dict
    assert all(torch.equal(w_plain[k], w_k1[k]) for k in w_plain)
    # the key has an effect: shared masks train other weights from the same start
    assert not all(torch.equal(w_plain[k], w_k4[k]) for k in w_plain)
    assert load_run(tmp_path / "k4")["config"].mask_share == 4


def test_shared_masks_resume_exactly(tmp_path, monkeypatch):
    cfg = Config.build({**TINY, "epochs": 3, "p_hidden": 0.5, "mask_share": 8})
    straight = run(cfg, tmp_path / "straight")
    with interrupted_at(monkeypatch, 3), pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed")
    resumed = run(cfg, tmp_path / "resumed")
    assert resumed["test_acc"] == straight["test_acc"]
    assert resumed["train_loss"] == straight["train_loss"]


def test_lab_models_share_every_mask():
    # the GRU with variational masks, the CNN with channel dropout and DropBlock on signals, the MLP
    # with Gaussian noise: every dropout layer of the lab's models is hooked, none is refused
    for changes, kinds in [
        ({"model": "gru", "rnn_dropout": "recurrent", "rnn_layers": 2}, {"VariationalGRU"}),
        ({"model": "gru", "rnn_dropout": "variational"}, {"LockedDropout"}),
        ({"model": "cnn", "conv_dropout": "channel"}, {"Dropout", "Dropout1d"}),
        ({"model": "cnn", "conv_dropout": "dropblock"}, {"Dropout", "DropBlock2d"}),
        ({"model": "mlp", "mlp_dropout": "gaussian"}, {"GaussianDropout"}),
    ]:
        cfg = Config.build({"p_hidden": 0.2, "mask_share": 4, **changes})
        model = build_model(cfg, (1, 40), 10)
        names = share_masks(model, 4).names
        hooked = {type(model.get_submodule(n)).__name__ for n in names}
        assert hooked == kinds, (changes, hooked)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch_size": 100, "mask_share": 3}, r"mask_share=3 must divide batch_size=100"),
        ({"mask_share": 0}, r"mask_share: must be greater than or equal to 1, got 0"),
        (
            {"mlp_dropout": "dropconnect", "p_hidden": 0.3, "mask_share": 4},
            r"mask_share=4 needs per-sample dropout masks, but mlp_dropout='dropconnect' drops "
            r"weights",
        ),
        (
            {"model": "cnn", "conv_dropout": "dropconnect", "mask_share": 2},
            r"but conv_dropout='dropconnect' drops weights",
        ),
        (
            {"model": "gru", "weight_dropout": 0.1, "mask_share": 2},
            r"but weight_dropout=0.1 drops weights",
        ),
    ],
)
def test_config_errors(values, message):
    with pytest.raises(ValueError, match=message):
        Config.build(values)


def test_a_sweep_with_a_bad_k_fails_before_any_training(tmp_path):
    with pytest.raises(ValueError, match=r"mask_share=3 must divide batch_size=64"):
        sweep(Config.build({**TINY, "p_hidden": 0.5}), {"mask_share": [1, 3]}, tmp_path)
    assert not (tmp_path / "runs").exists()


def test_cli_reports_a_bad_k_without_a_traceback(tmp_path, capsys):
    from dropkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--workdir", str(tmp_path / "r"), "batch_size=100", "mask_share=7"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "mask_share=7 must divide batch_size=100" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (dnn.DropConnectLinear(4, 4, p=0.3), r"DropConnectLinear at '\(the model\)' drops weights"),
        (nn.Sequential(dnn.WeightDropGRU(4, 4, weight_dropout=0.2)), r"WeightDropGRU at '0' drops"),
        (nn.Sequential(nn.Linear(4, 4), nn.AlphaDropout(0.2)), r"AlphaDropout at '1' is a stoch"),
        (nn.GRU(4, 4, 2, dropout=0.2), r"GRU at '\(the model\)' is a stochastic layer"),
    ],
)
def test_layers_without_per_sample_masks_are_refused(model, message):
    with pytest.raises(ValueError, match=r"mask_share=2: " + message):
        share_masks(model, 2)
    assert share_masks(model, 1).names == []  # k = 1 changes nothing, refuses nothing


def test_argument_and_input_errors():
    with pytest.raises(TypeError, match="k must be an int, but got float"):
        share_masks(dnn.Dropout(0.5), 2.0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        share_masks(dnn.Dropout(0.5), 0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        share_masks("model", 2)
    layer = dnn.Dropout2d(0.5)
    share_masks(layer, 2)
    with pytest.raises(ValueError, match=r"Dropout2d needs a batched input of 4 dimensions"):
        layer(torch.ones(3, 5, 5))
    with pytest.warns(UserWarning, match="no dropout layer"):
        share_masks(nn.Linear(3, 3), 2)
    # a non-random RNN (one layer: torch drops nothing) is neither hooked nor refused
    with pytest.warns(UserWarning, match="no dropout layer"):
        assert share_masks(nn.GRU(4, 4, 2), 2).names == []
