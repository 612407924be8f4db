"""Monte-Carlo dropout: dropout kept on at inference, and many forward passes as one ensemble.

Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model Uncertainty in Deep
Learning", ICML 2016.

* :func:`mc_mode` (a context manager) puts exactly the dropout layers in training mode and every other
  module (BatchNorm, …) in eval, and restores each module's previous ``training`` flag on exit, also
  when the body raises.
* :func:`mc_predict` draws ``samples`` stochastic forward passes, stacked on a new leading dimension
  ``(T, B, …)``. The batch is replicated so that one forward computes a chunk of samples; the chunk
  size is bounded by a memory budget. A Python loop over samples is the fallback.

A dropout layer is any dropkit random-in-training module (it carries the ``_Stochastic`` marker:
dropout of every kind, DropConnect, noise, variational/RNN dropout) or one of torch's own
(``torch.nn.modules.dropout._DropoutNd``: ``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
``FeatureAlphaDropout``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from dropkit.nn._base import _Stochastic

__all__ = ["dropout_layers", "is_dropout_layer", "mc_mode", "mc_predict"]

# Bytes of activations per chunk: on CPU a chunk that stays near the caches is as fast as a big one
# (see docs/benchmarks.md); on a GPU bigger chunks fill the device.
_DEFAULT_BUDGET = {"cpu": 4 * 2**20, "cuda": 1024 * 2**20}
_PROBE_ROWS = 16


def is_dropout_layer(module: nn.Module) -> bool:
    """True for dropkit's random-in-training modules and torch's dropout modules."""
    return isinstance(module, (_Stochastic, nn.modules.dropout._DropoutNd))


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The dropout layers of ``model`` (itself included), in ``model.modules()`` order."""
    return [m for m in model.modules() if is_dropout_layer(m)]


@contextlib.contextmanager
def mc_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout layers in training mode, every other module in eval; the old flags restored on exit.

    Only the ``training`` flag of each module is touched (``module.train()`` would recurse into the
    children of a dropout layer, e.g. the cells of a variational RNN; they stay in eval here).

    Example::

        >>> with mc_mode(model):
        ...     samples = torch.stack([model(x) for _ in range(20)])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mc_mode: model must be a torch.nn.Module, but got {type(model).__name__}")
    saved = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in saved:
            m.training = is_dropout_layer(m)
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


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


def _probe(
    model: nn.Module, x: torch.Tensor, layers: list[nn.Module]
) -> tuple[list[nn.Module], float]:
    """Which dropout layers share one mask across the batch, and activation bytes per input row.

    Each layer's first input row is fed to it again, replicated ``_PROBE_ROWS`` times, with ``p``
    raised to 0.5 where the layer has a float ``p``: a per-row mask makes the copies differ (with
    probability 1 - 2^-15 per element at least), a shared mask keeps them equal. The global RNG and
    the layers' own generators are restored afterwards, so probing does not change the samples.
    """
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
        p = getattr(module, "p", None)
        if isinstance(p, (int, float)) and p == 0:
            return  # identity: nothing to share
        row = args[0][:1]
        if row.numel() == 0:
            return
        busy[0] = True
        try:
            if isinstance(p, float) and 0.0 < p < 1.0:
                module.p = 0.5
            out = module(row.expand(_PROBE_ROWS, *row.shape[1:]).clone())
        finally:
            if isinstance(p, float) and 0.0 < p < 1.0:
                module.p = p
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
        with _global_rng_kept(x.device):
            model(x[:1].expand(_PROBE_ROWS, *x.shape[1:]).clone())
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


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 100,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    vectorize: bool = True,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """``samples`` Monte-Carlo dropout forward passes of ``model`` on ``x``, stacked: ``(T, B, …)``.

    Runs under :func:`mc_mode` and ``torch.no_grad``. Vectorised (default): ``x`` is replicated to
    ``(c·B, …)`` for a chunk of ``c`` samples and one forward computes them; ``c`` is ``chunk_size`` or
    what fits in ``memory_budget`` bytes of activations (measured on one probe forward). The model must
    map a batch ``(B, …)`` to ``(B, …)`` with rows independent of each other in eval mode (true of
    Linear, Conv, eval BatchNorm, …). Dropout layers that draw one mask for the whole batch (e.g.
    DropConnect with one weight mask per forward, EmbeddingDropout) would give every sample of a chunk
    the same mask; they are detected by a probe and run once per sample block inside the chunk, so
    samples stay independent. ``vectorize=False`` loops over ``T`` plain forwards; the loop is also
    the automatic fallback when a dropout layer's call cannot be split into sample blocks (e.g. an RNN
    returning ``(output, state)``) under a seed or a shared mask.

    Reproducible masks: with ``seed`` (or a ``generator``, from which ``T`` seeds are drawn), sample t
    draws every mask from its own RNG state seeded with ``seed + t``; the vectorised and the looped
    paths then return identical samples, and a later call with the same seed and batch shape reuses
    the same masks (e.g. for active learning: every pool point scored under the same T networks).
    Dropout layers then run once per sample block. Layers' own ``generator`` attributes are set aside
    while seeded, and the global RNG is left as it was.

    Args:
        model: any ``nn.Module``; its training flags are restored afterwards.
        x: input batch, batch dimension first.
        samples: number of Monte-Carlo samples T. Default: 100
        seed: base seed for per-sample masks (keyword only).
        generator: ``torch.Generator`` from which per-sample seeds are drawn (keyword only).
        vectorize: replicate the batch (True, default) or loop over samples (False).
        chunk_size: samples per forward; default: what fits in ``memory_budget``.
        memory_budget: bytes of activations per chunk. Default: 4 MiB on CPU, 1 GiB on CUDA

    Returns:
        Tensor ``(T, *model(x).shape)``.

    Example::

        >>> probs = mc_predict(model, x, samples=50).softmax(-1)  # (50, B, C)
    """
    op = "mc_predict"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{op}: model must be a torch.nn.Module, but got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a Tensor, but got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(
            f"{op}: x needs a non-empty batch dimension, but got shape {tuple(x.shape)}"
        )
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
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{op}: chunk_size must be a positive int, but got {chunk_size!r}")
    if memory_budget is None:
        memory_budget = _DEFAULT_BUDGET.get(x.device.type, _DEFAULT_BUDGET["cuda"])
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"{op}: memory_budget must be a positive int, but got {memory_budget!r}")

    if generator is not None:
        seeds = torch.randint(0, 2**62, (samples,), generator=generator).tolist()
    elif seed is not None:
        seeds = [int(seed) + t for t in range(samples)]
    else:
        seeds = None

    layers = dropout_layers(model)
    device = x.device
    with contextlib.ExitStack() as stack:
        stack.enter_context(mc_mode(model))
        if seeds is not None:
            stack.enter_context(_global_rng_kept(device))
            stack.enter_context(_own_generators_off(layers))
            states = _seed_states(seeds, device)
        else:
            states = None
        if not layers:  # deterministic model: one forward, repeated
            out = model(x)
            return out.unsqueeze(0).expand(samples, *out.shape).clone()
        if vectorize:
            try:
                return _vectorised(model, x, samples, layers, states, chunk_size, memory_budget)
            except _NotSplittable:
                pass  # e.g. an RNN layer returning (output, state): loop over samples instead
        outs = []
        for t in range(samples):
            if states is not None:
                _set_state(states[t], device)
            outs.append(model(x))
        return torch.stack(outs)


def _vectorised(model, x, samples, layers, states, chunk_size, memory_budget) -> torch.Tensor:
    """Replicate the batch: one forward per chunk of samples; (T, B, ...)."""
    outer = _outermost(layers)
    shared, row_bytes = _probe(model, x, outer)
    if chunk_size is None:
        per_sample = max(1.0, row_bytes * x.shape[0])
        chunk_size = max(1, min(samples, int(memory_budget // per_sample)))
    # Seeded: every outermost dropout layer runs per sample block with that sample's RNG state.
    # Unseeded: only the layers sharing one mask across the batch run per block.
    wrapped = _PerSample(outer if states is not None else shared, x.device)
    outs = []
    with wrapped.installed():
        for start in range(0, samples, chunk_size):
            c = min(chunk_size, samples - start)
            wrapped.blocks = c
            if states is not None:
                wrapped.states = states[start : start + c]
            xr = x.unsqueeze(0).expand(c, *x.shape).reshape(c * x.shape[0], *x.shape[1:])
            out = model(xr)  # (c*B, ...)
            outs.append(out.reshape(c, x.shape[0], *out.shape[1:]))
    return torch.cat(outs, dim=0)
