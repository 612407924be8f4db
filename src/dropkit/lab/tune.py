"""Choose drop rates by experiment: Optuna TPE over rate ranges, bad trials pruned as they train.

``tune(base, space, root, trials=...)`` searches ``space`` (``{"p_hidden": (0.0, 0.7), ...}``, each key
a rate of the config) with a seeded TPE sampler; every trial is a :func:`~dropkit.lab.runner.run`
that reports its validation accuracy (or -RMSE) after each evaluated epoch, and the median pruner
stops a trial that is below the median of earlier trials at the same epoch. Then:

* the best rates are trained again on ``confirm_seeds`` and reported as test mean ± 95% CI;
* with ``compare_grid=True``, an evenly spaced grid over the same ranges, as large as the epochs
  the search spent allow (equal compute), is trained in full and its best point is confirmed the
  same way, so the two choices can be compared.

Storage and resumption are those of :func:`~dropkit.lab.sweep.sweep`: one Optuna storage (default
SQLite ``<root>/sweep.db``), run directories under ``<root>/runs/`` named by their parameters.
Rerunning the same call continues the study up to ``trials`` finished (complete or pruned) trials;
a trial whose process died is queued again with the same rates, and its run resumes from its
checkpoint. The result is also written to ``<root>/tune.json``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dropkit.lab._io import write_json
from dropkit.lab.config import Config

__all__ = ["RATE_KEYS", "format_result", "metric_name", "tune"]

# Config keys that are drop rates (a float in [0, 1)); p_hidden takes one rate for all layers.
RATE_KEYS = ("p_input", "p_hidden", "weight_dropout")

TrainFn = Callable[..., dict]


def _check_space(space: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    if not space:
        raise ValueError("tune: the search space is empty; give e.g. {'p_hidden': (0.0, 0.7)}")
    out = {}
    for key, bounds in space.items():
        if key not in RATE_KEYS:
            raise ValueError(f"tune: {key!r} is not a rate key; tunable: {', '.join(RATE_KEYS)}")
        if isinstance(bounds, (str, bytes)) or len(bounds) != 2:
            raise ValueError(f"tune: {key} needs (low, high), but got {bounds!r}")
        low, high = (float(b) for b in bounds)
        if not 0.0 <= low < high < 1.0:
            raise ValueError(f"tune: {key} range must satisfy 0 <= low < high < 1, got {bounds!r}")
        out[key] = (low, high)
    return out


def _metric(summary: Mapping[str, Any]) -> float:
    part = "val" if summary.get("val_acc", summary.get("val_rmse")) is not None else "test"
    if f"{part}_acc" in summary:
        return float(summary[f"{part}_acc"])
    return -float(summary[f"{part}_rmse"])


def metric_name(summary: Mapping[str, Any]) -> str:
    """What :func:`_metric` reads from ``summary``: ``validation accuracy``, ``test RMSE``..."""
    part = "val" if summary.get("val_acc", summary.get("val_rmse")) is not None else "test"
    kind = "accuracy" if f"{part}_acc" in summary else "RMSE"
    return f"{'validation' if part == 'val' else 'test'} {kind}"


def _show(value: float, name: str) -> str:
    """A search value as the metric reads: accuracy in %, RMSE positive (it is maximised as -RMSE)."""
    return f"{100 * value:.2f}%" if name.endswith("accuracy") else f"{-value:.4g}"


def _say(progress: bool, text: str) -> None:
    if progress:
        import sys

        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)


def _changes(params: Mapping[str, float]) -> dict[str, Any]:
    return {k: (v,) if k == "p_hidden" else v for k, v in params.items()}


class _PruningLogger:
    """Reports each evaluated epoch to the trial; raises TrialPruned when the pruner says so."""

    def __init__(self, trial) -> None:
        self.trial = trial

    def log(self, record: dict) -> None:
        import optuna

        self.trial.report(_metric(record), record["epoch"])
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")


def _confirm(
    base: Config, params, seeds, root: Path, train: TrainFn, progress: bool = False
) -> dict:
    from dropkit.lab.report import mean_ci
    from dropkit.lab.sweep import point_dir

    tests = []
    rates = ", ".join(f"{k}={v:g}" for k, v in params.items())
    for seed in seeds:
        point = {**params, "seed": seed}
        _say(progress, f"confirm {rates} on seed {seed} ({len(tests) + 1} of {len(seeds)})")
        summary = train(base.replace(**_changes(params), seed=seed), point_dir(root, point))
        tests.append(float(summary.get("test_acc", -summary.get("test_rmse", math.nan))))
    mean, half = mean_ci(tests) if len(tests) > 1 else (tests[0], math.nan)
    return {"params": dict(params), "seeds": list(seeds), "test": tests, "mean": mean, "ci": half}


def _grid_values(space: dict[str, tuple[float, float]], n_points: int) -> dict[str, list[float]]:
    per_axis = max(2, int(math.floor(n_points ** (1 / len(space)) + 1e-9)))
    return {
        k: [round(lo + (hi - lo) * i / (per_axis - 1), 4) for i in range(per_axis)]
        for k, (lo, hi) in space.items()
    }


def tune(
    base: Config | Mapping[str, Any],
    space: Mapping[str, Sequence[float]],
    root: str | Path,
    *,
    trials: int = 20,
    storage: str | None = None,
    study_name: str = "tune",
    sampler_seed: int = 0,
    startup_trials: int = 5,
    confirm_seeds: Sequence[int] = (0, 1, 2),
    compare_grid: bool = False,
    heartbeat: int = 60,
    train: TrainFn | None = None,
    progress: bool = False,
) -> dict:
    """Search ``space`` with TPE (``trials`` finished trials), confirm the best rates over
    ``confirm_seeds``; with ``compare_grid``, do the same for the best of an equal-compute grid.

    Args:
        base: the config every trial starts from (its ``seed`` is the search seed).
        space: ``{rate key: (low, high)}``; keys from :data:`RATE_KEYS`.
        root: folder for the storage, ``runs/`` and ``tune.json``.
        trials: finished (complete or pruned) trials to reach; a rerun continues up to it.
        startup_trials: trials sampled at random (and never pruned) before TPE and pruning start.
        train: ``train(config, workdir, loggers=[...]) -> summary``; default
            :func:`~dropkit.lab.runner.run` (tests pass a synthetic objective).
        progress: a line on stderr per trial (its rates, then its value or the epoch it was
            pruned at) and per confirmation run, and :func:`run`'s bar over each run's epochs.

    Returns ``{"best": {params, value}, "trials": [...], "confirm": {...}, "grid": {...} | None,
    "epochs_spent": int, "metric": str}`` (also written to ``<root>/tune.json``); ``metric`` names
    the search value (e.g. ``validation accuracy``), ``epochs_spent`` is the search's epochs in total.
    """
    import optuna
    from optuna.trial import TrialState

    from dropkit.lab.runner import _as_config
    from dropkit.lab.runner import run as run_fn
    from dropkit.lab.sweep import _storage, point_dir

    base = _as_config(base)
    bounds = _check_space(space)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"tune: trials must be a positive int, but got {trials!r}")
    if not confirm_seeds:
        raise ValueError("tune: confirm_seeds must name at least one seed")
    if len(set(confirm_seeds)) != len(confirm_seeds):
        raise ValueError(
            f"tune: confirm_seeds {list(confirm_seeds)} repeats a seed: a repeated seed is the same "
            "sample, not another one; give distinct seeds"
        )
    if train is None:

        def train(config, workdir, loggers=()):
            return run_fn(config, workdir, loggers=loggers, progress=progress)

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(root / 'sweep.db').resolve()}"

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=study_name,
            storage=_storage(url, heartbeat),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials),
            direction="maximize",
            load_if_exists=True,
        )
    # A resumed study must not replay the first session's random draws: seed by its trial count.
    n_before = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        seed=sampler_seed + n_before, n_startup_trials=startup_trials
    )
    for t in study.get_trials(deepcopy=False):
        if set(t.params) - set(bounds) or set(bounds) - set(t.params):
            raise ValueError(
                f"tune: study '{study_name}' in this storage searched {sorted(t.params)}, not "
                f"{sorted(bounds)}; give another study name or root"
            )

    def objective(trial: optuna.Trial) -> float:
        params = {k: trial.suggest_float(k, lo, hi) for k, (lo, hi) in bounds.items()}
        params = {k: round(v, 4) for k, v in params.items()}  # readable dirs; 1e-4 is plenty
        trial.set_user_attr("rates", params)
        workdir = point_dir(root, {**params, "seed": base.seed})
        trial.set_user_attr("workdir", str(workdir))
        rates = ", ".join(f"{k}={v:g}" for k, v in params.items())
        _say(progress, f"trial {trial.number + 1} (of {trials}): {rates}")
        summary = train(base.replace(**_changes(params)), workdir, loggers=[_PruningLogger(trial)])
        trial.set_user_attr("epochs", int(summary.get("epochs_run", base.epochs)))
        trial.set_user_attr("metric", metric_name(summary))
        return _metric(summary)

    def report_trial(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if t.state == TrialState.PRUNED and t.intermediate_values:
            epoch = max(t.intermediate_values)
            _say(progress, f"trial {t.number + 1}: pruned at epoch {epoch} (below the median)")
        elif t.state == TrialState.COMPLETE:
            name = t.user_attrs.get("metric", "search value")
            best = " (best so far)" if study.best_trial.number == t.number else ""
            _say(progress, f"trial {t.number + 1}: {name} {_show(t.value, name)}{best}")

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a trial whose process died (marked failed by its heartbeat): same rates again
        done_rates = [
            t.user_attrs.get("rates") for t in study.get_trials(deepcopy=False, states=finished)
        ]
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.params and t.user_attrs.get("rates") not in done_rates:
                study.enqueue_trial(t.params, skip_if_exists=True)
        left = trials - len(study.get_trials(deepcopy=False, states=finished))
        if left > 0:
            study.optimize(objective, n_trials=left, catch=(), callbacks=[report_trial])

    rows = []
    epochs_spent = 0
    for t in study.get_trials(deepcopy=False, states=finished):
        last = max(t.intermediate_values) if t.intermediate_values else base.epochs
        epochs = t.user_attrs.get("epochs", last)
        epochs_spent += epochs
        rows.append(
            {
                "number": t.number,
                "params": t.user_attrs.get("rates", t.params),
                "state": t.state.name,
                "value": t.value,
                "epochs": epochs,
            }
        )
    best = study.best_trial
    best_params = best.user_attrs.get("rates", best.params)
    result: dict[str, Any] = {
        "space": {k: list(v) for k, v in bounds.items()},
        "metric": best.user_attrs.get("metric", "search value"),
        "best": {"params": best_params, "value": best.value, "trial": best.number},
        "trials": rows,
        "epochs_spent": epochs_spent,
        "confirm": _confirm(base, best_params, confirm_seeds, root, train, progress),
        "grid": None,
    }

    if compare_grid:
        grid = _grid_values(bounds, max(1, epochs_spent // base.epochs))
        points = []
        combos = list(itertools.product(*grid.values()))
        for i, values in enumerate(combos):
            params = dict(zip(grid, values, strict=True))
            rates = ", ".join(f"{k}={v:g}" for k, v in params.items())
            _say(progress, f"grid point {i + 1} of {len(combos)}: {rates}")
            workdir = point_dir(root, {**params, "seed": base.seed})
            points.append((params, _metric(train(base.replace(**_changes(params)), workdir))))
        params, value = max(points, key=lambda pv: pv[1])
        result["grid"] = {
            "values": grid,
            "epochs_spent": len(points) * base.epochs,
            "points": [{"params": p, "value": v} for p, v in points],
            "best": {"params": params, "value": value},
            "confirm": _confirm(base, params, confirm_seeds, root, train, progress),
        }
    write_json(root / "tune.json", result)
    return result


def format_result(result: Mapping[str, Any]) -> str:
    """A few lines for the terminal: what the search did, the chosen rates and their confirmation
    on fresh seeds (test mean ± 95% CI, n stated), and the same for the equal-compute grid."""
    name = result.get("metric", "search value")
    test_name = "test RMSE" if name.endswith("RMSE") else "test accuracy"

    def rates(params: Mapping[str, float]) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in params.items())

    def confirmed(confirm: Mapping[str, Any]) -> str:
        n = len(confirm["seeds"])
        seeds = ",".join(map(str, confirm["seeds"]))
        if test_name == "test RMSE":  # stored as -RMSE (maximised)
            mean, unit = -confirm["mean"], ""
            text = f"{mean:.4g}"
            half = confirm["ci"]
            ci = "" if n < 2 or math.isnan(half) else f" ± {half:.2g}"
        else:
            text, unit = f"{100 * confirm['mean']:.2f}", "%"
            ci = "" if n < 2 or math.isnan(confirm["ci"]) else f" ± {100 * confirm['ci']:.2f}"
        return f"    confirmed on seeds {seeds}: {test_name} {text}{ci}{unit} (n={n})"

    trials = result["trials"]
    n_pruned = sum(r["state"] == "PRUNED" for r in trials)
    best = result["best"]
    out = [
        f"TPE search: {len(trials)} trials ({n_pruned} pruned), {result['epochs_spent']} epochs "
        f"in total; best: trial {best['trial'] + 1}, {rates(best['params'])}, "
        f"{name} {_show(best['value'], name)}",
        confirmed(result["confirm"]),
    ]
    if result.get("grid"):
        g = result["grid"]
        out += [
            f"equal-compute grid: {len(g['points'])} points, {g['epochs_spent']} epochs in total; "
            f"best: {rates(g['best']['params'])}, {name} {_show(g['best']['value'], name)}",
            confirmed(g["confirm"]),
        ]
    return "\n".join(out)
