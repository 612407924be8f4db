"""The variational LSTM/GRU recurrence of one layer and direction as one autograd node, with a
hand-written backward through time.

:func:`dropkit.functional.variational_rnn` computes the input part of every gate for all steps in
one matrix product and then runs the recurrence; this module runs that recurrence for a whole
sequence inside one :class:`torch.autograd.Function` instead of recording some twenty autograd nodes
per step. The function is that of the step-by-step loop (``_recur`` in ``variational_rnn.py``):
the same element-wise operations, each rounded as there; the matrix products run on transposed
operands (their sums may be accumulated in another order, a few ulps), and in backward the
gradients are the exact derivatives, the weight gradient summed over all steps in one product.

Why it is faster (docs/benchmarks.md): per step the loop's autograd graph slices ``x_gates`` (each
slice's backward writes a zero tensor of the full sequence's size), chunks the gates, and keeps a
node per element-wise op. Here a forward step is one ``addmm`` and nine element-wise calls into
preallocated buffers, and a backward step is one ``mm`` and five element-wise calls; whatever does
not depend on the recurrence (the gate derivatives) is computed for all steps at once.

Where it applies (``applies``): the shared-mask form (one input and one recurrent mask for all
gates), sequences of equal length (not a ``PackedSequence``), float32/float64, eager mode (not under
``torch.compile``, torch.func transforms or forward-mode AD), and the fast-dropout switch on
(:func:`dropkit.set_fast_dropout`). A double backward (``create_graph=True``) recomputes the
recurrence with the step-by-step loop and differentiates that.
"""

from __future__ import annotations

import torch

from dropkit.ops import _torch
from dropkit.ops.switch import fast_dropout_enabled

__all__ = ["applies", "recur"]

_DTYPES = (torch.float32, torch.float64)


def applies(mode: str, x_gates: torch.Tensor, uniform: bool, mult: torch.Tensor | None) -> bool:
    """Whether ``recur`` may replace the step-by-step loop for these arguments."""
    return (
        uniform
        and mode in ("LSTM", "GRU")
        and x_gates.dtype in _DTYPES
        and (mult is None or mult.shape[0] == 1)
        and fast_dropout_enabled()
        and not _torch.forward_ad()
        and not torch.compiler.is_compiling()
        and _torch.transforms() is None
    )


def recur(mode, x_gates, h0, c0, w_hh, b_hh, mult, reverse, plain):
    # plain(x_gates, h0, c0, w_hh, b_hh) -> (out, h_T, c_T): the step-by-step loop
    """One layer and direction over ``T`` steps of equal batch size ``N``.

    ``x_gates`` (T*N, G*H): the input part of every gate (with ``b_ih``); ``h0``, ``c0`` (N, H);
    ``w_hh`` (G*H, H); ``b_hh`` (G*H,) or None (LSTM: added to ``x_gates`` while they are
    transposed, the plain loop's ``x_gates + b_hh``; GRU: inside ``r * (w_hh h + b_hh)``);
    ``mult`` (1, N, H) = mask * 1/(1-p) or None. ``plain``: the step-by-step loop on the first five
    arguments, for double backward. Returns ``(out (T*N, H), h_T, c_T or None)``.
    """
    mult2 = None if mult is None else mult[0]
    if mode == "LSTM":
        return _LSTM.apply(x_gates, h0, c0, w_hh, b_hh, mult2, reverse, plain)
    out, h = _GRU.apply(x_gates, h0, w_hh, b_hh, mult2, reverse, plain)
    return out, h, None


def _order(t_len: int, reverse: bool) -> range:
    return range(t_len - 1, -1, -1) if reverse else range(t_len)


# Layout: inside the recurrence every per-step tensor is feature-major, (features, N): the gates of
# a step are one contiguous (G*H, N) block with each gate a contiguous (H, N) slice, so every
# element-wise call works on contiguous memory (a column slice of a row-major (N, G*H) block is
# strided, and on small tensors torch's strided loops cost about three times the contiguous ones).
# The products run on the transposed operands (pre^T = w_hh h^T + x_gates^T), which BLAS reads
# without copies; x_gates, the output and their gradients are transposed once per sequence.


def _feature_major(x: torch.Tensor, t_len: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    # (T*N, F) -> (T, F, N) contiguous, + bias (F,) in the same pass when given
    v = x.view(t_len, -1, x.shape[-1]).transpose(1, 2)
    if bias is None:
        return v.contiguous()
    return torch.add(v, bias.view(-1, 1), out=x.new_empty(v.shape))


def _row_major(x: torch.Tensor) -> torch.Tensor:
    # (T, F, N) -> (T*N, F) contiguous
    return x.transpose(1, 2).contiguous().view(-1, x.shape[1])


# ---- LSTM ------------------------------------------------------------------------------------------


def _lstm_forward(xg, h0, c0, w_hh, mult, reverse):
    # xg (T, 4H, N) -> gates (T, 4H, N) activated (i, f, g, o), c_in (T, H, N) the cell state each
    # step starts from, tanh_c (T, H, N), h_in (T, H, N) the masked h_{t-1}, out (T, H, N), c_T.
    t_len, g4, n = xg.shape
    hid = g4 // 4
    gates = torch.empty_like(xg)
    c_in = xg.new_empty(t_len, hid, n)
    tanh_c, h_in, out = torch.empty_like(c_in), torch.empty_like(c_in), torch.empty_like(c_in)
    c_last = xg.new_empty(hid, n)
    # per-step views, made once (indexing in the loop would cost a call each)
    xs, gs, hs, outs, tcs = (v.unbind(0) for v in (xg, gates, h_in, out, tanh_c))
    sig_if, tanh_g, sig_o = (
        gates[:, a:b].unbind(0) for a, b in ((0, 2 * hid), (2 * hid, 3 * hid), (3 * hid, g4))
    )
    i_s, f_s = gates[:, :hid].unbind(0), gates[:, hid : 2 * hid].unbind(0)
    order = _order(t_len, reverse)
    c_next = [c_in[t] for t in order[1:]] + [c_last]
    h, c = h0, c0
    c_in[order[0]].copy_(c0)
    tmp = torch.empty_like(c_last)  # no allocation in the loop: a fresh small tensor costs more
    # than the product written into it
    for k, t in enumerate(order):
        hi = hs[t]
        if mult is None:
            hi.copy_(h)
        else:
            torch.mul(h, mult, out=hi)
        torch.addmm(xs[t], w_hh, hi, out=gs[t])  # (4H, N)
        sig_if[t].sigmoid_()
        tanh_g[t].tanh_()
        sig_o[t].sigmoid_()
        c_new = c_next[k]
        # c_new = f * c + i * g: two products and one sum, as the plain loop rounds them
        torch.mul(f_s[t], c, out=c_new)
        c_new.add_(torch.mul(i_s[t], tanh_g[t], out=tmp))
        torch.tanh(c_new, out=tcs[t])
        torch.mul(sig_o[t], tcs[t], out=outs[t])
        h, c = outs[t], c_new
    return gates, c_in, tanh_c, h_in, out, c_last


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_gates, h0, c0, w_hh, b_hh, mult, reverse, plain):
        t_len = x_gates.shape[0] // h0.shape[0]
        xg = _feature_major(x_gates, t_len, b_hh)
        h0t, c0t = h0.t().contiguous(), c0.t().contiguous()
        mult_t = None if mult is None else mult.t().contiguous()
        gates, c_in, tanh_c, h_in, out, c_last = _lstm_forward(xg, h0t, c0t, w_hh, mult_t, reverse)
        ctx.save_for_backward(x_gates, h0, c0, w_hh, b_hh, mult_t, gates, c_in, tanh_c, h_in)
        ctx.reverse, ctx.plain = reverse, plain
        h_t = out[0 if reverse else -1].t().contiguous()
        return _row_major(out), h_t, c_last.t().contiguous()

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):
        x_gates, h0, c0, w_hh, b_hh, mult, gates, c_in, tanh_c, h_in = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the step-by-step loop
            return _plain_grads(ctx, (x_gates, h0, c0, w_hh, b_hh), (d_out, d_h, d_c))
        t_len, g4, n = gates.shape
        hid = g4 // 4
        d_out = _feature_major(d_out, t_len)  # (T, H, N)
        i, f = gates[:, :hid], gates[:, hid : 2 * hid]
        g, o = gates[:, 2 * hid : 3 * hid], gates[:, 3 * hid :]
        # d(pre-activation)/d(c_new) for i, f, g and d/d(h) for o, for all steps at once:
        # b[:, :3H] = (g i(1-i), c_in f(1-f), i(1-g^2)), b[:, 3H:] = tanh_c o(1-o)
        b = torch.empty_like(gates)
        torch.mul(g, i * (1 - i), out=b[:, :hid])
        torch.mul(c_in, f * (1 - f), out=b[:, hid : 2 * hid])
        torch.mul(i, 1 - g * g, out=b[:, 2 * hid : 3 * hid])
        torch.mul(tanh_c, o * (1 - o), out=b[:, 3 * hid :])
        a = o * (1 - tanh_c * tanh_c)  # d(c_new)/d(h) through h = o tanh(c_new)
        d_pre = torch.empty_like(gates)
        b_c = b[:, : 3 * hid].unflatten(1, (3, hid)).unbind(0)  # (3, H, N) per step
        d_c3 = d_pre[:, : 3 * hid].unflatten(1, (3, hid)).unbind(0)
        b_o, d_o = b[:, 3 * hid :].unbind(0), d_pre[:, 3 * hid :].unbind(0)
        a_s, f_s, d_outs, d_pres = a.unbind(0), f.unbind(0), d_out.unbind(0), d_pre.unbind(0)
        w_t = w_hh.t()
        dh = torch.add(d_outs[0 if ctx.reverse else -1], d_h.t())
        dc = d_c.t().contiguous()
        d_in = h0.new_empty(hid, n)
        order = list(reversed(_order(t_len, ctx.reverse)))
        for k, t in enumerate(order):
            if k:  # dh = d_out + (d_pre[t+1] w_hh) * mult: the gradient reaching h_t
                if mult is None:
                    torch.add(d_outs[t], d_in, out=dh)
                else:
                    torch.addcmul(d_outs[t], d_in, mult, out=dh)
            dc.addcmul_(dh, a_s[t])  # now d(loss)/d(c_new) at step t
            torch.mul(dc, b_c[t], out=d_c3[t])
            torch.mul(dh, b_o[t], out=d_o[t])
            torch.mm(w_t, d_pres[t], out=d_in)
            dc.mul_(f_s[t])  # d/d(c) the step started from
        d_h0 = d_in if mult is None else d_in * mult
        d_x = _row_major(d_pre)  # (T*N, 4H)
        d_w = None
        if ctx.needs_input_grad[3]:
            d_w = d_x.t().mm(_row_major(h_in))
        d_b = d_pre.sum((0, 2)) if b_hh is not None and ctx.needs_input_grad[4] else None
        return d_x, d_h0.t(), dc.t(), d_w, d_b, None, None, None


# ---- GRU -------------------------------------------------------------------------------------------


def _gru_forward(xg, h0, w_hh, b_hh, mult, reverse):
    # xg (T, 3H, N) -> hg (T, 3H, N) = w_hh h_in + b_hh, rz (T, 2H, N) activated, cand (T, H, N),
    # h_in (T, H, N) the masked h_{t-1}, h_prev (T, H, N) the undropped one, out (T, H, N).
    t_len, g3, n = xg.shape
    hid = g3 // 3
    hg = torch.empty_like(xg)
    rz = xg.new_empty(t_len, 2 * hid, n)
    cand = xg.new_empty(t_len, hid, n)
    h_in, h_prev, out = torch.empty_like(cand), torch.empty_like(cand), torch.empty_like(cand)
    bias = None if b_hh is None else b_hh.unsqueeze(1)  # (3H, 1)
    xs, hgs, rzs, cands = (v.unbind(0) for v in (xg, hg, rz, cand))
    his, hps, outs = h_in.unbind(0), h_prev.unbind(0), out.unbind(0)
    x_rz, x_n = xg[:, : 2 * hid].unbind(0), xg[:, 2 * hid :].unbind(0)
    hg_rz, hg_n = hg[:, : 2 * hid].unbind(0), hg[:, 2 * hid :].unbind(0)
    r_s, z_s = rz[:, :hid].unbind(0), rz[:, hid:].unbind(0)
    h = h0
    tmp = torch.empty_like(h0)  # no allocation in the loop (see _lstm_forward)
    one = h0.new_ones(())
    for t in _order(t_len, reverse):
        hi = his[t]
        if mult is None:
            hi.copy_(h)
        else:
            torch.mul(h, mult, out=hi)
        hps[t].copy_(h)
        if bias is None:
            torch.mm(w_hh, hi, out=hgs[t])
        else:
            torch.addmm(bias, w_hh, hi, out=hgs[t])
        torch.add(x_rz[t], hg_rz[t], out=rzs[t])
        rzs[t].sigmoid_()
        torch.add(x_n[t], torch.mul(r_s[t], hg_n[t], out=tmp), out=cands[t])
        cands[t].tanh_()
        # (1 - z) * cand + z * h_prev, as the plain loop rounds it
        torch.mul(torch.sub(one, z_s[t], out=tmp), cands[t], out=outs[t])
        outs[t].add_(torch.mul(z_s[t], h, out=tmp))
        h = outs[t]
    return hg, rz, cand, h_in, h_prev, out


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_gates, h0, w_hh, b_hh, mult, reverse, plain):
        t_len = x_gates.shape[0] // h0.shape[0]
        xg = _feature_major(x_gates, t_len)
        mult_t = None if mult is None else mult.t().contiguous()
        hg, rz, cand, h_in, h_prev, out = _gru_forward(
            xg, h0.t().contiguous(), w_hh, b_hh, mult_t, reverse
        )
        ctx.save_for_backward(x_gates, h0, w_hh, b_hh, mult_t, hg, rz, cand, h_in, h_prev)
        ctx.reverse, ctx.plain = reverse, plain
        return _row_major(out), out[0 if reverse else -1].t().contiguous()

    @staticmethod
    def backward(ctx, d_out, d_h):
        x_gates, h0, w_hh, b_hh, mult, hg, rz, cand, h_in, h_prev = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _plain_grads(ctx, (x_gates, h0, w_hh, b_hh), (d_out, d_h))
        t_len, g3, n = hg.shape
        hid = g3 // 3
        d_out = _feature_major(d_out, t_len)  # (T, H, N)
        r, z = rz[:, :hid], rz[:, hid:]
        # for all steps: d(pre_n)/dh = (1-z)(1-cand^2), d(pre_z)/dh = (h_prev-cand) z(1-z),
        # d(pre_r)/d(pre_n) = hn r(1-r)
        b_n = (1 - z) * (1 - cand * cand)
        b_z = (h_prev - cand) * (z * (1 - z))
        b_r = hg[:, 2 * hid :] * (r * (1 - r))
        d_x = torch.empty_like(hg)  # gradient of x_gates, (T, 3H, N)
        d_hg = torch.empty_like(hg)  # gradient of w_hh h_in + b_hh
        dx_r, dx_z, dx_n = (d_x[:, a * hid : (a + 1) * hid].unbind(0) for a in range(3))
        dx_rz, dg_rz, dg_n = (
            d_x[:, : 2 * hid].unbind(0),
            d_hg[:, : 2 * hid].unbind(0),
            d_hg[:, 2 * hid :].unbind(0),
        )
        b_ns, b_zs, b_rs, r_s, z_s = (v.unbind(0) for v in (b_n, b_z, b_r, r, z))
        d_outs, d_hgs = d_out.unbind(0), d_hg.unbind(0)
        w_t = w_hh.t()
        dh = torch.empty_like(d_outs[0])
        carry = d_h.t().contiguous()
        d_in = torch.empty_like(dh)
        for t in reversed(_order(t_len, ctx.reverse)):
            torch.add(d_outs[t], carry, out=dh)
            torch.mul(dh, b_ns[t], out=dx_n[t])
            torch.mul(dh, b_zs[t], out=dx_z[t])
            torch.mul(dx_n[t], b_rs[t], out=dx_r[t])
            dg_rz[t].copy_(dx_rz[t])
            torch.mul(dx_n[t], r_s[t], out=dg_n[t])
            torch.mm(w_t, d_hgs[t], out=d_in)
            torch.mul(dh, z_s[t], out=carry)
            if mult is None:
                carry.add_(d_in)
            else:
                carry.addcmul_(d_in, mult)
        d_w = d_b = None
        if ctx.needs_input_grad[2]:
            d_w = _row_major(d_hg).t().mm(_row_major(h_in))
        if b_hh is not None and ctx.needs_input_grad[3]:
            d_b = d_hg.sum((0, 2))
        return _row_major(d_x), carry.t(), d_w, d_b, None, None, None


# ---- double backward: the step-by-step loop, differentiated -----------------------------------------


def _plain_grads(ctx, inputs, grads):
    # inputs: (x_gates, h0, c0, w_hh, b_hh) for LSTM, (x_gates, h0, w_hh, b_hh) for GRU (b_hh may
    # be None)
    lstm = len(grads) == 3
    with torch.enable_grad():
        if lstm:
            x_gates, h0, c0, w_hh, b_hh = inputs
            outputs = ctx.plain(x_gates if b_hh is None else x_gates + b_hh, h0, c0, w_hh, None)
        else:
            x_gates, h0, w_hh, b_hh = inputs
            outputs = ctx.plain(x_gates, h0, None, w_hh, b_hh)[:2]
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    found = iter(torch.autograd.grad(outputs, wanted, grads, create_graph=True, allow_unused=True))
    result = [next(found) if t is not None and t.requires_grad else None for t in inputs]
    return (*result, None, None, None)
