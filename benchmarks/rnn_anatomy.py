"""Where the variational LSTM's training step goes against nn.LSTM's (issue 24), in three views.

    PYTHONPATH=src .venv/bin/python benchmarks/rnn_anatomy.py products [--threads 1]
    PYTHONPATH=src .venv/bin/python benchmarks/rnn_anatomy.py threads
    PYTHONPATH=src .venv/bin/python benchmarks/rnn_anatomy.py faults [--threads 1]

``products``: the matrix products of the recurrence (one step's (32, 256) x (256, 1024), the
input part (1120, 256) x (256, 1024), the weight gradient (1024, 1120) x (1120, 256)) with torch's
``addmm``/``mm`` (MKL's SGEMM) and with oneDNN (``ops/_torch.onednn_linear``; the step's weight
also packed), per-thread CPU time, GFLOP/s.

``threads``: one layer's fused recurrence, forward only (no grad; T=35, N=32, H=256, a recurrent
mask), at 2 intra-op threads, then the two halves of the batch on two Python threads with one
intra-op thread each, then at 1 thread (wall time; run it on a quiet machine). It ends by showing
that ``torch.set_num_threads(1)`` called in a worker thread sets the process's default (a thread
started afterwards gets one thread), which is why dropkit cannot split the batch that way behind
its user.

``faults``: forward + backward of ``VariationalLSTM`` (every rate 0.25) and ``nn.LSTM(dropout=0.25)``
(2 layers, T=35, N=32, I=128, H=256): wall time and minor page faults per iteration. Run it under
glibc's defaults, then with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``
(no faults) to see what the faults cost.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import dropkit.nn as dnn
from dropkit.ops import _torch
from dropkit.ops import rnn as R

T, N, IN, H = 35, 32, 128, 256


def _cpu_us(fn, k: int = 20) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(9):
        t0 = time.thread_time()
        for _ in range(k):
            fn()
        times.append((time.thread_time() - t0) / k)
    return statistics.median(times) * 1e6


def _wall_ms(fn, k: int = 5) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        times.append((time.perf_counter() - t0) / k)
    return statistics.median(times) * 1e3


def products(args) -> None:
    ops = _torch.onednn_linear()
    if ops is None:
        print("this torch has no oneDNN ops")
        return
    linear, linear_add, pack = ops
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4 * H, H, generator=g)
    h, add = torch.randn(N, H, generator=g), torch.randn(N, 4 * H, generator=g)
    x, wi = torch.randn(T * N, H, generator=g), torch.randn(4 * H, H, generator=g)
    d, hs = torch.randn(T * N, 4 * H, generator=g), torch.randn(T * N, H, generator=g)
    packed = pack(w, N)
    rows = [
        ("step (32,256)x(256,1024)+add: torch addmm (MKL)", 2 * N * H * 4 * H,
         lambda: torch.addmm(add, h, w.t())),
        ("same: oneDNN", 2 * N * H * 4 * H, lambda: linear_add(h, add, w)),
        ("same: oneDNN, weight packed", 2 * N * H * 4 * H, lambda: linear_add(h, add, packed)),
        ("input part (1120,256)x(256,1024): F.linear (MKL)", 2 * T * N * H * 4 * H,
         lambda: torch.nn.functional.linear(x, wi)),
        ("same: oneDNN", 2 * T * N * H * 4 * H, lambda: linear(x, wi)),
        ("weight grad (1024,1120)x(1120,256): mm, transposed operand (MKL)", 2 * T * N * H * 4 * H,
         lambda: d.t().mm(hs)),
        ("same: oneDNN, both operands transposed first", 2 * T * N * H * 4 * H,
         lambda: linear(d.t().contiguous(), hs.t().contiguous())),
    ]  # fmt: skip
    print(f"per-thread CPU time, threads={torch.get_num_threads()}\n")
    print("| product | us | GFLOP/s |")
    print("|---|---|---|")
    for name, flops, fn in rows:
        us = _cpu_us(fn, 20 if flops < 1e8 else 3)
        print(f"| {name} | {us:.1f} | {flops / us / 1e3:.0f} |")


def threads(args) -> None:
    g = torch.Generator().manual_seed(0)
    xg = torch.randn(T * N, 4 * H, generator=g)
    h0, c0 = torch.zeros(N, H), torch.zeros(N, H)
    w, b = torch.randn(4 * H, H, generator=g) * 0.05, torch.randn(4 * H, generator=g)
    mult = (torch.rand(1, N, H, generator=g) > 0.25).float() / 0.75
    xg3 = xg.view(T, N, 4 * H)
    halves = [
        (xg3[:, s].reshape(-1, 4 * H).contiguous(), h0[s], c0[s], mult[:, s])
        for s in (slice(0, N // 2), slice(N // 2, N))
    ]

    def full():
        R.recur("LSTM", xg, h0, c0, w, b, mult, False, None)

    def half(a):
        R.recur("LSTM", a[0], a[1], a[2], w, b, a[3], False, None)

    with torch.no_grad():
        torch.set_num_threads(2)
        two = _wall_ms(full)
        pool = ThreadPoolExecutor(2)
        list(pool.map(lambda _: torch.set_num_threads(1), range(2)))
        split = _wall_ms(lambda: list(pool.map(half, halves)))
        torch.set_num_threads(1)
        one = _wall_ms(full)
    print("one layer's recurrence, forward, no grad (wall ms):")
    print(f"  full batch, 2 intra-op threads: {two:.2f}")
    print(f"  two half batches on two Python threads, 1 intra-op thread each: {split:.2f}")
    print(f"  full batch, 1 intra-op thread: {one:.2f}")
    # torch.set_num_threads in one thread sets the process's default: a thread that starts
    # afterwards (a DataLoader's pin-memory thread, a user's worker) gets it
    torch.set_num_threads(2)
    worker = threading.Thread(target=lambda: torch.set_num_threads(1))
    worker.start()
    worker.join()
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    print(f"after torch.set_num_threads(1) in a worker thread, a thread started later has "
          f"{seen[0]} intra-op thread(s); the main thread, which set 2, has {torch.get_num_threads()}")  # fmt: skip


def faults(args) -> None:
    torch.manual_seed(0)
    rates = dict(input_dropout=0.25, recurrent_dropout=0.25, output_dropout=0.25, dropout=0.25)
    models = {
        "VariationalLSTM": dnn.VariationalLSTM(IN, H, 2, **rates).train(),
        "nn.LSTM(dropout=0.25)": torch.nn.LSTM(IN, H, 2, dropout=0.25).train(),
    }
    x = torch.randn(T, N, IN)
    print(f"forward + backward, threads={torch.get_num_threads()}, {args.iters} iterations\n")
    print("| model | wall ms | minor page faults |")
    print("|---|---|---|")
    for name, m in models.items():
        for _ in range(5):
            m(x)[0].sum().backward()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _ in range(args.iters):
            m(x)[0].sum().backward()
        ms = (time.perf_counter() - t0) / args.iters * 1e3
        flt = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.iters
        print(f"| {name} | {ms:.1f} | {flt:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cmd", choices=("products", "threads", "faults"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"products": products, "threads": threads, "faults": faults}[args.cmd](args)


if __name__ == "__main__":
    main()
