"""The one home of the torch internals dropkit reads: private names, resolved once, at import.

dropkit uses public torch APIs wherever one exists. A few questions have no public answer yet, and
every one of them is asked here, nowhere else:

=========================================  ======================================================
question (function here)                   torch internal
=========================================  ======================================================
is a dispatch mode active? (fake tensors,  ``torch._C._len_torch_dispatch_stack``
SAC, ``FakeTensorMode``): ``dispatch_modes``
is a ``torch.func`` transform active?      ``torch._C._functorch.peek_interpreter_stack``
(``transforms``), is one of them vmap?     ``torch._C._functorch.get_interpreter_stack``,
(``vmap_active``)                          ``TransformType.Vmap``
run a kernel on plain tensors inside       ``torch._functorch.pyfunctorch``
``torch.func.grad`` (``outside_transforms``)  ``.temporarily_clear_interpreter_stack``
is forward-mode AD on? (``forward_ad``)    ``torch.autograd.forward_ad._current_level``
make a function's result a constant of a   the ``_dynamo_marked_constant`` attribute that
dynamo graph without importing dynamo      ``torch._dynamo.assume_constant_result`` sets
(``constant_result``)
has a tensor been written in place since  ``Tensor._version`` (the counter autograd checks saved
(``version``)                             tensors against)
a matrix product on oneDNN for dense      ``torch.ops.mkldnn._linear_pointwise`` (default and
float32 CPU tensors (``onednn_linear``)   ``binary``: inductor's linear, on plain tensors) and
                                          ``torch.ops.mkldnn._reorder_linear_weight``
=========================================  ======================================================

``onednn_linear`` is the one optional entry: where a torch build has no oneDNN (or a release
drops the op), it returns None and the callers use ``torch.addmm``, which computes the same
products (summed in another order); tests/ops/test_torch_internals.py checks that the x86 builds
dropkit supports have it and that it matches ``addmm``.

Two other places reach below torch's public surface, each for a reason stated there:
:mod:`dropkit.nn.weight_drop` (``nn.LSTM``'s ``_flat_weights``, the only way to give cuDNN/the fused
kernel dropped weights without copying the module) and :mod:`dropkit.random.checkpoint` (the stack,
to refuse an explicit generator inside ``torch.utils.checkpoint`` rather than replay it wrongly).

Every entry is exercised by ``tests/ops/test_torch_internals.py`` on each torch that CI runs (the
version matrix of the README). A name that a new torch removes fails here, at import, with an error
that names dropkit and the torch version, never later as a silent change of result.
"""

from __future__ import annotations

import torch

__all__ = [
    "constant_result",
    "dispatch_modes",
    "forward_ad",
    "is_dtensor",
    "onednn_linear",
    "outside_transforms",
    "transforms",
    "version",
    "vmap_active",
]


def _resolve(path: str):
    obj = torch
    try:
        for part in path.split(".")[1:]:
            obj = getattr(obj, part)
    except AttributeError as err:
        raise ImportError(
            f"dropkit needs {path}, which torch {torch.__version__} does not have; this torch is "
            "outside the versions dropkit supports (see the README, 'Supported versions')"
        ) from err
    return obj


dispatch_modes = _resolve("torch._C._len_torch_dispatch_stack")
transforms = _resolve("torch._C._functorch.peek_interpreter_stack")
_interpreter_stack = _resolve("torch._C._functorch.get_interpreter_stack")
_VMAP = _resolve("torch._C._functorch.TransformType.Vmap")

import torch.autograd.forward_ad as _fwad  # noqa: E402

if not hasattr(_fwad, "_current_level"):
    raise ImportError(
        f"dropkit needs torch.autograd.forward_ad._current_level, which torch {torch.__version__} "
        "does not have; see the README, 'Supported versions'"
    )


def vmap_active() -> bool:
    """Whether ``torch.func.vmap`` is among the active transforms (``grad``/``jvp`` alone: False)."""
    return any(i.key() == _VMAP for i in _interpreter_stack() or ())


def forward_ad() -> bool:
    """Whether a forward-mode AD level is open (``torch.autograd.forward_ad.dual_level``)."""
    return _fwad._current_level >= 0


def outside_transforms():
    """A context in which torch.func's transforms are suspended: kernels that take plain tensors run
    inside ``torch.func.grad`` / ``jvp`` on a mask that is no function of the transformed input."""
    from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

    return temporarily_clear_interpreter_stack()


def constant_result(fn):
    """Mark ``fn`` so that dynamo runs it while tracing and makes its result a constant of the graph
    (what ``torch.compiler.assume_constant_result`` does; that public function imports dynamo,
    seconds at dropkit's import, so the attribute it sets is set here)."""
    fn._dynamo_marked_constant = True
    return fn


def version(t: torch.Tensor) -> int:
    """``t``'s version counter: it grows with every in-place write to ``t`` or a view of it."""
    return t._version


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (imported only when one is met)."""
    if type(t).__name__ != "DTensor":
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def onednn_linear():
    """``(linear, linear_add, pack)`` on oneDNN, or None where this torch has no oneDNN ops.

    ``linear(x, w, b)`` is ``x @ w.T (+ b)`` and ``linear_add(x, other, w, b)`` is
    ``other + (x @ w.T (+ b))``, for float32 CPU tensors (``x`` (M, K), ``w`` (N, K), ``other`` (M, N)), as
    new tensors. torch's own ``mm``/``addmm`` call MKL's SGEMM, which on some CPUs (AMD's, with
    AVX-512) runs at about half the speed of oneDNN's (docs/benchmarks.md, issue 24), the library
    that ``nn.LSTM``'s CPU kernel uses; the variational RNN's recurrence calls these instead.
    """
    ops = getattr(torch.ops, "mkldnn", None)
    op = getattr(ops, "_linear_pointwise", None) if ops is not None else None
    reorder = getattr(ops, "_reorder_linear_weight", None) if ops is not None else None
    if op is None or reorder is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        default, binary = op.default, op.binary
    except AttributeError:
        return None

    def linear(x, w, b=None):
        return default(x, w, b, "none", [], "")

    def linear_add(x, other, w, b=None):
        return binary(x, other, w, b, "add")

    def pack(w, rows):
        # w (N, K) in oneDNN's blocked layout for products with `rows` rows: the same values,
        # an opaque tensor that linear and linear_add take in w's place (about 20 % faster for
        # the recurrence's (32, 256) x (256, 1024) products; see ops/rnn.PACK_WEIGHT)
        return reorder(w, rows)

    return linear, linear_add, pack
