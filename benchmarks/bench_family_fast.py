"""Issue 16: the dropout family against its yardstick and its peers, each row beside its goal.

Every row times forward + ``backward(g)`` of each candidate on one tensor, the candidates in turn
within each repetition (so a change in machine load hits them alike), and reports medians and the
ratio the goal is about. timm and torchvision rows appear where those packages import (run it with
/work/venv-vision's Python and ``PYTHONPATH=src`` to get them); the recurrent rows are in
``rnn_step_time.py``.

    python benchmarks/bench_family_fast.py [--threads 1] [--reps 7] [--only dropblock,alpha]
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import dropkit
import dropkit.functional as DF

try:
    import timm.layers as timm_layers
except ImportError:  # pragma: no cover - optional peer
    timm_layers = None
try:
    import torchvision.ops as tv_ops
except ImportError:  # pragma: no cover - optional peer
    tv_ops = None


def _step(op, x, g):
    def run():
        x.grad = None
        op(x).backward(g)

    return run


def _time(cands: dict, reps: int) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in turn within each repetition."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    for fn in cands.values():
        fn()  # warm-up (and numba compilation)
    for _ in range(reps):
        for name, fn in cands.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _rows(args):
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        x = torch.randn(*shape, generator=g).requires_grad_()
        return x, torch.randn(*shape, generator=g)

    fmap, fmap_g = t(64, 64, 32, 32)
    vol, vol_g = t(16, 32, 16, 16, 16)
    dense, dense_g = t(1024, 4096)
    seq, seq_g = t(35, 64, 1024)
    dropout = lambda p: lambda x: DF.dropout(x, p)  # noqa: E731

    # (section, row name, x, grad, {candidate: op}, (numerator, denominator, goal) ...)
    db = {
        "dropkit dropblock2d": lambda x: DF.dropblock2d(x, 0.1, block_size=7),
        "dropkit dropout": dropout(0.1),
    }
    checks = [("dropkit dropblock2d", "dropkit dropout", "<= 2")]
    # timm 1.0's drop_block_2d shares one pattern across channels by default (couple_channels):
    # it is the peer of share_channels=True; couple_channels=False is the peer of the default
    timm_coupled = (
        timm_layers is not None
        and "couple_channels" in inspect.signature(timm_layers.drop_block_2d).parameters
    )
    if timm_coupled:
        db["timm drop_block_2d(couple_channels=False)"] = lambda x: timm_layers.drop_block_2d(
            x, 0.1, 7, couple_channels=False
        )
        checks.append(("timm drop_block_2d(couple_channels=False)", "dropkit dropblock2d", ">= 5"))
    elif timm_layers is not None:  # older timm: one pattern per channel
        db["timm drop_block_2d"] = lambda x: timm_layers.drop_block_2d(x, 0.1, 7)
        checks.append(("timm drop_block_2d", "dropkit dropblock2d", ">= 5"))
    if tv_ops is not None:
        db["torchvision drop_block2d"] = lambda x: tv_ops.drop_block2d(x, 0.1, 7)
        checks.append(("torchvision drop_block2d", "dropkit dropblock2d", ">= 5"))
    yield "dropblock", "DropBlock2d p=0.1 b=7", fmap, fmap_g, db, checks
    db_share = {
        "dropkit dropblock2d(share_channels)": lambda x: DF.dropblock2d(
            x, 0.1, block_size=7, share_channels=True
        ),
        "dropkit dropout": dropout(0.1),
    }
    checks_share = [("dropkit dropblock2d(share_channels)", "dropkit dropout", "<= 2")]
    if timm_coupled:
        db_share["timm drop_block_2d (channels coupled: its default)"] = lambda x: (
            timm_layers.drop_block_2d(x, 0.1, 7)
        )
        checks_share.append(
            (
                "timm drop_block_2d (channels coupled: its default)",
                "dropkit dropblock2d(share_channels)",
                ">= 5",
            )
        )
    yield (
        "dropblock",
        "DropBlock2d p=0.1 b=7, shared channels",
        fmap,
        fmap_g,
        db_share,
        checks_share,
    )
    db3 = {
        "dropkit dropblock3d": lambda x: DF.dropblock3d(x, 0.1, block_size=3),
        "dropkit dropout": dropout(0.1),
    }
    checks3 = [("dropkit dropblock3d", "dropkit dropout", "<= 2")]
    if tv_ops is not None:
        db3["torchvision drop_block3d"] = lambda x: tv_ops.drop_block3d(x, 0.1, 3)
        checks3.append(("torchvision drop_block3d", "dropkit dropblock3d", ">= 5"))
    yield "dropblock", "DropBlock3d p=0.1 b=3", vol, vol_g, db3, checks3

    yield (
        "alpha",
        "alpha dropout p=0.1",
        dense,
        dense_g,
        {
            "dropkit alpha_dropout": lambda x: DF.alpha_dropout(x, 0.1),
            "dropkit dropout": dropout(0.1),
            "torch alpha_dropout": lambda x: F.alpha_dropout(x, 0.1, True),
        },
        [
            ("dropkit alpha_dropout", "dropkit dropout", "<= 1.3"),
            ("dropkit alpha_dropout", "torch alpha_dropout", ""),
        ],
    )
    yield (
        "alpha",
        "feature alpha dropout p=0.1",
        fmap,
        fmap_g,
        {
            "dropkit feature_alpha_dropout": lambda x: DF.feature_alpha_dropout(x, 0.1),
            "dropkit dropout": dropout(0.1),
            "torch feature_alpha_dropout": lambda x: F.feature_alpha_dropout(x, 0.1, True),
        },
        [
            ("dropkit feature_alpha_dropout", "dropkit dropout", "<= 1.3"),
            ("dropkit feature_alpha_dropout", "torch feature_alpha_dropout", ""),
        ],
    )
    yield (
        "gaussian",
        "Gaussian dropout p=0.1",
        dense,
        dense_g,
        {
            "dropkit gaussian_dropout": lambda x: DF.gaussian_dropout(x, 0.1),
            "dropkit dropout": dropout(0.1),
            "torch x * (1 + std * randn_like(x))": lambda x: (
                x * (torch.randn_like(x).mul_(1 / 3).add_(1))
            ),
            "torch normal_ alone (the draw)": lambda x: (
                torch.empty_like(x).normal_().requires_grad_()
            ),
        },
        [
            ("dropkit gaussian_dropout", "dropkit dropout", "<= 1.6"),
            ("torch x * (1 + std * randn_like(x))", "dropkit gaussian_dropout", ""),
            ("torch normal_ alone (the draw)", "dropkit dropout", "floor"),
        ],
    )

    # DropConnect, one mask per sample, batch 32: a plain layer, dropkit, and the two parts any
    # per-sample implementation pays (drawing N weight masks; N matrix-vector products)
    lin_x, lin_g = t(32, 256)
    w = torch.randn(256, 256, generator=g).requires_grad_()
    masked_w = torch.randn(32, 256, 256, generator=g)
    yield (
        "dropconnect",
        "DropConnect linear 256->256, per sample, batch 32",
        lin_x,
        lin_g,
        {
            "dropkit dropconnect_linear(per_sample)": lambda x: DF.dropconnect_linear(
                x, w, None, 0.3, per_sample=True
            ),
            "torch linear": lambda x: F.linear(x, w),
            "per-sample matvecs alone (bmm, masks given)": lambda x: torch.bmm(
                masked_w, x.unsqueeze(2)
            ).squeeze(2),
            "drawing 32 weight masks alone (dropkit dropout)": lambda x: (
                x + DF.dropout(masked_w, 0.3)[:, 0]
            ),
        },
        [
            ("dropkit dropconnect_linear(per_sample)", "torch linear", "<= 2"),
            ("per-sample matvecs alone (bmm, masks given)", "torch linear", "floor"),
            ("drawing 32 weight masks alone (dropkit dropout)", "torch linear", "floor"),
        ],
    )
    conv_x, conv_g = t(32, 16, 16, 16)
    cw = torch.randn(16, 16, 3, 3, generator=g).requires_grad_()
    yield (
        "dropconnect",
        "DropConnect conv 16->16 3x3, per sample, batch 32",
        conv_x,
        conv_g,
        {
            "dropkit dropconnect_conv(per_sample)": lambda x: DF.dropconnect_conv(
                x, cw, None, 0.3, padding=1, per_sample=True
            ),
            "torch conv2d": lambda x: F.conv2d(x, cw, None, padding=1),
            "grouped conv alone (masks given)": lambda x: F.conv2d(
                x.reshape(1, -1, 16, 16), cw.detach().repeat(32, 1, 1, 1), padding=1, groups=32
            ).view(32, 16, 16, 16),
        },
        [
            ("dropkit dropconnect_conv(per_sample)", "torch conv2d", "<= 2"),
            ("grouped conv alone (masks given)", "torch conv2d", "floor"),
        ],
    )

    # channel / shared / locked / embedding dropout against torch's nearest op; drop_path vs timm
    yield (
        "structured",
        "channel dropout2d p=0.2",
        fmap,
        fmap_g,
        {
            "dropkit dropout2d": lambda x: DF.dropout2d(x, 0.2),
            "torch dropout2d": lambda x: F.dropout2d(x, 0.2),
        },
        [("dropkit dropout2d", "torch dropout2d", "<= 1.1")],
    )
    yield (
        "structured",
        "shared dropout p=0.2, axes (2, 3)",
        fmap,
        fmap_g,
        {
            "dropkit shared_dropout": lambda x: DF.shared_dropout(x, 0.2, shared_axes=(2, 3)),
            "torch dropout2d": lambda x: F.dropout2d(x, 0.2),
        },
        [("dropkit shared_dropout", "torch dropout2d", "<= 1.1")],
    )

    def torch_locked(x):
        return x * (x.new_empty(1, *x.shape[1:]).bernoulli_(0.8) / 0.8)

    yield (
        "structured",
        "locked dropout p=0.2, (T, N, H)",
        seq,
        seq_g,
        {
            "dropkit locked_dropout": lambda x: DF.locked_dropout(x, 0.2),
            "torch bernoulli_ mask * x": torch_locked,
        },
        [("dropkit locked_dropout", "torch bernoulli_ mask * x", "<= 1.1")],
    )
    emb_w, emb_g = t(33278, 400)
    idx = torch.randint(33278, (35, 64), generator=g)
    out_g = torch.randn(35, 64, 400, generator=g)
    torch_emb = lambda w_: F.embedding(  # noqa: E731
        idx, w_ * (w_.new_empty(w_.shape[0], 1).bernoulli_(0.9) / 0.9)
    )
    yield (
        "structured",
        "embedding dropout p=0.1, V=33278 D=400, (35, 64) ids",
        emb_w,
        out_g,
        {
            "dropkit embedding_dropout": lambda w_: DF.embedding_dropout(idx, w_, 0.1),
            "torch embedding(weight * row mask)": torch_emb,
        },
        [("dropkit embedding_dropout", "torch embedding(weight * row mask)", "<= 1.1")],
    )
    dp = {"dropkit drop_path": lambda x: DF.drop_path(x, 0.1)}
    dp_checks = []
    if timm_layers is not None:
        dp["timm drop_path"] = lambda x: timm_layers.drop_path(x, 0.1, True)
        dp_checks.append(("dropkit drop_path", "timm drop_path", "<= 1"))
    yield "structured", "drop_path p=0.1", fmap, fmap_g, dp, dp_checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated sections")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = {s for s in args.only.split(",") if s}
    peers = [n for n, m in (("timm", timm_layers), ("torchvision", tv_ops)) if m is not None]
    print(
        f"torch {torch.__version__}, {platform.machine()}, threads={args.threads}, "
        f"fast path {'on' if dropkit.fast_dropout_enabled() else 'off'}, peers: "
        f"{', '.join(peers) or 'none'}; median of {args.reps} forward+backward calls\n"
    )
    print("| row | candidate | median ms | ratio | goal |")
    print("|---|---|---|---|---|")
    for section, name, x, grad, cands, checks in _rows(args):
        if only and section not in only:
            continue
        med = _time({k: _step(op, x, grad) for k, op in cands.items()}, args.reps)
        for k, v in med.items():
            print(f"| {name} | {k} | {v * 1e3:.2f} | | |")
        for num, den, goal in checks:
            print(f"| {name} | {num} / {den} | | {med[num] / med[den]:.2f} | {goal} |")


if __name__ == "__main__":
    main()
