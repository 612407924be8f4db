"""The DTensor contract's cases and the worker that runs them on real ranks.

Every op spec with a tensor input and every module spec is a case, for the placements
``Replicate()``, ``Shard(0)`` and ``Shard(-1)`` and, where the op has a fast path, above and below
its threshold: the input (and every differentiable tensor of its shape) is distributed, the op runs
with the same seed on every rank, and the result must be a DTensor with the input's placements
(replicated where the output's rank differs from the input's: a reduction, a lookup) whose
``full_tensor()`` equals the op on the whole tensor in one process, bit for bit; so must the
gradients (of the inputs and of a module's parameters), and a ``generator=`` must be honoured.
Ops that refuse a DTensor (``REFUSED``) must say so with an error naming dropkit.
"""

from __future__ import annotations

import copy

import torch

from tests.contract._specs import FUNCTIONAL, MODULES, large_variants

# Ops without a sharded form: a TypeError naming dropkit (torch's nn.LSTM takes no DTensor either;
# a DropConnect parametrization of a layer whose weights are plain tensors cannot take a DTensor
# input, as torch's layer cannot).
REFUSED = {
    "variational_rnn",
    "VariationalLSTM",
    "VariationalGRU",
    "WeightDropLSTM",
    "WeightDropGRU",
    "DropConnect",
}
PLACEMENTS = ("Replicate", "Shard(0)", "Shard(-1)")


def _tensor_specs():
    return [s for s in FUNCTIONAL if s.inputs(torch.float32, False)]


def cases() -> list[tuple[str, str, str, bool, bool]]:
    """(kind, spec id, placement, large, with generator) for every case."""
    out = []
    for kind, specs in (("op", _tensor_specs()), ("module", MODULES)):
        for spec, large in large_variants(specs):
            ndim = spec.inputs(torch.float32, large)[0].dim()
            for placement in PLACEMENTS if ndim else PLACEMENTS[:1]:  # a 0-d tensor: Replicate
                out.append((kind, str(spec), placement, large, False))
            if kind == "op" and spec.generator and spec.random:
                out.append((kind, str(spec), "Shard(0)", large, True))
    return out


def case_id(case) -> str:
    kind, name, placement, large, gen = case
    return f"{kind}-{name}-{'fast' if large else 'plain'}-{placement}{'-generator' if gen else ''}"


def _placement(name: str, ndim: int):
    from torch.distributed.tensor import Replicate, Shard

    if name == "Replicate":
        return Replicate()
    return Shard(0 if name == "Shard(0)" else ndim - 1)


def _weights(t: torch.Tensor) -> torch.Tensor:
    # a fixed, non-uniform cotangent, so that a wrong mask anywhere changes the gradient
    return (torch.arange(t.numel(), dtype=t.dtype) % 7 + 1).view(t.shape) / 7


def _run_case(mesh, case):
    from torch.distributed.tensor import DTensor, Replicate, distribute_tensor

    kind, name, placement_name, large, with_generator = case
    specs = _tensor_specs() if kind == "op" else MODULES
    spec = next(s for s in specs if str(s) == name)
    torch.manual_seed(100)
    tensors = spec.inputs(torch.float32, large)
    x = tensors[0]
    placement = _placement(placement_name, x.dim())
    grad_idx = [
        i
        for i in (spec.grad if kind == "op" else (0,))
        if isinstance(tensors[i], torch.Tensor) and tensors[i].is_floating_point()
    ]
    shared = [i for i in grad_idx if tensors[i].shape == x.shape] or [0]
    kwargs = {}

    def gen():
        return {"generator": torch.Generator().manual_seed(11)} if with_generator else {}

    # one process: the op on the whole tensors
    ref = [
        t.detach().clone().requires_grad_(i in grad_idx)
        if isinstance(t, torch.Tensor) and t.is_floating_point()
        else t
        for i, t in enumerate(tensors)
    ]
    module = spec.make(large) if kind == "module" else None
    module_copy = copy.deepcopy(module) if module is not None else None
    torch.manual_seed(5)
    out_ref = spec.run(ref, **kwargs, **gen()) if kind == "op" else spec.run(module, ref)
    # the ranks: the same op on DTensors
    dts = list(tensors)
    for i in shared:
        dts[i] = distribute_tensor(tensors[i].detach().clone(), mesh, [placement])
        if i in grad_idx:
            dts[i].requires_grad_()
    for i in grad_idx:
        if i not in shared:
            dts[i] = tensors[i].detach().clone().requires_grad_()
    torch.manual_seed(5)
    if name.split("[")[0] in REFUSED:
        try:
            spec.run(dts, **kwargs, **gen()) if kind == "op" else spec.run(module_copy, dts)
        except TypeError as err:
            return "ok" if "dropkit" in str(err) and "DTensor" in str(err) else f"bad error: {err}"
        return "no error for a refused op"
    out = spec.run(dts, **kwargs, **gen()) if kind == "op" else spec.run(module_copy, dts)
    if not isinstance(out, DTensor):
        return f"output is a {type(out).__name__}, not a DTensor"
    # the input's placements; an output of another rank (a reduction, an embedding lookup):
    # replicated
    expected = (placement,) if out.dim() == x.dim() else (Replicate(),)
    if tuple(out.placements) != expected:
        return f"placements {out.placements} != {expected}"
    if not torch.equal(out.full_tensor(), out_ref.detach()):
        return "output differs from one process"
    if not out_ref.requires_grad:
        return "ok"
    w = _weights(out_ref)
    (out_ref * w).sum().backward()
    (out * distribute_tensor(w, mesh, out.placements)).sum().backward()
    for i in grad_idx:
        got = dts[i].grad
        got = got.full_tensor() if isinstance(got, DTensor) else got
        if got is None or not torch.equal(got, ref[i].grad):
            return f"gradient of input {i} differs from one process"
    if module is not None:
        for (n, a), (_, b) in zip(
            module.named_parameters(), module_copy.named_parameters(), strict=True
        ):
            gb = b.grad.full_tensor() if isinstance(b.grad, DTensor) else b.grad
            if (a.grad is None) != (gb is None) or (gb is not None and not torch.equal(a.grad, gb)):
                return f"gradient of parameter {n} differs from one process"
    return "ok"


def check_all(rank: int, world_size: int) -> dict[str, str]:
    """The worker: every case on this rank; rank 0's verdicts by case id."""
    from torch.distributed.device_mesh import init_device_mesh

    import dropkit

    mesh = init_device_mesh("cpu", (world_size,))
    results = {}
    for case in cases():
        try:
            with dropkit.use_fast_dropout(True):
                results[case_id(case)] = _run_case(mesh, case)
        except Exception as err:  # noqa: BLE001 (every case reports, none stops the others)
            results[case_id(case)] = f"{type(err).__name__}: {err}"[:500]
    return results
