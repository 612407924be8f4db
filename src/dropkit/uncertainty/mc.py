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

Beside the registry's names, ``mc_predict`` (and ``mc_mode`` given an example input) finds by
behaviour every module whose own forward is random in training (:mod:`dropkit.nn.discovery`), so a
library class no entry names is neither left out of the samples nor left on outside them. The same
probe finds the sources whose draw is shared by the whole batch (DropConnect's weight mask,
LayerDrop's skipped layers): vectorised sampling runs them once per sample.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from dropkit.nn.discovery import _as_batch, _Batch, _probe, _training_as
from dropkit.nn.registry import FOUND_ATTR, StochasticLayer, stochastic_layer, stochastic_layers

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
_ON_DETERMINISTIC = ("raise", "warn", "ignore")


class NoDropoutError(RuntimeError, ValueError):
    """Monte-Carlo dropout on a model with no active stochastic layer: every sample would be equal.

    A RuntimeError, and a ValueError as torch-uncertainty raises for the same case, so code written
    for either catches it."""


class NoDropoutWarning(UserWarning):
    """As :class:`NoDropoutError`, with ``on_deterministic="warn"``."""


def is_dropout_layer(module: nn.Module) -> bool:
    """True for every module the registry knows (dropout layers of any library and gates) and
    every module found random in training by behaviour."""
    return stochastic_layer(module) is not None


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The stochastic modules of ``model`` (itself included), in ``model.modules()`` order."""
    return [m for m in model.modules() if is_dropout_layer(m)]


def _is_active(module: nn.Module, entry: StochasticLayer) -> bool:
    if entry.found_by == "behaviour":  # its output changed between calls on the probe's input
        return module.__dict__[FOUND_ATTR].active
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
        if any(e.found_by == "behaviour" for _, _, e in found):
            what += " or drew random numbers without changing their output"
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
def mc_mode(
    model: nn.Module, inputs=None, *, on_deterministic: str = "raise"
) -> Iterator[nn.Module]:
    """Stochastic modules in training mode, every other module in eval; the old flags restored on
    exit.

    Only the ``training`` flag of each module is touched (``module.train()`` would recurse into the
    children of a dropout layer, e.g. the cells of a variational RNN; they stay in eval here). Gates
    (attention whose dropout is functional, see :mod:`dropkit.nn.registry`) get their own flag set,
    their children keep theirs: an attention's LayerNorm stays in eval.

    The stochastic modules are the registry's and those found random in training by behaviour:
    with an example ``inputs``, the probe of :mod:`dropkit.nn.discovery` runs first (one eval
    forward, then each module alone); without, the modules an earlier probe found
    (``mc_predict``, :func:`dropkit.nn.audit_stochastic`) count.

    Args:
        model: any ``nn.Module``.
        inputs: an example input, as ``mc_predict``'s (a Tensor, a tuple of positional inputs or a
            dict of keyword inputs); optional.
        on_deterministic: what to do when no stochastic module is active (none found, or every rate
            is 0): ``"raise"`` a :class:`NoDropoutError` (default), ``"warn"`` or ``"ignore"``.

    Example::

        >>> with mc_mode(model, x):
        ...     samples = torch.stack([model(x) for _ in range(20)])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mc_mode: model must be a torch.nn.Module, but got {type(model).__name__}")
    if on_deterministic not in _ON_DETERMINISTIC:
        _check_active(model, on_deterministic, "mc_mode")  # raises the ValueError
    if inputs is not None:
        _probe(model, _as_batch(inputs, {}, "mc_mode"), check_shared=False)
    _check_active(model, on_deterministic, "mc_mode")
    with _training_as(model, is_dropout_layer):
        yield model


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
    """A stochastic module's call cannot be split into sample blocks: mc_predict falls back to the
    loop."""


def _split(value, n: int, blocks: int) -> list:
    """``value`` (a call's argument) cut into ``blocks`` sample blocks: tensors whose first
    dimension is the replicated batch ``n`` are chunked, containers recursively, the rest repeated."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
        return list(value.chunk(blocks, dim=0))
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        parts = [_split(v, n, blocks) for v in value]
        return [type(value)(p[t] for p in parts) for t in range(blocks)]
    if type(value) is dict:
        parts = {k: _split(v, n, blocks) for k, v in value.items()}
        return [{k: p[t] for k, p in parts.items()} for t in range(blocks)]
    if (
        isinstance(value, torch.Tensor)
        or value is None
        or isinstance(value, (bool, int, float, str))
    ):
        return [value] * blocks
    if isinstance(value, (nn.Module, torch.Generator)) or callable(value):
        return [value] * blocks
    # a stateful object (a Hugging Face cache, ...): one object cannot serve independent blocks
    raise _NotSplittable(f"mc_predict: cannot split a {type(value).__name__} into sample blocks")


def _cat(outs: list, name: str):
    """The outputs of the sample blocks joined along dimension 0 (tensors), element by element
    (tuples, lists, dicts, ModelOutputs); equal non-tensors are kept once."""
    first = outs[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(o, torch.Tensor) and o.dim() > 0 for o in outs):
            raise _NotSplittable(f"mc_predict: {name} returns a scalar")
        return torch.cat(outs, dim=0)
    if isinstance(first, Mapping):
        joined = {k: _cat([o[k] for o in outs], name) for k in first}
        try:
            return type(first)(**joined)
        except TypeError:
            return type(first)(joined)
    if isinstance(first, (tuple, list)):
        items = [_cat([o[i] for o in outs], name) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    if first is None or all(o is first or o == first for o in outs):
        return first
    raise _NotSplittable(f"mc_predict: cannot join the {type(first).__name__} outputs of {name}")


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v
    return None


class _PerSample:
    """Runs the wrapped modules once per sample block of a replicated batch.

    With ``states`` (one RNG state per sample), block t draws from state t, as the t-th forward of
    the looped path would. Without, it just calls the module per block, so a module that shares
    one draw across its batch (a batch weight mask, LayerDrop's skipped layers) draws once per
    sample rather than once per chunk. Every batch argument is cut into the blocks (an attention
    mask with the input) and the blocks' outputs are joined (tensors, tuples, ModelOutputs).
    """

    def __init__(self, layers: list[nn.Module], device: torch.device) -> None:
        self.layers, self.device = layers, device
        self.blocks = 1
        self.states: list[torch.Tensor] | None = None

    def _wrap(self, layer: nn.Module):
        forward = layer.forward
        name = type(layer).__name__

        def per_sample(*args, **kwargs):
            first = _first_tensor(args, kwargs)
            if first is None or first.shape[0] % self.blocks:
                raise _NotSplittable(
                    f"mc_predict: cannot split the input of {name} into {self.blocks} sample "
                    "blocks along dimension 0; use vectorize=False"
                )
            n = first.shape[0]
            pieces_a = [_split(a, n, self.blocks) for a in args]
            pieces_k = {k: _split(v, n, self.blocks) for k, v in kwargs.items()}
            outs = []
            for t in range(self.blocks):
                if self.states is not None:
                    _set_state(self.states[t], self.device)
                a = [p[t] for p in pieces_a]
                kw = {k: p[t] for k, p in pieces_k.items()}
                outs.append(forward(*a, **kw))
                if self.states is not None:
                    self.states[t] = _get_state(self.device)
            return _cat(outs, name)

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


def _outermost(layers: list[nn.Module]) -> list[nn.Module]:
    """Dropout layers not inside another dropout layer (those run within their parent's call)."""
    inner = {m for layer in layers for m in layer.modules() if m is not layer}
    return [m for m in layers if m not in inner]


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
    inputs=None,
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
    (``mc_predict(model, input_ids, attention_mask=mask)``), also alone, as a model is called
    (``mc_predict(model, input_ids=ids, attention_mask=mask)``). The batch size B is that of the first
    tensor; every tensor input whose first dimension is B is a batch input. The model may return a
    tensor, a tuple or list (element 0 is sampled), or a dict or ``ModelOutput`` (``logits`` is
    sampled); ``output`` chooses another (a key, an index or a function of the output).

    Output layout: ``(T, B, ...)``, sample first (stack-like, as ``torch.stack`` of T forwards);
    :func:`to_baal_layout` gives baal's ``(B, ..., T)``.

    Stochastic modules: the registry's (:mod:`dropkit.nn.registry`) and every module found random
    in training by behaviour (:mod:`dropkit.nn.discovery`: the first input row, repeated 8 times,
    runs once in training and once in eval, then each module that drew random numbers, and each of
    its ancestors, alone in training), so no source of noise a model uses in training is left out
    of the samples. The probe costs a few forwards of those 8 rows (about one per level of module
    nesting above a random module).

    Vectorised (default): the batch inputs are replicated to ``(c·B, …)`` for a chunk of ``c``
    samples and one forward computes them; ``c`` is ``chunk_size`` or what fits in ``memory_budget``
    bytes of activations (measured on the probe's forward). This needs a model that maps each input
    row to its own output row; it is checked first (in eval, one row repeated twice must give twice
    the one-row output, with the one-row layout) and every chunk's output must have the one-sample
    layout ``(c·B, *one-row output.shape[1:])``; otherwise (CLIP's ``logits_per_image`` pairs
    every image with every text: ``(B, B)``) mc_predict loops, so it never returns another layout
    than the loop's. Modules that draw once for the whole batch (DropConnect with one weight mask
    per forward, EmbeddingDropout, a batch-mode DropPath, LayerDrop's skipped layers) would give
    every sample of a chunk the same draw; the probe finds them and they run once per sample block
    inside the chunk (their batch arguments cut into blocks and their outputs joined), so samples
    stay independent. ``vectorize=False`` loops over ``T`` plain forwards; the loop is also the
    fallback when such a module's call cannot be split into sample blocks (an RNN returning
    ``(output, state)`` under a seed, a Hugging Face cache argument).

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
        inputs: a Tensor, a tuple/list of positional inputs or a dict of keyword inputs; None when
            every input is a keyword argument.
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
        >>> logits = mc_predict(bert, input_ids=ids, attention_mask=mask, samples=20)
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
    if on_deterministic not in _ON_DETERMINISTIC:
        _check_active(model, on_deterministic, op)  # raises the ValueError

    if generator is not None:
        seeds = torch.randint(0, 2**62, (samples,), generator=generator).tolist()
    elif seed is not None:
        seeds = [int(seed) + t for t in range(samples)]
    else:
        seeds = None

    def select(out):
        return _select(out, output, op)

    # The behaviour probe, on the first row: modules random in training the registry does not name
    # (recorded on them, so mc_mode switches them), the sources sharing one draw across the batch
    # and the bytes of activations per row.
    probe = _probe(model, batch, check_shared=vectorize and not consistent)
    found = stochastic_layers(model)
    layers = [m for _, m, e in found if e.kind == "layer" and e.found_by == "name"]
    # Gates that may drop: a rate above 0, or a rate held by a child (BERT's self.dropout.p); and
    # modules found by behaviour (their randomness runs inside their forward, as a gate's).
    gates = [
        (n, m)
        for n, m, e in found
        if (e.kind == "gate" or e.found_by == "behaviour") and e.p(m) != 0
    ]

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
        layout = _one_sample_layout(model, batch, select) if vectorize else None
        if layout is not None:
            try:
                return _vectorised(
                    model,
                    batch,
                    samples,
                    layers,
                    probe,
                    layout,
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


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to the rounding of a different batch size (a GEMM may block its sums by rows)."""
    if a.shape != b.shape:
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    scale = float(b.detach().abs().nan_to_num(0.0).max()) if b.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=1e-3, atol=1e-5 * max(scale, 1e-30), equal_nan=True))


def _one_sample_layout(model: nn.Module, batch: _Batch, select) -> torch.Size | None:
    """The trailing shape of one row's output when the model maps each input row to its own
    output row (the vectorised path's assumption), else None. Checked in eval on the first two
    rows: together they must give ``(2, *one-row output.shape[1:])``, each row the row's output
    alone (one row repeated where the batch has one). Fails for outputs that pair rows (CLIP's
    ``logits_per_image`` is ``(B, B)``) or mix them (a batch-centred output); mc_predict then
    loops."""
    with _training_as(model, lambda m: False), _global_rng_kept(batch.device):
        first = select(batch.rows(1)(model))
        if first.dim() == 0 or first.shape[0] != 1:
            return None
        if batch.size >= 2:
            second = select(batch.rows(2).map(lambda t: t[1:])(model))  # row 1 alone
            two = select(batch.rows(2)(model))
        else:
            second, two = first, select(batch.rows(1).replicate(2)(model))
    if two.shape != (2, *first.shape[1:]):
        return None
    if not (_close(two[:1], first) and _close(two[1:], second)):
        return None
    return first.shape[1:]


def _vectorised(
    model, batch, samples, layers, probe, row_shape, states, chunk_size, memory_budget, select,
    wrapper,
) -> torch.Tensor:  # fmt: skip
    """Replicate the batch: one forward per chunk of samples; (T, B, *row_shape)."""
    outer = _outermost(layers)
    b = batch.size
    if chunk_size is None:
        per_sample = max(1.0, probe.row_bytes * b)
        chunk_size = max(1, min(samples, int(memory_budget // per_sample)))
    # Consistent: the wrapper draws every layer's mask. Seeded: every outermost dropout layer runs
    # per sample block with that sample's RNG state. Unseeded: only the modules sharing one draw
    # across the batch (layers, gates or modules found by behaviour) run per block.
    if wrapper is None:
        wrapper = _PerSample(
            outer if states is not None else _outermost(probe.shared()), batch.device
        )
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
            if out.shape != (c * b, *row_shape):
                raise _NotSplittable("mc_predict: the output does not have the one-sample layout")
            outs.append(out.reshape(c, b, *row_shape))
    return torch.cat(outs, dim=0)
