"""The variational LSTM/GRU recurrence of one layer and direction as one autograd node, with a
hand-written backward through time.

:func:`dropkit.functional.variational_rnn` computes the input part of every gate for all steps in
one matrix product and then runs the recurrence; this module runs that recurrence for a whole
sequence inside one :class:`torch.autograd.Function` instead of recording some twenty autograd nodes
per step. The function is that of the step-by-step loop (``_recur`` in ``variational_rnn.py``):
the same element-wise operations, each rounded as there (on CPU the LSTM's sigmoid and tanh are the
kernel's own, within 2.5 ulp in float32, an ulp in float64); the matrix products may accumulate
their sums in another order (a few ulps), and in backward the gradients are the exact derivatives,
the weight gradient summed over all steps in one product.

Why it is fast (docs/benchmarks.md): per step the loop's autograd graph slices ``x_gates`` (each
slice's backward writes a zero tensor of the full sequence's size), chunks the gates, and keeps a
node per element-wise op. Here a forward step is one matrix product and the element-wise work into
preallocated buffers, a backward step the element-wise work and one product. On CPU an LSTM step's
element-wise work is one call of a numba kernel on torch's OpenMP team (``kernels/cpu_rnn.py``: at
N * H = 8K elements torch's nine operators each ran on one core, and cost as much in calls as in
arithmetic); elsewhere (CUDA), and for the GRU, it is torch's operators (nine in an LSTM's forward,
five in its backward), whatever does not depend on the recurrence computed for all steps at once.
Every tensor keeps the row-major layout of ``x_gates`` ((T, N, G*H): the gates of a step are one
(N, G*H) block), so no sequence-sized tensor is transposed. The products of float32 CPU tensors run
on oneDNN (``_torch.onednn_linear``), as ``nn.LSTM``'s own CPU kernel does: torch's ``mm`` calls
MKL's SGEMM, which on AMD CPUs with AVX-512 took about twice as long for these shapes (issue 24).

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

__all__ = ["applies", "linear", "recur"]

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
    ``w_hh`` (G*H, H); ``b_hh`` (G*H,) or None (LSTM: the plain loop's ``x_gates + b_hh``, one
    pass; GRU: inside ``r * (w_hh h + b_hh)``);
    ``mult`` (1, N, H) = mask * 1/(1-p) or None. ``plain``: the step-by-step loop on the first five
    arguments, for double backward. Returns ``(out (T*N, H), h_T, c_T or None)``.
    """
    mult2 = None if mult is None else mult[0].contiguous()
    if mode == "LSTM":
        return _LSTM.apply(x_gates, h0, c0, w_hh, b_hh, mult2, reverse, plain)
    out, h = _GRU.apply(x_gates, h0, w_hh, b_hh, mult2, reverse, plain)
    return out, h, None


def _order(t_len: int, reverse: bool) -> range:
    return range(t_len - 1, -1, -1) if reverse else range(t_len)


# ---- the element-wise work of a step: one numba call on CPU (kernels/cpu_rnn.py) ------------------

_kernels_module = None
_kernels_failed = False


def _step_kernels(like: torch.Tensor):
    """dropkit.kernels.cpu_rnn for a CPU tensor, loaded on first use; None elsewhere, or when numba
    cannot be imported (torch's element-wise operators are used instead)."""
    global _kernels_module, _kernels_failed
    if like.device.type != "cpu" or _kernels_failed:
        return None
    if _kernels_module is None:
        try:
            from dropkit.kernels import cpu_rnn
        except ImportError:
            _kernels_failed = True
            return None
        _kernels_module = cpu_rnn
    return _kernels_module


# ---- the products: oneDNN for float32 on CPU, torch's addmm otherwise ------------------------------

_ONEDNN = _torch.onednn_linear()


def _onednn(t: torch.Tensor) -> bool:
    return _ONEDNN is not None and t.dtype == torch.float32 and t.device.type == "cpu"


# Whether the recurrence packs its weight for oneDNN's blocked layout once per sequence (forward and
# backward): a packed product is about 20 % faster, and whole training steps with the reorder
# counted about 8 % (benchmarks/rnn_anatomy.py products, pack; the benchmark turns it off).
PACK_WEIGHT = True


def _packed(w: torch.Tensor, rows: int) -> torch.Tensor:
    # the weight of a sequence's products, packed for oneDNN where PACK_WEIGHT (else itself)
    return _ONEDNN[2](w, rows) if PACK_WEIGHT and _onednn(w) else w


def _linear_add(x, w, bias, add):
    # add + (x @ w.T + bias): x (N, K), w (G, K), bias (G,) or None, add (N, G); a new (N, G)
    # tensor. torch's addmm has no second addend: the caller has added the bias to `add` there.
    if _onednn(x):
        return _ONEDNN[1](x, add, w, bias)
    return torch.addmm(add, x, w.t())


def _linear(x, w, bias=None):
    # x @ w.T (+ bias): x (N, K), w (G, K); a new (N, G) tensor
    if _onednn(x):
        return _ONEDNN[0](x, w, bias)
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


def _weight_grad(d_pre: torch.Tensor, h_in: torch.Tensor) -> torch.Tensor:
    # sum over steps and samples of d_pre^T h_in: (T*N, G) x (T*N, H) -> (G, H). torch's mm reads the
    # transposed operand in place; oneDNN wants both operands' K dimension contiguous, which costs
    # two copies but is still faster where it applies.
    if _onednn(d_pre):
        return _ONEDNN[0](_transposed(d_pre, 0), _transposed(h_in, 1), None)
    return d_pre.t().mm(h_in)


def _transposed(x: torch.Tensor, slot: int) -> torch.Tensor:
    # x.t().contiguous(), for an operand of one product (in a reused scratch buffer on CPU)
    kernels = _step_kernels(x)
    if kernels is None:
        return x.t().contiguous()
    return kernels.transposed(x, slot, _torch.version(x))


class _Linear(torch.autograd.Function):
    # F.linear with oneDNN's products (float32 CPU): the input part of every gate of a variational
    # RNN layer, x (S, I) -> (S, G*H), one product over all steps
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _ONEDNN[0](x, w.contiguous(), b)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable products
            d_x = g.mm(w) if ctx.needs_input_grad[0] else None
            d_w = g.t().mm(x) if ctx.needs_input_grad[1] else None
        else:
            g = g.contiguous()
            d_x = _ONEDNN[0](g, w.t().contiguous(), None) if ctx.needs_input_grad[0] else None
            d_w = _weight_grad(g, x.contiguous()) if ctx.needs_input_grad[1] else None
        d_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return d_x, d_w, d_b


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, w, b)`` for a 2-D ``x``, its products on oneDNN where they can be (float32 CPU
    tensors in eager mode: not under ``torch.compile``, torch.func transforms, forward-mode AD or
    a dispatch mode), else ``F.linear`` itself."""
    if (
        x.dim() == 2
        and _onednn(x)
        and type(x) is torch.Tensor
        and w.dtype == x.dtype
        and not torch.compiler.is_compiling()
        and _torch.transforms() is None
        and not _torch.forward_ad()
        and not _torch.dispatch_modes()
    ):
        return _Linear.apply(x, w, b)
    return torch.nn.functional.linear(x, w, b)


# Layout: every per-step tensor is a row block of a (T, N, F) buffer, (N, F) contiguous; the gates of
# a step are one (N, G*H) block and each gate an (N, H) column slice (element-wise calls on those run
# as fast as on contiguous tensors at these sizes).

# ---- LSTM ------------------------------------------------------------------------------------------


def _lstm_forward(xg, h0, c0, w_hh, b_hh, mult, reverse):
    # xg (T, N, 4H), b_hh (4H,) or None -> gates (T, N, 4H) activated (i, f, g, o), c_in (T, N, H) the
    # cell state each step starts from, tanh_c (T, N, H), h_in (T, N, H) the masked h_{t-1},
    # out (T, N, H), c_T (N, H).
    t_len, n, g4 = xg.shape
    hid = g4 // 4
    kernels = _step_kernels(xg)
    if kernels is not None:
        # what backward keeps, in one buffer on huge pages: a dozen MB of fresh 4 KiB pages a
        # training step cost more in page faults than the kernels' arithmetic (issue 24)
        size = t_len * n * hid
        flat = kernels.empty((7 * size,), xg.dtype)
        gates = flat[: 4 * size].view(t_len, n, g4)
        c_in, tanh_c, h_in = (
            flat[k * size : (k + 1) * size].view(t_len, n, hid) for k in (4, 5, 6)
        )
    else:
        gates = torch.empty_like(xg)
        c_in = xg.new_empty(t_len, n, hid)
        tanh_c, h_in = torch.empty_like(c_in), torch.empty_like(c_in)
    out = xg.new_empty(t_len, n, hid)
    c_last = xg.new_empty(n, hid)
    # per-step views, made once (indexing in the loop would cost a call each)
    xs, hs, outs, tcs, cs = (v.unbind(0) for v in (xg, h_in, out, tanh_c, c_in))
    order = _order(t_len, reverse)
    c_next = [cs[t] for t in order[1:]] + [c_last]
    cs[order[0]].copy_(c0)
    if kernels is not None:  # each step: the product, then one call for its element-wise work
        if mult is None:
            hs[order[0]].copy_(h0)
        else:
            torch.mul(h0, mult, out=hs[order[0]])
        gs = gates.unbind(0)
        bias = xg.new_zeros(g4) if b_hh is None else b_hh.contiguous()
        for k, t in enumerate(order):
            pre = _linear(hs[t], w_hh)  # (N, 4H) = w_hh h_in; the kernel adds x_gates + b_hh
            h_next = hs[order[k + 1]] if k + 1 < t_len else None
            kernels.lstm_step_forward(
                pre, xs[t], bias, cs[t], c_next[k], gs[t], tcs[t], outs[t], h_next, mult
            )
        return gates, c_in, tanh_c, h_in, out, c_last
    sig_if, tanh_g, sig_o = (
        gates[..., a:b].unbind(0) for a, b in ((0, 2 * hid), (2 * hid, 3 * hid), (3 * hid, g4))
    )
    i_s, f_s = gates[..., :hid].unbind(0), gates[..., hid : 2 * hid].unbind(0)
    h, c = h0, c0
    tmp = torch.empty_like(c_last)  # no allocation in the loop but the product's
    for k, t in enumerate(order):
        hi = hs[t]
        if mult is None:
            hi.copy_(h)
        else:
            torch.mul(h, mult, out=hi)
        pre = _linear_add(hi, w_hh, b_hh, xs[t])  # (N, 4H) = x_gates + b_hh + w_hh h_in
        torch.sigmoid(pre[:, : 2 * hid], out=sig_if[t])
        torch.tanh(pre[:, 2 * hid : 3 * hid], out=tanh_g[t])
        torch.sigmoid(pre[:, 3 * hid :], out=sig_o[t])
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
        n = h0.shape[0]
        t_len = x_gates.shape[0] // n
        xg = x_gates.view(t_len, n, -1)
        bias = b_hh
        if b_hh is not None and not _onednn(xg) and _step_kernels(xg) is None:
            # the plain loop's x_gates + b_hh, one pass (oneDNN adds b_hh in each step's product
            # instead, the CPU kernel in each step's element-wise call)
            xg, bias = xg + b_hh, None
        w = _packed(w_hh.contiguous(), n)
        gates, c_in, tanh_c, h_in, out, c_last = _lstm_forward(xg, h0, c0, w, bias, mult, reverse)
        ctx.save_for_backward(x_gates, h0, c0, w_hh, b_hh, mult, gates, c_in, tanh_c, h_in)
        ctx.reverse, ctx.plain = reverse, plain
        h_t = out[0 if reverse else -1].clone()
        return out.view(t_len * n, -1), h_t, c_last

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):
        x_gates, h0, c0, w_hh, b_hh, mult, gates, c_in, tanh_c, h_in = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the step-by-step loop
            return _plain_grads(ctx, (x_gates, h0, c0, w_hh, b_hh), (d_out, d_h, d_c))
        t_len, n, g4 = gates.shape
        hid = g4 // 4
        w_t = _packed(w_hh.t().contiguous(), n)  # (H, 4H): d_in = d_pre[t] @ w_hh
        order = list(reversed(_order(t_len, ctx.reverse)))
        kernels = _step_kernels(gates)
        if kernels is not None:  # each step: one call for the element-wise work, then the product
            d_pre = kernels.empty(gates.shape, gates.dtype)
            d_outs = d_out.contiguous().view(t_len, n, hid).unbind(0)
            gs, cs, tcs, d_pres = (v.unbind(0) for v in (gates, c_in, tanh_c, d_pre))
            dc = d_c.clone(memory_format=torch.contiguous_format)
            d_in, m = d_h.contiguous(), None  # the last step's dh is d_out + d_h, unmasked
            for t in order:
                kernels.lstm_step_backward(gs[t], cs[t], tcs[t], d_outs[t], d_in, m, dc, d_pres[t])
                d_in, m = _linear(d_pres[t], w_t), mult  # (N, H)
            return _lstm_grads(ctx, d_pre, d_in, dc, h_in, w_hh, b_hh, mult)
        d_out = d_out.view(t_len, n, hid)
        i, f = gates[..., :hid], gates[..., hid : 2 * hid]
        g, o = gates[..., 2 * hid : 3 * hid], gates[..., 3 * hid :]
        # d(pre-activation)/d(c_new) for i, f, g and d/d(h) for o, for all steps at once:
        # b[..., :3H] = (g i(1-i), c_in f(1-f), i(1-g^2)), b[..., 3H:] = tanh_c o(1-o)
        # (each product rounded as g * (i * (1 - i)) etc.; one scratch tensor for the factors:
        # fresh sequence-sized temporaries cost page faults, more than the arithmetic)
        b = torch.empty_like(gates)
        one = gates.new_ones(())
        tmp = torch.empty_like(c_in)
        for x, y, out_b in ((i, g, b[..., :hid]), (f, c_in, b[..., hid : 2 * hid]),
                            (o, tanh_c, b[..., 3 * hid :])):  # fmt: skip
            torch.mul(x, torch.sub(one, x, out=tmp), out=tmp)
            torch.mul(y, tmp, out=out_b)
        torch.sub(one, torch.mul(g, g, out=tmp), out=tmp)
        torch.mul(i, tmp, out=b[..., 2 * hid : 3 * hid])
        a = torch.mul(tanh_c, tanh_c, out=tmp)  # d(c_new)/d(h) through h = o tanh(c_new)
        torch.mul(o, torch.sub(one, a, out=a), out=a)
        d_pre = torch.empty_like(gates)
        b_c = b[..., : 3 * hid].unflatten(-1, (3, hid)).unbind(0)  # (N, 3, H) per step
        d_c3 = d_pre[..., : 3 * hid].unflatten(-1, (3, hid)).unbind(0)
        b_o, d_o = b[..., 3 * hid :].unbind(0), d_pre[..., 3 * hid :].unbind(0)
        a_s, f_s, d_outs, d_pres = a.unbind(0), f.unbind(0), d_out.unbind(0), d_pre.unbind(0)
        dh = torch.add(d_outs[0 if ctx.reverse else -1], d_h)
        dc = d_c.clone()
        d_in = None
        for k, t in enumerate(order):
            if k:  # dh = d_out + (d_pre[t+1] w_hh) * mult: the gradient reaching h_t
                if mult is None:
                    torch.add(d_outs[t], d_in, out=dh)
                else:
                    torch.addcmul(d_outs[t], d_in, mult, out=dh)
            dc.addcmul_(dh, a_s[t])  # now d(loss)/d(c_new) at step t
            torch.mul(dc.unsqueeze(1), b_c[t], out=d_c3[t])
            torch.mul(dh, b_o[t], out=d_o[t])
            d_in = _linear(d_pres[t], w_t)  # (N, H)
            dc.mul_(f_s[t])  # d/d(c) the step started from
        return _lstm_grads(ctx, d_pre, d_in, dc, h_in, w_hh, b_hh, mult)


def _lstm_grads(ctx, d_pre, d_in, dc, h_in, w_hh, b_hh, mult):
    # the gradients of _LSTM's inputs from d_pre (T, N, 4H), the gradient d_in that reached h_in of
    # the first step, and dc = d(loss)/d(c_0)
    t_len, n, g4 = d_pre.shape
    d_h0 = d_in if mult is None else d_in * mult
    d_x = d_pre.view(t_len * n, g4)  # (T*N, 4H)
    d_w = None
    if ctx.needs_input_grad[3]:
        d_w = _weight_grad(d_x, h_in.view(t_len * n, g4 // 4))
    d_b = d_pre.sum((0, 1)) if b_hh is not None and ctx.needs_input_grad[4] else None
    return d_x, d_h0, dc, d_w, d_b, None, None, None


# ---- GRU -------------------------------------------------------------------------------------------


def _gru_forward(xg, h0, w_hh, b_hh, mult, reverse):
    # xg (T, N, 3H) -> hg_n (T, N, H) = (w_hh h_in + b_hh)'s n part, rz (T, N, 2H) activated,
    # cand (T, N, H), h_in (T, N, H) the masked h_{t-1}, out (T, N, H).
    t_len, n, g3 = xg.shape
    hid = g3 // 3
    hg_n = xg.new_empty(t_len, n, hid)
    rz = xg.new_empty(t_len, n, 2 * hid)
    cand = torch.empty_like(hg_n)
    h_in, out = torch.empty_like(hg_n), torch.empty_like(hg_n)
    rzs, cands, hgns = rz.unbind(0), cand.unbind(0), hg_n.unbind(0)
    his, outs = h_in.unbind(0), out.unbind(0)
    x_rz, x_n = xg[..., : 2 * hid].unbind(0), xg[..., 2 * hid :].unbind(0)
    r_s, z_s = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)
    h = h0
    tmp = torch.empty_like(h0)  # no allocation in the loop but the product's
    one = h0.new_ones(())
    for t in _order(t_len, reverse):
        hi = his[t]
        if mult is None:
            hi.copy_(h)
        else:
            torch.mul(h, mult, out=hi)
        hg = _linear(hi, w_hh, b_hh)  # (N, 3H) = w_hh h_in + b_hh
        torch.add(x_rz[t], hg[:, : 2 * hid], out=rzs[t])
        rzs[t].sigmoid_()
        hgns[t].copy_(hg[:, 2 * hid :])
        torch.add(x_n[t], torch.mul(r_s[t], hgns[t], out=tmp), out=cands[t])
        cands[t].tanh_()
        # (1 - z) * cand + z * h_prev, as the plain loop rounds it
        torch.mul(torch.sub(one, z_s[t], out=tmp), cands[t], out=outs[t])
        outs[t].add_(torch.mul(z_s[t], h, out=tmp))
        h = outs[t]
    return hg_n, rz, cand, h_in, out


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_gates, h0, w_hh, b_hh, mult, reverse, plain):
        n = h0.shape[0]
        t_len = x_gates.shape[0] // n
        xg = x_gates.view(t_len, n, -1)
        w = _packed(w_hh.contiguous(), n)
        hg_n, rz, cand, h_in, out = _gru_forward(xg, h0, w, b_hh, mult, reverse)
        ctx.save_for_backward(x_gates, h0, w_hh, b_hh, mult, hg_n, rz, cand, h_in, out)
        ctx.reverse, ctx.plain = reverse, plain
        return out.view(t_len * n, -1), out[0 if reverse else -1].clone()

    @staticmethod
    def backward(ctx, d_out, d_h):
        x_gates, h0, w_hh, b_hh, mult, hg_n, rz, cand, h_in, out = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _plain_grads(ctx, (x_gates, h0, w_hh, b_hh), (d_out, d_h))
        t_len, n, hid = cand.shape
        d_out = d_out.view(t_len, n, hid)
        r, z = rz[..., :hid], rz[..., hid:]
        # for all steps: d(pre_n)/dh = (1-z)(1-cand^2), d(pre_z)/dh = (h_prev-cand) z(1-z),
        # d(pre_r)/d(pre_n) = hn r(1-r), h_prev the undropped state each step starts from (h0,
        # then the previous output); one scratch tensor (see the LSTM's)
        one = cand.new_ones(())
        b_n, b_z, b_r, tmp = (torch.empty_like(cand) for _ in range(4))
        torch.sub(one, z, out=tmp)
        torch.mul(tmp, torch.sub(one, torch.mul(cand, cand, out=b_n), out=b_n), out=b_n)
        first, rest = (-1, slice(None, -1)) if ctx.reverse else (0, slice(1, None))
        torch.sub(h0, cand[first], out=b_z[first])
        torch.sub(out[1:] if ctx.reverse else out[:-1], cand[rest], out=b_z[rest])
        b_z.mul_(torch.mul(z, torch.sub(one, z, out=tmp), out=tmp))
        torch.mul(hg_n, torch.mul(r, torch.sub(one, r, out=tmp), out=tmp), out=b_r)
        d_x = x_gates.new_empty(t_len, n, 3 * hid)  # gradient of x_gates
        d_hg = torch.empty_like(d_x)  # gradient of w_hh h_in + b_hh
        dx_r, dx_z, dx_n = (d_x[..., a * hid : (a + 1) * hid].unbind(0) for a in range(3))
        dx_rz, dg_rz, dg_n = (
            d_x[..., : 2 * hid].unbind(0),
            d_hg[..., : 2 * hid].unbind(0),
            d_hg[..., 2 * hid :].unbind(0),
        )
        b_ns, b_zs, b_rs, r_s, z_s = (v.unbind(0) for v in (b_n, b_z, b_r, r, z))
        d_outs, d_hgs = d_out.unbind(0), d_hg.unbind(0)
        w_t = _packed(w_hh.t().contiguous(), n)  # (H, 3H): d_in = d_hg[t] @ w_hh
        dh = torch.empty_like(d_outs[0])
        carry = d_h.clone()
        for t in reversed(_order(t_len, ctx.reverse)):
            torch.add(d_outs[t], carry, out=dh)
            torch.mul(dh, b_ns[t], out=dx_n[t])
            torch.mul(dh, b_zs[t], out=dx_z[t])
            torch.mul(dx_n[t], b_rs[t], out=dx_r[t])
            dg_rz[t].copy_(dx_rz[t])
            torch.mul(dx_n[t], r_s[t], out=dg_n[t])
            d_in = _linear(d_hgs[t], w_t)  # (N, H)
            torch.mul(dh, z_s[t], out=carry)
            if mult is None:
                carry.add_(d_in)
            else:
                carry.addcmul_(d_in, mult)
        d_w = d_b = None
        if ctx.needs_input_grad[2]:
            d_w = _weight_grad(d_hg.view(t_len * n, 3 * hid), h_in.view(t_len * n, hid))
        if b_hh is not None and ctx.needs_input_grad[3]:
            d_b = d_hg.sum((0, 1))
        return d_x.view(t_len * n, 3 * hid), carry, d_w, d_b, None, None, None


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
