"""dropkit.schedules: every dropout layer's rate follows the schedule's formula, at every time."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit.nn import get_dropout_p
from dropkit.schedules import (
    ConstantDropout,
    CurriculumDropout,
    EarlyDropout,
    LateDropout,
    LinearDropout,
    make_schedule,
)


def _model() -> nn.Module:
    # four kinds of dropout layer, three rates, one layer at 0 (stays 0 under every schedule)
    return nn.Sequential(
        dnn.Dropout(0.0),
        nn.Conv2d(1, 4, 3),
        dnn.Dropout2d(0.2),
        dnn.DropBlock2d(0.3, block_size=3),
        nn.Flatten(),
        dnn.DropConnectLinear(4 * 6 * 6, 8, p=0.5),
        torch.nn.Dropout(0.4),  # torch's own module is driven too
    )


PEAKS = {"0": 0.0, "2": 0.2, "3": 0.3, "5": 0.5, "6": 0.4}


@pytest.mark.parametrize(
    ("make", "factor"),
    [
        (lambda m: ConstantDropout(m), lambda t: 1.0),
        (lambda m: EarlyDropout(m, until=3), lambda t: 1.0 if t < 3 else 0.0),
        (lambda m: LateDropout(m, start=3), lambda t: 0.0 if t < 3 else 1.0),
        (lambda m: LinearDropout(m, total=4), lambda t: min(t / 4, 1.0)),
        (
            lambda m: LinearDropout(m, total=4, start=1.0, end=0.25),
            lambda t: 1.0 - 0.75 * min(t / 4, 1.0),
        ),
        (lambda m: CurriculumDropout(m, gamma=0.5), lambda t: 1.0 - math.exp(-0.5 * t)),
    ],
)
def test_every_layer_follows_the_schedule(make, factor):
    model = _model()
    schedule = make(model)
    for t in range(8):
        if t:
            schedule.step()
        got = get_dropout_p(model)
        assert set(got) == set(PEAKS)
        for name, peak in PEAKS.items():
            assert got[name] == pytest.approx(factor(t) * peak, abs=1e-12), (t, name)


def test_explicit_peak_and_jumps():
    model = _model()
    schedule = EarlyDropout(model, until=10, p=0.25)
    assert set(get_dropout_p(model).values()) == {0.25}  # every layer, the 0 one included
    schedule.step(10)
    assert set(get_dropout_p(model).values()) == {0.0}
    schedule.load_state_dict({"t": 2})  # a resumed run jumps back
    assert schedule.t == 2 and set(get_dropout_p(model).values()) == {0.25}


def test_masks_follow_the_rate():
    # the layer really drops at the scheduled rate: count zeros of a big input (binomial tolerance)
    model = nn.Sequential(dnn.Dropout(0.5)).train()
    schedule = LinearDropout(model, total=2)
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for t, p in ((0, 0.0), (1, 0.25), (2, 0.5)):
        schedule.step(t)
        frac = (model(x) == 0).float().mean().item()
        assert abs(frac - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / x.numel())


def test_bad_arguments():
    with pytest.raises(ValueError, match="no dropout layers"):
        ConstantDropout(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        ConstantDropout("model")
    with pytest.raises(ValueError, match="until"):
        EarlyDropout(_model(), until=-1)
    with pytest.raises(ValueError, match="gamma"):
        CurriculumDropout(_model(), gamma=0)
    with pytest.raises(ValueError, match="p"):
        LateDropout(_model(), start=1, p=1.5)
    with pytest.raises(ValueError, match="end"):
        LinearDropout(_model(), total=3, end=2.0)
    with pytest.raises(ValueError, match="kind='sometimes'"):
        make_schedule("sometimes", _model())


def test_modules_with_several_rates_follow_the_schedule():
    # a VariationalLSTM has three rates (input, recurrent, output): each is scheduled under its own
    # name (the schedule read ``module.p``, which such modules have not: AttributeError)
    model = nn.Sequential(
        dnn.VariationalLSTM(4, 8, input_dropout=0.2, recurrent_dropout=0.4, output_dropout=0.3),
        dnn.Dropout(0.5),
    )
    peaks = get_dropout_p(model)
    assert {"0.input_dropout", "0.recurrent_dropout", "0.output_dropout", "1"} <= set(peaks)
    schedule = LinearDropout(model, total=10)
    schedule.step(5)
    assert get_dropout_p(model) == pytest.approx({k: 0.5 * v for k, v in peaks.items()})
