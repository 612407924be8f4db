"""Grid sweeps on Optuna: one trial per grid point, each a :func:`~dropkit.lab.runner.run`.

The study lives in an Optuna storage: by default SQLite at ``<root>/sweep.db``; any SQLAlchemy URL
(e.g. ``postgresql://user:pass@host/db``) lets workers on several machines share one sweep — start
``dropkit sweep`` with the same ``--storage`` URL, grid and ``--root`` (a shared folder, or each machine
its own and ``dropkit report`` over all of them) on each machine. Processes that open a new SQLite
file at the same instant take turns through ``<file>.lock`` to create Optuna's tables.

Each grid point's run directory is ``<root>/runs/<key>``, named by its parameters, so:

* the study's creator queues every grid point once; workers only ever take points from that queue
  (marking a waiting trial running succeeds for one worker only) and never let a sampler draw one,
  so every point is trained once and none is pruned;
* rerunning the same sweep resumes it: finished points return their saved summary at once, an
  interrupted one resumes from its checkpoint, and points whose trial failed are queued again;
* a point that two workers nevertheless reach at once (a failed point re-queued by both) is trained
  once: the run directory's lock refuses the second, whose trial is pruned;
* a grown grid (e.g. more seeds) is a new study, named by the grid (:func:`default_study_name`), in
  the same storage; its points already on disk are not trained again.

Workers record a heartbeat; a trial whose worker died (no heartbeat for ``4 * heartbeat`` seconds) is
marked failed by another worker, queued again and resumed from its checkpoint. A worker returns when
every point of the grid is complete, waiting for points that other workers are still training.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dropkit.lab.config import Config

__all__ = ["default_study_name", "grid_points", "point_dir", "sweep"]

VARIANT = "variant"  # grid axis whose values name override sets in ``variants``


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def point_dir(root: str | Path, params: Mapping[str, Any]) -> Path:
    """``<root>/runs/<key>``: a readable, filesystem-safe key from the parameters."""
    text = "_".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
    safe = "".join(c if c.isalnum() or c in "=._-+" else "-" for c in text)
    if len(safe) > 120:
        safe = safe[:100] + "_" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return Path(root) / "runs" / safe


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(_short, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_grid(base: Config, grid: Mapping[str, Sequence[Any]], variants: Mapping[str, Mapping]):
    if not grid:
        raise ValueError("sweep: the grid is empty; give at least one axis (e.g. seed=0,1,2)")
    valid = set(Config.model_fields) | ({VARIANT} if variants else set())
    unknown = sorted(set(grid) - valid)
    if unknown:
        from dropkit.lab.config import did_you_mean

        named = ", ".join(f"{k}{did_you_mean(k, valid)}" for k in unknown)
        raise ValueError(
            f"sweep: unknown grid key(s) {named}; valid keys are {', '.join(sorted(valid))}"
        )
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"sweep: grid axis {key!r} needs a non-empty list of values")
    for name in grid.get(VARIANT, ()):
        if name not in variants:
            raise ValueError(f"sweep: unknown variant {name!r}; known: {', '.join(variants)}")
    for params in grid_points(grid):  # fail before any training if a point is invalid
        _point_config(base, params, variants)


def _point_config(
    base: Config, params: Mapping[str, Any], variants: Mapping[str, Mapping]
) -> Config:
    changes = {k: v for k, v in params.items() if k != VARIANT}
    if VARIANT in params:
        changes = {"name": params[VARIANT], **variants[params[VARIANT]], **changes}
    return base.replace(**changes)


@contextlib.contextmanager
def _sqlite_creation_lock(url: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>.lock`` (SQLite files only; waits for it).

    Optuna's RDBStorage creates its tables (and alembic's ``alembic_version``) when it first opens
    a database, with no lock between processes: two sweeps started at the same instant on a new
    SQLite file both CREATE, and one fails with "table ... already exists" (measured: 12 of 32
    simultaneous starts). Under this lock one process creates them and the others find them.
    """
    import fcntl

    from sqlalchemy.engine import make_url

    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(lock_path)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _storage(url: str, heartbeat: int):
    import optuna

    url = _with_driver(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    # Workers started together on an empty database race to create Optuna's tables. On SQLite a
    # file lock orders them; on a server (PostgreSQL) the loser's CREATE fails on a name the winner
    # just made, and connecting again finds the tables.
    for attempt in range(5):
        try:
            with _sqlite_creation_lock(url), warnings.catch_warnings():
                # heartbeats are marked experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=heartbeat, grace_period=4 * heartbeat, **kwargs
                )
            break
        except (IntegrityError, ProgrammingError, OperationalError) as err:
            if attempt == 4:
                from sqlalchemy.engine import make_url

                from dropkit.lab._io import LabError

                shown = make_url(url).render_as_string(hide_password=True)
                reason = " ".join(str(getattr(err, "orig", err)).split())
                raise LabError(f"sweep: cannot open the storage {shown}: {reason}") from None
            time.sleep(0.2 * (attempt + 1))
    if url.startswith("sqlite"):
        _serializable_sqlite(storage.engine)
    return storage


def _with_driver(url: str) -> str:
    """A bare ``postgresql://`` URL means SQLAlchemy's default driver (psycopg 3); use psycopg2, the
    ``postgres`` extra's driver, when only it is installed, and say what to install when neither is."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    raise ModuleNotFoundError(
        "sweep: a PostgreSQL storage needs a driver: pip install 'dropkit[postgres]' (psycopg2)",
        name="psycopg2",
    )


def _serializable_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna hands a queued trial to a worker by reading that it is waiting and then marking it
    running; PostgreSQL does both under a row lock, but pysqlite's deferred transactions let two
    workers read "waiting" at once and both run the trial. SQLAlchemy's recipe for SQLite
    transactions (its pysqlite dialect notes) closes that gap.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not pysqlite, issues BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened without the listener


def _study(storage: Any, name: str | None, grid: Mapping[str, Sequence[Any]], wait: float = 60.0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # no sampler chatter between progress lines
    # Optuna stores categorical choices; lists become JSON text so any value can be a grid value.
    space = {k: [_encode(v) for v in values] for k, values in grid.items()}
    name = name or default_study_name(space)
    # Workers take only queued trials (_take_waiting), whose parameters are fixed: the sampler a
    # study needs never draws a point. (Optuna's GridSampler does not know the queue: it warns,
    # and fails on one-point grids.)
    sampler = optuna.samplers.RandomSampler(seed=0)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, direction="maximize"
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        created = False
    # Optuna cannot change a parameter's choices within a study: refuse clearly, before any trial.
    for trial in study.get_trials(deepcopy=False):
        params = trial.system_attrs.get("fixed_params", trial.params)
        dists = trial.distributions
        if set(params) != set(space) or any(
            key in dists and list(dists[key].choices) != space[key] for key in dists
        ):
            raise ValueError(
                f"sweep: study '{name}' in this storage was made with another grid (axes "
                f"{sorted(params)} vs {sorted(space)}); keep its grid or give a new study name"
            )
    if created:
        for params in grid_points(space):  # the queue: one waiting trial per point
            study.enqueue_trial(params)
        study.set_user_attr("queued", True)
    else:  # a worker that joins while the creator is still queueing waits for the whole queue
        deadline = time.monotonic() + wait
        while not study.user_attrs.get("queued") and time.monotonic() < deadline:
            time.sleep(0.2)
    return study, space


def default_study_name(space: Mapping[str, Sequence[Any]]) -> str:
    """``grid-<hash of the grid>``: a changed grid (e.g. more seeds) gets its own study, while its
    run directories, keyed by parameters, are shared, so finished points are not trained again."""
    text = json.dumps({k: list(v) for k, v in space.items()}, sort_keys=True)
    return "grid-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def _encode(value: Any) -> Any:
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


def _point_states(study) -> dict[str, set]:
    """Trial states of each grid point (queued trials count by their fixed parameters)."""
    out: dict[str, set] = {}
    for t in study.get_trials(deepcopy=False):
        out.setdefault(_key(t.system_attrs.get("fixed_params", t.params)), set()).add(t.state)
    return out


def _requeue_failed(study, space: Mapping[str, Sequence[Any]]) -> None:
    """Queue again each grid point whose trials all failed (interrupted, or its worker died)."""
    from optuna.trial import TrialState

    states = _point_states(study)
    for params in grid_points(space):
        point = states.get(_key(params), set())
        if point and point <= {TrialState.FAIL, TrialState.PRUNED}:
            study.enqueue_trial(params)
        elif not point:  # e.g. a study made by an older dropkit, without the queue
            study.enqueue_trial(params)


def _label(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in params.items())


def _objective(base: Config, space, variants, root: Path, progress: bool):
    import optuna
    from optuna.trial import TrialState

    from dropkit.lab._io import RunInUseError

    points = [_key(p) for p in grid_points(space)]

    def objective(trial: optuna.Trial) -> float:
        from dropkit.lab.runner import (
            run,
        )  # torch: only once a point trains (not for a no-op rerun)

        params = {k: trial.suggest_categorical(k, values) for k, values in space.items()}
        # Another worker is training the same point in a lower-numbered trial: this is a duplicate.
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if other.params == params and other.number < trial.number:
                raise optuna.TrialPruned(f"duplicate of trial {other.number}")
        decoded = {k: _decode(v) for k, v in params.items()}
        config = _point_config(base, decoded, variants)
        workdir = point_dir(root, decoded)
        if progress:
            done = sum(
                TrialState.COMPLETE in v
                for k, v in _point_states(trial.study).items()
                if k in points
            )
            what = (
                "finished earlier"
                if (workdir / "summary.json").is_file()
                else "resuming from its checkpoint"
                if (workdir / "checkpoint.pt").is_file()
                else "training"
            )
            from tqdm.auto import tqdm  # its write: a bar on the terminal is redrawn below

            tqdm.write(
                f"run {points.index(_key(params)) + 1}/{len(points)} {_label(decoded)}: {what} "
                f"({done} of {len(points)} complete)",
                file=sys.stderr,
            )
        try:
            summary = run(config, workdir, progress=progress)
        except RunInUseError:
            raise optuna.TrialPruned(f"{workdir} is being trained by another process") from None
        trial.set_user_attr("workdir", str(workdir))
        metric = "val" if summary.get("val_acc", summary.get("val_rmse")) is not None else "test"
        if "test_acc" in summary:
            return summary[f"{metric}_acc"]
        return -summary[f"{metric}_rmse"]

    return objective


def _worker(
    base_json: str,
    space,
    variants,
    root: str,
    storage_url: str,
    name: str,
    heartbeat: int,
    progress: bool,
    *,
    storage: Any = None,
) -> None:
    import optuna

    base = Config.build(json.loads(base_json))
    storage = storage or _storage(storage_url, heartbeat)
    study, _ = _study(storage, name, {k: [_decode(v) for v in vs] for k, vs in space.items()})
    objective = _objective(base, space, variants, Path(root), progress)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of dead workers -> FAIL
        _requeue_failed(study, space)
        if not _incomplete(study, space):
            return
        trial_id = _take_waiting(storage, study)
        if trial_id is not None:
            _run_trial(storage, study, trial_id, objective)
        else:  # the open points are running elsewhere: wait for them (or for their worker to die)
            time.sleep(min(heartbeat, 2))


def _take_waiting(storage, study) -> int | None:
    """Take a waiting (queued) trial for this worker: its id, or None if the queue is empty.

    Marking a trial running succeeds for one worker only: the storage checks, under its lock,
    that it is still waiting (see :func:`_serializable_sqlite` for SQLite). ``study.ask()`` (and
    so ``study.optimize``) would instead, on finding the queue emptied by another worker between
    this worker's look and its take, let the sampler draw a new trial: a point already trained,
    or being trained, elsewhere, which this worker would then train (or record) a second time.
    """
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished meanwhile by another worker
    return None


def _run_trial(storage, study, trial_id: int, objective) -> None:
    """Run ``objective`` on a taken trial with a heartbeat, then record its outcome as
    ``study.optimize`` would: pruned, complete, or failed (and the error raised again)."""
    import threading

    import optuna
    from optuna.trial import TrialState

    number = storage.get_trial(trial_id).number  # ``study.tell`` takes the number in the study
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def beat() -> None:  # another worker fails this trial after 4 heartbeats without one
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    outcome: dict[str, Any] = {"state": TrialState.FAIL}  # unless it returns or is pruned
    try:
        beating = threading.Thread(target=beat, name="dropkit-sweep-heartbeat", daemon=True)
        if interval:
            storage.record_heartbeat(trial_id)
            beating.start()
        try:
            outcome = {"values": objective(optuna.Trial(study, trial_id))}
        except optuna.TrialPruned:
            outcome = {"state": TrialState.PRUNED}
        finally:
            stop.set()
            if beating.is_alive():
                beating.join()
    finally:  # a failed or interrupted run's trial fails: its point is queued again on a rerun
        study.tell(number, **outcome)


def _stop_with_parent(parent: int) -> None:
    """A worker whose sweep process died (even by SIGKILL) interrupts itself: its run saves the
    finished epochs and stops, instead of training on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="dropkit-parent-watch", daemon=True).start()


def _worker_process(parent: int, *args) -> None:
    """A spawned worker: a user error is one line on stderr and exit code 2, not a traceback."""
    # SIGINT is how the sweep (and the parent watch) stops a worker. A sweep started in the
    # background by a non-interactive shell ignores SIGINT, and its spawned workers inherit that:
    # they would train on after the sweep stopped. A worker gets no terminal Ctrl-C of its own
    # that way, so Python's KeyboardInterrupt handler is always its handler.
    from dropkit.lab._io import LabError

    signal.signal(signal.SIGINT, signal.default_int_handler)
    _stop_with_parent(parent)
    try:
        _worker(*args)
    except KeyboardInterrupt:  # Ctrl-C, or the sweep process stopping it: the run saved its epochs
        sys.exit(130)
    except (ValueError, TypeError, OSError, LabError) as err:
        print(f"dropkit sweep worker: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)


def _incomplete(study, space) -> list[dict]:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = {_key(t.params) for t in complete}
    return [p for p in grid_points(space) if _key(p) not in done]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run_workers(args: tuple, workers: int) -> list:
    """Start ``workers`` spawned worker processes and wait for them. If the wait ends early (Ctrl-C,
    SIGTERM, an error), every live worker is interrupted so that it saves its run and stops: no
    worker outlives the sweep."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_process, args=(os.getpid(), *args)) for _ in range(workers)]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        for proc in procs:
            if proc.pid is not None:
                proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return procs


def sweep(
    base: Config | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    root: str | Path,
    *,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    heartbeat: int = 60,
    progress: bool = False,
) -> list[dict]:
    """Run every point of ``grid`` (the product of its axes) over ``base``; return one row per point.

    Args:
        base: the config every point starts from.
        grid: ``{key: [values]}``; keys are config fields, or ``"variant"`` naming an entry of
            ``variants`` (a dict of overrides, e.g. ``{"dropout+L2": {"p_hidden": 0.5, "l2": 1e-4}}``).
        root: sweep folder; run directories go to ``<root>/runs/``.
        storage: Optuna storage URL; default ``sqlite:///<root>/sweep.db``.
        study_name: default :func:`default_study_name` of the grid; one storage holds many studies.
        workers: local worker processes (each runs trials until the grid is done).
        heartbeat: seconds between a worker's heartbeats; a trial without one for 4 heartbeats is
            a dead worker's, and is queued again.
        progress: print a line per point ("run 3/6 p_hidden=0.3 seed=1: training (2 of 6
            complete)") and a bar over each run's epochs.

    Returns rows ``{"params", "workdir", "state", "value"}`` for every trial in the study.
    """
    if isinstance(base, Mapping):  # (not runner's _as_config: a no-op rerun needs no torch)
        base = Config.build(base)
    elif not isinstance(base, Config):
        raise TypeError(f"sweep: base must be a Config or a mapping, but got {type(base).__name__}")
    variants = dict(variants or {})
    _check_grid(base, grid, variants)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: workers must be a positive int, but got {workers!r}")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int) or heartbeat < 1:
        raise ValueError(
            f"sweep: heartbeat must be a positive int (seconds), but got {heartbeat!r}"
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(root / 'sweep.db').resolve()}"
    opened = _storage(url, heartbeat)
    study, space = _study(opened, study_name, grid)  # creates the study once
    name = study.study_name
    args = (base.model_dump_json(), space, variants, str(root), url, name, heartbeat, progress)
    if workers == 1:
        _worker(*args, storage=opened)
    else:
        procs = _run_workers(args, workers)
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            from dropkit.lab._io import LabError

            raise LabError(
                f"sweep: {len(failed)} of {workers} worker(s) failed (exit codes {failed}; each "
                "printed its error above); rerun the same command to resume"
            )
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = t.params or t.system_attrs.get("fixed_params", {})
        rows.append(
            {
                "params": {k: _decode(v) for k, v in params.items()},
                "workdir": t.user_attrs.get("workdir"),
                "state": t.state.name,
                "value": t.value,
            }
        )
    return rows
