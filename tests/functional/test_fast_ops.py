"""The fast path as a PyTorch operator (issue 12): in-place semantics, checkpoint with a generator,
forward-mode AD, torch.func, the thread-local switch, torch.compile, torch.export and ONNX, and the
layering of the dispatch code."""

from __future__ import annotations

import ast
import pathlib
import threading

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.utils.checkpoint import checkpoint

import dropkit
import dropkit.functional as DF
from dropkit.functional import fast_dropout as fd
from tests.conftest import binomial_tol

N = 2 * fd.DEFAULT_MIN_NUMEL  # above the default threshold: the fast path


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fast_mask(x, p, generator_seed):
    return DF.fast_keep_mask(x, p, DF.draw_seed(_seeded(generator_seed)))


# ---- 1. in place ----------------------------------------------------------------------------------


class TestInplace:
    def test_version_counter_reproducer_raises_like_torch(self):
        # issue 12, item 1: the saved h is overwritten; autograd must notice.
        w = torch.ones(N, requires_grad=True)
        h = torch.full((N,), 2.0)
        z = (w * h).sum()
        before = h._version
        DF.dropout(h, 0.5, inplace=True)
        assert h._version > before
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.backward()

    @pytest.mark.parametrize("fast", [True, False])
    def test_no_grad_write_into_a_saved_parameter_raises_like_torch(self, fast):
        for dropout in (torch.nn.functional.dropout, DF.dropout):
            param = torch.nn.Parameter(torch.ones(N))
            z = (param * param).sum()
            with dropkit.use_fast_dropout(fast), torch.no_grad():
                dropout(param, 0.5, inplace=True)  # allowed under no_grad, as for torch
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                z.backward()

    def test_inference_tensor_outside_inference_mode_is_refused_like_torch(self):
        with torch.inference_mode():
            t = torch.ones(N)
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor"):
            torch.nn.functional.dropout(t, 0.5, inplace=True)
        with torch.inference_mode():
            t.fill_(1.0)
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor"):
            DF.dropout(t, 0.5, inplace=True)
        assert torch.equal(t, torch.ones(N))  # refused before anything was written
        with torch.inference_mode():  # inside inference_mode it is allowed, as for torch
            out = DF.dropout(t, 0.5, inplace=True, generator=_seeded(1))
        assert out is t and torch.equal(t != 0, _fast_mask(t, 0.5, 1))

    def test_leaf_that_requires_grad_is_refused_like_torch(self):
        leaf = torch.ones(N, requires_grad=True)
        for dropout in (torch.nn.functional.dropout, DF.dropout):
            with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
                dropout(leaf, 0.5, inplace=True)
        assert torch.equal(leaf, torch.ones(N))

    @pytest.mark.parametrize("save", ["bits", "seed"])
    def test_inplace_with_grad_keeps_the_mask_and_writes_no_copy(self, save):
        w = torch.randn(N, requires_grad=True)
        h = w * 3.0
        with dropkit.use_fast_dropout(True, save=save):
            out = DF.dropout(h, 0.3, inplace=True, generator=_seeded(2))
        assert out is h
        out.backward(torch.ones(N))
        mask = _fast_mask(h, 0.3, 2)
        assert torch.equal(w.grad, DF.apply_mask(torch.full((N,), 3.0), mask, 0.3))

    def test_half_precision_and_strided_inputs_in_place(self):
        for x in (torch.randn(N).half(), torch.randn(2 * N)[::2], torch.randn(64, N // 64).t()):
            expected = DF.apply_mask(x, _fast_mask(x, 0.4, 3), 0.4)
            y = x.clone() if x.is_contiguous() else x
            out = DF.dropout(y, 0.4, inplace=True, generator=_seeded(3))
            assert out is y and torch.equal(y, expected)


# ---- 2. checkpoint with an explicit generator ----------------------------------------------------


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_checkpoint_with_a_generator_recomputes_the_same_mask(use_reentrant, fast):
    g = _seeded(4)
    x = torch.ones(N, requires_grad=True)

    def block(t):
        return DF.dropout(t * 1.0, 0.5, generator=g) + DF.dropout(t * 1.0, 0.5, generator=g) * 3

    with dropkit.use_fast_dropout(fast):
        y = dropkit.random.checkpoint(block, x, use_reentrant=use_reentrant)
        after_forward = g.get_state()
        y.sum().backward()
    # x = 1: y = 2 m1 + 6 m2, so the gradient equals the output when the masks are the forward's
    assert torch.equal(x.grad, y.detach())
    assert torch.equal(g.get_state(), after_forward)  # the recomputation left g as it was


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_torchs_checkpoint_with_a_generator_recomputes_the_same_mask(use_reentrant, fast):
    # issue 21's reproducer: on torch 2.14 the recomputation drew a new mask, silently
    g = _seeded(4)
    x = torch.ones(N, requires_grad=True)

    def block(t):
        return DF.dropout(t * 1.0, 0.5, generator=g) + DF.dropout(t * 1.0, 0.5, generator=g) * 3

    with dropkit.use_fast_dropout(fast):
        y = checkpoint(block, x, use_reentrant=use_reentrant)
        y.sum().backward()
    assert torch.equal(x.grad, y.detach())


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_checkpoint_with_the_global_generator(use_reentrant):
    x = torch.ones(N, requires_grad=True)
    torch.manual_seed(5)
    y = checkpoint(lambda t: DF.dropout(t * 1.0, 0.5), x, use_reentrant=use_reentrant)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())


# ---- 3. forward-mode AD --------------------------------------------------------------------------


class TestForwardAD:
    @pytest.mark.parametrize("save", ["bits", "seed"])
    def test_gradcheck_forward_ad(self, save):
        x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
        with DF.use_fast_dropout(True, save=save, min_numel=1):
            fn = lambda t: DF.dropout(t, 0.4, generator=_seeded(5))  # noqa: E731
            assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True)
            fn = lambda t: DF.dropout(t * 1.0, 0.4, inplace=True, generator=_seeded(5))  # noqa: E731
            assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True)

    def test_tangent_goes_through_the_same_mask_and_scale(self):
        x, tangent = torch.randn(N), torch.randn(N)
        with fwAD.dual_level():
            out = DF.dropout(fwAD.make_dual(x, tangent), 0.25, generator=_seeded(6))
            primal, tan = fwAD.unpack_dual(out)
        mask = _fast_mask(x, 0.25, 6)
        assert torch.equal(primal, DF.apply_mask(x, mask, 0.25))
        assert torch.equal(tan, DF.apply_mask(tangent, mask, 0.25))

    def test_torch_func_jvp(self):
        x, tangent = torch.randn(N), torch.randn(N)
        _, tan = torch.func.jvp(
            lambda t: DF.dropout(t, 0.5, generator=_seeded(7)), (x,), (tangent,)
        )
        assert torch.equal(tan, DF.apply_mask(tangent, _fast_mask(x, 0.5, 7), 0.5))


# ---- 4. torch.func -------------------------------------------------------------------------------


class TestFunc:
    B = 4

    def test_vmap_different_draws_independent_masks(self):
        x = torch.ones(self.B, N)
        out = torch.func.vmap(lambda t: DF.dropout(t, 0.5), randomness="different")(x)
        assert set(out.unique().tolist()) == {0.0, 2.0}
        rows = [out[b] != 0 for b in range(self.B)]
        for b in range(self.B):
            assert abs((~rows[b]).double().mean().item() - 0.5) < binomial_tol(0.5, N)
            for c in range(b):
                both = (rows[b] & rows[c]).double().mean().item()  # independent: about 1/4
                assert abs(both - 0.25) < binomial_tol(0.25, N)

    def test_vmap_same_shares_the_mask_of_an_unbatched_call(self):
        x = torch.randn(self.B, N)
        torch.manual_seed(8)
        out = torch.func.vmap(lambda t: DF.dropout(t, 0.5), randomness="same")(x)
        torch.manual_seed(8)
        one = DF.dropout(torch.ones(N), 0.5) != 0
        for b in range(self.B):
            assert torch.equal(out[b], DF.apply_mask(x[b], one, 0.5))

    def test_vmap_error_raises_torchs_error(self):
        x = torch.ones(self.B, N)
        with pytest.raises(RuntimeError, match="randomness"):
            torch.func.vmap(lambda t: torch.nn.functional.dropout(t, 0.5))(x)
        with pytest.raises(RuntimeError, match="randomness"):
            torch.func.vmap(lambda t: DF.dropout(t, 0.5))(x)

    def test_grad_above_the_threshold(self):
        x = torch.randn(N)
        grad = torch.func.grad(lambda t: DF.dropout(t, 0.5, generator=_seeded(9)).sum())(x)
        assert torch.equal(grad, DF.apply_mask(torch.ones(N), _fast_mask(x, 0.5, 9), 0.5))

    def test_vmap_of_grad_and_grad_of_vmap(self):
        x = torch.ones(self.B, N)

        def loss(t):
            return DF.dropout(t, 0.5).sum()

        for fn in (
            torch.func.vmap(torch.func.grad(loss), randomness="different"),
            torch.func.grad(lambda t: torch.func.vmap(loss, randomness="different")(t).sum()),
        ):
            grads = fn(x)
            assert set(grads.unique().tolist()) == {0.0, 2.0}
            assert not torch.equal(grads[0], grads[1])

    def test_vmap_inplace(self):
        x = torch.ones(self.B, N)
        y = x.clone()
        torch.func.vmap(lambda t: DF.dropout(t, 0.5, inplace=True), randomness="different")(y)
        assert set(y.unique().tolist()) == {0.0, 2.0} and not torch.equal(y[0], y[1])

    def test_fused_residual_ops_under_vmap(self):
        x, res = torch.randn(self.B, N), torch.randn(self.B, N)
        torch.manual_seed(10)
        out = torch.func.vmap(lambda a, r: DF.dropout_add(a, r, 0.5), randomness="same")(x, res)
        torch.manual_seed(10)
        one = DF.dropout(torch.ones(N), 0.5) != 0
        assert torch.equal(out, DF.apply_mask(x, one, 0.5) + res)


# ---- 5. the switch is per thread -----------------------------------------------------------------


def test_use_fast_dropout_affects_only_the_calling_thread():
    # issue 12, item 5: overlapping blocks in two threads. "off" enters, "on" enters, "off" draws
    # and leaves, "on" draws and leaves.
    x = torch.ones(N)
    fast_mask = _fast_mask(x, 0.5, 11)
    plain_mask = DF.sample_mask(x.shape, 0.5, generator=_seeded(11))
    entered_off, entered_on, left_off = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def draw(name):
        seen[name] = (
            DF.dropout(x, 0.5, generator=_seeded(11)) != 0,
            dropkit.fast_dropout_enabled(),
        )

    def off():
        with dropkit.use_fast_dropout(False):
            entered_off.set()
            entered_on.wait(10)
            draw("off")
        left_off.set()

    def on():
        entered_off.wait(10)
        with dropkit.use_fast_dropout(True):
            entered_on.set()
            left_off.wait(10)
            draw("on")

    threads = [threading.Thread(target=off), threading.Thread(target=on)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(seen["off"][0], plain_mask) and seen["off"][1] is False
    assert torch.equal(seen["on"][0], fast_mask) and seen["on"][1] is True
    assert dropkit.fast_dropout_enabled()  # not left off by the blocks of other threads


def test_set_fast_dropout_is_the_process_default_for_every_thread():
    got = []
    try:
        dropkit.set_fast_dropout(False)
        t = threading.Thread(target=lambda: got.append(dropkit.fast_dropout_enabled()))
        t.start()
        t.join()
        with dropkit.use_fast_dropout(True):
            assert dropkit.fast_dropout_enabled()
            dropkit.set_fast_dropout(False, min_numel=123)  # changes the block and the default
            assert not dropkit.fast_dropout_enabled()
        assert not dropkit.fast_dropout_enabled()
    finally:
        dropkit.set_fast_dropout(True, min_numel=fd.DEFAULT_MIN_NUMEL)
    assert got == [False] and dropkit.fast_dropout_enabled()


# ---- 6. torch.compile: fullgraph with a generator, the same masks as eager -----------------------


def _two_dropouts(generator):
    def f(t):
        h = DF.dropout(t * 2.0, 0.5, generator=generator)
        return DF.dropout(h + 1.0, 0.3, generator=generator) * 3.0  # ops that round alike

    return f


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_compiled_and_eager_draw_the_same_masks(backend):
    torch._dynamo.reset()
    for generator in (None, _seeded(0)):
        f = _two_dropouts(generator)
        compiled = torch.compile(f, backend=backend, fullgraph=True)
        results = []
        for fn in (f, compiled):
            if generator is None:
                torch.manual_seed(12)
            else:
                generator.manual_seed(12)
            x = torch.randn(N, generator=_seeded(1), requires_grad=True)
            out = fn(x)
            out.backward(torch.ones(N))
            results.append((out.detach(), x.grad))
        assert torch.equal(results[0][0], results[1][0])
        assert torch.equal(results[0][1], results[1][1])


def test_compiled_plain_path_and_inplace_draw_the_eager_masks():
    torch._dynamo.reset()
    g = _seeded(0)

    def f(t):
        small = DF.dropout(t[:100], 0.5, generator=g)  # below the threshold: the plain path
        big = DF.dropout(t * 1.0, 0.5, inplace=True, generator=g)
        return small, big

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(N)
    g.manual_seed(3)
    eager = f(x)
    g.manual_seed(3)
    got = compiled(x)
    assert torch.equal(eager[0], got[0]) and torch.equal(eager[1], got[1])


def _saved_by_partitioner(f, x, *others):
    # What AOT autograd's min-cut partitioner (inductor's) keeps from forward for backward, and the
    # gradient, without inductor's C++ compile.
    from functools import partial

    from torch._functorch.aot_autograd import aot_function
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    from torch._inductor.decomposition import select_decomp_table

    saved = []

    def forward_compiler(gm, _inputs):
        outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        saved.extend(o.meta["val"] for o in outputs[1:] if o.op != "placeholder")
        return gm

    partition = partial(min_cut_rematerialization_partition, compiler="inductor")
    g = aot_function(
        f,
        forward_compiler,
        lambda gm, _: gm,
        partition_fn=partition,
        decompositions=select_decomp_table(),
    )
    g(x, *others).sum().backward()
    return saved, x.grad


def test_compiled_dropout_after_relu_keeps_relu_output_not_a_bool_mask():
    # A graph that keeps ``relu(a) <= 0`` (bool) for ReLU's backward runs inductor's slow AVX2
    # bool-store code (docs/benchmarks.md); ReLU keeps its output anyway, so dropout's backward
    # takes it and ReLU's backward reads it, as without dropout. Elsewhere nothing more is kept.
    w = torch.randn(64, 64, requires_grad=True)

    def after_relu(a, w):
        return DF.dropout(torch.relu(a @ w), 0.5) @ w

    def after_matmul(a, w):
        return DF.dropout(a @ w, 0.5) @ w

    def activations(saved):  # float tensors of the activations' size (views of them included)
        return sum(t.dtype == torch.float32 and t.numel() == 128 * 64 for t in saved)

    a = torch.randn(128, 64, requires_grad=True)
    saved, _ = _saved_by_partitioner(after_relu, a, w)
    assert not any(t.dtype == torch.bool for t in saved)
    assert activations(saved) == 3  # a (for w's gradient), relu's output, dropout's output
    saved, _ = _saved_by_partitioner(after_matmul, a.detach().requires_grad_(), w)
    assert activations(saved) == 2  # a and dropout's output: a @ w is not kept for dropout
    torch.manual_seed(0)
    _, grad = _saved_by_partitioner(after_relu, a.detach().requires_grad_(), w)
    torch.manual_seed(0)
    a.grad = None
    after_relu(a, w).sum().backward()
    assert torch.equal(grad, a.grad)


# ---- 7. torch.export and ONNX ---------------------------------------------------------------------


class _Block(torch.nn.Module):
    def forward(self, x):
        return DF.dropout(x * 1.0, 0.5, self.training) + 1.0


def test_torch_export_runs_the_op_and_draws_the_eager_mask():
    x = torch.randn(4, N // 4)
    ep = torch.export.export(_Block().train(), (x,))
    assert "dropkit.philox_dropout" in str(ep.graph)
    torch.manual_seed(13)
    eager = _Block().train()(x)
    torch.manual_seed(13)
    assert torch.equal(ep.module()(x), eager)
    g = _seeded(0)

    class WithGenerator(torch.nn.Module):
        def forward(self, t):
            return DF.dropout(t, 0.5, generator=g)

    ep = torch.export.export(WithGenerator(), (x,))
    g.manual_seed(14)
    eager = WithGenerator()(x)
    g.manual_seed(14)
    assert torch.equal(ep.module()(x), eager)


def test_onnx_export_training_is_stochastic_and_eval_has_no_dropout():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    del onnx
    x = torch.ones(4, N // 4)
    outs = {}
    for training in (True, False):
        program = torch.onnx.export(_Block().train(training), (x,), dynamo=True, verbose=False)
        ops = {node.op_type for node in program.model_proto.graph.node}
        session = ort.InferenceSession(program.model_proto.SerializeToString())
        name = session.get_inputs()[0].name
        outs[training] = [session.run(None, {name: x.numpy()})[0] for _ in range(2)]
        if not training:
            assert ops == {"Add"}, ops  # no dropout, no random op
    a, b = (torch.from_numpy(o) for o in outs[True])
    assert set(a.unique().tolist()) == {1.0, 3.0}
    assert abs((a == 1.0).double().mean().item() - 0.5) < binomial_tol(0.5, a.numel())
    assert not torch.equal(a, b)  # a new mask per run
    assert all(torch.equal(torch.from_numpy(o), x + 1) for o in outs[False])


# ---- 8. one home for dispatch: the modules import downwards only ----------------------------------

_LAYERS = [  # lowest first: a module may import only modules listed before it
    "dropkit.ops._torch",
    "dropkit.ops.registry",
    "dropkit.ops.switch",
    "dropkit.random.ranks",
    "dropkit.random.checkpoint",
    "dropkit.random.draws",
    "dropkit.random",
    "dropkit.ops.cpu",
    "dropkit.ops.cuda",
    "dropkit.ops.sharding",
    "dropkit.ops.dropout",
    "dropkit.ops.family",
    "dropkit.functional.dropout",
    "dropkit.functional.dropout_add",
]


def _module_file(name: str) -> pathlib.Path:
    root = pathlib.Path(dropkit.__file__).parent.parent
    path = root / name.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_dispatch_modules_import_downwards_only():
    for i, name in enumerate(_LAYERS):
        tree = ast.parse(_module_file(name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dropkit"):
                for a in node.names:  # a submodule (from pkg import mod), else the module itself
                    sub = f"{node.module}.{a.name}"
                    imported.add(sub if _module_file(sub).exists() else node.module)
        above = imported & set(_LAYERS[i + 1 :])
        assert not above, f"{name} imports {above}, which are not below it"
        assert not any(m.startswith("dropkit.functional") for m in imported) or name.startswith(
            "dropkit.functional"
        ), f"{name} imports the public ops: the machinery must not call back up"


def test_opcheck_of_every_op():
    seed = torch.tensor(123)
    for x in (torch.randn(100, 70, requires_grad=True), torch.randn(70, 100).t()):
        out, bits = torch.ops.dropkit.philox_dropout(x, seed, 0.3, 1 / 0.7, True)
        torch.library.opcheck(
            torch.ops.dropkit.philox_dropout_.default,
            (x.detach().clone(), seed, 0.3, 1 / 0.7, False),
        )
        grad = torch.randn(x.shape, requires_grad=True)
        for b in (bits, bits[:0]):  # the packed mask, or none (regenerated from the seed)
            args = (grad, b, seed, 0.3, 1 / 0.7)
            torch.library.opcheck(torch.ops.dropkit.philox_mask.default, args)
    # random draws: schema and fake kernel only (their values differ from call to call by design)
    random_tests = ("test_schema", "test_faketensor")
    x = torch.randn(10, 10)
    torch.library.opcheck(torch.ops.dropkit.seed.default, (x, 0), test_utils=random_tests)
    args = (x.bool(), 0.5, 0)
    torch.library.opcheck(torch.ops.dropkit.bernoulli.default, args, test_utils=random_tests)


def test_a_compiled_graph_whose_generator_is_gone_raises_a_clear_error():
    from dropkit.random import draws

    with pytest.raises(RuntimeError, match="dropkit: the torch.Generator this graph was compiled"):
        torch.ops.dropkit.seed(torch.ones(3), 12345)
    with pytest.raises(RuntimeError, match="no longer exists"):
        draws.generator_of(12345)


def test_jit_trace_records_the_plain_path():
    # A trace cannot call the numba kernels: under the tracer dropout takes the plain path, so the
    # traced graph draws a new mask per run (with torch's generator).
    x = torch.ones(4, N // 4)
    traced = torch.jit.trace(_Block().train(), (x,), check_trace=False)
    a, b = traced(x), traced(x)
    assert set(a.unique().tolist()) == {1.0, 3.0} and not torch.equal(a, b)
    assert "aten::bernoulli" in str(traced.graph)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "aot_eager"])
def test_gradient_in_another_layout_than_the_input_uses_the_forward_mask(compiled):
    # The mask is indexed by the forward input's memory order; a gradient that arrives transposed
    # (y.t() downstream) must be brought to that order, not masked in its own (a silent wrong
    # gradient before the fix).
    x = torch.randn(64, 128, requires_grad=True)
    c = torch.randn(128, 64)
    g = torch.Generator().manual_seed(0)

    def f(x):
        return (DF.dropout(x, 0.5, generator=g).t() * c).sum()

    fn = torch.compile(f, backend="aot_eager", fullgraph=True) if compiled else f
    fn(x).backward()
    mask = DF.fast_keep_mask(x, 0.5, DF.draw_seed(torch.Generator().manual_seed(0)))
    assert torch.equal(x.grad, c.t() * mask * 2.0)


def test_forward_ad_of_the_fused_residual_path():
    # dropout(x + b) + r on the fused kernel: the tangent goes through the forward's mask
    x, r, b = torch.randn(64, 128), torch.randn(64, 128), torch.randn(128)
    tx, tr, tb = torch.randn(64, 128), torch.randn(64, 128), torch.randn(128)
    g = torch.Generator().manual_seed(3)
    seed = DF.draw_seed(torch.Generator().manual_seed(3))
    mask = DF.fast_keep_mask(x, 0.25, seed)
    with fwAD.dual_level():
        out = DF.bias_dropout_add(
            fwAD.make_dual(x, tx), fwAD.make_dual(b, tb), fwAD.make_dual(r, tr), 0.25, generator=g
        )
        tangent = fwAD.unpack_dual(out).tangent
    torch.testing.assert_close(tangent, DF.apply_mask(tx + tb, mask, 0.25) + tr)
