"""Sweeps on Optuna with SQLite: two worker processes, resume after an interrupt, grid errors."""

from __future__ import annotations

import pytest

import dropkit.lab.runner as runner_mod
from dropkit.lab import Config
from dropkit.lab.sweep import default_study_name, grid_points, point_dir, sweep
from tests.lab._helpers import TINY

GRID = {"p_hidden": [0.0, 0.5], "seed": [0, 1]}


def _complete(rows):
    return sorted(
        (r["params"]["p_hidden"], r["params"]["seed"]) for r in rows if r["state"] == "COMPLETE"
    )


def test_two_workers_share_one_sqlite_study(tmp_path):
    rows = sweep(TINY, GRID, tmp_path, workers=2)
    # Every point trained exactly once, into its own run directory: the workers take points from
    # one queue, so no point is drawn twice and no trial is pruned.
    assert _complete(rows) == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 4
    for params in grid_points(GRID):
        assert (point_dir(tmp_path, params) / "summary.json").is_file()
    assert len(list((tmp_path / "runs").iterdir())) == 4
    assert (tmp_path / "sweep.db").is_file()
    # Rerunning a finished sweep trains nothing new.
    again = sweep(TINY, GRID, tmp_path)
    assert len(again) == len(rows)


def test_a_worker_that_finds_the_queue_emptied_trains_nothing(tmp_path, monkeypatch):
    # Two workers race for the last waiting point: this one saw it waiting, the other took it
    # (and trained it) first. Before, Optuna's ask() then had the sampler draw a new point, one
    # that was already trained, and this worker trained it a second time.
    from optuna.distributions import CategoricalDistribution
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    from dropkit.lab.sweep import _storage, _study, _worker

    grid = {"seed": [0, 1]}
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    study, space = _study(_storage(url, 60), None, grid)
    take = RDBStorage.set_trial_state_values
    won = []

    def other_worker_first(self, trial_id, state, values=None):
        if state == TrialState.RUNNING and trial_id not in won:  # the other worker wins it
            won.append(trial_id)
            take(self, trial_id, TrialState.RUNNING)
            for key, value in self.get_trial(trial_id).system_attrs["fixed_params"].items():
                dist = CategoricalDistribution(space[key])
                self.set_trial_param(trial_id, key, dist.to_internal_repr(value), dist)
            take(self, trial_id, TrialState.COMPLETE, [1.0])
        return take(self, trial_id, state, values)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", other_worker_first)
    trained = []
    original = runner_mod._run
    monkeypatch.setattr(
        runner_mod, "_run", lambda config, *a: trained.append(config.seed) or original(config, *a)
    )
    base = Config.build(TINY).model_dump_json()
    _worker(base, space, {}, str(tmp_path), url, study.study_name, 60, False)
    assert trained == []
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2  # no new trial
    assert len(won) == 2


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    original = runner_mod._run
    calls = []

    def interrupt_second(config, workdir, *args):
        calls.append(workdir)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(config, workdir, *args)

    monkeypatch.setattr(runner_mod, "_run", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        sweep(TINY, GRID, tmp_path)
    monkeypatch.setattr(runner_mod, "_run", original)
    rows = sweep(TINY, GRID, tmp_path)
    assert _complete(rows) == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert sum(r["state"] == "FAIL" for r in rows) == 1  # the interrupted trial, then re-queued


def test_variants_name_the_runs(tmp_path):
    variants = {"plain": {}, "dropout": {"p_hidden": 0.5}}
    rows = sweep(TINY, {"variant": ["plain", "dropout"]}, tmp_path, variants=variants)
    assert sorted(r["params"]["variant"] for r in rows) == ["dropout", "plain"]
    cfg = Config.model_validate_json(
        (point_dir(tmp_path, {"variant": "dropout"}) / "config.json").read_text()
    )
    assert cfg.name == "dropout" and cfg.p_hidden == (0.5,)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({}, "the grid is empty"),
        ({"lrr": [1]}, r"unknown grid key\(s\) lrr \(did you mean 'lr'\?\); valid keys are"),
        ({"lr": []}, "needs a non-empty list"),
        ({"p_hidden": [0.5, 2.0]}, r"each rate must be in \[0, 1\)"),
        ({"variant": ["x"]}, "unknown grid key"),
    ],
)
def test_grid_errors(tmp_path, grid, message):
    with pytest.raises(ValueError, match=message):
        sweep(TINY, grid, tmp_path)
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_extending_the_grid_reuses_finished_runs(tmp_path, monkeypatch):
    sweep(TINY, {"seed": [0, 1]}, tmp_path)
    trained = []
    original = runner_mod._run
    monkeypatch.setattr(
        runner_mod, "_run", lambda config, *a: trained.append(config.seed) or original(config, *a)
    )
    rows = sweep(TINY, {"seed": [0, 1, 2]}, tmp_path)  # a new study; seeds 0, 1 are on disk
    assert trained == [2]
    assert sorted(r["params"]["seed"] for r in rows if r["state"] == "COMPLETE") == [0, 1, 2]
    with pytest.raises(ValueError, match="made with another grid"):
        sweep(
            TINY, {"seed": [0, 1, 2, 3]}, tmp_path, study_name=default_study_name({"seed": [0, 1]})
        )


def _open_storage(barrier, urls, errors) -> None:
    """A sweep process's start: open (and, first, create) the storage at the same instant as the
    others (spawned; module level so that it pickles)."""
    from dropkit.lab.sweep import _storage

    for url in urls:
        barrier.wait(timeout=120)
        try:
            _storage(url, 60)
        except Exception as err:  # noqa: BLE001 - any failure is the test's finding
            errors.put(f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")


def test_simultaneous_starts_on_one_sqlite_file(tmp_path):
    # Before: Optuna created its tables from every process at once and one failed with a raw
    # sqlite3.OperationalError ("table alembic_version already exists", "table studies already
    # exists"): 12 of 32 starts of 4 processes x 8 new files on the 2-core CI machine.
    import multiprocessing
    import queue

    from optuna.storages import RDBStorage

    ctx = multiprocessing.get_context("spawn")
    n, rounds = 4, 4
    urls = [f"sqlite:///{tmp_path / f'r{i}.db'}" for i in range(rounds)]
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_storage, args=(barrier, urls, errors)) for _ in range(n)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    failures = []
    while True:
        try:
            failures.append(errors.get(timeout=1))
        except queue.Empty:
            break
    assert failures == [] and [p.exitcode for p in procs] == [0] * n, failures
    for url in urls:  # every file holds Optuna's tables, usable by a later process
        assert RDBStorage(url).get_all_studies() == []
