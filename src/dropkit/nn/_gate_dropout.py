"""The dropout that gates run functionally inside their ``forward``, on dropkit's kernels.

A gate (:mod:`dropkit.nn.registry`) is a module whose dropout is no child module: Hugging Face
attention calls ``F.dropout(weights, p=dropout, training=module.training)`` (eager attention) or
passes ``dropout_p`` to ``F.scaled_dot_product_attention`` (SDPA); timm's fused attention passes
``dropout_p`` to SDPA; timm's classifier heads and torchvision's Swin and DenseNet layers call
``F.dropout``. ``convert_dropout`` cannot replace such a dropout, so it left it on torch's generator
and, with SDPA, on torch's math path: in a GPT-2 training step the attention's dropout is most of
the dropped elements (8 x 6 x 256 x 256 per layer against 8 x 256 x 384 per residual dropout), and
it stayed torch's after conversion (benchmarks/gpt2_step_anatomy.py).

Here ``install(model)`` gives every such gate a forward pre-hook and an always-called forward hook
that, while the gate runs in training mode, hold a :class:`torch.overrides.TorchFunctionMode` with two
redirections (every other call goes through unchanged):

* ``F.dropout(input, p, training=True, inplace)`` -> :func:`dropkit.functional.dropout`, the same
  distribution on dropkit's kernels;
* ``F.scaled_dot_product_attention(..., dropout_p > 0)`` -> :func:`attention`: the attention of
  torch's math path (the one SDPA itself takes on CPU when ``dropout_p > 0``: its flash kernel has no
  dropout) with dropkit's dropout on the attention weights. With ``dropout_p == 0`` (eval, or a rate of
  0) SDPA is called as it was and keeps its fast kernels.

In eval nothing is held (the pre-hook returns at once), so eval outputs are bit-identical to the
unconverted model's; the hooks add no parameters or buffers, so ``state_dict()`` is unchanged.
Nothing is held under ``torch.compile``/export (the compiler traces torch's own ops and fuses them),
``torch.jit`` tracing or scripting, or for tensors other than plain CPU/CUDA float32/float64 ones
(subclasses, DTensors, half precision go to torch's function unchanged). ``uninstall(model)``
(``convert_dropout(model, to="original")`` and ``to="torch"``) removes the hooks.

Gates whose dropout runs inside a C++ kernel (``nn.MultiheadAttention``, ``nn.LSTM(dropout=...)``,
``nn.TransformerEncoderLayer``'s fast path) get no hooks: there is no Python call to redirect.
"""

from __future__ import annotations

import functools
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dropkit.functional.dropout import dropout as _dk_dropout

__all__: list[str] = []  # private: convert_dropout installs and removes

_F_DROPOUT = F.dropout
_F_SDPA = F.scaled_dot_product_attention
_DTYPES = (torch.float32, torch.float64)
# Gates whose dropout is a C++ kernel's (nothing in Python to redirect).
_NATIVE_GATES = (nn.MultiheadAttention, nn.RNNBase, nn.TransformerEncoderLayer,
                 nn.TransformerDecoderLayer, nn.TransformerEncoder)  # fmt: skip
_HOOKS = "_dropkit_gate_hooks"  # the module's hook handles, outside its state


def _plain(t: object) -> bool:
    return type(t) is torch.Tensor and t.dtype in _DTYPES


@functools.lru_cache(maxsize=64)
def _causal_bias(a: int, b: int, kv_len: int, dtype: torch.dtype, device: torch.device):
    # Rows a..b-1 of SDPA's causal mask (top-left aligned: row i sees columns j <= i) over the
    # first kv_len columns, as an additive bias: 0 where seen, -inf elsewhere. (b - a, kv_len)
    hidden = torch.ones(b - a, kv_len, dtype=torch.bool, device=device).triu(a + 1)
    return torch.zeros(b - a, kv_len, dtype=dtype, device=device).masked_fill_(hidden, -math.inf)


def _chunks(q_len: int) -> int:
    # Causal attention split into query blocks: block c of n needs only the first (c+1)/n of the
    # keys, so the products and the softmax cover (n+1)/2n of the square (flash kernels skip the
    # masked blocks the same way). Blocks of at least 128 rows, at most 4 (more calls cost more
    # than they save at GPT-2's sizes: 2 blocks at 256 tokens, docs/benchmarks.md).
    return max(1, min(4, q_len // 128))


def _torch_sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    return _F_SDPA(query, key, value, attn_mask, dropout_p, is_causal,
                   scale=scale, enable_gqa=enable_gqa)  # fmt: skip


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` in training with ``dropout_p > 0``, its dropout dropkit's.

    The function of SDPA's math path (what SDPA runs on CPU when ``dropout_p > 0``):
    ``softmax(q k^T * scale + mask) -> dropout -> @ v``, a row that the mask excludes entirely giving
    zeros (torch's ``_safe_softmax``). Scale and mask are folded into the product (``baddbmm``), and
    causal attention runs in query blocks that skip the keys a block cannot see. It keeps for
    backward what the math path keeps (q, k, v, the softmax output) and the dropout's 1-bit mask
    (torch's keeps a float mask, 4 bytes per weight). Arguments SDPA takes that this does not
    handle (batch dimensions that differ between query and key, ``is_causal`` with a mask, ``p``
    of 0 or 1) go to torch's SDPA.
    """
    args = (query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    if not 0.0 < dropout_p < 1.0 or (is_causal and attn_mask is not None) or query.dim() < 3:
        return _torch_sdpa(*args)
    if enable_gqa and key.size(-3) != query.size(-3):
        rep = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    batch = query.shape[:-2]
    if key.shape[:-2] != batch or value.shape[:-2] != batch:
        return _torch_sdpa(*args)
    q_len, kv_len, e = query.size(-2), key.size(-2), query.size(-1)
    scale = 1.0 / math.sqrt(e) if scale is None else scale
    q3 = query.reshape(-1, q_len, e)  # (B*H, L, E)
    k3t = key.reshape(-1, kv_len, e).transpose(1, 2)  # (B*H, E, S)
    v3 = value.reshape(-1, kv_len, value.size(-1))  # (B*H, S, Ev)
    bias, empty = None, None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
            bias.masked_fill_(attn_mask.logical_not(), -math.inf)
        else:
            bias = attn_mask
        empty = torch.isneginf(bias).all(-1, keepdim=True)  # rows with nothing to attend to
        if empty.any():  # their weights are zeros; a finite row keeps softmax's gradient finite
            bias = bias.masked_fill(empty, 0.0)
            empty = empty.expand(*batch, q_len, 1).reshape(-1, q_len, 1)
        else:
            empty = None
        if bias.dim() > 2:  # (..., L, S) broadcast over the batch: one (B*H, L, S) tensor
            bias = bias.expand(*batch, q_len, kv_len).reshape(-1, q_len, kv_len)
    n = _chunks(q_len) if is_causal else 1
    outs = []
    for c in range(n):
        a, b = c * q_len // n, (c + 1) * q_len // n
        cols = min(b, kv_len) if is_causal else kv_len  # the keys rows a..b-1 can see
        if is_causal:
            bias = _causal_bias(a, b, cols, query.dtype, query.device)
        qc, kc = q3[:, a:b], k3t[:, :, :cols]
        if bias is None:
            scores = torch.baddbmm(q3.new_zeros(()), qc, kc, beta=0.0, alpha=scale)
        else:
            scores = torch.baddbmm(bias, qc, kc, alpha=scale)  # (B*H, b-a, cols)
        weights = torch.softmax(scores, -1)
        if empty is not None:
            weights = weights.masked_fill(empty, 0.0)
        weights = _dk_dropout(weights, dropout_p, True)
        outs.append(torch.bmm(weights, v3[:, :cols]))
    out = outs[0] if n == 1 else torch.cat(outs, 1)
    return out.view(*batch, q_len, value.size(-1))


def _sdpa_args(args, kwargs):
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


class _Redirect(TorchFunctionMode):
    """Sends ``F.dropout`` and SDPA with dropout to dropkit; every other call through unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _F_DROPOUT:
            input = args[0] if args else kwargs.get("input")
            if _plain(input):
                return _dk_dropout(*args, **kwargs)
        elif func is _F_SDPA:
            a = _sdpa_args(args, kwargs)
            if a.get("dropout_p", 0.0) > 0.0 and all(
                _plain(a[k]) for k in ("query", "key", "value")
            ):
                return attention(**a)
        return func(*args, **kwargs)


_local = threading.local()  # .entered: the gates entered on this thread; .mode: the mode held


def _enter(module: nn.Module, args) -> None:
    if not module.training or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return
    entered = getattr(_local, "entered", None)
    if entered is None:
        entered = _local.entered = []
    if not entered:  # one mode per thread, however deep gates nest
        _local.mode = _Redirect()
        _local.mode.__enter__()
    entered.append(module)


def _exit(module: nn.Module, args, output) -> None:
    # always called (also when forward raised); pre- and post-hooks pair up last in, first out
    entered = getattr(_local, "entered", None)
    if not entered or entered[-1] is not module or torch.compiler.is_compiling():
        return
    entered.pop()
    if not entered:
        mode, _local.mode = _local.mode, None
        mode.__exit__(None, None, None)


def applies(module: nn.Module) -> bool:
    """Whether ``module`` is a gate whose dropout runs as a Python call that can be redirected."""
    from dropkit.nn.registry import stochastic_layer

    entry = stochastic_layer(module)
    return (
        entry is not None
        and entry.kind == "gate"
        and entry.found_by == "name"
        and not isinstance(module, _NATIVE_GATES)
    )


def install(model: nn.Module) -> list[str]:
    """Hook every gate of ``model`` that applies (once each); returns their names."""
    done = []
    for name, m in model.named_modules():
        if _HOOKS in m.__dict__ or not applies(m):
            continue
        m.__dict__[_HOOKS] = (
            m.register_forward_pre_hook(_enter),
            m.register_forward_hook(_exit, always_call=True),
        )
        done.append(name)
    return done


def uninstall(model: nn.Module) -> list[str]:
    """Remove the hooks of :func:`install` from every module of ``model``; returns their names."""
    done = []
    for name, m in model.named_modules():
        handles = m.__dict__.pop(_HOOKS, None)
        if handles is not None:
            for h in handles:
                h.remove()
            done.append(name)
    return done


def installed(module: nn.Module) -> bool:
    return _HOOKS in module.__dict__
