"""GPU (Triton) dropout vs PyTorch's CUDA dropout: forward+backward bandwidth and saved memory.

For float32 and bfloat16 at 16M and 64M elements (p=0.1 and 0.5) it times forward+backward of
``torch.nn.functional.dropout``, dropkit's dropout with ``save="bits"`` and ``save="seed"``, and the
fused ``dropout_add`` / ``bias_dropout_add`` against their unfused PyTorch composition. Each figure is
the median of CUDA-event timings over repeats, taken round-robin so that clock changes hit every
candidate alike; bandwidth is reported as a fraction of the device-to-device copy rate, i.e.
``time(x.clone()) * passes / time(candidate)``, where ``passes`` counts the tensor-sized reads and
writes the candidate needs at least (dropout fwd+bwd: read x, write y, read dy, write dx = 2 clones).
Saved-for-backward bytes per element come from ``torch.autograd.graph.saved_tensors_hooks``.

    .venv/bin/python benchmarks/bench_dropout_gpu.py              # needs a CUDA GPU and triton
    .venv/bin/python benchmarks/bench_dropout_gpu.py --sizes 16M --repeats 50 --json gpu.json

Exits with status 2 and a message when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import fwd_bwd, saved_bytes

import dropkit
import dropkit.functional as DF

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SIZES = {"16M": 2**24, "64M": 2**26}


def cuda_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turn with CUDA events."""
    for fn in fns.values():  # warm-up: compiles the kernels, fills the caching allocator
        fn()
        fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_dropout(n: int, dtype: torch.dtype, p: float, repeats: int) -> list[dict]:
    x = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(n, device="cuda", dtype=dtype)

    def ours(save: str):
        def op(t):
            with dropkit.use_fast_dropout(True, save=save, min_numel=1):
                return DF.dropout(t, p)

        return op

    ops = {
        "F.dropout": lambda t: F.dropout(t, p),
        "dropkit bits": ours("bits"),
        "dropkit seed": ours("seed"),
    }
    fns = {"clone": lambda: x.detach().clone()} | {k: fwd_bwd(op, x, g) for k, op in ops.items()}
    t = cuda_times(fns, repeats)
    rows = []
    for name, op in ops.items():
        rows.append(
            {
                "case": f"dropout p={p}",
                "candidate": name,
                "ms": t[name] * 1e3,
                "copy_fraction": 2 * t["clone"] / t[name],  # fwd+bwd moves 2 tensors' worth twice
                "vs_torch": t["F.dropout"] / t[name],
                "saved_B_per_elem": saved_bytes(lambda op=op: op(x)) / n,
            }
        )
    return rows


def bench_fused(n: int, dtype: torch.dtype, p: float, repeats: int) -> list[dict]:
    h = 4096
    shape = (n // h, h)
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    r = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(h, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(shape, device="cuda", dtype=dtype)

    def run(op):
        def step():
            x.grad = r.grad = b.grad = None
            op().backward(g)

        return step

    ops = {
        "torch: F.dropout(x + b) + r": lambda: F.dropout(x + b, p) + r,
        "dropkit bias_dropout_add": lambda: DF.bias_dropout_add(x, b, r, p),
        "torch: F.dropout(x) + r": lambda: F.dropout(x, p) + r,
        "dropkit dropout_add": lambda: DF.dropout_add(x, r, p),
    }
    with dropkit.use_fast_dropout(True, save="bits", min_numel=1):
        fns = {"clone": lambda: x.detach().clone()} | {k: run(op) for k, op in ops.items()}
        t = cuda_times(fns, repeats)
        saved = {k: saved_bytes(op) / n for k, op in ops.items()}
    baseline = {
        "dropkit bias_dropout_add": "torch: F.dropout(x + b) + r",
        "dropkit dropout_add": "torch: F.dropout(x) + r",
    }
    # fwd reads x, r and writes y (3 passes); bwd reads dy and writes dx (2; dr = dy is free)
    return [
        {
            "case": f"fused p={p}",
            "candidate": name,
            "ms": t[name] * 1e3,
            "copy_fraction": 2.5 * t["clone"] / t[name],
            "vs_torch": t[baseline.get(name, name)] / t[name],
            "saved_B_per_elem": saved[name],
        }
        for name in ops
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--ps", nargs="+", type=float, default=[0.1, 0.5])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_dropout_gpu: no CUDA device is available; this benchmark needs a GPU")
        return 2
    from dropkit.ops import cuda as _fast_cuda

    if _fast_cuda._kernels() is None:
        print("bench_dropout_gpu: triton cannot be imported (pip install 'dropkit[gpu]')")
        return 2
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for size in args.sizes:
        for dtype_name in args.dtypes:
            for p in args.ps:
                n, dtype = SIZES[size], DTYPES[dtype_name]
                for row in bench_dropout(n, dtype, p, args.repeats) + bench_fused(
                    n, dtype, p, args.repeats
                ):
                    rows.append({"size": size, "dtype": dtype_name, **row})
    print(
        "| size | dtype | case | candidate | ms | fraction of copy rate | speed-up vs torch | saved B/elem |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['dtype']} | {r['case']} | {r['candidate']} | {r['ms']:.3f} "
            f"| {r['copy_fraction']:.2f} | {r['vs_torch']:.2f}x | {r['saved_B_per_elem']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
