"""``dropkit demo``: MNIST-1D (generated offline), an MLP with and without dropout and with L2.

Three variants x three seeds of the published MNIST-1D MLP recipe; prints mean ± 95% CI and writes an
HTML/Markdown report with learning curves. Rerunning reuses finished runs.
"""

from __future__ import annotations

import argparse
import time

from dropkit.cli._text import plain
from dropkit.cli._types import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="MNIST-1D MLP with/without dropout and L2, 3 seeds: table + report",
        description=plain(__doc__),
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument(
        "--seeds", type=positive_int, default=3, help="seeds per variant, 0..N-1 (default: 3)"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (default: the recipe's 150)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="parallel processes (default: up to 2)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dropkit.cli.report import run_report
    from dropkit.lab.demo import run_demo
    from dropkit.lab.report import format_table

    t0 = time.perf_counter()
    out = run_demo(
        args.out, seeds=args.seeds, epochs=args.epochs, workers=args.workers, report=run_report
    )
    print(format_table(out["rows"]))
    print(f"\nreport: {out['html']} (and report.md)   wall time {time.perf_counter() - t0:.0f} s")
    return 0
