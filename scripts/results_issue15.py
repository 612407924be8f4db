"""Regenerate the issue-15 tables and figures of docs/results.md from the presets' run directories.

    python scripts/results_issue15.py --activations --tune # train what is missing, then tabulate
    python scripts/results_issue15.py --no-train           # tabulate only the finished runs
    python scripts/results_issue15.py --only mnist1d-cnn   # one section

Each section is a preset run through ``dropkit.lab.sweep`` (resumable: finished runs are read back,
interrupted ones resume from their checkpoints) under ``<runs>/<folder>``. For each it writes
``docs/results/<preset>.md`` (mean ± 95% CI over seeds, per-seed test accuracy, the paired difference
to the reference variant matched by seed) and ``docs/results/<preset>.png`` (test accuracy over
epochs, mean over seeds). ``--activations`` also trains the two small BatchNorm models and draws the
train-vs-eval activation statistics (``docs/results/activation_stats.png``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from dropkit.lab import Config
from dropkit.lab._io import write_text
from dropkit.lab.presets import PRESETS
from dropkit.lab.report import collect_runs, mean_ci

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
# The offline copy beside the checkout (../shared/data, as the tests use it); run directories record
# it as their data_dir, so resuming them needs the same path.
FASHION_DIR = str((ROOT.parent / "shared" / "data" / "fashion-mnist").resolve())

# preset -> (run folder under --runs, reference variant, grid override or None)
SECTIONS: dict[str, tuple[str, str]] = {
    "fashion-mlp-rates": ("fashion-mlp", "no dropout"),
    "fashion-mlp-dropout": ("fashion-mlp", "no dropout"),
    "fashion-mlp-long": ("fashion-mlp-long", "no dropout"),
    "fashion-mlp-small": ("fashion-mlp-small", "no dropout"),
    "fashion-cnn-small": ("fashion-cnn-small", "none"),
    "mnist1d-cnn": ("mnist1d-cnn", "none"),
    "mnist1d-rnn": ("mnist1d-rnn", "none"),
    "mnist1d-rnn-overfit": ("mnist1d-rnn-overfit", "none"),
    "mlp-noise": ("mlp-noise", "none"),
    "early-dropout": ("early-dropout", "none"),
    "pn-fixed": ("pn-fixed", "p=0, n=128"),
}


def _base(preset: str) -> dict:
    base = dict(PRESETS[preset].base)
    if base.get("dataset") == "fashion_mnist":
        base["data_dir"] = FASHION_DIR
    return base


def train(preset: str, runs: Path) -> None:
    from dropkit.lab.sweep import sweep

    folder, _ = SECTIONS[preset]
    spec = PRESETS[preset]
    sweep(_base(preset), spec.grid, runs / folder, variants=spec.variants)


def _pct(values) -> str:
    mean, half = mean_ci(values)
    return f"{100 * mean:.2f}" + ("" if math.isnan(half) else f" ± {100 * half:.2f}")


def table(preset: str, runs: Path) -> str:
    folder, ref = SECTIONS[preset]
    spec = PRESETS[preset]
    names = [v for v in spec.grid.get("variant", [])]
    seeds = set(spec.grid.get("seed", [0]))
    by_name: dict[str, dict[int, dict]] = {}
    for r in collect_runs([runs / folder]):
        cfg: Config = r["config"]
        if cfg.name in names and cfg.seed in seeds:
            by_name.setdefault(cfg.name, {})[cfg.seed] = r
    lines = [
        "| variant | seeds | train acc. % | val acc. % | test acc. % | test by seed | paired diff. "
        f"vs {ref} | gap (train−test) % | final train loss | final test loss | time/run s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref_runs = by_name.get(ref, {})
    for name in names:
        got = by_name.get(name, {})
        if not got:
            lines.append(f"| {name} | 0 | (not run) | | | | | | | | |")
            continue
        order = sorted(got)
        s = [got[k]["summary"] for k in order]
        test = [x["test_acc"] for x in s]
        paired = [
            got[k]["summary"]["test_acc"] - ref_runs[k]["summary"]["test_acc"]
            for k in order
            if k in ref_runs
        ]
        diff = "—" if name == ref or not paired else f"{_pct(paired)} (n={len(paired)})"
        lines.append(
            f"| {name} | {len(s)} | {_pct([x['train_acc'] for x in s])} | "
            f"{_pct([x['val_acc'] for x in s]) if s[0].get('val_acc') is not None else '—'} | "
            f"{_pct(test)} | "
            f"{', '.join(f'{100 * t:.1f}' for t in test)} | {diff} | "
            f"{_pct([x['gap'] for x in s])} | "
            f"{np.mean([x['train_loss'] for x in s]):.3f} | "
            f"{np.mean([x['test_loss'] for x in s]):.3f} | {np.mean([x['wall_s'] for x in s]):.0f} |"
        )
    return "\n".join(lines) + "\n"


def curves(preset: str, runs: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dropkit.lab._io import atomic_write

    folder, _ = SECTIONS[preset]
    spec = PRESETS[preset]
    names = list(spec.grid.get("variant", []))
    grouped: dict[str, list[list[dict]]] = {}
    for r in collect_runs([runs / folder]):
        if r["config"].name in names:
            grouped.setdefault(r["config"].name, []).append(r["metrics"])
    if not grouped:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    for name in names:
        histories = grouped.get(name)
        if not histories:
            continue
        epochs = [r["epoch"] for r in histories[0]]
        for ax, key in zip(axes, ("test_acc", "test_loss", "train_loss"), strict=True):
            values = np.mean([[r[key] for r in h[: len(epochs)]] for h in histories], axis=0)
            ax.plot(epochs, 100 * values if key == "test_acc" else values, label=name)
    axes[0].set(xlabel="epoch", ylabel="test accuracy % (mean over seeds)")
    axes[1].set(xlabel="epoch", ylabel="test loss")
    axes[2].set(xlabel="epoch", ylabel="train loss", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle(spec.title, fontsize=10)
    path = OUT / f"{preset}.png"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def activations(runs: Path) -> Path:
    """Two MNIST-1D MLPs with BN after / before dropout (p = 0.5), then their statistics."""
    import torch

    from dropkit.lab._data import prepare
    from dropkit.lab.activations import activation_stats, plot_activation_stats
    from dropkit.lab.models import build_model
    from dropkit.lab.runner import run

    base = {**PRESETS["bn-placement"].base, "p_hidden": 0.5, "epochs": 30, "plots": False}
    panels = []
    for label, placement in (
        ("dropout -> BN (BN after dropout)", "after_dropout"),
        ("BN -> dropout (BN before dropout)", "before_dropout"),
    ):
        cfg = Config.build({**base, "batchnorm": placement, "name": placement})
        workdir = runs / "activation-stats" / placement
        run(cfg, workdir)
        data = prepare(cfg)
        model = build_model(cfg, data.input_shape, data.n_outputs)
        model.load_state_dict(torch.load(workdir / "model.pt", weights_only=True))
        torch.manual_seed(0)
        rows = activation_stats(model, data.x_test, samples=4)
        panels.append((label, rows))
        lines = [
            "| layer | kind | train-mode mean | eval mean | train-mode var | eval var |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['layer']} | {r['kind']} | {r['train_mean']:.3f} | {r['eval_mean']:.3f} | "
            f"{r['train_var']:.3f} | {r['eval_var']:.3f} |"
            for r in rows
        ]
        write_text(OUT / f"activation_stats_{placement}.md", "\n".join(lines) + "\n")
    return plot_activation_stats(
        panels,
        OUT / "activation_stats.png",
        title="MNIST-1D MLP 256-256, p = 0.5: per-layer activation statistics (test set)",
    )


def tune_section(runs: Path) -> str:
    """``dropkit tune --preset rate-sweep --space p_hidden=0:0.8 --trials 10 --startup-trials 4
    --compare-grid`` (resumes: a finished study trains nothing), as a table."""
    from dropkit.lab.tune import tune

    result = tune(
        PRESETS["rate-sweep"].base,
        {"p_hidden": (0.0, 0.8)},
        runs / "tune-rate-sweep",
        trials=10,
        startup_trials=4,
        compare_grid=True,
    )
    rows = [("TPE + pruning", result["confirm"], result["best"]["value"], result["epochs_spent"])]
    g = result["grid"]
    rows.append(("grid, equal epochs", g["confirm"], g["best"]["value"], g["epochs_spent"]))
    lines = [
        "| search | chosen p | validation acc. % (seed 0) | epochs | test acc. % | test by seed |",
        "|---|---|---|---|---|---|",
    ]
    for label, c, value, spent in rows:
        lines.append(
            f"| {label} | {c['params']['p_hidden']:g} | {100 * value:.2f} | {spent} | "
            f"{_pct(c['test'])} | {', '.join(f'{100 * t:.1f}' for t in c['test'])} |"
        )
    text = "\n".join(lines) + "\n"
    write_text(OUT / "tune-rate-sweep.md", text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default=os.environ.get("DROPKIT_RUNS", "runs"),
        help="folder holding the presets' sweep folders (default: runs)",
    )
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), default=[])
    parser.add_argument("--no-train", action="store_true", help="tabulate finished runs only")
    parser.add_argument("--activations", action="store_true")
    parser.add_argument("--tune", action="store_true", help="also the dropkit tune comparison")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    for preset in args.only or list(SECTIONS):
        if not args.no_train:
            train(preset, runs)
        if not (runs / SECTIONS[preset][0]).exists():
            print(f"{preset}: no runs under {runs / SECTIONS[preset][0]}", file=sys.stderr)
            continue
        text = f"<!-- {PRESETS[preset].title} -->\n" + table(preset, runs)
        write_text(OUT / f"{preset}.md", text)
        curves(preset, runs)
        print(f"## {preset}\n{text}")
    if args.activations:
        print(activations(runs))
    if args.tune:
        print(tune_section(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
