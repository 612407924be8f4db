"""DropConnect layers and the lossless add_dropconnect / remove_dropconnect."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import dropkit.functional as DF
import dropkit.nn as dnn


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same_state(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


class TestLayers:
    @pytest.mark.parametrize(
        "ours, theirs, args, shape",
        [
            (dnn.DropConnectLinear, nn.Linear, (6, 4), (5, 6)),
            (dnn.DropConnectConv1d, nn.Conv1d, (3, 4, 3), (2, 3, 10)),
            (dnn.DropConnectConv2d, nn.Conv2d, (3, 4, 3), (2, 3, 8, 8)),
        ],
    )
    def test_same_state_dict_and_eval_output_as_the_torch_layer(self, ours, theirs, args, shape):
        torch.manual_seed(0)
        plain = theirs(*args)
        layer = ours(*args, p=0.3)
        layer.load_state_dict(plain.state_dict())
        assert _same_state(layer.state_dict(), plain.state_dict())
        x = torch.randn(shape)
        assert torch.equal(layer.eval()(x), plain(x))
        assert repr(layer) == "DropConnect" + repr(plain)[:-1] + ", p=0.3)"

    def test_training_forward_is_the_functional_op(self):
        layer = dnn.DropConnectConv2d(
            3, 4, 3, stride=2, padding=1, groups=1, p=0.4, generator=_seeded(1)
        )
        x = torch.randn(2, 3, 8, 8)
        expected = DF.dropconnect_conv(
            x, layer.weight, layer.bias, 0.4, stride=2, padding=1, generator=_seeded(1)
        )
        assert torch.equal(layer(x), expected)

    def test_padding_mode_is_honoured(self):
        layer = dnn.DropConnectConv2d(2, 3, 3, padding=1, padding_mode="reflect", p=0.2)
        plain = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
        plain.load_state_dict(layer.state_dict())
        x = torch.randn(2, 2, 6, 6)
        torch.testing.assert_close(layer.eval()(x), plain(x))
        layer.p = 0.0
        torch.testing.assert_close(layer.train()(x), plain(x))

    def test_per_sample_conv_with_padding_mode_matches_a_loop_over_samples(self):
        layer = dnn.DropConnectConv1d(
            4,
            6,
            3,
            padding=1,
            padding_mode="circular",
            groups=2,
            p=0.4,
            per_sample=True,
            generator=_seeded(2),
        )
        x = torch.randn(5, 4, 9)
        out = layer(x)
        masks = DF.dropconnect_mask(layer.weight.shape, 0.4, batch_size=5, generator=_seeded(2))
        padded = nn.functional.pad(x, (1, 1), mode="circular")
        for i in range(5):
            w = DF.apply_mask(layer.weight, masks[i], 0.4)
            expected = nn.functional.conv1d(padded[i : i + 1], w, layer.bias, groups=2)
            torch.testing.assert_close(out[i : i + 1], expected, rtol=1e-5, atol=1e-6)

    def test_per_sample_option_and_repr(self):
        layer = dnn.DropConnectLinear(5, 3, p=0.5, per_sample=True, scale="classic")
        assert repr(layer).endswith("p=0.5, per_sample=True, scale='classic')")
        x = torch.ones(1, 5).expand(64, 5)
        out = layer(x)
        assert not torch.equal(out[0], out[1])  # different weight masks for identical samples

    def test_p_validation(self):
        with pytest.raises(ValueError, match="between 0 and 1"):
            dnn.DropConnectLinear(3, 3, p=2.0)
        layer = dnn.DropConnectLinear(3, 3)
        with pytest.raises(ValueError, match="between 0 and 1"):
            layer.p = -0.1
        with pytest.raises(TypeError, match="per_sample must be a bool"):
            dnn.DropConnectConv1d(2, 2, 3, per_sample=1)


class TestAddRemove:
    def _model(self):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 5),
        )

    def test_lossless_round_trip(self):
        model = self._model()
        model[1].running_mean.add_(0.5)  # a buffer with content
        before = copy.deepcopy(model.state_dict())
        weights = [model[0].weight, model[4].weight, model[4].bias]
        x = torch.randn(2, 3, 8, 8)
        expected = model.eval()(x)

        dnn.add_dropconnect(model[0], p=0.3)
        dnn.add_dropconnect(model[4], ["weight", "bias"], p=0.2)
        assert _same_state(model.state_dict(), before)  # same keys, order and values
        assert model[0].stride == (2, 2) and model[0].padding == (1, 1)
        assert model[0].parametrizations.weight.original is weights[0]
        assert repr(model[0].parametrizations.weight[0]) == "DropConnect(p=0.3)"
        assert torch.equal(model.eval()(x), expected)  # eval: the mean weights

        dnn.remove_dropconnect(model[0])
        dnn.remove_dropconnect(model[4])
        assert type(model[0]) is nn.Conv2d and type(model[4]) is nn.Linear
        assert [model[0].weight, model[4].weight, model[4].bias] == weights
        assert all(
            a is b
            for a, b in zip([model[0].weight, model[4].weight, model[4].bias], weights, strict=True)
        )
        assert _same_state(model.state_dict(), before)
        assert torch.equal(model(x), expected)

    def test_checkpoints_load_both_ways(self):
        plain, dropped = self._model(), self._model()
        for p in plain.parameters():
            p.data.normal_()
        dnn.add_dropconnect(dropped[0], p=0.5)
        dropped.load_state_dict(plain.state_dict())  # plain checkpoint -> DropConnect model
        assert torch.equal(dropped[0].parametrizations.weight.original, plain[0].weight)
        buf = io.BytesIO()
        torch.save(dropped.state_dict(), buf)
        buf.seek(0)
        fresh = self._model()
        fresh.load_state_dict(torch.load(buf))  # DropConnect checkpoint -> plain model
        assert _same_state(fresh.state_dict(), plain.state_dict())

    def test_training_masks_the_weight_once_per_forward(self):
        layer = nn.Linear(20, 30, bias=False)
        nn.init.ones_(layer.weight)
        dnn.add_dropconnect(layer, p=0.5, generator=_seeded(3))
        out = layer(torch.eye(20).expand(4, 20, 20))  # reads back the masked weight per sample
        w = out.transpose(1, 2)
        assert torch.equal(w, w[:1].expand_as(w))  # one mask for the whole batch
        mask = DF.sample_mask((30, 20), 0.5, generator=_seeded(3))
        assert torch.equal(w[0], mask * 2.0)
        assert layer.training and torch.equal(layer.eval().weight, torch.ones(30, 20))

    def test_gradients_reach_the_original_parameter_and_training_works(self):
        torch.manual_seed(1)
        layer = nn.Linear(4, 1)
        dnn.add_dropconnect(layer, p=0.2)
        opt = torch.optim.SGD(layer.parameters(), lr=0.05)
        x = torch.randn(128, 4)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 1

        def eval_loss():
            with torch.no_grad():
                return (layer.eval()(x).squeeze(1) - y).pow(2).mean().item()

        first = eval_loss()
        for _ in range(100):
            loss = (layer.train()(x).squeeze(1) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert layer.parametrizations.weight.original.grad is not None
        assert eval_loss() < first / 4

    def test_errors(self):
        layer = nn.Linear(3, 3)
        with pytest.raises(
            ValueError, match=r"Linear has no parameter 'kernel' \(it has \['weight', 'bias'\]\)"
        ):
            dnn.add_dropconnect(layer, "kernel")
        dnn.add_dropconnect(layer)
        with pytest.raises(ValueError, match="already parametrized"):
            dnn.add_dropconnect(layer)
        with pytest.raises(ValueError, match="has no DropConnect"):
            dnn.remove_dropconnect(layer, "bias")
        with pytest.raises(ValueError, match="between 0 and 1"):
            dnn.add_dropconnect(nn.Linear(2, 2), p=3.0)
        with pytest.raises(ValueError, match="names has repeats"):
            dnn.add_dropconnect(nn.Linear(2, 2), ["weight", "weight"])
        with pytest.raises(TypeError, match="must be a torch.nn.Module"):
            dnn.add_dropconnect(torch.ones(3))
