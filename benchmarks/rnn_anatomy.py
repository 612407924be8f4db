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

``pack``: VariationalLSTM's forward + backward with the recurrence's weight as it is and packed for
oneDNN once per sequence (``ops.rnn.PACK_WEIGHT``, the default; the products' own rows are in
``products``), interleaved with ``nn.LSTM``'s, each timed right after it in every other round.

``gaps``: the step's product timed back to back and with a busy wait of 10 to 100 us between calls
(the recurrence's loop runs Python and the kernel between products).

``compile``: the first training step of a small VariationalLSTM in a fresh process with an empty
numba cache (the step kernels compile), then with the cache filled.

``step``: one LSTM step's element-wise work (T=35 steps of N=32, H=256, float32, a recurrent mask),
forward and backward: torch's operators as ``ops/rnn.py`` calls them where the CPU kernel does not
apply (nine calls forward, five backward; the gate factors of the backward precomputed for all
steps, not counted) against the one call of ``kernels/cpu_rnn.py``; wall microseconds per step, over
a sequence's fresh buffers ("streaming") and on one step's buffers again and again ("hot").

``faults``: forward + backward of ``VariationalLSTM`` (every rate 0.25) and ``nn.LSTM(dropout=0.25)``
(2 layers, T=35, N=32, I=128, H=256): wall time and minor page faults per iteration. Run it under
glibc's defaults, then with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``
(no faults) to see what the faults cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
    print("\n| not a product | us |\n|---|---|")
    others = [
        ("packing the step's weight (once per sequence, forward and backward)", lambda: pack(w, N)),
        ("transposing the gates' gradient (1120, 1024) for a weight gradient",
         lambda: d.t().contiguous()),
    ]  # fmt: skip
    for name, fn in others:
        print(f"| {name} | {_cpu_us(fn, 5):.1f} |")


def pack(args) -> None:
    """Training steps of VariationalLSTM with the recurrence's weight as it is and packed for
    oneDNN once per sequence (``ops.rnn.PACK_WEIGHT``, the default), interleaved with nn.LSTM's;
    median ms per step."""
    torch.manual_seed(0)
    rates = dict(input_dropout=0.25, recurrent_dropout=0.25, output_dropout=0.25, dropout=0.25)
    var, ref = dnn.VariationalLSTM(IN, H, 2, **rates), torch.nn.LSTM(IN, H, 2)
    x = torch.randn(T, N, IN)
    runs = {
        "nn.LSTM": (ref, False),
        "VariationalLSTM, plain weight": (var, False),
        "VariationalLSTM, weight packed": (var, True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    a, b, c = runs
    for r in range(18):
        # a model timed right after nn.LSTM's was slower here: each of the two follows it in
        # every other round
        for name in (a, b, c) if r % 2 else (a, c, b):
            model, R.PACK_WEIGHT = runs[name]
            t0 = time.perf_counter()
            model(x)[0][-1].sum().backward()
            if r >= 3:
                times[name].append(time.perf_counter() - t0)
    R.PACK_WEIGHT = True
    print(f"forward + backward, threads={torch.get_num_threads()}, median of 15\n")
    print("| model | ms |\n|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1e3:.1f} |")


def gaps(args) -> None:
    """The step's product with other work between calls, as in the recurrence's loop."""
    linear = _torch.onednn_linear()[0]
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(N, H, generator=g), torch.randn(4 * H, H, generator=g)
    print(f"(32, 256) x (256, 1024) on oneDNN, threads={torch.get_num_threads()}: wall us per")
    print("product (median of 2000) with a busy wait of the given length between products\n")
    print("| gap us | product us |\n|---|---|")
    for gap in (0, 10, 30, 100):
        times = []
        for _ in range(2000):
            t0 = time.perf_counter()
            linear(h, w)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            while time.perf_counter() < t1 + gap * 1e-6:
                pass
        print(f"| {gap} | {statistics.median(times) * 1e6:.1f} |")


_FIRST_STEP = """
import time, torch, dropkit.nn as dnn
m = dnn.VariationalLSTM(16, 32, 1, recurrent_dropout=0.25)
x = torch.randn(5, 4, 16)
t0 = time.perf_counter(); m(x)[0].sum().backward()
print(f"{time.perf_counter() - t0:.2f}")
"""


def compile_time(args) -> None:
    """The first training step of a small VariationalLSTM in a fresh process: with an empty numba
    cache (the kernels compile), then with the cache that run filled."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        print("| numba cache | first step s |\n|---|---|")
        for label in ("empty", "filled"):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_STEP], env=env, capture_output=True, text=True
            )
            print(f"| {label} | {out.stdout.strip() or out.stderr.strip()[-200:]} |")


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


def step(args) -> None:
    from dropkit.kernels import cpu_rnn

    g = torch.Generator().manual_seed(0)
    hid = H
    xg, pre = torch.randn(T, N, 4 * H, generator=g), torch.randn(T, N, 4 * H, generator=g)
    bias = torch.randn(4 * H, generator=g)
    mult = (torch.rand(N, H, generator=g) >= 0.25).float() / 0.75
    gates, d_pre, b = (torch.empty(T, N, 4 * H) for _ in range(3))
    c_in, tanh_c, out, h_in, d_out, a = (torch.randn(T, N, H, generator=g) for _ in range(6))
    c_last, tmp, dc, dh = (torch.randn(N, H, generator=g) for _ in range(4))
    d_in = torch.randn(N, H, generator=g)

    def fwd_torch(t):
        # ops/rnn.py's loop without the kernel: the product's output is x_gates + b_hh + w h here
        p = pre[t] + xg[t]
        torch.sigmoid(p[:, : 2 * hid], out=gates[t, :, : 2 * hid])
        torch.tanh(p[:, 2 * hid : 3 * hid], out=gates[t, :, 2 * hid : 3 * hid])
        torch.sigmoid(p[:, 3 * hid :], out=gates[t, :, 3 * hid :])
        c_new = c_in[t + 1] if t + 1 < T else c_last
        torch.mul(gates[t, :, hid : 2 * hid], c_in[t], out=c_new)
        c_new.add_(torch.mul(gates[t, :, :hid], gates[t, :, 2 * hid : 3 * hid], out=tmp))
        torch.tanh(c_new, out=tanh_c[t])
        torch.mul(gates[t, :, 3 * hid :], tanh_c[t], out=out[t])
        if t + 1 < T:
            torch.mul(out[t], mult, out=h_in[t + 1])

    def fwd_kernel(t):
        c_new = c_in[t + 1] if t + 1 < T else c_last
        h_next = h_in[t + 1] if t + 1 < T else None
        args = (pre[t], xg[t], bias, c_in[t], c_new, gates[t], tanh_c[t], out[t], h_next, mult)
        cpu_rnn.lstm_step_forward(*args)

    def bwd_torch(t):
        torch.addcmul(d_out[t], d_in, mult, out=dh)
        dc.addcmul_(dh, a[t])
        torch.mul(dc.unsqueeze(1), b[t, :, : 3 * hid].unflatten(-1, (3, hid)),
                  out=d_pre[t, :, : 3 * hid].unflatten(-1, (3, hid)))  # fmt: skip
        torch.mul(dh, b[t, :, 3 * hid :], out=d_pre[t, :, 3 * hid :])
        dc.mul_(gates[t, :, hid : 2 * hid])

    def bwd_kernel(t):
        cpu_rnn.lstm_step_backward(gates[t], c_in[t], tanh_c[t], d_out[t], d_in, mult, dc, d_pre[t])

    gates.copy_(torch.rand(T, N, 4 * H, generator=g))
    b.copy_(gates)
    print(f"one step's element-wise work, N={N} H={H} float32, threads={torch.get_num_threads()}")
    print("(wall us per step, median of 9)\n")
    print("| | torch's operators | dropkit kernel |")
    print("|---|---|---|")
    for name, (f_t, f_k) in {
        "forward": (fwd_torch, fwd_kernel),
        "backward": (bwd_torch, bwd_kernel),
    }.items():
        for mode, steps in (("streaming", range(T)), ("hot", [0] * T)):
            cells = []
            for f in (f_t, f_k):
                cells.append(_wall_ms(lambda f=f, s=steps: [f(t) for t in s]) / T * 1e3)
            print(f"| {name}, {mode} | {cells[0]:.1f} | {cells[1]:.1f} |")


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
    choices = ("products", "pack", "gaps", "threads", "step", "compile", "faults")
    parser.add_argument("cmd", choices=choices)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    views = dict(products=products, pack=pack, gaps=gaps, threads=threads, step=step, faults=faults)
    views["compile"] = compile_time
    views[args.cmd](args)


if __name__ == "__main__":
    main()
