"""NumPy reference for DropConnect layers (Wan et al. 2013), given an explicit weight mask.

A mask of the weight's shape is one mask per batch; a mask with a leading batch axis
``(N, *weight.shape)`` is one weight mask per sample. The convolution is written out here (a sum over
kernel offsets of strided slices), independently of torch's.
"""

from __future__ import annotations

import itertools

import numpy as np

from dropkit._validation import _check_p, _check_scale, _keep_scale
from dropkit.reference._checks import _check_float_array

__all__ = [
    "dropconnect_weight",
    "dropconnect_linear_forward",
    "dropconnect_linear_backward",
    "conv_forward",
    "dropconnect_conv_forward",
]


def dropconnect_weight(
    w: np.ndarray, mask: np.ndarray, p: float, *, scale: str = "inverted"
) -> np.ndarray:
    """``w * mask * s`` (``s`` = 1/(1-p) or 1, rounded once); a batched mask gives ``(N, *w.shape)``."""
    op = "reference.dropconnect_weight"
    w = _check_float_array(w, op, "w")
    p = _check_p(p, op, allow_one=False)
    s = w.dtype.type(_keep_scale(p, _check_scale(scale, op)))
    if mask.dtype != np.bool_ or mask.shape[-w.ndim :] != w.shape:
        raise ValueError(f"{op}: mask must be a bool array of shape (*, {w.shape})")
    return w * (mask.astype(w.dtype) * s)


def dropconnect_linear_forward(x, w, b, mask, p, *, scale="inverted"):
    """``x @ (w * mask * s).T + b``; with a per-sample mask, sample ``n`` uses its own weight."""
    wm = dropconnect_weight(w, mask, p, scale=scale)
    if wm.ndim == 2:
        out = x @ wm.T
    else:
        out = np.stack([x[n] @ wm[n].T for n in range(x.shape[0])])
    return out if b is None else out + b


def dropconnect_linear_backward(x, w, grad_out, mask, p, *, scale="inverted"):
    """Gradients ``(grad_x, grad_w, grad_b)`` of :func:`dropconnect_linear_forward`.

    ``grad_w`` is the gradient of the masked weight times the same mask and scale (summed over
    samples for per-sample masks).
    """
    wm = dropconnect_weight(w, mask, p, scale=scale)
    ones = np.ones_like(w)
    if wm.ndim == 2:
        gx = grad_out @ wm
        g2, x2 = grad_out.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])
        gw = dropconnect_weight(ones, mask, p, scale=scale) * (g2.T @ x2)
    else:
        gx = np.stack([grad_out[n] @ wm[n] for n in range(x.shape[0])])
        per = [
            grad_out[n].reshape(-1, w.shape[0]).T @ x[n].reshape(-1, w.shape[1])
            for n in range(x.shape[0])
        ]
        gw = (dropconnect_weight(ones, mask, p, scale=scale) * np.stack(per)).sum(axis=0)
    gb = grad_out.reshape(-1, w.shape[0]).sum(axis=0)
    return gx, gw, gb


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def conv_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """N-d cross-correlation as torch defines it: ``x (N, C, *S)``, ``w (O, C/groups, *K)``."""
    n = w.ndim - 2
    stride, padding, dilation = _tuple(stride, n), _tuple(padding, n), _tuple(dilation, n)
    xp = np.pad(x, [(0, 0), (0, 0), *((q, q) for q in padding)])
    kernel = w.shape[2:]
    out_size = [
        (xp.shape[2 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in range(n)
    ]
    o, cg = w.shape[0], w.shape[1]
    og = o // groups
    out = np.zeros((x.shape[0], o, *out_size), dtype=np.result_type(x, w))
    for k in itertools.product(*(range(s) for s in kernel)):
        # (N, C, *out): the input values kernel offset k meets at every output position
        window = xp[
            (slice(None), slice(None))
            + tuple(
                slice(
                    k[d] * dilation[d],
                    k[d] * dilation[d] + stride[d] * (out_size[d] - 1) + 1,
                    stride[d],
                )
                for d in range(n)
            )
        ]
        for g in range(groups):
            wk = w[(slice(g * og, (g + 1) * og), slice(None), *k)]  # (O/g, C/g)
            xg = window[:, g * cg : (g + 1) * cg]  # (N, C/g, *out)
            out[:, g * og : (g + 1) * og] += np.einsum("oc,nc...->no...", wk, xg)
    if b is not None:
        out += b.reshape(1, -1, *([1] * n))
    return out


def dropconnect_conv_forward(
    x, w, b, mask, p, *, stride=1, padding=0, dilation=1, groups=1, scale="inverted"
):
    """:func:`conv_forward` with the weight ``w * mask * s`` (per sample for a batched mask)."""
    wm = dropconnect_weight(w, mask, p, scale=scale)
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if wm.ndim == w.ndim:
        return conv_forward(x, wm, b, **kw)
    return np.concatenate([conv_forward(x[i : i + 1], wm[i], b, **kw) for i in range(x.shape[0])])
