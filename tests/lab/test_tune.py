"""dropkit.lab.tune: TPE finds a known optimum, prunes bad trials, resumes, compares with a grid."""

from __future__ import annotations

import json
import math

import pytest

from dropkit.cli import main
from dropkit.lab import Config
from dropkit.lab.tune import format_result, tune
from tests.lab._helpers import TINY

OPTIMUM = 0.37


class Synthetic:
    """A stand-in for ``run``: val accuracy 0.9 - (p - 0.37)^2 approached over the epochs; test
    accuracy the same plus a seed offset. Saves its summary, so a second call on a workdir is free
    (like ``run``) and ``trained`` counts real trainings."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.trained: list[float] = []
        self.fail_on = fail_on

    def __call__(self, config: Config, workdir, loggers=()):
        saved = workdir / "summary.json"
        if saved.is_file():
            return json.loads(saved.read_text())
        if self.fail_on is not None and len(self.trained) == self.fail_on:
            self.fail_on = None
            raise KeyboardInterrupt  # the process dies in the middle of a trial
        p = config.p_hidden[0]
        self.trained.append(p)
        final = 0.9 - (p - OPTIMUM) ** 2
        for epoch in range(1, config.epochs + 1):
            record = {"epoch": epoch, "val_acc": final * (1 - math.exp(-epoch))}
            for logger in loggers:
                logger.log(record)  # may raise TrialPruned
        summary = {"val_acc": final, "test_acc": final - 0.001 * config.seed, "epochs_run": 10}
        workdir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(summary))
        return summary


BASE = {**TINY, "epochs": 10, "p_hidden": 0.0}
TINY_ARGS = [f"{k}={json.dumps(v)}" for k, v in TINY.items()]


def test_finds_the_optimum_and_prunes(tmp_path):
    fn = Synthetic()
    space = {"p_hidden": (0.0, 0.9)}
    result = tune(BASE, space, tmp_path, trials=16, startup_trials=4, train=fn)
    assert abs(result["best"]["params"]["p_hidden"] - OPTIMUM) < 0.05
    states = [t["state"] for t in result["trials"]]
    assert len(states) == 16 and states.count("PRUNED") >= 2
    # pruned trials stop early: fewer epochs than 16 full trials
    assert result["epochs_spent"] < 16 * 10
    confirm = result["confirm"]
    assert confirm["seeds"] == [0, 1, 2] and len(confirm["test"]) == 3
    want = 0.9 - (confirm["params"]["p_hidden"] - OPTIMUM) ** 2 - 0.001
    assert confirm["mean"] == pytest.approx(want) and confirm["ci"] > 0
    assert json.loads((tmp_path / "tune.json").read_text())["best"] == result["best"]


def test_resumes_and_requeues_a_dead_trial(tmp_path):
    space = {"p_hidden": (0.0, 0.9)}
    fn = Synthetic(fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        tune(BASE, space, tmp_path, trials=6, train=fn)
    assert len(fn.trained) == 2
    # The rerun retries the interrupted trial's rate, then continues to 6 finished trials.
    fn2 = Synthetic()
    first = tune(BASE, space, tmp_path, trials=6, train=fn2, confirm_seeds=[0])
    assert len(first["trials"]) == 6 and len(fn2.trained) == 4
    # Growing the budget adds only the new trials; rerunning the same call trains nothing.
    fn3 = Synthetic()
    tune(BASE, space, tmp_path, trials=8, train=fn3, confirm_seeds=[0])
    assert len(fn3.trained) == 2
    fn4 = Synthetic()
    again = tune(BASE, space, tmp_path, trials=8, train=fn4, confirm_seeds=[0])
    assert fn4.trained == [] and len(again["trials"]) == 8
    with pytest.raises(ValueError, match="searched"):
        tune(BASE, {"p_input": (0.0, 0.5)}, tmp_path, trials=8, train=fn4)


def test_equal_compute_grid(tmp_path):
    result = tune(
        BASE, {"p_hidden": (0.0, 0.9)}, tmp_path, trials=8, train=Synthetic(), compare_grid=True
    )
    grid = result["grid"]
    # as many full-length grid points as the search's epochs pay for (at least two)
    assert grid["epochs_spent"] <= max(result["epochs_spent"], 2 * 10)
    values = grid["values"]["p_hidden"]
    assert values[0] == 0.0 and values[-1] == 0.9 and len(values) == len(grid["points"])
    best = max(grid["points"], key=lambda p: p["value"])
    assert grid["best"]["params"] == best["params"] and len(grid["confirm"]["test"]) == 3


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, "empty"),
        ({"lr": (0.0, 0.1)}, "not a rate key"),
        ({"p_hidden": (0.5, 0.2)}, "low < high"),
        ({"p_hidden": (0.0, 1.0)}, "low < high"),
        ({"p_hidden": (0.1,)}, r"\(low, high\)"),
    ],
)
def test_bad_space(tmp_path, space, match):
    with pytest.raises(ValueError, match=match):
        tune(BASE, space, tmp_path, trials=2, train=Synthetic())


def test_cli_real_runs(tmp_path, capsys):
    # three real trials of the tiny digits MLP, one confirm seed
    args = ["tune", "--space", "p_hidden=0:0.6", "--trials", "3", "--startup-trials", "2"]
    args += ["--confirm-seeds", "0", "--root", str(tmp_path)]
    args += [f"{k}={json.dumps(v)}" for k, v in {**TINY, "epochs": 2}.items()]
    assert main(args) == 0
    out, err = capsys.readouterr()
    # before: nothing while it ran, then "p_hidden=0.4391 (search value 0.4925, 24 epochs)"
    saved = json.loads((tmp_path / "tune.json").read_text())
    pruned = sum(t["state"] == "PRUNED" for t in saved["trials"])
    total = sum(t["epochs"] for t in saved["trials"])  # 2 a trial, fewer when pruned
    assert total == saved["epochs_spent"] <= 6
    assert f"TPE search: 3 trials ({pruned} pruned), {total} epochs in total; best: trial " in out
    assert ", validation accuracy " in out and "search value" not in out
    assert "confirmed on seeds 0: test accuracy " in out and "(n=1)" in out and "±" not in out
    for i, t in enumerate(saved["trials"], 1):
        assert f"trial {i} (of 3): p_hidden=" in err
        done = "pruned at epoch" if t["state"] == "PRUNED" else "validation accuracy"
        assert f"trial {i}: {done} " in err
    assert "confirm p_hidden=" in err
    with pytest.raises(SystemExit):
        main(["tune", "--space", "p_hidden=0-0.6", "--root", str(tmp_path)])
    assert "KEY=LOW:HIGH" in capsys.readouterr().err


def test_summary_names_the_metric_and_the_total_epochs(tmp_path):
    result = tune(BASE, {"p_hidden": (0.0, 0.9)}, tmp_path, trials=6, train=Synthetic())
    text = format_result(result)
    best = result["best"]
    assert result["metric"] == "validation accuracy"
    assert text.splitlines()[0] == (
        f"TPE search: 6 trials ({sum(t['state'] == 'PRUNED' for t in result['trials'])} pruned), "
        f"{result['epochs_spent']} epochs in total; best: trial {best['trial'] + 1}, "
        f"p_hidden={best['params']['p_hidden']:g}, validation accuracy {100 * best['value']:.2f}%"
    )
    confirm = result["confirm"]
    assert text.splitlines()[1] == (
        f"    confirmed on seeds 0,1,2: test accuracy {100 * confirm['mean']:.2f} ± "
        f"{100 * confirm['ci']:.2f}% (n=3)"
    )


def test_repeated_confirm_seeds_are_refused(tmp_path, capsys):
    # a repeated seed is the same sample: it would narrow the interval for nothing
    with pytest.raises(ValueError, match="repeats a seed"):
        tune(BASE, {"p_hidden": (0.0, 0.9)}, tmp_path, trials=2, confirm_seeds=[0, 0, 1])
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--space", "p_hidden=0:0.5", "--confirm-seeds", "0,1,1", *TINY_ARGS])
    assert exc.value.code == 2 and "repeats a seed" in capsys.readouterr().err
