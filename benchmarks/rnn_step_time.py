"""Time per training step of dropkit's recurrent dropout LSTMs/GRUs against torch.nn.LSTM/GRU.

One step = forward, cross-entropy on the last output, backward, Adam step. The models are timed in
turn within each round (interleaved, so a change in machine load hits all of them alike; the order
reverses every other round), and the
median over rounds is reported with its ratio to nn.LSTM measured in the same run.

    python benchmarks/rnn_step_time.py --threads 1 [--mode GRU]

Issue 16's goal for the variational RNN (every dropout on) is printed beside its ratio: <= 1.3 at
H >= 256, <= 2 at smaller sizes. ``--plain`` times the step-by-step loop instead of the fused
recurrence (``dropkit.set_fast_dropout(False)``, which also turns off dropout's own kernels).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

import dropkit
import dropkit.nn as dnn


def make_models(args: argparse.Namespace) -> dict[str, nn.Module]:
    size = dict(input_size=args.input_size, hidden_size=args.hidden, num_layers=args.layers)
    p = dict(input_dropout=0.25, recurrent_dropout=0.25, output_dropout=0.25)
    if args.layers > 1:
        p["dropout"] = 0.25  # between layers (nn.LSTM warns about it for one layer)
    m = args.mode
    torch_rnn = getattr(nn, m)
    weight_drop, variational = getattr(dnn, f"WeightDrop{m}"), getattr(dnn, f"Variational{m}")
    models = {f"nn.{m}": torch_rnn(**size)}
    if args.layers > 1:
        models[f"nn.{m}(dropout=0.25)"] = torch_rnn(**size, dropout=0.25)
    models[f"WeightDrop{m}(weight_dropout=0.5)"] = weight_drop(**size, weight_dropout=0.5)
    models[f"Variational{m}(all p=0.25)"] = variational(**size, **p)
    if args.per_gate:
        models[f"Variational{m}(all p=0.25, per_gate)"] = variational(**size, **p, per_gate=True)
    return models


def step_fn(rnn: nn.Module, args: argparse.Namespace):
    head = nn.Linear(args.hidden, 10)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(args.seq_len, args.batch, args.input_size)
    y = torch.randint(10, (args.batch,))

    def step() -> None:
        out, _ = rnn(x)  # (T, N, H)
        loss = nn.functional.cross_entropy(head(out[-1]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=35)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=("LSTM", "GRU"), default="LSTM")
    parser.add_argument("--per-gate", action="store_true", help="also time per_gate=True")
    parser.add_argument("--plain", action="store_true", help="fast paths off (the plain loop)")
    parser.add_argument(
        "--only",
        help="time only the models whose names start with this (e.g. 'nn.LSTM' or 'Variational'): "
        "one model a process, no neighbour before it; the ratio needs nn.LSTM in the run",
    )
    args = parser.parse_args()
    dropkit.set_fast_dropout(not args.plain)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = make_models(args)
    if args.only:
        models = {k: m for k, m in models.items() if k.startswith(args.only)}
    steps = {name: step_fn(m.train(), args) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.warmup + args.rounds):
        # the order reverses every other round: a model timed right after another (nn.LSTM's
        # oneDNN kernel) can be slower, and each then follows a different one
        for name in names if r % 2 == 0 else names[::-1]:
            step = steps[name]
            start = time.perf_counter()
            step()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - start)
    ref = times.get(f"nn.{args.mode}")
    base = statistics.median(ref) if ref else None
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={args.threads}; {args.mode} T={args.seq_len} N={args.batch} "
        f"I={args.input_size} H={args.hidden} layers={args.layers}; median of {args.rounds} "
        f"rounds{'; plain loop' if args.plain else ''}\n"
    )
    goal = 1.3 if args.hidden >= 256 else 2.0
    print(f"| model | median ms/step | ratio vs nn.{args.mode} | goal |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        target = f"<= {goal}" if name.startswith("Variational") and "per_gate" not in name else ""
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"| {name} | {med * 1e3:.1f} | {ratio} | {target} |")


if __name__ == "__main__":
    main()
