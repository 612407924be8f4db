"""PyTorch's machinery × every module of dropkit.nn (the specs of _specs.py).

Autograd, torch.func, checkpoint and in-place contracts run on the functional ops each module calls
(test_functional.py); here: gradcheck through the module, torch.fx (leaves), TorchScript,
torch.compile, torch.export, ONNX, half precision near p = 1 and the bool constructor flags.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropkit
import dropkit.nn as dnn
from tests.contract._specs import (
    MODULES,
    NOT_MODULES,
    large_variants,
    same_values_tol,
    variant_id,
)

VARIANTS = large_variants(MODULES)
_RNNS = ("Variational", "WeightDrop")  # modules that return (output, state), as torch's RNNs


def _inputs(spec, large, dtype=torch.float32):
    torch.manual_seed(100)
    return list(spec.inputs(dtype, large))


def _both(fn_a, fn_b, seed=0):
    torch.manual_seed(seed)
    a = fn_a()
    torch.manual_seed(seed)
    return a, fn_b()


def _model(spec, large=False, dtype=torch.float32, **kwargs):
    return spec.make(large, **kwargs).to(dtype)


def test_every_public_name_has_a_spec():
    assert {s.name for s in MODULES} | set(NOT_MODULES) == set(dnn.__all__)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[0].grad], ids=variant_id)
def test_gradcheck_through_the_module(variant):
    spec, large = variant
    model = _model(spec, large, torch.float64)
    x = _inputs(spec, large, torch.float64)[0].requires_grad_()

    def f(x):
        torch.manual_seed(0)
        return spec.run(model, [x])

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)


# ---- torch.fx -----------------------------------------------------------------------------------


class _Holder(torch.nn.Module):
    """A model holding one instance of every dropkit module, each applied to its own input."""

    def __init__(self, specs):
        super().__init__()
        self.specs = specs
        self.layers = torch.nn.ModuleList(s.make() for s in specs)

    def forward(self, inputs):
        outs = []
        for i, layer in enumerate(self.layers):
            out = layer(inputs[i])
            outs.append(out[0] if self.specs[i].name.startswith(_RNNS) else out)
        return tuple(outs)


def test_symbolic_trace_model_with_every_module():
    # issue 12's item 8: symbolic_trace failed on every dropkit module
    model = _Holder(MODULES)
    inputs = tuple(_inputs(s, False)[0] for s in MODULES)
    gm = torch.fx.symbolic_trace(model)
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert called == {f"layers.{i}" for i in range(len(MODULES))}, "every module is a leaf"
    for train in (True, False):
        model.train(train)
        gm.train(train)
        got, expected = _both(lambda: gm(inputs), lambda: model(inputs))
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torchvision_feature_extraction_sees_dropkit_leaves():
    fx = pytest.importorskip("torchvision.models.feature_extraction")  # needs a torchvision build
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), dnn.Dropout2d(0.3), dnn.DropBlock2d(0.2, block_size=3)
    )
    assert fx.get_graph_node_names(model)[0] == ["input", "0", "1", "2"]
    extractor = fx.create_feature_extractor(model, return_nodes={"1": "dropped"})
    x = torch.randn(2, 3, 10, 10)
    got, expected = _both(lambda: extractor(x)["dropped"], lambda: model[1](model[0](x)))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_leaf_marker_keeps_the_class():
    m = dnn.Dropout(0.3)
    assert type(m).__module__ == "dropkit.nn.dropout"
    assert m.__module__.startswith("torch.nn")
    assert torch.fx.Tracer().is_leaf_module(m, "m")
    assert not torch.fx.Tracer().is_leaf_module(torch.nn.Sequential(m), "s")


# ---- TorchScript --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", MODULES, ids=str)
def test_jit_script(spec):
    model = _model(spec)
    x = _inputs(spec, False)[0]
    # DropConnect is a parametrization: the error comes through its host, a torch.nn.Linear
    if spec.name == "DropConnect" or not type(model)._scriptable:
        with pytest.raises(
            RuntimeError, match=rf"dropkit.nn.{spec.name} does not support torch.jit"
        ):
            torch.jit.script(model)
        return
    scripted = torch.jit.script(model)
    with dropkit.use_fast_dropout(False):  # TorchScript runs the plain path: its masks
        got, expected = _both(lambda: spec.run(scripted, [x]), lambda: spec.run(model, [x]))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    model.eval()
    scripted.eval()
    torch.testing.assert_close(spec.run(scripted, [x]), spec.run(model, [x]), rtol=0, atol=0)


# ---- torch.compile, torch.export, ONNX ----------------------------------------------------------

INDUCTOR = {"GaussianDropout", "DropBlock2d", "Dropout2d"}


def _compile_params():
    out = []
    for spec, large in VARIANTS:
        for backend in ("eager", "aot_eager", "inductor"):
            if backend == "inductor" and (spec.name not in INDUCTOR or large):
                continue
            marks = ()
            vid = f"{variant_id((spec, large))}-{backend}"
            out.append(pytest.param(spec, large, backend, marks=marks, id=vid))
    return out


@pytest.mark.parametrize(("spec", "large", "backend"), _compile_params())
def test_compile_fullgraph_draws_eager_masks(spec, large, backend):
    # issue 12's item 10: DropBlock2d failed under fullgraph, GaussianDropout drew other noise
    model = _model(spec, large)
    x = _inputs(spec, large)[0]
    if spec.name == "WeightDropLSTM" and backend == "aot_eager" and not _torch_lstm_compiles():
        pytest.skip(
            "torch's own nn.LSTM fails under aot_eager here (AOT autograd's check of saved tensors refuses its Parameters)"
        )
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    # Dynamo refuses torch's own nn.LSTM/nn.GRU unless allow_rnn (experimental) is set; the
    # recurrent modules, subclasses of those, are compiled as torch's are
    with torch._dynamo.config.patch(allow_rnn=spec.name.startswith(_RNNS)):
        got, expected = _both(
            lambda: [spec.run(compiled, [x]) for _ in range(2)],
            lambda: [spec.run(model, [x]) for _ in range(2)],
        )
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **same_values_tol(spec))


def _torch_lstm_compiles() -> bool:
    torch._dynamo.reset()
    lstm = torch.compile(torch.nn.LSTM(3, 4), fullgraph=True, backend="aot_eager")
    try:
        with torch._dynamo.config.patch(allow_rnn=True):
            lstm(torch.randn(4, 2, 3))
    except AssertionError:
        return False
    return True


def _export_params():
    return [pytest.param(spec, large, id=variant_id((spec, large))) for spec, large in VARIANTS]


@pytest.mark.parametrize(("spec", "large"), _export_params())
def test_export(spec, large):
    model = _model(spec, large)
    x = _inputs(spec, large)[0]
    ep = torch.export.export(model, (x,))
    got, expected = _both(lambda: spec.run(ep.module(), [x]), lambda: spec.run(model, [x]))
    torch.testing.assert_close(got, expected, **same_values_tol(spec))
    model.eval()
    ep_eval = torch.export.export(model, (x,))
    torch.testing.assert_close(spec.run(ep_eval.module(), [x]), spec.run(model, [x]))


ONNX = [
    ("Dropout", False),
    ("Dropout", True),
    ("Dropout2d", False),
    ("GaussianDropout", False),
    ("GaussianDropout", True),  # the family's fast path: the exporter takes the plain path
]


def _onnx_params():
    out = []
    specs = {s.name: s for s in MODULES}
    for name, large in ONNX:
        for train in (False, True):
            vid = f"{variant_id((specs[name], large))}-{'train' if train else 'eval'}"
            out.append(pytest.param(specs[name], large, train, id=vid))
    return out


@pytest.mark.parametrize(("spec", "large", "train"), _onnx_params())
def test_onnx_export_runs_in_onnxruntime(spec, large, train):
    ort = pytest.importorskip("onnxruntime")
    model = _model(spec, large).train(train)
    x = _inputs(spec, large)[0]
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    feed = {session.get_inputs()[0].name: x.numpy()}
    first, second = (session.run(None, feed)[0] for _ in range(2))
    if not train:  # eval: the identity, no dropout node
        np.testing.assert_array_equal(first, x.numpy())
        return
    # training (Monte-Carlo dropout deployed): stochastic, every unit 0 or x / (1 - p) (Bernoulli
    # variants), and two runs differ
    assert not np.array_equal(first, second)
    if spec.name != "GaussianDropout":
        scaled = x.numpy() / (1 - model.p)
        ok = np.isclose(first, 0) | np.isclose(first, scaled, rtol=1e-6)
        assert ok.all()


# ---- dtypes, flags ------------------------------------------------------------------------------


def _half_params():
    out = []
    for spec, large in VARIANTS:
        if spec.p is None or spec.name.startswith(("Variational", "WeightDrop", "DropConnectConv")):
            continue  # torch's CPU RNNs and convolutions have no float16 kernels
        for p in (1 - 1e-5, 1.0):
            if p == 1.0 and not spec.allow_one:
                continue
            for dtype in (torch.float16, torch.bfloat16):
                vid = f"{variant_id((spec, large))}-{dtype}-{p}"
                out.append(pytest.param(spec, large, dtype, p, id=vid))
    return out


@pytest.mark.parametrize(("spec", "large", "dtype", "p"), _half_params())
def test_half_precision_near_p_one_is_finite(spec, large, dtype, p):
    model = _model(spec, large, dtype, **{spec.p: p})
    x = _inputs(spec, large, dtype)[0]
    if x.is_floating_point():  # |x| <= 1: see test_functional's half-precision test
        x = x.clamp(-1, 1).requires_grad_()
    out = spec.run(model, [x])
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    # ConcreteDropout's p_logit gradient at p = 1 - 1e-5 is beyond float16's range (it grows as
    # 1/(1-p)/temperature); its input gradient is checked
    params = [] if spec.name == "ConcreteDropout" else list(model.parameters())
    grads = [t.grad for t in [x, *params] if t.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)


def _flag_params():
    return [
        pytest.param(spec, flag, value, id=f"{spec}-{flag}-{value!r}")
        for spec in MODULES
        for flag in spec.ctor_flags
        for value in ("yes", 1)
    ]


@pytest.mark.parametrize(("spec", "flag", "value"), _flag_params())
def test_non_bool_constructor_flag_is_a_type_error(spec, flag, value):
    with pytest.raises(TypeError, match=rf"{flag} must be a bool, but got"):
        spec.make(**{flag: value})


def test_dropout1d_rank_error_is_torchs_runtime_error():
    # issue 12's item 12: torch raises RuntimeError; dropkit raised ValueError only
    x = torch.ones(2, 3, 4, 5)
    for module in (dnn.Dropout1d(0.5), torch.nn.Dropout1d(0.5)):
        with pytest.raises(RuntimeError, match="2D or 3D"):
            module(x)
    with pytest.raises(ValueError, match="2D or 3D"):  # dropkit's own contract still holds
        dnn.Dropout1d(0.5)(x)


def test_integer_input_is_torchs_runtime_error_and_a_type_error():
    x = torch.ones(4, dtype=torch.int64)
    for module in (dnn.Dropout(0.5), torch.nn.Dropout(0.5)):
        with pytest.raises(RuntimeError):
            module(x)
    with pytest.raises(TypeError, match="floating-point"):
        dnn.Dropout(0.5)(x)
