"""Where dropout's share of the GPT-2 step of ``gpt2_step.py`` goes (issue 24), in two views.

    PYTHONPATH=src .venv/bin/python benchmarks/gpt2_step_anatomy.py ops [--attn eager] [--steps 3]
    PYTHONPATH=src .venv/bin/python benchmarks/gpt2_step_anatomy.py parts [--reps 9]

``ops`` profiles whole training steps of four models with the same weights (``torch``; ``dropkit``:
converted; ``layers``: converted but with the attention's dropout left torch's, as
``convert_dropout`` did before issue 24; ``none``: every rate 0) with ``torch.profiler`` and lists, per operator, the self CPU
time a step spends in it with dropout minus without: the operators that make dropout's share
(torch's ``bernoulli_`` and its products, dropkit's kernels, SDPA's kernels, ...). Read the rows,
not the small ones: a matrix product's time moves by a few ms from step to step.

``parts`` times each kind of dropout site of the step alone, at the step's shapes, forward and
backward, with per-thread CPU time (what load on other cores changes least): the eight residual
dropouts with the add that follows each and the embedding's (8 x 256 x 384 each; counted as nine
residual sites) and the attention of one layer (8 x 6 heads x 256 x 256
weights) as the eager attention computes it and as SDPA does, with torch's dropout, dropkit's and
none. The sum over the step's sites is the share a perfect overlap would give.
"""

from __future__ import annotations

import argparse
import collections
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from gpt2_step import make_models, step_fn

import dropkit.functional as DF
from dropkit.nn import _gate_dropout

# "layers": converted, but the attention's own dropout left torch's (convert_dropout before issue 24)
VARIANTS = ("none", "torch", "layers", "dropkit")


def _self_times(step, steps: int) -> dict[str, float]:
    """Self CPU ms per step of every operator over ``steps`` profiled steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}


def ops(args) -> None:
    ids = torch.randint(
        8000, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(1)
    )
    for attn in args.attn:
        models = make_models(attn, args.seq_len)
        # before this change: the layers converted, the attention's dropout torch's
        models["layers"] = copy.deepcopy(models["dropkit"])
        _gate_dropout.uninstall(models["layers"])
        steps = {v: step_fn(models[v], ids) for v in VARIANTS}
        for s in steps.values():
            s()  # warm-up (and numba compilation)
        times: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
        for _ in range(args.rounds):  # in turn, so load hits all alike
            for v in VARIANTS:
                times[v].append(_self_times(steps[v], args.steps))
        med = {}
        for v in VARIANTS:
            keys = set().union(*times[v])
            med[v] = {k: statistics.median(t.get(k, 0.0) for t in times[v]) for k in keys}
        total = {v: sum(med[v].values()) for v in VARIANTS}
        print(f"\n## {attn} attention: self CPU ms per step (profiled, medians of {args.rounds})")
        print(
            "total: "
            + ", ".join(
                f"{v} {total[v]:.0f} ({total[v] / total['none'] - 1:+.1%})" for v in VARIANTS
            )
            + "\n"
        )
        others = VARIANTS[1:]
        print("| operator | none | " + " | ".join(f"{v} - none" for v in others) + " |")
        print("|---" * (2 + len(others)) + "|")
        keys = set().union(*med.values())
        delta = {k: [med[v].get(k, 0) - med["none"].get(k, 0) for v in others] for k in keys}
        for k in sorted(keys, key=lambda k: -max(map(abs, delta[k]))):
            if max(map(abs, delta[k])) < args.min_ms:
                continue
            cells = " | ".join(f"{d:+.1f}" for d in delta[k])
            print(f"| {k[:60]} | {med['none'].get(k, 0):.1f} | {cells} |")


def _cpu_ms(fn, reps: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times) * 1e3


def _fwd_bwd(make, inputs, grad):
    def run():
        for t in inputs:
            t.grad = None
        make().backward(grad)

    return run


def parts(args) -> None:
    g = torch.Generator().manual_seed(0)
    b, t, h, e = args.batch, args.seq_len, 6, 384
    d = e // h
    p = 0.1
    x = torch.randn(b, t, e, generator=g).requires_grad_()
    gx = torch.randn(b, t, e, generator=g)
    r = torch.randn(b, t, e, generator=g)
    q, k, v = (torch.randn(b, h, t, d, generator=g).requires_grad_() for _ in range(3))
    go = torch.randn(b, h, t, d, generator=g)
    # the eager attention's causal mask: a float (B, 1, T, T) mask added to the scores
    mask = torch.full((t, t), torch.finfo(torch.float32).min).triu(1).expand(b, 1, t, t)

    def eager(drop):
        def f():
            w = torch.matmul(q, k.transpose(-1, -2)) * d**-0.5 + mask
            w = drop(torch.softmax(w, -1))
            return torch.matmul(w, v)

        return f

    rows = {
        # a residual site: dropout(sublayer output) + residual (the embedding's has no add)
        "residual site: torch F.dropout + add": _fwd_bwd(lambda: F.dropout(x, p) + r, [x], gx),
        "residual site: dropkit dropout + add": _fwd_bwd(lambda: DF.dropout(x, p) + r, [x], gx),
        "residual site: dropkit dropout_add (one pass)": _fwd_bwd(
            lambda: DF.dropout_add(x, r, p), [x], gx
        ),
        "residual site: add alone (no dropout)": _fwd_bwd(lambda: x + r, [x], gx),
        "eager attention, torch dropout": _fwd_bwd(eager(lambda w: F.dropout(w, p)), [q, k, v], go),
        "eager attention, dropkit dropout": _fwd_bwd(
            eager(lambda w: DF.dropout(w, p)), [q, k, v], go
        ),
        "eager attention, no dropout": _fwd_bwd(eager(lambda w: w), [q, k, v], go),
        "SDPA p=0.1 (torch: math path)": _fwd_bwd(
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p),
            [q, k, v],
            go,
        ),
        "SDPA p=0.1, dropkit's attention": _fwd_bwd(
            lambda: _gate_dropout.attention(q, k, v, is_causal=True, dropout_p=p), [q, k, v], go
        ),
        "SDPA p=0 (flash kernel)": _fwd_bwd(
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v], go
        ),
    }
    times: dict[str, list[float]] = {n: [] for n in rows}
    for _ in range(args.rounds):
        for n, fn in rows.items():
            times[n].append(_cpu_ms(fn, args.reps))
    print(
        f"per-thread CPU ms, forward + backward, medians of {args.rounds} x {args.reps} "
        f"(threads={torch.get_num_threads()})\n"
    )
    print("| site | ms | x sites per step | ms per step |")
    print("|---|---|---|---|")
    for n, ts in times.items():
        m = statistics.median(ts)
        sites = 9 if n.startswith("residual") else 4  # 2 per layer + the embedding; 1 per layer
        print(f"| {n} | {m:.2f} | {sites} | {m * sites:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_ops = sub.add_parser("ops")
    p_ops.add_argument("--attn", nargs="+", choices=("eager", "sdpa"), default=["eager", "sdpa"])
    p_ops.add_argument("--steps", type=int, default=2, help="profiled steps per round")
    p_ops.add_argument("--rounds", type=int, default=3)
    p_ops.add_argument("--min-ms", type=float, default=2.0, help="rows below this are left out")
    p_parts = sub.add_parser("parts")
    p_parts.add_argument("--reps", type=int, default=5)
    p_parts.add_argument("--rounds", type=int, default=3)
    for p in (p_ops, p_parts):
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"ops": ops, "parts": parts}[args.cmd](args)


if __name__ == "__main__":
    main()
