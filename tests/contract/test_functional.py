"""PyTorch's machinery × every public op of dropkit.functional (the specs of _specs.py).

Random ops are made repeatable by reseeding torch's global generator before every call, so the
autograd checks see one fixed mask.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import dropkit
import dropkit.functional as DF
from dropkit.ops import family as _fast_family
from tests.contract._specs import (
    FUNCTIONAL,
    NOT_TENSOR_OPS,
    SAMPLERS,
    large_variants,
    same_values_tol,
    variant_id,
)

VARIANTS = large_variants(FUNCTIONAL)
RANDOM_VARIANTS = [v for v in VARIANTS if v[0].random]


def _params(pairs):
    return [pytest.param(v, id=variant_id(v)) for v in pairs]


def _inputs(spec, large, dtype=torch.float64):
    torch.manual_seed(100)
    return list(spec.inputs(dtype, large))


def _diff(spec, tensors, seed=0, **kwargs):
    """(f, grad inputs): f(*grad_inputs) runs the op with the other tensors fixed, reseeded."""
    idx = [i for i in spec.grad if tensors[i] is not None]

    def f(*gs):
        ts = list(tensors)
        for i, g in zip(idx, gs, strict=True):
            ts[i] = g
        torch.manual_seed(seed)
        return spec.run(ts, **kwargs)

    return f, tuple(tensors[i].detach().clone().requires_grad_() for i in idx)


def test_every_public_name_has_a_spec():
    specced = {s.name for s in FUNCTIONAL + SAMPLERS} | set(NOT_TENSOR_OPS)
    assert specced == set(DF.__all__)


# ---- autograd -----------------------------------------------------------------------------------


def _autograd_inputs(spec, large):
    """gradcheck's inputs. The fast variant runs the fast path on a small tensor (the threshold
    lowered with use_fast_dropout(min_numel=)): the same kernels, and a Jacobian of affordable size."""
    return _inputs(spec, False)


@contextlib.contextmanager
def _fast_path(large):
    """The fast paths from 16 elements: dropout's ``min_numel`` and the noise kernels' own threshold
    (``_fast_family.NOISE_MIN_NUMEL``, read at call time) lowered together."""
    if not large:
        yield
        return
    saved = _fast_family.NOISE_MIN_NUMEL
    _fast_family.NOISE_MIN_NUMEL = 16
    try:
        with dropkit.use_fast_dropout(True, min_numel=16):
            yield
    finally:
        _fast_family.NOISE_MIN_NUMEL = saved


def _gradcheck_variants():
    return _params(VARIANTS)


@pytest.mark.parametrize("variant", _gradcheck_variants())
def test_gradcheck_and_gradgradcheck(variant):
    spec, large = variant
    f, xs = _diff(spec, _autograd_inputs(spec, large))
    with _fast_path(large):
        assert torch.autograd.gradcheck(f, xs)
        assert torch.autograd.gradgradcheck(f, xs)


@pytest.mark.parametrize("variant", _params(VARIANTS))
def test_forward_ad_gradcheck(variant):
    spec, large = variant
    f, xs = _diff(spec, _autograd_inputs(spec, large))
    with _fast_path(large):
        assert torch.autograd.gradcheck(
            f,
            xs,
            check_forward_ad=True,
            check_backward_ad=False,
            check_undefined_grad=False,
            check_batched_grad=False,
        )


# ---- torch.func ---------------------------------------------------------------------------------


def _vmap_variants():
    return _params([v for v in VARIANTS if v[0].vmap])


@pytest.mark.parametrize("randomness", ["different", "same"])
@pytest.mark.parametrize("variant", _vmap_variants())
def test_vmap(variant, randomness):
    spec, large = variant
    tensors = _inputs(spec, large, torch.float32)
    x = tensors[0]
    batch = x.unsqueeze(0).expand(3, *x.shape).clone()

    def one(xi):
        return spec.run([xi, *tensors[1:]])

    torch.manual_seed(0)
    out = torch.func.vmap(one, randomness=randomness)(batch)
    assert out.shape[0] == 3
    same = [torch.equal(out[0], out[i]) for i in (1, 2)]
    if randomness == "same" or not spec.random:
        assert all(same), "randomness='same': one mask for the whole batch"
    else:
        assert not all(same), "randomness='different': a mask per sample"
    if not spec.random:
        assert torch.equal(out[0], one(x))


@pytest.mark.parametrize("variant", _vmap_variants())
def test_func_grad(variant):
    spec, large = variant
    f, xs = _diff(spec, _inputs(spec, large))
    g = torch.func.grad(lambda x: f(x, *xs[1:]).sum())(xs[0].detach())
    (expected,) = torch.autograd.grad(f(*xs).sum(), xs[0])
    torch.testing.assert_close(g, expected, rtol=0, atol=0)


# ---- checkpoint ---------------------------------------------------------------------------------


def _checkpoint_params():
    out = []
    for spec, large in RANDOM_VARIANTS:
        for reentrant in (False, True):
            out.append(
                pytest.param(spec, large, reentrant, False, id=f"{spec}-{large}-{reentrant}")
            )
            if spec.generator:
                out.append(
                    pytest.param(
                        spec,
                        large,
                        reentrant,
                        True,
                        id=f"{spec}-{'fast' if large else 'plain'}-reentrant{reentrant}-generator",
                    )
                )
    return out


def _assert_checkpoint_keeps_the_masks(spec, large, ckpt, generator_seed=None):
    """The op on the spec's inputs, plain and under ``ckpt(f, *xs)``: the same output and gradients
    (the recomputation drew the forward's masks); ``generator_seed``: an explicit generator."""
    tensors = _inputs(spec, large)
    idx = [i for i in spec.grad if tensors[i] is not None]

    def run(checkpointed):
        xs = [tensors[i].detach().clone().requires_grad_() for i in idx]
        kwargs = {}
        if generator_seed is not None:
            kwargs["generator"] = torch.Generator().manual_seed(generator_seed)

        def f(*gs):
            ts = list(tensors)
            for i, g in zip(idx, gs, strict=True):
                ts[i] = g * 1.0  # a non-leaf, as inside a model
            return spec.run(ts, **kwargs)

        torch.manual_seed(0)
        out = ckpt(f, *xs) if checkpointed else f(*xs)
        torch.manual_seed(123)  # the recompute must not depend on the RNG state after forward
        out.sum().backward()  # (reentrant checkpoint does not support autograd.grad)
        return out.detach(), [x.grad for x in xs]

    (out0, g0), (out1, g1) = run(False), run(True)
    assert torch.equal(out0, out1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("spec", "large", "use_reentrant", "with_generator"), _checkpoint_params())
def test_checkpoint_recomputes_the_same_mask(spec, large, use_reentrant, with_generator):
    # torch's own checkpoint; with an explicit generator, read from its frames (random/checkpoint.py)
    ckpt = functools.partial(checkpoint, use_reentrant=use_reentrant)
    _assert_checkpoint_keeps_the_masks(spec, large, ckpt, 5 if with_generator else None)


def _generator_checkpoint_params():
    return [
        pytest.param(
            spec, large, reentrant, id=f"{spec}-{'fast' if large else 'plain'}-{reentrant}"
        )
        for spec, large in RANDOM_VARIANTS
        if spec.generator
        for reentrant in (False, True)
    ]


@pytest.mark.parametrize(("spec", "large", "use_reentrant"), _generator_checkpoint_params())
def test_dropkits_checkpoint_replays_an_explicit_generator(spec, large, use_reentrant):
    # the public path, beside torch's own checkpoint above
    ckpt = functools.partial(dropkit.random.checkpoint, use_reentrant=use_reentrant)
    _assert_checkpoint_keeps_the_masks(spec, large, ckpt, 5)


@pytest.mark.parametrize(
    ("spec", "large"), [p.values[:2] for p in _generator_checkpoint_params()][::2]
)
def test_checkpoint_context_replays_an_explicit_generator(spec, large):
    context = dropkit.random.checkpoint_context
    ckpt = functools.partial(checkpoint, use_reentrant=False, context_fn=context)
    _assert_checkpoint_keeps_the_masks(spec, large, ckpt, 5)


# ---- in-place, inference tensors ----------------------------------------------------------------

INPLACE = [v for v in VARIANTS if v[0].inplace]


def _inplace_kwargs(spec):
    return {"inplace": True, **({"p": 0.5} if spec.p == "p" and spec.random else {})}


@pytest.mark.parametrize("variant", _params(INPLACE))
def test_inplace_bumps_the_version_counter(variant):
    # issue 12's reproducer 1: autograd saved h for w's gradient; modifying h must be detected
    spec, large = variant
    tensors = _inputs(spec, large)
    h = tensors[0].detach().clone()
    w = torch.ones_like(h, requires_grad=True)
    z = (w * h).sum()
    spec.run([h, *tensors[1:]], **_inplace_kwargs(spec))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


@pytest.mark.parametrize("variant", _params(INPLACE))
def test_inference_tensors(variant):
    spec, large = variant
    tensors = _inputs(spec, large)
    with torch.inference_mode():
        x = tensors[0].clone()
        inside = spec.run([x, *tensors[1:]])  # works inside inference_mode
    assert inside.shape == x.shape
    out = spec.run([x, *tensors[1:]])  # a functional op may read an inference tensor
    assert out.shape == x.shape
    with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        spec.run([x, *tensors[1:]], **_inplace_kwargs(spec))


# ---- torch.fx -----------------------------------------------------------------------------------


class _Call(torch.nn.Module):
    """forward(x) = the op on x (its first tensor), the other tensors held as buffers."""

    def __init__(self, spec, tensors):
        super().__init__()
        self.spec, self.rest = spec, []
        for i, t in enumerate(tensors[1:]):
            if t is None:
                self.rest.append(None)
            else:
                self.register_buffer(f"t{i}", t)
                self.rest.append(f"t{i}")

    def forward(self, x):
        ts = [x] + [None if name is None else getattr(self, name) for name in self.rest]
        return self.spec.run(ts)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_fx_symbolic_trace_calls_the_op(variant):
    spec, large = variant
    tensors = _inputs(spec, large, torch.float32)
    model = _Call(spec, tensors)
    gm = torch.fx.symbolic_trace(model)
    targets = [getattr(n.target, "__name__", "") for n in gm.graph.nodes if n.op == "call_function"]
    assert spec.name in targets
    args = tensors[:1]
    torch.manual_seed(3)
    expected = model(*args)
    torch.manual_seed(3)
    torch.testing.assert_close(gm(*args), expected, rtol=0, atol=0)


def test_fx_error_names_the_way_out_for_an_unpatched_name():
    from dropkit.functional.dropout import dropout  # a name torch.fx does not patch

    class M(torch.nn.Module):
        def forward(self, x):
            return dropout(x, 0.5)

    with pytest.raises(TypeError, match=r"torch.fx Proxy.*dropkit.functional.dropout\(\.\.\.\)"):
        torch.fx.symbolic_trace(M())


# ---- torch.compile, torch.export ----------------------------------------------------------------

INDUCTOR = {"dropout", "gaussian_dropout", "dropblock2d", "shared_dropout"}


def _compile_params():
    out = []
    for spec, large in VARIANTS:
        for backend in ("eager", "aot_eager", "inductor"):
            if backend == "inductor" and (spec.name not in INDUCTOR or large):
                continue
            marks = ()
            out.append(
                pytest.param(
                    spec, large, backend, marks=marks, id=f"{variant_id((spec, large))}-{backend}"
                )
            )
    return out


@pytest.mark.parametrize(("spec", "large", "backend"), _compile_params())
def test_compile_fullgraph_draws_eager_masks(spec, large, backend):
    tensors = _inputs(spec, large, torch.float32)
    model = _Call(spec, tensors)
    args = tensors[:1]
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    torch.manual_seed(11)
    got = [compiled(*args), compiled(*args)]
    torch.manual_seed(11)
    expected = [model(*args), model(*args)]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **same_values_tol(spec))


# draw_seed, fast_keep_mask, fast_dropblock_mask and fast_gaussian_noise are the fast paths'
# debugging helpers (a Python int from the generator, masks and noise made by the numba kernels):
# eager-only by design, not graph ops (docs/pytorch_contracts.md).
EAGER_ONLY = {"draw_seed", "fast_keep_mask", "fast_dropblock_mask", "fast_gaussian_noise"}


@pytest.mark.parametrize("spec", [s for s in SAMPLERS if s.name not in EAGER_ONLY], ids=str)
def test_compile_sampler_draws_eager_values(spec):
    tensors = list(spec.inputs(torch.float32, False))
    torch._dynamo.reset()
    compiled = torch.compile(lambda *t: spec.run(t), fullgraph=True, backend="aot_eager")
    torch.manual_seed(11)
    got = compiled(*tensors)
    torch.manual_seed(11)
    assert torch.equal(got, spec.run(tensors))


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_export(variant):
    spec, large = variant
    tensors = _inputs(spec, large, torch.float32)
    model = _Call(spec, tensors)
    args = tuple(tensors[:1])
    ep = torch.export.export(model, args)
    torch.manual_seed(4)
    got = ep.module()(*args)
    torch.manual_seed(4)
    torch.testing.assert_close(got, model(*args), **same_values_tol(spec))


# ---- threads, dtypes, flags ---------------------------------------------------------------------


def test_two_threads_with_different_fast_switches():
    x = torch.ones(FAST := 8192)
    barrier = threading.Barrier(2)
    results = {}

    def worker(enabled):
        with dropkit.use_fast_dropout(enabled):
            barrier.wait()  # both inside their blocks
            results[enabled] = DF.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(e,)) for e in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for enabled in (False, True):
        with dropkit.use_fast_dropout(enabled):
            alone = DF.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
        assert torch.equal(results[enabled], alone)
    assert dropkit.fast_dropout_enabled()
    assert FAST >= 4096


HALF = [torch.float16, torch.bfloat16]


def _half_params():
    out = []
    for spec, large in VARIANTS:
        if spec.p != "p":
            continue
        for p in (1 - 1e-5, 1.0):
            if p == 1.0 and not spec.allow_one:
                continue
            for dtype in HALF:
                out.append(
                    pytest.param(
                        spec, large, dtype, p, id=f"{variant_id((spec, large))}-{dtype}-{p}"
                    )
                )
    return out


@pytest.mark.parametrize(("spec", "large", "dtype", "p"), _half_params())
def test_half_precision_near_p_one_is_finite(spec, large, dtype, p):
    # issue 12's reproducer 3: float16 at p > 1 - 1/65504 gave all-NaN outputs and gradients
    tensors = _inputs(spec, large, torch.float32)
    # |x| <= 1: a survivor is x * 65504 at most in float16 (the scale saturates there); a larger
    # survivor's true value x / (1 - p) is beyond float16's range, as it is for torch (inf)
    tensors = [
        t.clamp(-1, 1).to(dtype) if t is not None and t.is_floating_point() else t for t in tensors
    ]
    if spec.name.startswith("apply_dropconnect") and dtype == torch.float16:
        # the given mask keeps 60% of the weights, each x 65504: the layer's own float16 matmul
        # overflows (as any float16 layer with such weights would), not the masking
        pytest.skip("the layer's float16 product overflows with weights scaled by 65504")
    f, xs = _diff(spec, tensors, p=p)
    out = f(*xs)
    assert torch.isfinite(out).all()
    grads = torch.autograd.grad(out.float().sum(), xs)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("spec", [s for s in SAMPLERS if s.name == "gaussian_noise"], ids=str)
def test_half_precision_noise_is_finite(spec, dtype):
    assert torch.isfinite(spec.run([], p=1 - 1e-5, dtype=dtype)).all()


def _flag_params():
    out = []
    for spec in FUNCTIONAL + SAMPLERS:
        for flag in spec.flags:
            for value in ("yes", 1) if flag == "batched" else ("yes", None, 1):
                out.append(pytest.param(spec, flag, value, id=f"{spec}-{flag}-{value!r}"))
    return out


@pytest.mark.parametrize(("spec", "flag", "value"), _flag_params())
def test_non_bool_flag_is_a_type_error(spec, flag, value):
    # issue 12's reproducer 4: training="no" applied dropout, training=None acted as eval
    tensors = _inputs(spec, False, torch.float32)
    with pytest.raises(TypeError, match=rf"{flag} must be a bool, but got"):
        spec.run(tensors, **{flag: value})


# ---- custom ops ---------------------------------------------------------------------------------


def _dropkit_ops():
    names = sorted({n for n in torch._C._dispatch_get_all_op_names() if n.startswith("dropkit::")})
    return [n.split("::")[1] for n in names]


_OPCHECK_ARGS = {
    "seed": lambda: (torch.empty(4, 6), 0),
    "bernoulli": lambda: (torch.empty(4, 6, dtype=torch.bool), 0.3, 0),
    "randn": lambda: (torch.empty(4, 6), 0),
    "rand": lambda: (torch.empty(4, 6), 0),
    "philox_dropout": lambda: (torch.randn(64, 64), torch.tensor(123), 0.5, 2.0, True),
    "philox_dropout_": lambda: (torch.randn(64, 64), torch.tensor(123), 0.5, 2.0, False),
    "philox_mask": lambda: (
        torch.randn(64, 64),
        torch.empty(512, dtype=torch.uint8),
        torch.tensor(123),
        0.5,
        2.0,
    ),
    "residual_dropout": lambda: (
        torch.randn(64, 64),
        torch.randn(64),
        torch.randn(64, 64),
        torch.tensor(123),
        0.5,
        2.0,
        True,
    ),
    "alpha_dropout": lambda: (torch.randn(64, 64), torch.tensor(123), 0.3, 1.2, 0.4, -0.9),
    "alpha_mask": lambda: (
        torch.randn(64, 64),
        torch.randint(0, 256, (512,), dtype=torch.uint8),
        1.2,
    ),
    "row_affine": lambda: (torch.randn(4, 6, 8), torch.randn(24), torch.randn(24)),
    "gaussian_mul": lambda: (torch.randn(64, 64), torch.tensor(123), 0.5),
    "gaussian_apply": lambda: (torch.randn(64, 64), torch.randn(64, 64), 0.5),
    "dropblock": lambda: (torch.randn(2, 3, 6, 6), torch.tensor(123), 0.1, [3, 3], False, True),
    "byte_mask": lambda: (
        torch.randn(2, 3, 4, 4),
        torch.randint(0, 2, (2, 1, 4, 4), dtype=torch.uint8),
        torch.tensor(1.5, dtype=torch.float64),
    ),
}
# Random ops (a new draw per call) are checked for their schema and fake kernel; the tests that
# compare two runs of the op (autograd registration, AOT dispatch) need a deterministic op.
_RANDOM_OPS = {"bernoulli", "randn", "rand", "seed"}


def test_every_custom_op_has_opcheck_args():
    DF.dropout(torch.ones(8192), 0.5)  # loads the fast path's ops
    assert set(_dropkit_ops()) == set(_OPCHECK_ARGS)


def test_every_custom_op_is_defined_through_the_registry():
    # one registration mechanism: every dropkit:: operator is an Op of ops/registry.py (the Triton
    # kernels run beneath the same operators, as the CUDA backend of ops/cuda.py)
    from dropkit.ops.registry import OPS

    DF.dropout(torch.ones(8192), 0.5)
    assert set(_dropkit_ops()) == set(OPS)


@pytest.mark.parametrize("name", sorted(_OPCHECK_ARGS))
def test_opcheck(name):
    DF.dropout(torch.ones(8192), 0.5)
    if name not in _dropkit_ops():
        pytest.skip(f"dropkit::{name} is not registered in this build")
    op = getattr(torch.ops.dropkit, name)
    utils = ("test_schema", "test_faketensor") if name in _RANDOM_OPS else None
    kwargs = {} if utils is None else {"test_utils": utils}
    torch.library.opcheck(op, _OPCHECK_ARGS[name](), **kwargs)
