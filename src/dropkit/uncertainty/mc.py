"""Monte-Carlo dropout: dropout kept on at inference, and many forward passes as one ensemble.

Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model Uncertainty in Deep
Learning", ICML 2016.

* :func:`mc_mode` (a context manager) puts exactly the stochastic modules in training mode and every
  other module (BatchNorm, ...) in eval, and restores each module's previous ``training`` flag on
  exit, also when the body raises.
* :func:`mc_predict` draws ``samples`` stochastic forward passes, stacked on a new leading dimension
  ``(T, B, ...)`` (:func:`to_baal_layout` gives baal's ``(B, ..., T)``). The batch is replicated so
  that one forward computes a chunk of samples; the chunk size is bounded by a memory budget. A
  Python loop over samples is the fallback.

The stochastic modules are those of the registry (:mod:`dropkit.nn.registry`): dropout layers of
every kind (torch's, dropkit's, timm's DropPath/DropBlock, torchvision's StochasticDepth, users'
registered ones) and *gates*, modules whose own ``training`` flag switches dropout run functionally
inside them (Hugging Face and timm attention, ``nn.MultiheadAttention``, timm's classifier heads).
Both fail loudly on a model with no active stochastic module: its samples would all be equal.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from dropkit.nn.registry import StochasticLayer, stochastic_layer, stochastic_layers

__all__ = [
    "NoDropoutError",
    "NoDropoutWarning",
    "dropout_layers",
    "is_dropout_layer",
    "mc_mode",
    "mc_predict",
    "to_baal_layout",
]

# Bytes of activations per chunk: on CPU a chunk that stays near the caches is as fast as a big one
# (see docs/benchmarks.md); on a GPU bigger chunks fill the device.
_DEFAULT_BUDGET = {"cpu": 4 * 2**20, "cuda": 1024 * 2**20}
_PROBE_ROWS = 16
_PROBE_TRIES = 24
_ON_DETERMINISTIC = ("raise", "warn", "ignore")


class NoDropoutError(RuntimeError):
    """Monte-Carlo dropout on a model with no active stochastic layer: every sample would be equal."""


class NoDropoutWarning(UserWarning):
    """As :class:`NoDropoutError`, with ``on_deterministic="warn"``."""


def is_dropout_layer(module: nn.Module) -> bool:
    """True for every module the registry knows: dropout layers of any library and gates."""
    return stochastic_layer(module) is not None


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The stochastic modules of ``model`` (itself included), in ``model.modules()`` order."""
    return [m for m in model.modules() if is_dropout_layer(m)]


def _is_active(module: nn.Module, entry: StochasticLayer) -> bool:
    p = entry.p(module)
    if p is None:  # a layer whose rate dropkit cannot read counts; a gate's rate is in its children
        return entry.kind == "layer"
    return float(p) > 0.0


def _check_active(model: nn.Module, on_deterministic: str, op: str) -> None:
    if on_deterministic not in _ON_DETERMINISTIC:
        raise ValueError(
            f"{op}: on_deterministic must be one of {_ON_DETERMINISTIC}, but got "
            f"{on_deterministic!r}"
        )
    found = stochastic_layers(model)
    if on_deterministic == "ignore" or any(_is_active(m, e) for _, m, e in found):
        return
    if found:
        names = ", ".join(f"'{n or '<model>'}' ({type(m).__name__})" for n, m, _ in found[:4])
        what = f"all {len(found)} stochastic modules have p=0 ({names}{', ...' * (len(found) > 4)})"
    else:
        what = f"no stochastic layer was found in {type(model).__name__}"
    msg = (
        f"{op}: {what}, so every Monte-Carlo sample would be identical (zero uncertainty that "
        "looks real). Set a rate (dropkit.nn.set_dropout_p), register a custom layer "
        "(dropkit.nn.register_stochastic_layer), or pass on_deterministic='warn' or 'ignore'"
    )
    if on_deterministic == "raise":
        raise NoDropoutError(msg)
    warnings.warn(msg, NoDropoutWarning, stacklevel=4)


@contextlib.contextmanager
def mc_mode(model: nn.Module, *, on_deterministic: str = "raise") -> Iterator[nn.Module]:
    """Stochastic modules in training mode, every other module in eval; the old flags restored on
    exit.

    Only the ``training`` flag of each module is touched (``module.train()`` would recurse into the
    children of a dropout layer, e.g. the cells of a variational RNN; they stay in eval here). Gates
    (attention whose dropout is functional, see :mod:`dropkit.nn.registry`) get their own flag set,
    their children keep theirs: an attention's LayerNorm stays in eval.

    Args:
        model: any ``nn.Module``.
        on_deterministic: what to do when no stochastic module is active (none found, or every rate
            is 0): ``"raise"`` a :class:`NoDropoutError` (default), ``"warn"`` or ``"ignore"``.

    Example::

        >>> with mc_mode(model):
        ...     samples = torch.stack([model(x) for _ in range(20)])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mc_mode: model must be a torch.nn.Module, but got {type(model).__name__}")
    _check_active(model, on_deterministic, "mc_mode")
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in saved:
            m.training = is_dropout_layer(m)
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


def to_baal_layout(samples: torch.Tensor) -> torch.Tensor:
    """``(T, B, ...)`` samples of :func:`mc_predict` as baal's ``(B, ..., T)`` (a view)."""
    if not isinstance(samples, torch.Tensor) or samples.dim() < 2:
        raise ValueError("to_baal_layout: samples must be a (T, B, ...) tensor")
    return samples.movedim(0, -1)


# --------------------------------------------------------------------------------------------------
# RNG plumbing: per-sample RNG states make vectorised and looped sampling draw the same masks.


def _get_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_state(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _seed_states(seeds: list[int], device: torch.device) -> list[torch.Tensor]:
    return [torch.Generator(device=device).manual_seed(s).get_state() for s in seeds]


@contextlib.contextmanager
def _global_rng_kept(device: torch.device) -> Iterator[None]:
    state = _get_state(device)
    try:
        yield
    finally:
        _set_state(state, device)


@contextlib.contextmanager
def _own_generators_off(layers: list[nn.Module]) -> Iterator[None]:
    """Layers with their own ``generator`` draw from the global RNG (which mc_predict controls)."""
    saved = [(m, m.generator) for m in layers if getattr(m, "generator", None) is not None]
    try:
        for m, _ in saved:
            m.generator = None
        yield
    finally:
        for m, g in saved:
            m.generator = g


class _NotSplittable(RuntimeError):
    """A dropout layer's call cannot be split into sample blocks: mc_predict falls back to the loop."""


class _PerSample:
    """Runs the wrapped layers once per sample block of a replicated batch.

    With ``states`` (one RNG state per sample), block t draws from state t, as the t-th forward of
    the looped path would. Without, it just calls the layer per block, so a layer that shares one
    mask across its batch draws one mask per sample rather than one per chunk.
    """

    def __init__(self, layers: list[nn.Module], device: torch.device) -> None:
        self.layers, self.device = layers, device
        self.blocks = 1
        self.states: list[torch.Tensor] | None = None

    def _wrap(self, layer: nn.Module):
        forward = layer.forward

        def per_sample(input, *args, **kwargs):
            if not isinstance(input, torch.Tensor) or input.shape[0] % self.blocks:
                raise _NotSplittable(
                    f"mc_predict: cannot split the input of {type(layer).__name__} into "
                    f"{self.blocks} sample blocks along dimension 0; use vectorize=False"
                )
            outs = []
            for t, piece in enumerate(input.chunk(self.blocks, dim=0)):
                if self.states is not None:
                    _set_state(self.states[t], self.device)
                outs.append(forward(piece, *args, **kwargs))
                if self.states is not None:
                    self.states[t] = _get_state(self.device)
            if not all(isinstance(o, torch.Tensor) for o in outs):
                raise _NotSplittable(f"mc_predict: {type(layer).__name__} returns a non-tensor")
            return torch.cat(outs, dim=0)

        return per_sample

    @contextlib.contextmanager
    def installed(self) -> Iterator[_PerSample]:
        saved = [(m, m.__dict__.get("forward")) for m in self.layers]
        try:
            for m in self.layers:
                m.forward = self._wrap(m)
            yield self
        finally:
            for m, own in saved:
                del m.forward
                if own is not None:
                    m.forward = own


class _Batch:
    """A model's call: positional and keyword inputs, with B the batch size of the first tensor.

    Tensors whose first dimension is B are batch inputs (replicated for vectorised sampling); every
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
        return new

    def replicate(self, c: int) -> _Batch:
        # (B, ...) -> (c*B, ...): sample-major, so rows [j*B, (j+1)*B) are sample j's batch.
        return self.map(lambda t: t.unsqueeze(0).expand(c, *t.shape).reshape(-1, *t.shape[1:]))

    def __call__(self, model: nn.Module):
        return model(*self.args, **self.kwargs)


def _as_batch(inputs, kwargs: dict, op: str) -> _Batch:
    if isinstance(inputs, torch.Tensor):
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


def _select(out, output, op: str) -> torch.Tensor:
    """The tensor of a model's output that is sampled (see ``mc_predict``'s ``output``)."""
    if callable(output):
        chosen = output(out)
    elif output is None:
        if isinstance(out, torch.Tensor):
            chosen = out
        elif isinstance(out, Mapping):  # a dict or a Hugging Face ModelOutput
            if "logits" not in out:
                raise ValueError(
                    f"{op}: the model returned a {type(out).__name__} without 'logits' (keys: "
                    f"{list(out.keys())}); choose one with output='key'"
                )
            chosen = out["logits"]
        elif isinstance(out, (tuple, list)) and out:
            chosen = out[0]
        else:
            chosen = out
    elif isinstance(output, str):
        if isinstance(out, Mapping):
            if output not in out:
                raise ValueError(
                    f"{op}: output={output!r} is not in the model's output (keys: {list(out)})"
                )
            chosen = out[output]
        else:
            chosen = getattr(out, output)
    elif isinstance(output, int) and not isinstance(output, bool):
        chosen = out[output]
    else:
        raise TypeError(
            f"{op}: output must be None, a key, an index or a function, but got "
            f"{type(output).__name__}"
        )
    if not isinstance(chosen, torch.Tensor):
        raise TypeError(
            f"{op}: the selected output is a {type(chosen).__name__}, not a Tensor; choose a "
            "tensor with output= (a key, an index or a function)"
        )
    return chosen


def _probe(
    model: nn.Module, batch: _Batch | torch.Tensor, layers: list[nn.Module]
) -> tuple[list[nn.Module], float]:
    """Which dropout layers share one mask across the batch, and activation bytes per input row.

    Each layer's first input row is fed to it again, replicated ``_PROBE_ROWS`` times, with ``p``
    raised to 0.5 where the layer has a float ``p``: a per-row mask makes the copies differ (with
    probability 1 - 2^-15 per element at least), a shared mask keeps them equal. The global RNG and
    the layers' own generators are restored afterwards, so probing does not change the samples.
    """
    if isinstance(batch, torch.Tensor):
        batch = _Batch((batch,), {}, "mc_predict")
    shared: list[nn.Module] = []
    sizes = [0]
    busy = [False]

    def hook(module, args, output):
        if busy[0]:
            return
        if isinstance(output, torch.Tensor):
            sizes[0] += output.numel() * output.element_size()
        if module not in layers or not args or not isinstance(args[0], torch.Tensor):
            return
        entry = stochastic_layer(module)
        p = entry.p(module) if entry is not None else None
        if p == 0:
            return  # identity: nothing to share
        row = args[0][:1]
        if row.numel() == 0:
            return
        raise_p = isinstance(p, float) and 0.0 < p < 1.0 and entry.set_p is not None
        busy[0] = True
        try:
            if raise_p:
                entry.set_p(module, 0.5)
            # A layer sharing one draw over the batch may drop all of it (a batch-mode DropPath):
            # zeros tell nothing, so draw again (each time with probability about 1/2).
            for _ in range(_PROBE_TRIES):
                out = module(row.expand(_PROBE_ROWS, *row.shape[1:]).clone())
                first = out[0] if isinstance(out, (tuple, list)) and out else out
                if not isinstance(first, torch.Tensor) or bool(first.ne(0).any()):
                    break
        finally:
            if raise_p:
                entry.set_p(module, p)
            busy[0] = False
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]  # e.g. an RNN's (output, state)
        if isinstance(out, torch.Tensor) and out.shape[0] == _PROBE_ROWS:
            rows = out.reshape(_PROBE_ROWS, -1)
            if rows.shape[1] and bool((rows == rows[:1]).all()) and bool(rows.ne(0).any()):
                shared.append(module)

    gens = [(m.generator, m.generator.get_state()) for m in layers if _has_generator(m)]
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with _global_rng_kept(batch.device):
            batch.map(lambda t: t[:1].expand(_PROBE_ROWS, *t.shape[1:]).clone())(model)
    finally:
        for h in handles:
            h.remove()
        for g, state in gens:
            g.set_state(state)
    return shared, sizes[0] / _PROBE_ROWS


def _outermost(layers: list[nn.Module]) -> list[nn.Module]:
    """Dropout layers not inside another dropout layer (those run within their parent's call)."""
    inner = {m for layer in layers for m in layer.modules() if m is not layer}
    return [m for m in layers if m not in inner]


def _has_generator(module: nn.Module) -> bool:
    return isinstance(getattr(module, "generator", None), torch.Generator)


class _Consistent(_PerSample):
    """Consistent masks (as baal's ConsistentDropout): in sample t, each layer applies one mask,
    drawn from its own seed (``seeds[t]``, layer index), to every row of every batch.

    The mask is the layer's output on a row of ones (the layers are multiplicative, so
    ``layer(x) = x * layer(1)`` for one draw), broadcast over the batch.
    """

    def __init__(self, layers: list[nn.Module], seeds: list[int], device: torch.device) -> None:
        super().__init__(layers, device)
        self.seeds, self.ids = seeds, [0]

    def _wrap(self, layer: nn.Module):
        forward, index = layer.forward, self.layers.index(layer)

        def consistent(input, *args, **kwargs):
            n = len(self.ids)
            if not isinstance(input, torch.Tensor) or input.shape[0] % n:
                raise _NotSplittable(
                    f"mc_predict: cannot split the input of {type(layer).__name__}"
                )
            outs = []
            for t, piece in zip(self.ids, input.split(input.shape[0] // n), strict=True):
                seed = (self.seeds[t] * 1_000_003 + index) % 2**63
                _set_state(_seed_states([seed], self.device)[0], self.device)
                ones = torch.ones((1, *piece.shape[1:]), dtype=piece.dtype, device=piece.device)
                outs.append(piece * forward(ones, *args, **kwargs))
            return torch.cat(outs, dim=0)

        return consistent


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    inputs,
    samples: int = 100,
    *,
    output: str | int | Callable | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    consistent: bool = False,
    vectorize: bool = True,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    on_deterministic: str = "raise",
    **kwargs,
) -> torch.Tensor:
    """``samples`` Monte-Carlo dropout forward passes of ``model`` on ``inputs``, stacked: ``(T, B, …)``.

    Runs under :func:`mc_mode` and ``torch.no_grad``; raises :class:`NoDropoutError` when the model
    has no active stochastic module (see ``on_deterministic``).

    Calling conventions: ``inputs`` is a Tensor (``model(x)``), a tuple or list of positional inputs
    (``model(*inputs)``) or a dict of keyword inputs (``model(**inputs)``, e.g. a Hugging Face
    ``BatchEncoding``); extra keyword arguments go to the model too
    (``mc_predict(model, input_ids, attention_mask=mask)``). The batch size B is that of the first
    tensor; every tensor input whose first dimension is B is a batch input. The model may return a
    tensor, a tuple or list (element 0 is sampled), or a dict or ``ModelOutput`` (``logits`` is
    sampled); ``output`` chooses another (a key, an index or a function of the output).

    Output layout: ``(T, B, ...)``, sample first (stack-like, as ``torch.stack`` of T forwards);
    :func:`to_baal_layout` gives baal's ``(B, ..., T)``.

    Vectorised (default): the batch inputs are replicated to ``(c·B, …)`` for a chunk of ``c``
    samples and one forward computes them; ``c`` is ``chunk_size`` or what fits in ``memory_budget``
    bytes of activations (measured on one probe forward). The model must map a batch ``(B, …)`` to
    ``(B, …)`` with rows independent of each other in eval mode (true of Linear, Conv, eval
    BatchNorm, attention over each row's own tokens, …). Dropout layers that draw one mask for the
    whole batch (e.g. DropConnect with one weight mask per forward, EmbeddingDropout) would give
    every sample of a chunk the same mask; they are detected by a probe and run once per sample
    block inside the chunk, so samples stay independent. ``vectorize=False`` loops over ``T`` plain
    forwards; the loop is also the automatic fallback when a dropout layer's call cannot be split
    into sample blocks (e.g. an RNN returning ``(output, state)``) under a seed or a shared mask,
    or when the output's first dimension is not ``c·B``.

    Reproducible masks: with ``seed`` (or a ``generator``, from which ``T`` seeds are drawn), sample t
    draws every mask from its own RNG state seeded with ``seed + t``; the vectorised and the looped
    paths then return identical samples, and a later call with the same seed and batch shape reuses
    the same masks. Dropout layers then run once per sample block; a model with gates (functional
    attention dropout) is sampled with the loop. Layers' own ``generator`` attributes are set aside
    while seeded, and the global RNG is left as it was.

    Consistent masks (``consistent=True``, needs ``seed`` or ``generator``): the T networks of an
    evaluation session are fixed, as with baal's ConsistentDropout: in sample t each layer applies
    one mask to every row, the same for every batch and batch size given the same seed (e.g. an
    active-learning pool scored in batches under the same T networks). Only multiplicative layers
    (dropout, channel dropout, DropPath, StochasticDepth, DropBlock, Gaussian dropout) can; a model
    with others or with gates is refused with their names.

    Args:
        model: any ``nn.Module``; its training flags are restored afterwards.
        inputs: a Tensor, a tuple/list of positional inputs or a dict of keyword inputs.
        samples: number of Monte-Carlo samples T. Default: 100
        output: which part of the model's output to sample (keyword only). Default: the tensor, the
            first element or ``logits``
        seed: base seed for per-sample masks (keyword only).
        generator: ``torch.Generator`` from which per-sample seeds are drawn (keyword only).
        consistent: one mask per layer and sample for every row and batch. Default: False
        vectorize: replicate the batch (True, default) or loop over samples (False).
        chunk_size: samples per forward; default: what fits in ``memory_budget``.
        memory_budget: bytes of activations per chunk. Default: 4 MiB on CPU, 1 GiB on CUDA
        on_deterministic: ``"raise"`` (default), ``"warn"`` or ``"ignore"`` a model whose samples
            would all be equal (no stochastic module, or every rate 0).
        **kwargs: further keyword inputs of the model.

    Returns:
        Tensor ``(T, *output.shape)``.

    Example::

        >>> probs = mc_predict(model, x, samples=50).softmax(-1)  # (50, B, C)
        >>> logits = mc_predict(bert, batch_encoding, samples=20)  # (20, B, num_labels)
    """
    op = "mc_predict"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{op}: model must be a torch.nn.Module, but got {type(model).__name__}")
    batch = _as_batch(inputs, kwargs, op)
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise TypeError(
            f"{op}: samples must be an int, but got {type(samples).__name__} {samples!r}"
        )
    if samples < 1:
        raise ValueError(f"{op}: samples must be a positive int, but got {samples!r}")
    if seed is not None and generator is not None:
        raise ValueError(f"{op}: give seed or generator, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{op}: generator must be a torch.Generator, got {type(generator).__name__}"
        )
    if not isinstance(consistent, bool):
        raise TypeError(f"{op}: consistent must be a bool, but got {type(consistent).__name__}")
    if consistent and seed is None and generator is None:
        raise ValueError(
            f"{op}: consistent=True needs seed= or generator=: the session's T networks are "
            "derived from it, so that every batch of the session uses the same ones"
        )
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{op}: chunk_size must be a positive int, but got {chunk_size!r}")
    device = batch.device
    if memory_budget is None:
        memory_budget = _DEFAULT_BUDGET.get(device.type, _DEFAULT_BUDGET["cuda"])
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"{op}: memory_budget must be a positive int, but got {memory_budget!r}")

    if generator is not None:
        seeds = torch.randint(0, 2**62, (samples,), generator=generator).tolist()
    elif seed is not None:
        seeds = [int(seed) + t for t in range(samples)]
    else:
        seeds = None

    found = stochastic_layers(model)
    layers = [m for _, m, e in found if e.kind == "layer"]
    # Gates that may drop: a rate above 0, or a rate held by a child (BERT's self.dropout.p).
    gates = [(n, m) for n, m, e in found if e.kind == "gate" and e.p(m) != 0]

    def select(out):
        return _select(out, output, op)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mc_mode(model, on_deterministic=on_deterministic))
        if seeds is not None:
            stack.enter_context(_global_rng_kept(device))
            stack.enter_context(_own_generators_off(layers))
            states = _seed_states(seeds, device)
        else:
            states = None
        if not found:  # deterministic model (allowed by on_deterministic): one forward, repeated
            out = select(batch(model))
            return out.unsqueeze(0).expand(samples, *out.shape).clone()
        wrapper = None
        if consistent:
            outer = _outermost(layers)
            refused = [f"'{n or '<model>'}' ({type(m).__name__}, a gate)" for n, m in gates]
            refused += [
                f"'{n or '<model>'}' ({type(m).__name__})"
                for n, m, e in found
                # a DropBlock with_noise fills dropped blocks with noise: not input * mask
                if m in outer and (not e.multiplicative or getattr(m, "with_noise", False))
            ]
            if refused:
                raise ValueError(
                    f"{op}: consistent=True needs multiplicative dropout layers; "
                    f"{', '.join(refused[:4])}{', ...' * (len(refused) > 4)} cannot share one "
                    "mask across a batch. Use seed= alone (the same masks for the same batch shape)"
                )
            wrapper = _Consistent(outer, seeds, device)
            states = None  # the wrapper seeds every mask itself
        elif states is not None and gates:
            vectorize = False  # a gate's functional dropout cannot be split into sample blocks
        if vectorize:
            try:
                return _vectorised(
                    model,
                    batch,
                    samples,
                    layers,
                    states,
                    chunk_size,
                    memory_budget,
                    select,
                    wrapper,
                )
            except _NotSplittable:
                pass  # e.g. an RNN layer returning (output, state): loop over samples instead
        outs = []
        with contextlib.ExitStack() as installed:
            if wrapper is not None:
                installed.enter_context(wrapper.installed())
            for t in range(samples):
                if wrapper is not None:
                    wrapper.ids = [t]
                if states is not None:
                    _set_state(states[t], device)
                outs.append(select(batch(model)))
        return torch.stack(outs)


def _vectorised(
    model, batch, samples, layers, states, chunk_size, memory_budget, select, wrapper
) -> torch.Tensor:
    """Replicate the batch: one forward per chunk of samples; (T, B, ...)."""
    outer = _outermost(layers)
    shared, row_bytes = _probe(model, batch, outer)
    b = batch.size
    if chunk_size is None:
        per_sample = max(1.0, row_bytes * b)
        chunk_size = max(1, min(samples, int(memory_budget // per_sample)))
    # Consistent: the wrapper draws every layer's mask. Seeded: every outermost dropout layer runs
    # per sample block with that sample's RNG state. Unseeded: only the layers sharing one mask
    # across the batch run per block.
    if wrapper is None:
        wrapper = _PerSample(outer if states is not None else shared, batch.device)
    outs = []
    with wrapper.installed():
        for start in range(0, samples, chunk_size):
            c = min(chunk_size, samples - start)
            wrapper.blocks = c
            if isinstance(wrapper, _Consistent):
                wrapper.ids = list(range(start, start + c))
            if states is not None:
                wrapper.states = states[start : start + c]
            out = select(batch.replicate(c)(model))  # (c*B, ...)
            if out.dim() == 0 or out.shape[0] != c * b:
                raise _NotSplittable("mc_predict: the output does not have the replicated batch")
            outs.append(out.reshape(c, b, *out.shape[1:]))
    return torch.cat(outs, dim=0)
