"""Variational LSTM and GRU: dropout on the input, the recurrent state h_{t-1} and the output, with
the same masks at every time step.

Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural Networks",
NeurIPS 2016. For each layer and direction one keep-mask is drawn per sequence for the layer's input
x_t and one for h_{t-1}; both are reused at every step, and one more mask is applied to the last
layer's output. With ``per_gate=True`` each gate gets its own input and recurrent masks (Gal's
"untied" variant, Keras's ``recurrent_dropout`` with ``implementation=1``). The cell state c (LSTM)
and the h_{t-1} in the GRU's update ``z * h_{t-1}`` are not dropped.

The recurrence has to see the mask inside every step, so training runs a time loop in Python (the
input projection of all steps is one matrix product). With the fast-dropout switch on
(:func:`dropkit.set_fast_dropout`), shared masks and sequences of equal length, float32/float64 and
eager mode, the loop of each layer and direction runs inside one autograd node with a hand-written
backward through time (``ops/rnn.py``); otherwise, step by step under autograd. Eval, or training with every p = 0, is the
deterministic network: the module form (:class:`dropkit.nn.VariationalLSTM`) then calls PyTorch's
fused kernel.

Weights are in ``torch.nn.LSTM`` / ``torch.nn.GRU`` order and layout: for each layer, then each
direction, ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, and ``bias_ih``, ``bias_hh`` if present;
G = 4 gates (i, f, g, o) for LSTM, 3 (r, z, n) for GRU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence

from dropkit._validation import (
    _check_bool,
    _check_float_tensor,
    _check_generator,
    _check_p,
    _check_rank,
    _keep_scale,
)
from dropkit.functional.dropout import _apply, _factor, sample_mask
from dropkit.functional.locked_dropout import _packed_rows
from dropkit.ops import rnn as _fused_rnn
from dropkit.ops import sharding as _sharding

__all__ = ["GATES", "RNNMasks", "sample_rnn_masks", "variational_rnn"]

GATES = {"LSTM": 4, "GRU": 3}


@dataclass
class RNNMasks:
    """The keep-masks of one forward pass (True = keep), in the caller's batch order.

    ``input[k]`` and ``recurrent[k]`` belong to layer ``k // D``, direction ``k % D`` (D = 2 if
    bidirectional else 1); each has shape ``(M, N, features)`` with M = the number of gates if
    ``per_gate`` else 1; given masks may have either M), and is None where that p is 0. ``output`` is ``(N, D*H)`` or None.
    """

    input: list[torch.Tensor | None]
    recurrent: list[torch.Tensor | None]
    output: torch.Tensor | None


def _check_mode(mode: object, op: str) -> str:
    if mode not in GATES:
        raise ValueError(f"{op}: mode must be one of {tuple(GATES)}, but got {mode!r}")
    return mode


def sample_rnn_masks(
    mode: str,
    batch_size: int,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    *,
    input_dropout: float = 0.0,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output_dropout: float = 0.0,
    per_gate: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> RNNMasks:
    """Draw every mask one forward pass of a variational RNN uses (see :class:`RNNMasks`).

    ``input_dropout`` applies to the first layer's input, ``dropout`` to the input of each later
    layer (as ``torch.nn.LSTM(dropout=)``, but locked along time), ``recurrent_dropout`` to h_{t-1}
    of every layer, ``output_dropout`` to the last layer's output.
    """
    op = "sample_rnn_masks"
    mode = _check_mode(mode, op)
    _check_bool(bidirectional, "bidirectional", op)
    _check_bool(per_gate, "per_gate", op)
    ps = {
        name: _check_p(value, f"{op}: {name}", allow_one=False)
        for name, value in (
            ("input_dropout", input_dropout),
            ("dropout", dropout),
            ("recurrent_dropout", recurrent_dropout),
            ("output_dropout", output_dropout),
        )
    }
    dirs = 2 if bidirectional else 1
    m = GATES[mode] if per_gate else 1

    def draw(p: float, *shape: int) -> torch.Tensor | None:
        return sample_mask(shape, p, device=device, generator=generator) if p > 0 else None

    inputs, recurrent = [], []
    for layer in range(num_layers):
        p_in = ps["input_dropout"] if layer == 0 else ps["dropout"]
        features = input_size if layer == 0 else dirs * hidden_size
        for _ in range(dirs):
            inputs.append(draw(p_in, m, batch_size, features))
            recurrent.append(draw(ps["recurrent_dropout"], m, batch_size, hidden_size))
    return RNNMasks(inputs, recurrent, draw(ps["output_dropout"], batch_size, dirs * hidden_size))


def _check_state(
    h: torch.Tensor, expected: tuple[int, ...], name: str, op: str, other: int | None, bf: bool
) -> None:
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(h).__name__}")
    if tuple(h.shape) != expected:
        hint = ""
        if other is not None and h.dim() == 3 and h.shape[1] == other:
            hint = (
                f". Its batch size {other} is the input's time dimension: is the input "
                f"{'(T, N, H)' if bf else '(N, T, H)'}, i.e. batch_first={not bf}?"
            )
        raise ValueError(
            f"{op}: expected {name} of shape {expected}, but got {tuple(h.shape)}{hint}"
        )


def _check_masks(
    masks: object, expected: RNNMasks, op: str, batch_first: bool, gates: int
) -> RNNMasks:
    if not isinstance(masks, RNNMasks):
        raise TypeError(f"{op}: masks must be an RNNMasks, but got {type(masks).__name__}")
    pairs = [("output", masks.output, expected.output)]
    for kind in ("input", "recurrent"):
        got, want = getattr(masks, kind), getattr(expected, kind)
        if len(got) != len(want):
            raise ValueError(f"{op}: masks.{kind} must have {len(want)} entries, got {len(got)}")
        pairs += [(f"{kind}[{k}]", g, w) for k, (g, w) in enumerate(zip(got, want, strict=True))]
    for name, got, want in pairs:
        if (got is None) != (want is None):
            raise ValueError(
                f"{op}: masks.{name} must be {'None' if want is None else 'a mask'} for these p"
            )
        if got is None:
            continue
        # input/recurrent masks may be shared (M = 1) or per gate (M = G) whatever per_gate says
        ok_shapes = [tuple(want.shape)]
        if name != "output":
            ok_shapes = [(m, *want.shape[1:]) for m in (1, gates)]
        if got.dtype != torch.bool or tuple(got.shape) not in ok_shapes:
            raise ValueError(
                f"{op}: masks.{name} must be a bool tensor of shape {ok_shapes[0]}, but got "
                f"{got.dtype} {tuple(got.shape)} (check batch_first={batch_first})"
            )
    return masks


@_sharding.rule(
    "refuse: the recurrence has no sharded form; torch's nn.LSTM takes no DTensor either"
)
def variational_rnn(
    input: torch.Tensor | PackedSequence,
    hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
    weights: list[torch.Tensor],
    *,
    mode: str = "LSTM",
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    input_dropout: float = 0.0,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output_dropout: float = 0.0,
    per_gate: bool = False,
    training: bool = True,
    masks: RNNMasks | None = None,
    generator: torch.Generator | None = None,
):
    """Run a variational LSTM or GRU; returns what ``torch.nn.LSTM`` / ``torch.nn.GRU`` return.

    Training: the masks (drawn here, or given as ``masks``) are applied at every step; survivors are
    scaled by 1/(1-p). Eval: the deterministic network, no mask.

    Paper: Gal & Ghahramani, NeurIPS 2016.

    Args:
        input: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, ``(T, I)`` or a ``PackedSequence``.
        hx: initial state as for ``torch.nn.LSTM`` (``(h_0, c_0)``) or ``torch.nn.GRU`` (``h_0``), or
            None for zeros.
        weights: the flat weight list in ``torch.nn.LSTM`` order (``[w for ws in lstm.all_weights
            for w in ws]``).
        mode: ``"LSTM"`` or ``"GRU"``.
        num_layers, bidirectional, batch_first: as ``torch.nn.LSTM``.
        input_dropout: p for the first layer's input. dropout: p for the input of later layers.
        recurrent_dropout: p for h_{t-1}. output_dropout: p for the last layer's output.
        per_gate: separate input and recurrent masks for each gate.
        training: apply dropout if True.
        masks: optional :class:`RNNMasks` to use instead of drawing them.
        generator: optional ``torch.Generator`` for the masks.

    Shape:
        - output ``(T, N, D*H)`` (or as laid out by ``batch_first``, unbatched, packed), ``h_n``
          (and ``c_n``) ``(num_layers*D, N, H)``: those of ``torch.nn.LSTM`` / ``torch.nn.GRU``.
    """
    op = "variational_" + str(mode).lower()
    mode = _check_mode(mode, "variational_rnn")
    batch_first = _check_bool(batch_first, "batch_first", op)
    per_gate = _check_bool(per_gate, "per_gate", op)
    _check_bool(bidirectional, "bidirectional", op)
    _check_bool(training, "training", op)
    dirs = 2 if bidirectional else 1
    per_layer = len(weights) // (num_layers * dirs)
    if per_layer not in (2, 4) or per_layer * num_layers * dirs != len(weights):
        raise ValueError(
            f"{op}: expected 2 or 4 weights per layer and direction ({num_layers * dirs} of them), "
            f"but got {len(weights)} weights"
        )
    gates = GATES[mode]
    hidden_size = weights[1].shape[1]
    input_size = weights[0].shape[1]

    # Bring the input to packed form: data (S, I) with rows grouped by time step, batch_sizes (T,).
    packed = isinstance(input, PackedSequence)
    if packed:
        data = _check_float_tensor(input.data, op, "input.data")
        batch_sizes = [int(b) for b in input.batch_sizes]
        sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
        n, batched, other = batch_sizes[0], True, None
    else:
        _check_float_tensor(input, op)
        _check_rank(
            input,
            (2, 3),
            op,
            hint="expected (T, N, I), (N, T, I) with batch_first=True, or an unbatched (T, I)",
        )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1 if not batch_first else 0)
        x = x.transpose(0, 1) if batch_first else x  # (T, N, I)
        t_len, n = x.shape[0], x.shape[1]
        other = t_len if batched else None
        data = x.reshape(t_len * n, x.shape[2])
        batch_sizes, sorted_idx, unsorted_idx = [n] * t_len, None, None
    if data.shape[-1] != input_size:
        raise ValueError(
            f"{op}: expected input.size(-1) == input_size ({input_size}), got {data.shape[-1]}"
        )

    # Initial state: (L*D, N, H) each, moved to sorted order for packed input.
    shape = (num_layers * dirs, n, hidden_size)
    if hx is None:
        h0 = data.new_zeros(shape)
        c0 = data.new_zeros(shape) if mode == "LSTM" else None
    else:
        if mode == "LSTM":
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(f"{op}: hx must be a tuple (h_0, c_0) or None")
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        if not batched:
            h0 = h0.unsqueeze(1) if isinstance(h0, torch.Tensor) and h0.dim() == 2 else h0
            c0 = c0.unsqueeze(1) if isinstance(c0, torch.Tensor) and c0.dim() == 2 else c0
        _check_state(h0, shape, "h_0", op, other, batch_first)
        if c0 is not None:
            _check_state(c0, shape, "c_0", op, other, batch_first)
        if sorted_idx is not None:
            h0 = h0.index_select(1, sorted_idx)
            c0 = c0.index_select(1, sorted_idx) if c0 is not None else None

    ps = dict(
        input_dropout=input_dropout,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        output_dropout=output_dropout,
    )
    ps = {k: _check_p(v, f"{op}: {k}", allow_one=False) for k, v in ps.items()}
    if training:
        _check_generator(generator, data.device, op)
        if masks is None:
            masks = sample_rnn_masks(
                mode,
                n,
                input_size,
                hidden_size,
                num_layers,
                bidirectional,
                per_gate=per_gate,
                device=data.device,
                generator=generator,
                **ps,
            )
        else:
            expected = sample_rnn_masks(
                mode,
                n,
                input_size,
                hidden_size,
                num_layers,
                bidirectional,
                per_gate=per_gate,
                device="meta",
                **ps,
            )
            _check_masks(masks, expected, op, batch_first, gates)
    else:
        masks = RNNMasks([None] * len(h0), [None] * len(h0), None)

    def sort(mask: torch.Tensor | None, dim: int) -> torch.Tensor | None:
        if mask is None or sorted_idx is None:
            return mask
        return mask.index_select(dim, sorted_idx.to(mask.device))

    # (S,) position of each packed row within its step, from the Python ints (a tensor's values
    # would be data-dependent under torch.export); None for sequences of equal length, whose
    # masks broadcast over a (T, N, F) view instead
    rows = _packed_rows(batch_sizes, data.device) if packed else None
    layer_input = data
    h_n, c_n = [], []
    for layer in range(num_layers):
        p_in = ps["input_dropout"] if layer == 0 else ps["dropout"]
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w = weights[k * per_layer : (k + 1) * per_layer]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2], w[3]) if per_layer == 4 else (None, None)
            x_gates = _input_gates(
                layer_input, w_ih, b_ih, sort(masks.input[k], 1), p_in, rows, gates
            )
            rec_mask = sort(masks.recurrent[k], 1)
            fused = _fused_rnn.applies(mode, x_gates, not packed, rec_mask)
            if mode == "LSTM" and b_hh is not None and not fused:
                x_gates = x_gates + b_hh  # (S, 4H); see _recur (the fused path adds it itself)
            # the step-by-step loop on (x_gates, h_0, c_0, w_hh, b_hh)
            plain = functools.partial(
                _recur,
                mode,
                batch_sizes=batch_sizes,
                mask=rec_mask,
                p=ps["recurrent_dropout"],
                gates=gates,
                reverse=d == 1,
            )
            args = (x_gates, h0[k], c0[k] if c0 is not None else None, w_hh)
            if fused:
                # one autograd node for the whole sequence (ops/rnn.py)
                mult = None
                if rec_mask is not None:
                    mult = rec_mask * _factor(_keep_scale(ps["recurrent_dropout"], "inverted"), h0)
                out, h, c = _fused_rnn.recur(mode, *args, b_hh, mult, d == 1, plain)
            else:
                out, h, c = plain(*args, b_hh if mode == "GRU" else None)
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = outs[0] if dirs == 1 else torch.cat(outs, 1)  # (S, D*H)
    output = layer_input
    out_mask = sort(masks.output, 0)
    if out_mask is not None:
        if rows is None:
            shape = output.shape
            output = _apply(
                output.view(-1, *out_mask.shape), out_mask, ps["output_dropout"], "inverted", False
            )
            output = output.view(shape)
        else:
            output = _apply(
                output, out_mask.index_select(0, rows), ps["output_dropout"], "inverted", False
            )

    h_n = torch.stack(h_n)  # (L*D, N, H)
    c_n = torch.stack(c_n) if mode == "LSTM" else None
    if unsorted_idx is not None:
        h_n = h_n.index_select(1, unsorted_idx)
        c_n = c_n.index_select(1, unsorted_idx) if c_n is not None else None
    if packed:
        output = PackedSequence(output, input.batch_sizes, sorted_idx, unsorted_idx)
    else:
        output = output.view(len(batch_sizes), n, output.shape[-1])  # (T, N, D*H)
        output = output.transpose(0, 1) if batch_first else output
        if not batched:
            output = output.squeeze(0 if batch_first else 1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
    return (output, (h_n, c_n)) if mode == "LSTM" else (output, h_n)


def _masked(x: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    # x (..., F) times mask (M, ..., F) * 1/(1-p): the exact product the reference computes.
    return _apply(x.unsqueeze(0), mask, p, "inverted", False)


def _gate_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gates: int
) -> torch.Tensor:
    # x: (1, B, F) one input shared by all gates, or (G, B, F) one per gate. weight (G*H, F).
    if x.shape[0] == 1:
        return _fused_rnn.linear(x[0], weight, bias)  # (B, G*H); F.linear, on oneDNN if it can
    h = weight.shape[0] // gates
    per_gate = torch.bmm(x, weight.view(gates, h, -1).transpose(1, 2))  # (G, B, H)
    out = per_gate.transpose(0, 1).reshape(x.shape[1], gates * h)  # (B, G*H), gate-major
    return out + bias if bias is not None else out


def _input_gates(
    x: torch.Tensor,
    w_ih: torch.Tensor,
    b_ih: torch.Tensor | None,
    mask: torch.Tensor | None,
    p: float,
    rows: torch.Tensor | None,
    gates: int,
) -> torch.Tensor:
    """The input part of every gate for all steps at once: (S, I) -> (S, G*H)."""
    if mask is None:
        return _fused_rnn.linear(x, w_ih, b_ih)  # F.linear, on oneDNN where it can be
    if rows is None:  # S = T * N rows, step-major: the mask (M, N, I) broadcasts over T
        masked = _masked(x.view(-1, *mask.shape[1:]), mask.unsqueeze(1), p)  # (M, T, N, I)
        return _gate_matmul(masked.view(mask.shape[0], x.shape[0], -1), w_ih, b_ih, gates)
    # mask (M, N, I) -> one row per packed row (M, S, I)
    return _gate_matmul(_masked(x, mask.index_select(1, rows), p), w_ih, b_ih, gates)


def _recur(
    mode: str,
    x_gates: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor | None,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
    *,
    batch_sizes: list[int],
    mask: torch.Tensor | None,
    p: float,
    gates: int,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One layer, one direction. x_gates (S, G*H) in packed row order; h, c (N, H).

    At step t only the first b_t (sorted) sequences are active; the others keep their state, which
    is then their final state (forward) or still the initial one (reverse, not started yet).
    """
    n = h.shape[0]
    # multiplier = mask * 1/(1-p) in the state's dtype, formed once: the value _apply would form.
    mult = (
        None if mask is None else mask * _factor(_keep_scale(p, "inverted", h.dtype), h)
    )  # (M, N, H)
    offsets = [0]
    for b in batch_sizes:
        offsets.append(offsets[-1] + b)
    steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
    outs: list[torch.Tensor] = [x_gates.new_empty(0)] * len(batch_sizes)
    for t in steps:
        b = batch_sizes[t]
        xg = x_gates[offsets[t] : offsets[t + 1]]  # (b, G*H)
        h_prev = h if b == n else h[:b]
        h_in = h_prev.unsqueeze(0) if mult is None else h_prev.unsqueeze(0) * mult[:, :b]
        if mode == "LSTM":
            # LSTM adds both biases outside any product: b_hh is folded into x_gates by the caller,
            # and the shared-mask product is accumulated onto them in one addmm.
            if h_in.shape[0] == 1:
                pre = torch.addmm(xg, h_in[0], w_hh.t())  # (b, 4H): gates i, f, g, o
            else:
                pre = xg + _gate_matmul(h_in, w_hh, None, gates)
            c_prev = c if b == n else c[:b]
            i, f, _, o = torch.sigmoid(pre).chunk(4, 1)  # one sigmoid for all, g's unused
            g = torch.tanh(pre.chunk(4, 1)[2])
            c_new = f * c_prev + i * g
            h_new = o * torch.tanh(c_new)
            c = c_new if b == n else torch.cat([c_new, c[b:]])
        else:
            hg = _gate_matmul(h_in, w_hh, b_hh, gates)  # (b, 3H)
            xr, xz, xn = xg.chunk(3, 1)
            hr, hz, hn = hg.chunk(3, 1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            cand = torch.tanh(xn + r * hn)
            h_new = (1 - z) * cand + z * h_prev  # the undropped h_{t-1}
        outs[t] = h_new
        h = h_new if b == n else torch.cat([h_new, h[b:]])
    return torch.cat(outs), h, c
