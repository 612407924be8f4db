"""One registration mechanism for every dropkit operator.

An operator is defined once, by :func:`define`, with all of its rules side by side: the kernel
(``impl``), the fake kernel that gives output shapes to compilers, the autograd formula
(``setup_context`` and ``backward``), forward-mode AD (``jvp``), ``torch.func.vmap`` (``vmap``) and what
a ``DTensor`` input means (``sharding``). From that one definition it gets two lanes:

* **Graphs** (``torch.compile``, ``torch.export``, fake tensors, tensor subclasses, dispatch modes): a
  ``torch.library`` custom op ``dropkit::<name>`` with the fake kernel, the autograd formula and the
  vmap rule registered on it, so tracing sees one opaque call whose backward is dropkit's.
* **Eager** (a plain tensor, no compiler, no dispatch mode): a :class:`torch.autograd.Function` whose
  ``forward`` is the same kernel and whose ``setup_context``, ``backward``, ``jvp`` and ``vmap`` are the
  same functions, called without going through the dispatcher (the common case costs one C++
  ``Function.apply``, not an operator call).

Calling an :class:`Op` picks the lane from its first tensor argument: a ``DTensor`` goes to the
sharding rule, a plain tensor outside compilers and modes to the eager lane, anything else to the
library op. The rules are written once and serve both lanes, so a backward calls other ``Op`` objects
(never a lane directly) and stays valid in both.

Nothing here knows about dropout: the operators are defined in :mod:`dropkit.random.draws` (seeds and
torch-generator draws), :mod:`dropkit.ops.dropout` and :mod:`dropkit.ops.family`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dropkit.ops import _torch

__all__ = ["OPS", "Op", "define", "eager"]

_is_compiling = torch.compiler.is_compiling

# Every operator by name (``"philox_dropout"``), for tests that walk them all (tests/contract).
OPS: dict[str, Op] = {}


def eager(t: object) -> bool:
    """Whether a call on ``t`` runs in the eager lane: a plain tensor, no compiler, no dispatch mode
    (fake tensors, DTensors, selective checkpointing and other ``TorchDispatchMode``\\ s take the library
    op)."""
    # is_compiling first: dynamo cannot trace the dispatch-mode query
    return not _is_compiling() and type(t) is torch.Tensor and not _torch.dispatch_modes()


def _is_dtensor(t: object) -> bool:
    return type(t).__name__ == "DTensor" and _torch.is_dtensor(t)


@dataclasses.dataclass(eq=False)
class Op:
    """A dropkit operator: its library op, its eager autograd function and its rules (see the module
    docstring). Call it like the operator; ``Op.library`` is ``torch.ops.dropkit.<name>.default``'s
    Python handle and ``Op.function`` the eager :class:`torch.autograd.Function` (None for operators
    without an autograd formula)."""

    name: str
    impl: Callable
    library: Any
    function: type[torch.autograd.Function] | None
    sharding: Callable | None
    mutated: tuple[int, ...] = ()  # positions of the arguments the kernel writes to

    def __post_init__(self) -> None:
        # Function.apply binds the arguments with inspect.signature on every call when
        # setup_context is defined; outside torch.func the C++ apply does the same work without it.
        fn = self.function
        self._apply = None if fn is None else super(torch.autograd.Function, fn).apply

    def __call__(self, *args):
        first = args[0]
        if type(first) is torch.Tensor and not _is_compiling() and not _torch.dispatch_modes():
            return self.eager(*args)
        if self.sharding is not None and _is_dtensor(first):
            return self.sharding(*args)
        return self.library(*args)

    def eager(self, *args):
        """The eager lane, whatever the arguments (callers that know the lane applies)."""
        if self._apply is None:
            return self.impl(*args)
        if _torch.transforms() is None:
            if not torch.is_grad_enabled() and not _torch.forward_ad():
                # nothing to record (a backward pass, no_grad, inference): the kernel itself
                out = self.function.forward(*args)
                for i in self.mutated:  # what autograd does for an in-place op, without a node
                    torch.autograd.graph.increment_version(args[i])
                return out
            return self._apply(*args)  # the C++ apply: no signature binding (about 10 us saved)
        return self.function.apply(*args)  # torch.func transforms dispatch through apply

    @property
    def overload(self):
        """``torch.ops.dropkit.<name>.default``."""
        return getattr(torch.ops.dropkit, self.name).default


def define(
    name: str,
    impl: Callable,
    *,
    fake: Callable,
    mutates_args: Sequence[str] = (),
    tags: Sequence[torch.Tag] = (),
    setup_context: Callable | None = None,
    backward: Callable | None = None,
    jvp: Callable | None = None,
    vmap: Callable | None = None,
    sharding: Callable | None = None,
    eager_impl: Callable | None = None,
    eager_setup: Callable | None = None,
) -> Op:
    """Define the operator ``dropkit::<name>`` and its eager twin from one set of rules.

    Args:
        name: the operator's name in the ``dropkit`` namespace.
        impl: the kernel; its type annotations give the schema (``torch.library.custom_op``).
        fake: the fake kernel (output metadata only).
        mutates_args: names of the arguments the kernel writes to.
        tags: ``torch.Tag`` values (``nondeterministic_seeded`` for draws: never merged, never
            recomputed in backward by the compiler).
        setup_context, backward: the autograd formula, as ``register_autograd`` takes it; the eager
            function uses the same two.
        jvp: forward-mode AD for the eager lane (``torch.autograd.Function.jvp``; graphs have none).
        vmap: the ``torch.func.vmap`` rule, registered on the library op and used by the eager lane.
        sharding: what a ``DTensor`` first argument means: called with the operator's arguments
            instead of the kernel.
        eager_impl, eager_setup: the eager lane's kernel and ``setup_context`` where they must
            differ: an in-place kernel returns the input it wrote and marks it dirty, while the
            library op declares it in ``mutates_args`` (and has no autograd formula: graphs run an
            in-place dropout only where no gradient is needed, out of place otherwise).
    """
    library = torch.library.custom_op(
        f"dropkit::{name}", impl, mutates_args=tuple(mutates_args), tags=tuple(tags)
    )
    library.register_fake(fake)
    if backward is not None and not mutates_args:
        library.register_autograd(backward, setup_context=setup_context)
    if vmap is not None:
        library.register_vmap(vmap)
    function = None
    if backward is not None or eager_setup is not None:
        body: dict[str, Any] = {
            "forward": staticmethod(eager_impl or impl),
            "setup_context": staticmethod(eager_setup or setup_context),
            "backward": staticmethod(backward),
        }
        if jvp is not None:
            body["jvp"] = staticmethod(jvp)
        if vmap is not None:
            body["vmap"] = staticmethod(vmap)
        function = type(f"_{name}", (torch.autograd.Function,), body)
    op = Op(
        name=name,
        impl=impl,
        library=library,
        function=function,
        sharding=sharding,
        mutated=tuple(
            i for i, n in enumerate(inspect.signature(impl).parameters) if n in mutates_args
        ),
    )
    OPS[name] = op
    return op
