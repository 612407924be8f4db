"""NumPy reference for the variational LSTM / GRU, unrolled step by step, given the masks.

Written for clarity: one time step at a time, one gate at a time, each gate with its own (or the
shared) mask. The torch version batches the input projection of all steps and the gates into single
matrix products, so the two agree to rounding, not bit for bit: a matrix product's summation order
depends on the BLAS kernel and its blocking. The tests compare in float64 with a stated tolerance.

Masks are bool arrays (True = keep) laid out as in :class:`dropkit.functional.RNNMasks`:
``input_masks[k]`` ``(M, N, I_l)`` and ``recurrent_masks[k]`` ``(M, N, H)`` for layer ``k // D``,
direction ``k % D`` (M = number of gates if per-gate else 1; None where that p is 0), and
``output_mask`` ``(N, D*H)`` or None. Weights are in ``torch.nn.LSTM`` order (see
:mod:`dropkit.functional.variational_rnn`). Padded (not packed) sequences only.
"""

from __future__ import annotations

import numpy as np

from dropkit._validation import _check_p, _keep_scale
from dropkit.reference._checks import _check_float_array

__all__ = ["variational_rnn_forward"]

GATES = {"LSTM": 4, "GRU": 3}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _drop(x: np.ndarray, mask: np.ndarray | None, gate: int, p: float) -> np.ndarray:
    """x (N, F) with the gate's mask (or the shared one) applied: x * mask * 1/(1-p)."""
    if mask is None:
        return x
    m = mask[gate if mask.shape[0] > 1 else 0]
    return x * (m.astype(x.dtype) * x.dtype.type(_keep_scale(p, "inverted")))


def _layer(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, in_mask, p_in, rec_mask, p_rec, reverse):
    """One layer, one direction. x (T, N, I); h, c (N, H). Returns outputs (T, N, H), h, c."""
    n_gates, hidden = GATES[mode], h.shape[1]
    w_ih = [w_ih[g * hidden : (g + 1) * hidden] for g in range(n_gates)]  # per gate (H, I)
    w_hh = [w_hh[g * hidden : (g + 1) * hidden] for g in range(n_gates)]  # per gate (H, H)
    zero = np.zeros(hidden, dtype=x.dtype)
    b_ih = [zero if b_ih is None else b_ih[g * hidden : (g + 1) * hidden] for g in range(n_gates)]
    b_hh = [zero if b_hh is None else b_hh[g * hidden : (g + 1) * hidden] for g in range(n_gates)]
    outputs = np.zeros((x.shape[0], x.shape[1], hidden), dtype=x.dtype)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        # The same masks at every step t.
        xs = [_drop(x[t], in_mask, g, p_in) @ w_ih[g].T + b_ih[g] for g in range(n_gates)]
        hs = [_drop(h, rec_mask, g, p_rec) @ w_hh[g].T + b_hh[g] for g in range(n_gates)]
        if mode == "LSTM":
            i = _sigmoid(xs[0] + hs[0])
            f = _sigmoid(xs[1] + hs[1])
            g = np.tanh(xs[2] + hs[2])
            o = _sigmoid(xs[3] + hs[3])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            r = _sigmoid(xs[0] + hs[0])
            z = _sigmoid(xs[1] + hs[1])
            cand = np.tanh(xs[2] + r * hs[2])
            h = (1 - z) * cand + z * h  # h_{t-1} undropped in the update
        outputs[t] = h
    return outputs, h, c


def variational_rnn_forward(
    x: np.ndarray,
    hx,
    weights: list[np.ndarray],
    *,
    mode: str = "LSTM",
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    input_masks: list[np.ndarray | None] | None = None,
    recurrent_masks: list[np.ndarray | None] | None = None,
    output_mask: np.ndarray | None = None,
    input_dropout: float = 0.0,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output_dropout: float = 0.0,
):
    """The variational LSTM/GRU forward pass; returns ``(output, (h_n, c_n))`` or ``(output, h_n)``.

    ``x`` is ``(T, N, I)`` (``(N, T, I)`` with ``batch_first``); ``hx`` is ``(h_0, c_0)`` (LSTM),
    ``h_0`` (GRU) of shape ``(L*D, N, H)``, or None for zeros. Masks None means no dropout there.
    """
    op = "reference.variational_rnn_forward"
    x = _check_float_array(x, op)
    if mode not in GATES:
        raise ValueError(f"{op}: mode must be one of {tuple(GATES)}, but got {mode!r}")
    ps = [_check_p(q, op, allow_one=False) for q in (input_dropout, dropout, recurrent_dropout)]
    p_output = _check_p(output_dropout, op, allow_one=False)
    dirs = 2 if bidirectional else 1
    per = len(weights) // (num_layers * dirs)
    hidden = weights[1].shape[1]
    x = np.swapaxes(x, 0, 1) if batch_first else x  # (T, N, I)
    shape = (num_layers * dirs, x.shape[1], hidden)
    if hx is None:
        h0, c0 = np.zeros(shape, x.dtype), np.zeros(shape, x.dtype)
    else:
        h0, c0 = hx if mode == "LSTM" else (hx, np.zeros(shape, x.dtype))
    input_masks = input_masks or [None] * (num_layers * dirs)
    recurrent_masks = recurrent_masks or [None] * (num_layers * dirs)
    layer_input, h_n, c_n = x, [], []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w = weights[k * per : (k + 1) * per]
            b_ih, b_hh = (w[2], w[3]) if per == 4 else (None, None)
            out, h, c = _layer(
                mode,
                layer_input,
                h0[k],
                c0[k],
                w[0],
                w[1],
                b_ih,
                b_hh,
                input_masks[k],
                ps[0] if layer == 0 else ps[1],
                recurrent_masks[k],
                ps[2],
                reverse=d == 1,
            )
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outs, axis=2)  # (T, N, D*H)
    output = layer_input
    if output_mask is not None:
        scale = output_mask.astype(x.dtype) * x.dtype.type(_keep_scale(p_output, "inverted"))
        output = output * scale[None]
    output = np.swapaxes(output, 0, 1) if batch_first else output
    h_n = np.stack(h_n)
    return (output, (h_n, np.stack(c_n))) if mode == "LSTM" else (output, h_n)
