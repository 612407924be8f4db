"""Where Gaussian dropout's fast path spends its time: forward+backward against dropout's, and one
pass's two parts (the Philox words; the Box-Muller transform and the product), on a (1024, 4096)
float32 tensor at 1 thread; and the same op keeping its noise for backward instead of regenerating
it (the bound on what trading 4 B per element could buy). Per-thread CPU time
(``time.thread_time``), which other processes on a shared machine disturb less, and wall time.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/gaussian_anatomy.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import dropkit.functional as DF
from dropkit.kernels import cpu_family as cf
from dropkit.kernels._hugepages import empty_like

_B = cf.BLOCK


@cf._jit_np
def _words_only(n, k0, k1):
    # the Philox words of every block, as the kernel makes them (kept live by a checksum)
    words = np.empty(_B, np.uint32)
    acc = 0
    for blk in range((n + _B - 1) // _B):
        cf._words_block(blk, k0, k1, words)
        acc += words[blk % _B]
    return acc


@cf._jit_np
def _transform_only(x, out, std, one):
    # the Box-Muller transform and the product over every block, from one fixed block of words
    words = np.empty(_B, np.uint32)
    radius = np.empty(_B // 4, x.dtype)
    for i in range(_B):
        words[i] = np.uint32(i * 2654435761 % 4294967296)
    for blk in range(x.size // _B):
        cf._gauss_block(words, radius, x, out, x[:0], blk * _B, std, one)


class _NoiseKept(torch.autograd.Function):
    """The alternative to regenerating: the kernel also writes the noise in the forward pass
    (``gaussian_mul(keep=True)``), autograd keeps it (4 B per float32 element, as
    ``x * noise`` does in torch) and backward is one product. Not what dropkit does: the bound on
    what keeping the noise could buy."""

    @staticmethod
    def forward(ctx, x, seed, std):
        out, noise = cf.gaussian_mul(x, seed, std, keep=True)
        ctx.save_for_backward(noise)
        return out

    @staticmethod
    def backward(ctx, grad):
        (noise,) = ctx.saved_tensors
        return torch.mul(grad, noise, out=empty_like(grad)), None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(1024, 4096, requires_grad=True)
    g = torch.randn(1024, 4096)
    xs, out = x.detach().numpy().reshape(-1), np.empty(x.numel(), np.float32)

    def step(op):
        def run():
            x.grad = None
            op(x).backward(g)

        return run

    cands = {
        "gaussian_dropout forward+backward": step(lambda t: DF.gaussian_dropout(t, 0.1)),
        "dropout forward+backward": step(lambda t: DF.dropout(t, 0.1)),
        "noise kept instead (4 B per element) forward+backward": step(
            lambda t: _NoiseKept.apply(t, 5, 1 / 3)
        ),
        "one pass: Philox words": lambda: _words_only(xs.size, np.uint64(5), np.uint64(0)),
        "one pass: Box-Muller and product": lambda: _transform_only(
            xs, out, np.float32(0.33), np.float32(1.0)
        ),
    }
    cpu: dict[str, list[float]] = {k: [] for k in cands}
    wall: dict[str, list[float]] = {k: [] for k in cands}
    for fn in cands.values():
        fn()
    for _ in range(args.reps):
        for name, fn in cands.items():
            t0, w0 = time.thread_time(), time.perf_counter()
            fn()
            cpu[name].append(time.thread_time() - t0)
            wall[name].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
    for k, v in med.items():
        print(f"{k}: {v:.2f} ms CPU, {med_wall[k]:.2f} ms wall")
    for label, m in (("CPU", med), ("wall", med_wall)):
        drop = m["dropout forward+backward"]
        gauss = m["gaussian_dropout forward+backward"]
        kept = m["noise kept instead (4 B per element) forward+backward"]
        print(f"{label}: gaussian_dropout / dropout {gauss / drop:.2f}, ", end="")
        print(f"noise kept instead / dropout {kept / drop:.2f}")


if __name__ == "__main__":
    main()
