"""``share_masks(model, k)``: the dropout masks of k data-parallel ranks that share one seed.

Under the usual distributed script every data-parallel rank calls ``torch.manual_seed(seed)`` with
the same seed, so every rank draws the same dropout masks at every step: sample i of rank r gets the
mask of sample i of every other rank. For dropout, k such ranks are one process whose global batch is
k chunks sharing one mask pattern row for row. :func:`share_masks` makes a model behave like that:
each dropout layer draws its mask for the first ``ceil(n / k)`` rows of a batch of ``n`` and tiles it
over the k chunks (the last chunk cut short when k does not divide n, as the last batch of an epoch
splits unevenly over ranks); with ``n == k`` it is batchwise dropout, one mask for the whole batch.

How: a forward pre-hook on each dropout layer. Multiplicative layers (element-wise, channel,
locked/variational, Gaussian, DropBlock, DropPath) are run on a tensor of ones of the chunk's shape,
which gives ``mask * scale`` (or the Gaussian noise), and the hook's forward hook multiplies the real
input by that tiled: ``x * tile(layer(ones))`` is ``layer(x)`` with the tiled mask, the scale computed
as the layer computes it. :class:`dropkit.nn.VariationalGRU` / ``VariationalLSTM`` draw their masks
with ``sample_masks(ceil(n / k))``; the hook tiles them and passes them as ``masks=``. The model's
structure, parameters and ``state_dict`` are untouched, and ``k = 1`` installs nothing (today's masks).

Weight-level noise (DropConnect, weight drop, embedding dropout) draws one mask per step for the
weights, not one per sample: there is nothing to share, so such a model is refused for ``k > 1``, as
is any stochastic layer without a rule here (e.g. alpha dropout, whose noise is not a product).
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

import dropkit.nn as dnn
from dropkit.functional import RNNMasks

__all__ = ["MaskSharing", "share_masks", "tile_rows"]

# Multiplicative layers with the batch on axis 0 (LockedDropout: axis 0 or 1, see _batch_dim), and
# the input rank each needs to have a batch axis at all (None: any rank >= 1).
_BATCHED_RANK: dict[type, int | None] = {
    dnn.Dropout: None,
    nn.Dropout: None,
    dnn.GaussianDropout: None,
    dnn.DropPath: None,
    dnn.Dropout1d: 3,
    nn.Dropout1d: 3,
    dnn.Dropout2d: 4,
    nn.Dropout2d: 4,
    dnn.Dropout3d: 5,
    nn.Dropout3d: 5,
    dnn.DropBlock2d: 4,
    dnn.DropBlock3d: 5,
    dnn.LockedDropout: 3,
}
_RECURRENT = (dnn.VariationalGRU, dnn.VariationalLSTM)
# Noise on weights: one mask per step for the whole batch, none per sample.
_WEIGHT_LEVEL = (
    dnn.DropConnect,
    dnn.DropConnectLinear,
    dnn.DropConnectConv1d,
    dnn.DropConnectConv2d,
    dnn.WeightDropGRU,
    dnn.WeightDropLSTM,
    dnn.EmbeddingDropout,
)


@dataclasses.dataclass
class MaskSharing:
    """What :func:`share_masks` changed: the names of the layers that now share masks, and the hooks
    (``remove()`` takes them off, restoring independent masks)."""

    k: int
    names: list[str]
    handles: list[RemovableHandle]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def tile_rows(mask: torch.Tensor, k: int, n: int, dim: int = 0) -> torch.Tensor:
    """``mask`` (``ceil(n / k)`` rows along ``dim``) repeated k times along ``dim`` and cut to ``n``."""
    reps = [1] * mask.dim()
    reps[dim] = k
    return mask.repeat(reps).narrow(dim, 0, n)


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"share_masks: k must be an int, but got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"share_masks: k must be >= 1 (ranks sharing one mask), but got {k}")
    return k


def _batch_dim(module: nn.Module) -> int:
    if isinstance(module, dnn.LockedDropout) and not module.batch_first:
        return 1  # (T, N, H)
    return 0


def _rule(module: nn.Module) -> type | None:
    """The ``_BATCHED_RANK`` class ``module`` is an instance of (exact match of a listed class or a
    subclass), or None."""
    for cls in type(module).__mro__:
        if cls in _BATCHED_RANK:
            return cls
    return None


def _batched_input(module: nn.Module, args: tuple, k: int) -> torch.Tensor:
    x = args[0] if args else None
    name = type(module).__name__
    if isinstance(x, PackedSequence):
        raise ValueError(
            f"share_masks: {name} got a PackedSequence; mask sharing (k={k}) needs padded batches"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"share_masks: {name} got a {type(x).__name__}, not a tensor")
    return x


def _multiplicative_hooks(module: nn.Module, k: int) -> list[RemovableHandle]:
    rank = _BATCHED_RANK[_rule(module)]
    dim = _batch_dim(module)
    held: dict[str, torch.Tensor] = {}  # the real input, from the pre-hook to the forward hook

    def before(mod: nn.Module, args: tuple):
        if not mod.training:
            return None
        x = _batched_input(mod, args, k)
        if (rank is not None and x.dim() != rank) or x.dim() <= dim:
            raise ValueError(
                f"share_masks: {type(mod).__name__} needs a batched input of {rank} dimensions to "
                f"share masks over its batch (k={k}), but got shape {tuple(x.shape)}"
            )
        shape = list(x.shape)
        shape[dim] = -(-shape[dim] // k)  # the chunk: ceil(n / k) rows
        held["x"] = x
        return (x.new_ones(shape), *args[1:])

    def after(mod: nn.Module, args: tuple, out: torch.Tensor):
        x = held.pop("x", None)
        if x is None:  # eval: the layer ran on its real input
            return None
        # out is mask * scale (or the noise) for one chunk; the same for every chunk of x
        return x * tile_rows(out, k, x.shape[dim], dim)

    return [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def _recurrent_hook(module: nn.Module, k: int) -> RemovableHandle:
    rates = ("input_dropout", "dropout", "recurrent_dropout", "output_dropout")

    def before(mod: nn.Module, args: tuple, kwargs: dict):
        if not mod.training or kwargs.get("masks") is not None:
            return None
        if all(getattr(mod, name) == 0 for name in rates):
            return None  # no mask to draw: the module runs its fused kernel
        x = _batched_input(mod, args, k)
        if x.dim() != 3:
            raise ValueError(
                f"share_masks: {type(mod).__name__} needs a batched (3-D) input to share masks "
                f"over its batch (k={k}), but got shape {tuple(x.shape)}"
            )
        n = x.shape[0 if mod.batch_first else 1]
        chunk = mod.sample_masks(-(-n // k), device=x.device, generator=mod.generator)

        def tile(m: torch.Tensor | None, dim: int) -> torch.Tensor | None:
            return None if m is None else tile_rows(m, k, n, dim)

        masks = RNNMasks(
            [tile(m, 1) for m in chunk.input],  # (M, N, features)
            [tile(m, 1) for m in chunk.recurrent],  # (M, N, hidden)
            tile(chunk.output, 0),  # (N, D*H)
        )
        return args, {**kwargs, "masks": masks}

    return module.register_forward_pre_hook(before, with_kwargs=True)


def _refusal(name: str, module: nn.Module, k: int) -> str | None:
    what = f"{type(module).__name__} at '{name or '(the model)'}'"
    if isinstance(module, _WEIGHT_LEVEL):
        return (
            f"{what} drops weights, not activations: it draws one mask per step for the whole "
            f"batch, none per sample, so there is no per-sample mask to share over k={k} ranks"
        )
    entry = dnn.stochastic_layer(module)
    if entry is None or isinstance(module, _RECURRENT) or _rule(module) is not None:
        return None
    p = entry.p(module)
    if p == 0 or (p is None and entry.kind == "gate"):
        return None  # nothing random of its own (e.g. nn.GRU(dropout=0); a gate's rate child)
    return (
        f"{what} is a stochastic layer whose masks share_masks cannot tile (it knows "
        "element-wise, channel, locked and variational RNN dropout, Gaussian dropout, DropBlock "
        "and DropPath)"
    )


def share_masks(model: nn.Module, k: int) -> MaskSharing:
    """Make every dropout layer of ``model`` share one mask over k chunks of each training batch.

    A batch of ``n`` rows is read as k chunks of ``ceil(n / k)`` rows (the last cut short when k
    does not divide n); each layer draws its mask for one chunk and repeats it over the others, so
    row i of every chunk gets the same mask: k data-parallel ranks seeded alike. Eval is unchanged.
    ``k = 1`` installs nothing. See the module docstring for how and for what is refused.

    Args:
        model: the network; changed in place (hooks only: no module is replaced).
        k: the number of chunks (simulated ranks) sharing one mask.

    Returns:
        A :class:`MaskSharing` naming the layers hooked; its ``remove()`` undoes the change.

    Raises:
        ValueError: for ``k > 1``, if the model holds weight-level noise (DropConnect, weight drop,
            embedding dropout) or a stochastic layer without a tiling rule here.
    """
    k = _check_k(k)
    if not isinstance(model, nn.Module):
        raise TypeError(f"share_masks: model must be a torch.nn.Module, not {type(model).__name__}")
    sharing = MaskSharing(k, [], [])
    if k == 1:
        return sharing
    problems = [p for name, m in model.named_modules() if (p := _refusal(name, m, k))]
    if problems:
        raise ValueError(f"mask_share={k}: " + "; ".join(problems) + "; use mask_share=1")
    for name, module in model.named_modules():
        if isinstance(module, _RECURRENT):
            sharing.handles.append(_recurrent_hook(module, k))
        elif _rule(module) is not None:
            sharing.handles += _multiplicative_hooks(module, k)
        else:
            continue
        sharing.names.append(name)
    if not sharing.names:
        warnings.warn(
            f"share_masks: k={k}, but the model has no dropout layer whose masks could be shared",
            stacklevel=2,
        )
    return sharing
