"""Stochastic modules found by their behaviour, beside the registry's names; the audit of a model.

A registry of class paths (:mod:`dropkit.nn.registry`) always trails the libraries it lists. The
probe here finds every module whose *own* forward is random in training mode, whatever its class:

1. one eval forward of the model on an example input records each module's inputs (at its first
   call) and whether it drew random numbers even in eval; one forward in training mode tells which
   modules' calls draw random numbers at all (only those, and their ancestors, need step 2);
2. each module is then called alone on those inputs, in training mode while every other module (its
   children included) stays in eval, and the probe watches torch's random number generators (the
   global CPU one, the CUDA one of the inputs' device and any ``torch.Generator`` the module holds):
   a module that draws in training, and not in eval, is a source of noise;
3. such a module is called again: if its output changes it is *active* (a module that draws with
   every rate 0, such as LayerDrop's ``rand()`` compared with a threshold of 0, is a source but
   inactive); and it is called on one row repeated: equal rows mean one random draw shared by the
   whole batch (LayerDrop skips the same layers for every row), which Monte-Carlo sampling must run
   once per sample.

Everything is restored afterwards: training flags, buffers (BatchNorm's running statistics), the
global RNG and the modules' own generators. A module the registry does not name but the probe finds
is recorded on the module (see :data:`dropkit.nn.registry.FOUND_ATTR`): ``mc_mode`` then switches it,
and ``get_dropout_p``, ``set_dropout_p`` and ``convert_dropout`` report it (its rate is unknown).

:func:`audit_stochastic` lists every source of noise of a model, found by name or by behaviour.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from dropkit.nn._base import _Stochastic
from dropkit.nn.registry import FOUND_ATTR, _lookup, _mark_found, stochastic_layer

__all__ = ["StochasticAudit", "StochasticSource", "audit_stochastic"]

# Calls of a module in training before it counts as inactive (its output never changed).
_ACTIVE_TRIES = 6
# The probe's batch: the example's first row repeated (a per-row draw then shows as rows that
# differ, a draw shared by the batch as equal rows); redraws when a draw zeroed everything (a
# batch-mode DropPath may drop the whole batch: zeros tell nothing).
_SHARED_ROWS = 8
_SHARED_TRIES = 24
# torch.nn's own classes that are random in training; every other torch.nn class is deterministic
# (its registered stochastic classes are known by name and probed for batch sharing only).
_TORCH_RANDOM = (nn.RReLU,)


# --------------------------------------------------------------------------------------------------
# A model's call: the calling conventions of mc_predict and audit_stochastic.


class _Batch:
    """A model's call: positional and keyword inputs, with B the batch size of the first tensor.

    Tensors whose first dimension is B are batch inputs (replicated or sliced along it); every
    other argument (a ``(1, L)`` position tensor, a flag, ...) is passed as it is.
    """

    def __init__(self, args: tuple, kwargs: dict, op: str) -> None:
        self.args, self.kwargs = args, kwargs
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        if not tensors:
            raise TypeError(
                f"{op}: inputs must be a Tensor, a tuple of positional inputs or a dict of keyword "
                "inputs holding at least one Tensor, but none was given"
            )
        first = tensors[0]
        if first.dim() == 0 or first.shape[0] == 0:
            raise ValueError(
                f"{op}: the inputs need a non-empty batch dimension, but the first tensor has "
                f"shape {tuple(first.shape)}"
            )
        self.size, self.device = first.shape[0], first.device

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> _Batch:
        def f(v):
            is_batch = isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == self.size
            return fn(v) if is_batch else v

        new = object.__new__(_Batch)
        new.args = tuple(f(v) for v in self.args)
        new.kwargs = {k: f(v) for k, v in self.kwargs.items()}
        new.size, new.device = None, self.device
        out = [v for v in (*new.args, *new.kwargs.values()) if isinstance(v, torch.Tensor)]
        new.size = out[0].shape[0] if out and out[0].dim() else None
        return new

    def replicate(self, c: int) -> _Batch:
        # (B, ...) -> (c*B, ...): sample-major, so rows [j*B, (j+1)*B) are sample j's batch.
        return self.map(lambda t: t.unsqueeze(0).expand(c, *t.shape).reshape(-1, *t.shape[1:]))

    def rows(self, n: int) -> _Batch:
        """The first ``n`` rows of every batch input."""
        return self.map(lambda t: t[:n])

    def __call__(self, model: nn.Module):
        return model(*self.args, **self.kwargs)


def _as_batch(inputs, kwargs: dict, op: str) -> _Batch:
    if inputs is None:
        args, kw = (), {}
    elif isinstance(inputs, torch.Tensor):
        args, kw = (inputs,), {}
    elif isinstance(inputs, (tuple, list)):
        args, kw = tuple(inputs), {}
    elif isinstance(inputs, Mapping):  # a dict, or a Hugging Face BatchEncoding
        args, kw = (), dict(inputs)
    else:
        raise TypeError(
            f"{op}: inputs must be a Tensor, a tuple/list of positional inputs or a dict of keyword "
            f"inputs, but got {type(inputs).__name__}"
        )
    clash = set(kw) & set(kwargs)
    if clash:
        raise ValueError(f"{op}: keyword input(s) {sorted(clash)} given twice")
    return _Batch(args, {**kw, **kwargs}, op)


# --------------------------------------------------------------------------------------------------
# Helpers: copies of captured inputs, comparison of outputs, RNG snapshots.


def _copy(value):
    """A fresh copy of a captured input: tensors cloned, containers rebuilt, other objects deep-
    copied where possible (a Hugging Face cache is updated in place by the call that receives
    it); modules, generators and functions are passed as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_copy(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str, nn.Module, torch.Generator)):
        return value
    if callable(value) and not hasattr(value, "__dict__"):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is passed as it is
        return value


def _tensors(value) -> list[torch.Tensor]:
    """The tensors of a module's output, in order (tuples, lists, dicts, ModelOutputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _same(a, b) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if x.is_floating_point() or x.is_complex():
            if not torch.equal(x.isnan(), y.isnan()) or not torch.equal(
                x.nan_to_num(0.0), y.nan_to_num(0.0)
            ):
                return False
        elif not torch.equal(x, y):
            return False
    return True


def _devices(model: nn.Module, batch: _Batch) -> list[torch.device]:
    devices = {batch.device}
    devices.update(p.device for p in model.parameters())
    return sorted((d for d in devices if d.type == "cuda"), key=str)


def _rng_state(devices: list[torch.device], generators: list[torch.Generator]) -> list:
    state = [torch.get_rng_state()]
    state += [torch.cuda.get_rng_state(d) for d in devices]
    state += [g.get_state() for g in generators]
    return state


def _set_rng_state(state: list, devices: list[torch.device], gens: list[torch.Generator]) -> None:
    torch.set_rng_state(state[0])
    for d, s in zip(devices, state[1 : 1 + len(devices)], strict=True):
        torch.cuda.set_rng_state(s, d)
    for g, s in zip(gens, state[1 + len(devices) :], strict=True):
        g.set_state(s)


def _rng_changed(before: list, after: list) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def _own_generators(module: nn.Module) -> list[torch.Generator]:
    return [v for v in vars(module).values() if isinstance(v, torch.Generator)]


def _skipped(module: nn.Module) -> bool:
    """torch.nn's own deterministic classes: nothing to probe."""
    return (
        type(module).__module__.startswith("torch.nn.modules.")
        and stochastic_layer(module) is None
        and not isinstance(module, _TORCH_RANDOM)
    )


# --------------------------------------------------------------------------------------------------
# The probe.


@dataclasses.dataclass
class _Verdict:
    """What the probe saw of one module called alone in training."""

    draws: bool = False  # it drew random numbers in training (and not in eval)
    active: bool = False  # its output changed between calls
    shared: bool | None = None  # one draw for the whole batch (None: undecided, or not checked)
    error: str | None = None  # the call failed: not probed
    checked: bool = False  # batch sharing was checked


@dataclasses.dataclass
class _Probe:
    verdicts: dict[nn.Module, _Verdict]  # every module called alone
    called: set[nn.Module]  # modules the example input ran
    random_in_eval: set[nn.Module]  # modules that drew random numbers in eval
    row_bytes: float  # bytes of module outputs per input row

    def sources(self) -> list[nn.Module]:
        return [m for m, v in self.verdicts.items() if v.draws]

    def shared(self) -> list[nn.Module]:
        """Sources to run once per sample: sharing one draw across the batch, or undecided (an
        input of zeros): running a per-row source per sample costs time, never correctness."""
        return [
            m
            for m, v in self.verdicts.items()
            if v.draws and v.shared is not False and v.error is None
        ]


@contextlib.contextmanager
def _state_kept(model: nn.Module, devices: list[torch.device]) -> Iterator[None]:
    """Every module in eval inside; flags, buffers, the global RNG and the modules' own
    generators as they were afterwards."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    gens = [g for m in model.modules() for g in _own_generators(m)]
    rng = _rng_state(devices, gens)
    try:
        with _training_as(model, lambda m: False):
            yield
    finally:
        _set_rng_state(rng, devices, gens)
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)


@contextlib.contextmanager
def _training_as(model: nn.Module, flag: Callable[[nn.Module], bool]) -> Iterator[None]:
    """Inside, every module's ``training`` is ``flag(module)``; afterwards, as it was."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in saved:
            m.training = flag(m)
        yield
    finally:
        for m, was in saved:
            m.training = was


class _Hooks:
    """Forward pre- and post-hooks on every module of a model for one call: which modules ran,
    and which drew random numbers during their call (their own generators included)."""

    def __init__(self, model: nn.Module, devices: list[torch.device], on_pre=None) -> None:
        self.model, self.devices, self.on_pre = model, devices, on_pre
        self.called: set[nn.Module] = set()
        self.drew: set[nn.Module] = set()
        self.bytes = 0
        self._stack: list[tuple[nn.Module, list]] = []

    def _pre(self, module, args, kwargs):
        self.called.add(module)
        if self.on_pre is not None:
            self.on_pre(module, args, kwargs)
        self._stack.append((module, _rng_state(self.devices, _own_generators(module))))

    def _post(self, module, args, kwargs, output):
        for t in _tensors(output):
            self.bytes += t.numel() * t.element_size()
        if self._stack and self._stack[-1][0] is module:
            _, before = self._stack.pop()
            if _rng_changed(before, _rng_state(self.devices, _own_generators(module))):
                self.drew.add(module)

    def run(self, batch: _Batch):
        handles = []
        try:
            for m in self.model.modules():
                handles.append(
                    m.register_forward_pre_hook(self._pre, with_kwargs=True, prepend=True)
                )
                handles.append(
                    m.register_forward_hook(self._post, with_kwargs=True, always_call=True)
                )
            return batch(self.model)
        finally:
            for h in handles:
                h.remove()


def _screen(model: nn.Module, batch: _Batch, devices: list[torch.device]) -> _Hooks | None:
    """One forward with every module in training (normalisation layers excepted): the modules
    whose call drew random numbers (a module's own draws show in its ancestors' calls too). A
    module whose call drew nothing has no randomness of its own to find, and is not called alone.
    None if that forward fails (then every module is)."""
    hooks = _Hooks(model, devices)
    try:
        for m in model.modules():
            m.training = not isinstance(m, nn.modules.batchnorm._NormBase)
        hooks.run(batch)
    except Exception:
        return None
    finally:
        for m in model.modules():
            m.training = False
    return hooks


def _capture(model: nn.Module, batch: _Batch, devices: list[torch.device], keep):
    """One eval forward: the first inputs of each module ``keep(module)`` selects (tensors
    cloned; other objects, a Hugging Face cache, kept and deep-copied at each later call), and
    the hooks that saw which modules ran and which drew random numbers."""
    inputs: dict[nn.Module, tuple[tuple, dict]] = {}

    def record(module, args, kwargs):
        if module not in inputs and keep(module):
            inputs[module] = (_clone(args), _clone(kwargs))

    hooks = _Hooks(model, devices, on_pre=record)
    hooks.run(batch)
    return inputs, hooks


def _clone(value):
    """A captured input: tensors cloned (a later in-place operation must not change them),
    containers rebuilt, other objects kept (copied at each call, see :func:`_copy`)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_clone(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    if type(value) is dict:
        return {k: _clone(v) for k, v in value.items()}
    return value


def _without_cache(model: nn.Module, batch: _Batch) -> _Batch:
    """The call with ``use_cache=False`` where the model takes it and the caller did not choose
    (Hugging Face models): a key-value cache, updated in place by every attention layer, would
    make a layer called alone see the cache the whole forward left. The outputs are the same."""
    if "use_cache" in batch.kwargs:
        return batch
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return batch
    if "use_cache" not in params:
        return batch
    new = copy.copy(batch)
    new.kwargs = {**batch.kwargs, "use_cache": False}
    return new


def _call(module: nn.Module, captured: tuple[tuple, dict], training: bool):
    args, kwargs = captured
    module.training = training
    try:
        return module(*_copy(args), **_copy(kwargs))
    finally:
        module.training = False


def _rows_equal(output) -> bool | None:
    """Whether the rows of the first output tensor are all equal (None: all zero, undecided).

    Equal up to 1e-4 of their largest value: a GEMM over 8 rows may round rows differently,
    while a per-row draw changes a row by a dropped unit or a rescaling, O(1) of its values."""
    ts = _tensors(output)
    if not ts or ts[0].dim() == 0 or ts[0].shape[0] < 2:
        return False
    rows = ts[0].reshape(ts[0].shape[0], -1)
    if not rows.shape[1]:
        return False
    if not (rows.is_floating_point() or rows.is_complex()):
        return bool((rows == rows[:1]).all()) if bool(rows.ne(0).any()) else None
    rows = rows.nan_to_num(0.0)
    scale = float(rows.abs().max())
    if scale == 0.0:
        return None
    return float((rows - rows[:1]).abs().max()) <= 1e-4 * scale


def _shared_trials(module: nn.Module) -> tuple[object, dict[str, float], list[dict[str, float]]]:
    """The rate settings under which batch sharing is checked: each non-zero rate alone (the
    others at 0), raised to 0.5 so that a per-row draw is unlikely to repeat on every row;
    ``[{}]`` (as the module is) where its rates are unknown or not plain attributes."""
    entry = stochastic_layer(module)
    if entry is None:
        return None, {}, [{}]
    plain = entry.rate_names is not None or getattr(entry.get_p, "attr", None) is not None
    rates = entry.rates(module) if plain else {}
    active = [r for r, p in rates.items() if 0.0 < p < 1.0]
    if not active:
        return entry, rates, [{}]
    return entry, rates, [{r: (0.5 if r == keep else 0.0) for r in rates} for keep in active]


def _shared_under(
    module: nn.Module, captured: tuple[tuple, dict], rng: Callable[[], list]
) -> bool | None:
    """Under the module's current rates: it draws random numbers and its rows (the probe's
    batch is one row repeated) stay equal, call after call (a per-row draw soon makes two rows
    differ). Stops at the first call whose output changed with equal rows: one draw for every
    row. None when every output was zero (an input of zeros tells nothing)."""
    ref = None
    for i in range(_SHARED_TRIES):
        before = rng()
        out = _call(module, captured, True)
        if i == 0 and not _rng_changed(before, rng()):
            return False  # deterministic under this setting: nothing to share
        equal = _rows_equal(out)
        if equal is False:
            return False
        if equal is None:  # all zero (a batch-mode DropPath dropped everything): draw again
            continue
        if ref is None:
            ref = out
        elif not _same(ref, out):
            return True  # random, and one draw for every row
    return None if ref is None else True  # equal rows every time while drawing: shared


def _is_shared(
    module: nn.Module, captured: tuple[tuple, dict], rng: Callable[[], list]
) -> bool | None:
    """One random draw for the whole batch (see :func:`_shared_under`); None when undecided. A
    module with several named rates is checked one rate at a time, so that LayerDrop (shared) is
    not hidden by the same module's element-wise dropout."""
    entry, rates, trials = _shared_trials(module)
    verdict: bool | None = False
    try:
        for setting in trials:
            for r, p in setting.items():
                entry.set_rate(module, r, p)
            shared = _shared_under(module, captured, rng)
            if shared:
                return True
            if shared is None:
                verdict = None
    finally:
        for r, p in rates.items():
            entry.set_rate(module, r, p)
    return verdict


def _probe_module(
    module: nn.Module,
    captured: tuple[tuple, dict],
    devices: list[torch.device],
    random_in_eval: bool,
    check_shared: bool,
) -> _Verdict:
    gens = _own_generators(module)
    try:
        start = _rng_state(devices, gens)
        if random_in_eval:  # compare with the draws of an eval call from the same state
            _call(module, captured, False)
            after_eval = _rng_state(devices, gens)
            _set_rng_state(start, devices, gens)
            first = _call(module, captured, True)
            draws = _rng_changed(after_eval, _rng_state(devices, gens))
        else:
            first = _call(module, captured, True)
            draws = _rng_changed(start, _rng_state(devices, gens))
        if not draws:
            return _Verdict()
        entry = stochastic_layer(module)
        if entry is not None and entry.found_by == "name":
            active = True  # known by name: its rates say whether it drops (the audit reads them)
        else:
            active = any(
                not _same(first, _call(module, captured, True)) for _ in range(_ACTIVE_TRIES)
            )
    except Exception as e:  # the module cannot be called alone on its captured inputs
        return _Verdict(error=f"{type(e).__name__}: {e}"[:200])
    shared = None
    if check_shared:  # also when inactive here: a rare batch-mode draw (p=0.05) is shared too
        try:
            shared = _is_shared(module, captured, lambda: _rng_state(devices, gens))
        except Exception:
            shared = None  # undecided: mc_predict runs it per sample (safe)
    return _Verdict(True, active, shared, checked=check_shared)


@torch.no_grad()
def _probe(model: nn.Module, batch: _Batch, *, check_shared: bool = True) -> _Probe:
    """Run the behaviour probe on the first row of ``batch``, repeated ``_SHARED_ROWS`` times
    (see the module docstring), and record what it found on the modules the registry does not
    name."""
    rows = _without_cache(model, batch.rows(1).replicate(_SHARED_ROWS))
    devices = _devices(model, batch)
    with _state_kept(model, devices):
        screen = _screen(model, rows, devices)

        def keep(m: nn.Module) -> bool:  # drew in training, or not run then (LayerDrop skipped it)
            return screen is None or m in screen.drew or m not in screen.called

        inputs, ran = _capture(model, rows, devices, keep)
        verdicts = {}
        for m in dict.fromkeys(model.modules()):
            if m in inputs and not _skipped(m):
                verdicts[m] = _probe_module(m, inputs[m], devices, m in ran.drew, check_shared)
    for m, v in verdicts.items():
        entry, _ = _lookup(m)
        if v.draws and (entry is None or entry.found_by == "behaviour"):
            _mark_found(m, v.active)
    for m in ran.called:  # found before, deterministic now (e.g. its rate set to 0): forgotten
        v = verdicts.get(m)
        quiet = (v is not None and not v.draws and v.error is None) or (
            v is None and screen is not None and m in screen.called and m not in screen.drew
        )
        if quiet and FOUND_ATTR in m.__dict__:
            del m.__dict__[FOUND_ATTR]
    return _Probe(verdicts, ran.called, ran.drew, ran.bytes / _SHARED_ROWS)


# --------------------------------------------------------------------------------------------------
# The audit.


@dataclasses.dataclass(frozen=True)
class StochasticSource:
    """One source of noise of a model (see :func:`audit_stochastic`).

    Attributes:
        name: the module's name in the model (``""`` for the model itself).
        module: the module.
        cls: its class's import path.
        kind: ``"layer"`` or ``"gate"`` (see :mod:`dropkit.nn.registry`).
        found_by: ``"name"`` (a registry entry) or ``"behaviour"`` (the probe).
        rates: ``{rate name: p}`` (``""`` for a module's single rate); None when unknown.
        active: whether it drops on the example input (a rate above 0, or its output changed);
            None when the example input did not run it and its rate is unknown.
        batch_shared: one random draw for the whole batch (mc_predict then runs it per sample);
            None when not checked (inactive, or not run).
        controls: what dropkit does with it: ``"mc_mode"`` (switched on for Monte-Carlo
            sampling), ``"set_dropout_p"`` (rate read and set), ``"convert_dropout"`` (a dropkit
            counterpart), ``"set_generator"`` (takes a generator).
        note: why something is missing (the probe's error, a rate held by a child, ...).
    """

    name: str
    module: nn.Module
    cls: str
    kind: str
    found_by: str
    rates: dict[str, float] | None
    active: bool | None
    batch_shared: bool | None
    controls: tuple[str, ...]
    note: str = ""

    @property
    def controlled(self) -> bool:
        """dropkit switches it for Monte-Carlo sampling and knows its rate."""
        return "mc_mode" in self.controls and "set_dropout_p" in self.controls


class StochasticAudit(list):
    """The list of :class:`StochasticSource` of a model; ``str()`` gives a table.

    ``unprobed``: ``(name, error)`` of the modules the probe could not call alone on their captured
    inputs (their own randomness is unknown; none of them is a registry entry).
    """

    def __init__(self, sources=(), unprobed=()) -> None:
        super().__init__(sources)
        self.unprobed: list[tuple[str, str]] = list(unprobed)

    def __str__(self) -> str:
        head = ("module", "class", "kind", "found by", "rate", "active", "shared", "dropkit")
        rows = [head]
        for s in self:
            rows.append(
                (
                    s.name or "<model>",
                    s.cls.rsplit(".", 1)[-1],
                    s.kind,
                    s.found_by,
                    _rates_text(s.rates),
                    _flag(s.active),
                    _flag(s.batch_shared),
                    ", ".join(s.controls) + (f" ({s.note})" if s.note else ""),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                 for r in rows]  # fmt: skip
        lines.append(
            f"{len(self)} source(s) of noise: {sum(s.found_by == 'name' for s in self)} found by "
            f"name, {sum(s.found_by == 'behaviour' for s in self)} by behaviour; "
            f"{sum(bool(s.active) for s in self)} active; "
            f"{sum(not s.controlled for s in self)} without a rate dropkit can set"
        )
        if self.unprobed:
            names = ", ".join(f"'{n or '<model>'}'" for n, _ in self.unprobed[:4])
            lines.append(
                f"{len(self.unprobed)} module(s) could not be called alone on their inputs "
                f"({names}{', ...' * (len(self.unprobed) > 4)}): their own randomness is unknown"
            )
        return "\n".join(line.rstrip() for line in lines)


def _rates_text(rates: dict[str, float] | None) -> str:
    if rates is None:
        return "unknown"
    if not rates:
        return "in child"
    return ", ".join(f"{k}={v:g}" if k else f"{v:g}" for k, v in rates.items())


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _controls(module: nn.Module, entry, exact: bool) -> tuple[str, ...]:
    out = ["mc_mode"]
    if entry.found_by == "name" and (entry.rates(module) or entry.get_p is not None):
        out.append("set_dropout_p")
    if isinstance(module, _Stochastic) or (exact and entry.to_dropkit is not None):
        out.append("convert_dropout")
    if isinstance(module, _Stochastic) and hasattr(module, "generator"):
        out.append("set_generator")
    return tuple(out)


def audit_stochastic(model: nn.Module, inputs=None, **kwargs) -> StochasticAudit:
    """Every source of noise of ``model`` on an example input: found by name (the registry) or by
    behaviour (a module the registry does not name whose own forward is random in training).

    The model is called once in eval on ``inputs`` (a Tensor, a tuple of positional inputs or a
    dict of keyword inputs; extra keyword arguments go to the model too, as in ``mc_predict``),
    then each module alone in training (see :mod:`dropkit.nn.discovery`); every flag, buffer and
    RNG state is restored. Modules found by behaviour are recorded, so ``mc_mode`` switches them
    and ``get_dropout_p`` / ``set_dropout_p`` / ``convert_dropout`` report them.

    Returns a :class:`StochasticAudit`: a list of :class:`StochasticSource` (name, class, kind,
    how it was found, its rates or None when unknown, whether it is active on the example input,
    whether its draw is shared by the batch, and what dropkit controls of it); ``print()`` it for
    a table.

    Example::

        >>> print(dropkit.nn.audit_stochastic(model, torch.randn(2, 3, 32, 32)))
    """
    op = "audit_stochastic"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{op}: model must be a torch.nn.Module, but got {type(model).__name__}")
    batch = _as_batch(inputs, kwargs, op)
    probe = _probe(model, batch)
    # Modules random in eval too (mc_mode cannot switch them off): the innermost of those that drew.
    always = {
        m
        for m in probe.random_in_eval
        if not any(c in probe.random_in_eval for c in m.modules() if c is not m)
    }
    out, unprobed = [], []
    for name, module in model.named_modules():
        entry, exact = _lookup(module)
        verdict = probe.verdicts.get(module)
        if entry is None:
            if module in always:
                out.append(_always_random(name, module))
            elif verdict is not None and verdict.error is not None:
                unprobed.append((name, verdict.error))
            continue
        note = ""
        if entry.found_by == "behaviour":
            rates = None
            active = verdict.active if verdict is not None and verdict.draws else None
        else:
            rates = entry.rates(module)
            probed = verdict is not None and verdict.error is None
            if rates:
                active = any(p > 0 for p in rates.values())
                if active and probed and not verdict.draws:
                    active = False  # e.g. a float copied from the config its forward never reads
                    note = "its own forward draws nothing"
            elif probed:  # a rate held by a child (BERT's attention reads self.dropout.p)
                active = verdict.draws and verdict.active
            else:
                rates, active = None, None
        if module not in probe.called:
            note = "not run by the example input"
        elif verdict is not None and verdict.error is not None:
            note = f"not probed: {verdict.error}"
        elif module in always:
            note = "random in eval too"
        shared = verdict.shared if verdict is not None and verdict.draws else None
        out.append(
            StochasticSource(
                name,
                module,
                _class_path(module),
                entry.kind,
                entry.found_by,
                rates,
                active,
                shared,
                _controls(module, entry, exact),
                note,
            )
        )
    return StochasticAudit(out, unprobed)


def _class_path(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _always_random(name: str, module: nn.Module) -> StochasticSource:
    kind = "gate" if next(module.children(), None) is not None else "layer"
    return StochasticSource(
        name, module, _class_path(module), kind, "behaviour", None, True, None, (),
        "random in eval too: mc_mode cannot switch it",
    )  # fmt: skip
