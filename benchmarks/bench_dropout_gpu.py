"""GPU (Triton) dropout vs PyTorch's CUDA dropout: forward+backward bandwidth and saved memory.

For float32 and bfloat16 at 16M and 64M elements (p=0.1 and 0.5) it times forward+backward of
``torch.nn.functional.dropout``, dropkit's dropout with ``save="bits"`` and ``save="seed"``, and the
fused ``dropout_add`` / ``bias_dropout_add`` against their unfused PyTorch composition. Each figure is
the median of CUDA-event timings over repeats, taken round-robin so that clock changes hit every
candidate alike; bandwidth is reported as a fraction of the device-to-device copy rate, i.e.
``time(x.clone()) * passes / time(candidate)``, where ``passes`` counts the tensor-sized reads and
writes the candidate needs at least (dropout fwd+bwd: read x, write y, read dy, write dx = 2 clones).
Saved-for-backward bytes per element come from ``torch.autograd.graph.saved_tensors_hooks``.

Every row also gives the bandwidth it reaches, ``GB/s`` (those minimum bytes over the time), and
that rate as a fraction of the device's peak memory bandwidth (``2 x memory clock x bus width``
from the device's properties, where torch reports them). The fused rows put dropkit's one-pass
kernels beside torch's eager composition and the same composition under ``torch.compile``
(inductor fuses it into one Triton kernel too; compiled once per shape before timing).

    .venv/bin/python benchmarks/bench_dropout_gpu.py              # needs a CUDA GPU and triton
    .venv/bin/python benchmarks/bench_dropout_gpu.py --sizes 16M --repeats 50 --json gpu.json
    scripts/gpu_check.sh                                          # the GPU tests, then this

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
DEVICE = "cuda"  # "cpu" with --smoke: every code path once on small CPU tensors, no figures
SIZES = {"16M": 2**24, "64M": 2**26}


def cuda_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turn with CUDA events."""
    for fn in fns.values():  # warm-up: compiles the kernels, fills the caching allocator
        fn()
        fn()
    if DEVICE != "cuda":  # --smoke: the code paths ran; no timing
        return {k: 1.0 for k in fns}
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


def peak_bandwidth() -> float | None:
    """The device's peak memory bandwidth in bytes/s (DDR: two transfers per clock), or None where
    torch does not report the memory clock and bus width."""
    if DEVICE != "cuda":
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def _rates(nbytes: float, seconds: float, peak: float | None) -> dict:
    gbs = nbytes / seconds
    return {"GB_s": gbs / 1e9, "peak_fraction": None if peak is None else gbs / peak}


def _saved(op) -> float:
    # bytes saved for backward, or NaN where they cannot be counted (a compiled graph that
    # refuses saved-tensor hooks)
    try:
        return saved_bytes(op)
    except Exception:  # noqa: BLE001 - any refusal: report it as not measured
        return float("nan")


def bench_dropout(n: int, dtype: torch.dtype, p: float, repeats: int) -> list[dict]:
    x = torch.randn(n, device=DEVICE, dtype=dtype, requires_grad=True)
    g = torch.randn(n, device=DEVICE, dtype=dtype)

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
    peak = peak_bandwidth()
    nbytes = 4 * n * x.element_size()  # read x, write y, read dy, write dx
    rows = []
    for name, op in ops.items():
        rows.append(
            {
                "case": f"dropout p={p}",
                "candidate": name,
                "ms": t[name] * 1e3,
                "copy_fraction": 2 * t["clone"] / t[name],  # fwd+bwd moves 2 tensors' worth twice
                **_rates(nbytes, t[name], peak),
                "vs_torch": t["F.dropout"] / t[name],
                "saved_B_per_elem": saved_bytes(lambda op=op: op(x)) / n,
            }
        )
    return rows


def bench_fused(n: int, dtype: torch.dtype, p: float, repeats: int) -> list[dict]:
    h = 4096
    shape = (n // h, h)
    x = torch.randn(shape, device=DEVICE, dtype=dtype, requires_grad=True)
    r = torch.randn(shape, device=DEVICE, dtype=dtype, requires_grad=True)
    b = torch.randn(h, device=DEVICE, dtype=dtype, requires_grad=True)
    g = torch.randn(shape, device=DEVICE, dtype=dtype)

    def run(op):
        def step():
            x.grad = r.grad = b.grad = None
            op().backward(g)

        return step

    bias_residual = torch.compile(lambda x, b, r: F.dropout(x + b, p) + r)
    residual = torch.compile(lambda x, r: F.dropout(x, p) + r)
    ops = {
        "torch: F.dropout(x + b) + r": lambda: F.dropout(x + b, p) + r,
        "torch compiled: F.dropout(x + b) + r": lambda: bias_residual(x, b, r),
        "dropkit bias_dropout_add": lambda: DF.bias_dropout_add(x, b, r, p),
        "torch: F.dropout(x) + r": lambda: F.dropout(x, p) + r,
        "torch compiled: F.dropout(x) + r": lambda: residual(x, r),
        "dropkit dropout_add": lambda: DF.dropout_add(x, r, p),
    }
    with dropkit.use_fast_dropout(True, save="bits", min_numel=1):
        fns = {"clone": lambda: x.detach().clone()} | {k: run(op) for k, op in ops.items()}
        t = cuda_times(fns, repeats)  # its warm-up calls compile the two graphs
        saved = {k: _saved(op) / n for k, op in ops.items()}
    eager = {
        name: ("torch: F.dropout(x + b) + r" if "x + b" in name or "bias" in name
               else "torch: F.dropout(x) + r")
        for name in ops
    }  # fmt: skip
    compiled = {name: ref.replace("torch:", "torch compiled:") for name, ref in eager.items()}
    peak = peak_bandwidth()
    # fwd reads x, r and writes y (3 passes); bwd reads dy and writes dx (2; dr = dy is free)
    nbytes = 5 * n * x.element_size()
    return [
        {
            "case": f"fused p={p}",
            "candidate": name,
            "ms": t[name] * 1e3,
            "copy_fraction": 2.5 * t["clone"] / t[name],
            **_rates(nbytes, t[name], peak),
            "vs_torch": t[eager[name]] / t[name],
            "vs_compiled": t[compiled[name]] / t[name],
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
    parser.add_argument(
        "--smoke", action="store_true", help="run every code path once on small CPU tensors"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        return _smoke()
    if not torch.cuda.is_available():
        print("bench_dropout_gpu: no CUDA device is available; this benchmark needs a GPU")
        return 2
    from dropkit.ops import cuda as _fast_cuda

    if _fast_cuda._kernels() is None:
        print("bench_dropout_gpu: triton cannot be imported (pip install 'dropkit[gpu]')")
        return 2
    peak = peak_bandwidth()
    peak_txt = "not reported" if peak is None else f"{peak / 1e9:.0f} GB/s"
    print(
        f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton "
        f"{_triton_version()}; peak memory bandwidth {peak_txt}; medians of {args.repeats}"
    )
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
        "| size | dtype | case | candidate | ms | GB/s | fraction of peak bandwidth | fraction of "
        "copy rate | speed-up vs torch eager | vs torch compiled | saved B/elem |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        frac = "-" if r["peak_fraction"] is None else f"{r['peak_fraction']:.2f}"
        vs_c = f"{r['vs_compiled']:.2f}x" if "vs_compiled" in r else "-"
        print(
            f"| {r['size']} | {r['dtype']} | {r['case']} | {r['candidate']} | {r['ms']:.3f} "
            f"| {r['GB_s']:.0f} | {frac} | {r['copy_fraction']:.2f} | {r['vs_torch']:.2f}x "
            f"| {vs_c} | {r['saved_B_per_elem']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def _smoke() -> int:
    """Every candidate once on CPU tensors (the fast path's CPU kernels, inductor's C++ code):
    the script's code runs before a GPU is there to time it. Prints no figures."""
    global DEVICE
    DEVICE = "cpu"
    rows = bench_dropout(2**16, torch.float32, 0.1, 1) + bench_fused(2**16, torch.float32, 0.1, 1)
    print(f"bench_dropout_gpu --smoke: {len(rows)} rows ran on CPU; no figures (no GPU)")
    return 0


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


if __name__ == "__main__":
    sys.exit(main())
