"""Tabulate issue 25 (dropout masks shared by k data-parallel ranks) from the presets' run folders.

    dropkit sweep --preset mask-share-mlp --root runs/mask-share-mlp data_dir=/path/to/fashion-mnist
    dropkit sweep --preset mask-share-gru --root runs/mask-share-gru
    python scripts/results_issue25.py --runs runs        # docs/results/mask-share*.md, mask-share.png
    git archive b1384bf | tar -x -C /tmp/before          # the code before mask_share existed
    PYTHONPATH=/tmp/before/src python scripts/results_issue25.py --runs runs --k1-check /tmp/k1

Reads the finished runs under ``<runs>/mask-share-mlp`` and ``<runs>/mask-share-gru`` (it trains
nothing) and writes, per preset, ``docs/results/<preset>.md``: for each variant (no dropout, then
k = 1, 4, 16, 64, 256) the local batch (batch_size / k, the rows one simulated rank holds), test
accuracy and final test loss (mean ± half-width of the 95% Student-t interval over seeds), each
seed's accuracy, and the paired difference to k = 1 (the per-seed differences, same seed = same
initial weights, batches and split; t interval with n - 1 degrees of freedom, n stated). Then one
figure, ``docs/results/mask-share.png``: test accuracy, final test loss and final train accuracy
against k, both models, with no dropout as a band.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from dropkit.lab._io import atomic_write, write_text
from dropkit.lab.presets import PRESETS
from dropkit.lab.report import collect_runs, mean_ci

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
SECTIONS = ("mask-share-mlp", "mask-share-gru")  # preset = run folder under --runs
FLOOR = "no dropout"
SHORT = {
    "mask-share-mlp": "Fashion-MNIST MLP, 6,000 images, input 0.2 + hidden 0.5",
    "mask-share-gru": "MNIST-1D 2-layer GRU, 1,000 signals, variational 0.1",
}


def load(preset: str, runs: Path) -> dict[str, dict[int, dict]]:
    """``{variant: {seed: run}}`` of the preset's finished runs (only its grid's variants/seeds)."""
    spec = PRESETS[preset]
    names, seeds = set(spec.grid["variant"]), set(spec.grid["seed"])
    out: dict[str, dict[int, dict]] = {}
    folder = runs / preset
    if not folder.exists():
        return out
    for r in collect_runs([folder]):
        cfg = r["config"]
        if cfg.name in names and cfg.seed in seeds:
            out.setdefault(cfg.name, {})[cfg.seed] = r
    return out


def _fmt(values, scale: float = 1.0, digits: int = 2) -> str:
    mean, half = mean_ci([scale * v for v in values])
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")


def rows(preset: str, runs: Path) -> list[dict]:
    """One dict per variant of the grid: k, local batch, the per-seed metrics, paired diffs."""
    spec = PRESETS[preset]
    by_name = load(preset, runs)
    ref = next(n for n in spec.grid["variant"] if spec.variants[n].get("mask_share") == 1)
    batch = spec.base["batch_size"]
    out = []
    for name in spec.grid["variant"]:
        got = by_name.get(name, {})
        k = spec.variants[name].get("mask_share") if name != FLOOR else None
        seeds = sorted(got)
        s = [got[i]["summary"] for i in seeds]
        ref_runs = by_name.get(ref, {})
        paired = [i for i in seeds if i in ref_runs]
        floor_runs = by_name.get(FLOOR, {})
        out.append(
            {
                "name": name,
                "k": k,
                "local": batch // k if k else None,
                "seeds": seeds,
                "test_acc": [x["test_acc"] for x in s],
                "test_loss": [x["test_loss"] for x in s],
                "train_acc": [x["train_acc"] for x in s],
                "wall_s": [x["wall_s"] for x in s],
                "d_acc": [
                    got[i]["summary"]["test_acc"] - ref_runs[i]["summary"]["test_acc"]
                    for i in paired
                ],
                "d_loss": [
                    got[i]["summary"]["test_loss"] - ref_runs[i]["summary"]["test_loss"]
                    for i in paired
                ],
                "d_floor": [
                    got[i]["summary"]["test_acc"] - floor_runs[i]["summary"]["test_acc"]
                    for i in seeds
                    if i in floor_runs
                ],
                "is_ref": name == ref,
            }
        )
    return out


def table(preset: str, runs: Path) -> str:
    lines = [
        "| variant | k | local batch | seeds | train acc. % | test acc. % | test by seed | "
        "paired diff. vs k=1, points (n) | final test loss | paired loss diff. vs k=1 (n) | "
        "paired diff. vs no dropout, points (n) | time/run s, mean (min–max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(preset, runs):
        if not r["seeds"]:
            lines.append(f"| {r['name']} | {r['k'] or '—'} | | 0 | (not run) |{' |' * 7}")
            continue
        n, nf = len(r["d_acc"]), len(r["d_floor"])
        diff = "—" if r["is_ref"] or not n else f"{_fmt(r['d_acc'], 100)} (n={n})"
        dloss = "—" if r["is_ref"] or not n else f"{_fmt(r['d_loss'], digits=3)} (n={n})"
        dfloor = "—" if r["k"] is None or not nf else f"{_fmt(r['d_floor'], 100)} (n={nf})"
        wall = r["wall_s"]
        lines.append(
            f"| {r['name']} | {r['k'] or '—'} | {r['local'] or '—'} | {len(r['seeds'])} | "
            f"{_fmt(r['train_acc'], 100)} | {_fmt(r['test_acc'], 100)} | "
            f"{', '.join(f'{100 * t:.1f}' for t in r['test_acc'])} | {diff} | "
            f"{_fmt(r['test_loss'], digits=3)} | {dloss} | {dfloor} | "
            f"{np.mean(wall):.0f} ({min(wall):.0f}–{max(wall):.0f}) |"
        )
    lines += ["", "| variant | test acc. minus k=1's, by seed (points) |", "|---|---|"]
    for r in rows(preset, runs):
        if r["d_acc"] and not r["is_ref"]:
            lines.append(f"| {r['name']} | {', '.join(f'{100 * d:+.2f}' for d in r['d_acc'])} |")
    return "\n".join(lines) + "\n"


def figure(runs: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {p: rows(p, runs) for p in SECTIONS}
    if not any(r["seeds"] for rs in data.values() for r in rs):
        return None
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), constrained_layout=True)
    panels = (
        ("test_acc", 100, "test accuracy %"),
        ("test_loss", 1, "final test loss"),
        ("train_acc", 100, "final train accuracy %"),
    )
    for row, preset in enumerate(SECTIONS):
        shared = [r for r in data[preset] if r["k"] and r["seeds"]]
        floor = next((r for r in data[preset] if r["k"] is None and r["seeds"]), None)
        batch = PRESETS[preset].base["batch_size"]
        for col, (key, scale, label) in enumerate(panels):
            ax = axes[row, col]
            ax.set_title(SHORT[preset], fontsize=9)
            if not shared:
                ax.text(0.5, 0.5, "no finished runs", ha="center", transform=ax.transAxes)
                continue
            ks = [r["k"] for r in shared]
            stats = [mean_ci([scale * v for v in r[key]]) for r in shared]
            means = [m for m, _ in stats]
            halves = [0 if math.isnan(h) else h for _, h in stats]
            ax.errorbar(ks, means, yerr=halves, marker="o", capsize=3, label="dropout, k ranks")
            for r in shared:  # each seed, faintly
                ax.scatter([r["k"]] * len(r[key]), [scale * v for v in r[key]], s=8, alpha=0.3)
            if floor is not None:
                m, h = mean_ci([scale * v for v in floor[key]])
                ax.axhline(m, color="grey", ls="--", label="no dropout (mean ± CI)")
                if not math.isnan(h):
                    ax.axhspan(m - h, m + h, color="grey", alpha=0.15)
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [f"{k}\n({batch // k})" for k in ks])
            ax.set(xlabel="k ranks sharing one mask (local batch)", ylabel=label)
            ax.legend(fontsize=7)
    fig.suptitle(
        "Dropout masks shared by k data-parallel ranks seeded alike, batch 256 "
        "(mean ± 95% CI over seeds; dots: seeds)"
    )
    path = OUT / "mask-share.png"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def k1_check(runs: Path, workdir: Path) -> bool:
    """Train ``fashion-mlp-small``'s input 0.2 + hidden 0.5, seed 0, with the dropkit importable here
    (e.g. a copy of the code before ``mask_share`` existed, on ``PYTHONPATH``) in ``workdir``, and
    compare it with the grid's k = 1 run of seed 0: summary, every epoch's metrics, final weights."""
    import json

    import torch

    from dropkit.lab import Config, run

    spec = PRESETS["fashion-mlp-small"]
    name = "input 0.2, hidden 0.5"
    ref = runs / "mask-share-mlp" / "runs" / "seed=0_variant=k=1--independent-masks-"
    data_dir = json.loads((ref / "config.json").read_text())["data_dir"]
    config = Config.build({**spec.base, **spec.variants[name], "name": name, "seed": 0})
    summary = run(config.replace(data_dir=data_dir), workdir)
    other = json.loads((ref / "summary.json").read_text())
    keys = [k for k in summary if k not in ("name", "wall_s")]
    same_summary = all(summary[k] == other[k] for k in keys)

    def epochs(folder: Path) -> list[dict]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in lines]

    same_metrics = epochs(workdir) == epochs(ref)
    a = torch.load(workdir / "model.pt", weights_only=True)
    b = torch.load(ref / "model.pt", weights_only=True)
    same_weights = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(
        f"k = 1 check against {ref}: summary identical {same_summary}, every epoch's metrics "
        f"identical {same_metrics}, final weights bit-identical {same_weights}"
    )
    return same_summary and same_metrics and same_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default=os.environ.get("DROPKIT_RUNS", "runs"),
        help="folder holding the presets' sweep folders mask-share-mlp/ and mask-share-gru/",
    )
    parser.add_argument(
        "--k1-check",
        metavar="DIR",
        help="instead: train fashion-mlp-small's seed 0 in DIR with the dropkit on PYTHONPATH and "
        "compare it with the grid's k = 1 run (exit status 1 if they differ)",
    )
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    if args.k1_check:
        return 0 if k1_check(runs, Path(args.k1_check)) else 1
    for preset in SECTIONS:
        if not (runs / preset).exists():
            print(f"{preset}: no runs under {runs / preset}", file=sys.stderr)
            continue
        text = f"<!-- {PRESETS[preset].title} -->\n" + table(preset, runs)
        write_text(OUT / f"{preset}.md", text)
        print(f"## {preset}\n{text}")
    path = figure(runs)
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
