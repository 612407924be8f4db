"""Issue 24: a timm vision model's training step with drop_path, torch/timm's against dropkit's, with
peak memory.

A timm model built from its config (no weights; default ``vit_tiny_patch16_224``, or
``resnet50``), ``drop_path_rate=0.1`` (stochastic depth, timm's ``DropPath``), one step = forward,
cross-entropy, backward, SGD step, on a batch of random images. Three models with the same weights:

* ``timm``: as built; ``dropkit``: after ``dropkit.nn.convert_dropout(model)`` (dropkit's
  ``DropPath``); ``none``: every rate 0 (``dropkit.nn.set_dropout_p(model, 0.0)``).

Times: the steps of the three in turn within each round, a new random order every round; medians
and drop_path's share of the step, (median - median of ``none``) / median of ``none``. Memory: each
variant runs ``--mem-steps`` steps in a fresh process of its own, which reports how far its peak
resident set size (``ru_maxrss``) rose above the size before the first step (on CUDA:
``torch.cuda.max_memory_allocated`` above the allocation before it), and the bytes autograd saved for
backward in one step (``saved_tensors_hooks``).

    PYTHONPATH=src /work/venv-vision/bin/python benchmarks/vision_step.py [--model resnet50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import warnings

import torch
from _common import saved_bytes
from gpt2_step import interleaved

import dropkit.nn as dnn

VARIANTS = ("none", "timm", "dropkit")


def make_models(name: str) -> dict[str, torch.nn.Module]:
    import timm

    torch.manual_seed(0)
    base = timm.create_model(name, drop_path_rate=0.1, num_classes=100).train()
    models = {"timm": base}
    none = _copy(base)
    dnn.set_dropout_p(none, 0.0)
    models["none"] = none
    converted = _copy(base)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dnn.ConversionWarning)  # everything converts
        models["dropkit"] = dnn.convert_dropout(converted)
    return models


def _copy(model):
    import copy

    return copy.deepcopy(model)


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _batch(args, device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=g).to(device)
    y = torch.randint(100, (args.batch,), generator=g).to(device)
    return x, y


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def memory_child(args) -> None:
    """One variant in this process: its peak memory over ``--mem-steps`` steps, as JSON."""
    device = torch.device(args.device)
    model = make_models(args.model)[args.memory_child].to(device)
    x, y = _batch(args, device)
    step = step_fn(model, x, y)
    saved = saved_bytes(lambda: torch.nn.functional.cross_entropy(model(x), y))
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _rss_kib() * 1024
    for _ in range(args.mem_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss: KiB on Linux, the process's peak so far (the steps raise it)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_above_start": peak - before, "saved": saved}))


def _memory(args, variant: str) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", variant, "--model", args.model,
           "--batch", str(args.batch), "--img-size", str(args.img_size), "--device", args.device,
           "--threads", str(args.threads), "--mem-steps", str(args.mem_steps)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mem-steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="times only")
    parser.add_argument("--memory-child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    device = torch.device(args.device)
    x, y = _batch(args, device)
    models = make_models(args.model)
    steps = {v: step_fn(models[v].to(device), x, y) for v in VARIANTS}
    if device.type == "cuda":
        steps = {v: (lambda s=s: (s(), torch.cuda.synchronize())) for v, s in steps.items()}
    times = interleaved(steps, args.rounds, args.warmup)
    mem = {} if args.no_memory else {v: _memory(args, v) for v in VARIANTS}
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.device}, threads={args.threads}; timm {args.model}, drop_path_rate 0.1, batch "
        f"{args.batch} x {args.img_size}^2, SGD step; medians of {args.rounds} interleaved rounds\n"
    )
    print("| variant | median ms/step | p10-p90 ms | drop_path's share | peak memory above start, "
          "MiB | saved for backward, MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    base = statistics.median(times["none"])
    for v in VARIANTS:
        med = statistics.median(times[v])
        q = statistics.quantiles(times[v], n=10)
        m = mem.get(v)
        peak = f"{m['peak_above_start'] / 2**20:.0f}" if m else "-"
        saved = f"{m['saved'] / 2**20:.1f}" if m else "-"
        print(
            f"| {v} | {med * 1e3:.1f} | {q[0] * 1e3:.0f}-{q[8] * 1e3:.0f} | "
            f"{med / base - 1:+.1%} | {peak} | {saved} |"
        )


if __name__ == "__main__":
    main()
