"""The demo: MNIST-1D, the published MLP recipe with and without dropout and with L2, over seeds.

Nine runs (three variants x three seeds) of the recipe of :data:`~dropkit.lab.presets.MNIST1D_RECIPE`,
a results table with mean ± 95% CI, and a report with the learning curves.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from dropkit.lab.config import Config
from dropkit.lab.presets import MNIST1D_RECIPE
from dropkit.lab.report import report
from dropkit.lab.runner import run
from dropkit.lab.sweep import point_dir

__all__ = ["DEMO_VARIANTS", "run_demo"]

DEMO_VARIANTS: dict[str, dict] = {
    "no regularization": {},
    "dropout 0.2": {"p_hidden": 0.2},
    "L2 1e-4": {"l2": 1e-4},
}


def _one(args: tuple[str, str]) -> dict:
    config_json, workdir = args
    return run(Config.model_validate_json(config_json), workdir)


def run_demo(
    out_dir: str | Path = "runs/demo",
    seeds: int = 3,
    epochs: int | None = None,
    workers: int | None = None,
    progress: bool = True,
    report: Callable[..., dict] = report,
) -> dict:
    """Train every variant for ``seeds`` seeds into ``out_dir/runs`` and write ``out_dir/report``.

    ``workers`` processes train in parallel (default: up to 2, one torch thread each). Runs already in
    ``out_dir`` are reused (finished) or resumed (interrupted). Returns :func:`report`'s result
    (``report`` is that function, or a wrapper of it, e.g. one that prints its warnings).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"run_demo: seeds must be a positive int, but got {seeds!r}")
    out_dir = Path(out_dir)
    base = Config.build({**MNIST1D_RECIPE, **({"epochs": epochs} if epochs else {})})
    jobs = []
    for name, changes in DEMO_VARIANTS.items():
        for seed in range(seeds):
            config = base.replace(name=name, seed=seed, **changes)
            jobs.append(
                (config.model_dump_json(), str(point_dir(out_dir, {"variant": name, "seed": seed})))
            )
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="demo runs", disable=not progress)
    if workers == 1:
        for job in jobs:
            _one(job)
            bar.update()
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_one, jobs):
                bar.update()
    bar.close()
    return report(
        [out_dir / "runs"],
        out_dir / "report",
        title="dropkit demo: MNIST-1D MLP with and without dropout",
        order=list(DEMO_VARIANTS),
    )
