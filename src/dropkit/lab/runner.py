"""``run(config, workdir)``: train one model and write everything about it to its run directory.

Run directory::

    config.json     the resolved config (every field, defaults included)
    provenance.json what produced it: command line, dropkit version and git commit, torch,
                    numba, NumPy and Python versions, host, CPU, threads, device, seed, SHA-256
                    of the data (see lab.provenance); a resumed run adds an entry to "resumes"
    metrics.jsonl   one record per epoch: train/val/test loss and accuracy (RMSE for regression)
    metrics.csv     the same, as a table
    checkpoint.pt   model, optimiser, RNG states and history after the last finished epoch
                    (removed once the run is complete)
    model.pt        the final weights (the best-val epoch's when early stopping is on)
    summary.json    the final metrics, wall_s (seconds of the epochs) and warmup_s (a first
                    step before them: kernel compilation, not counted in wall_s); its presence
                    marks the run as complete
    curves.png      learning curves (when config.plots)

Every file is written atomically. An interrupted run (Ctrl-C, a killed process) resumes from its last
checkpoint when ``run`` is called again on the same directory with the same config, and continues
exactly as if it had not stopped: the batch order, dropout masks and augmentation come from RNG states
saved in the checkpoint. A run that fails before it starts training (bad data, a model that does
not build) leaves no folder behind.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dropkit.lab._data import Prepared, prepare
from dropkit.lab._io import (
    atomic_write,
    lock_dir,
    read_json,
    remove_stale_temp_files,
    write_json,
)
from dropkit.lab._rundir import load_run, read_summary, saved_config
from dropkit.lab.config import Config
from dropkit.lab.loggers import FileLogger, MetricsLogger
from dropkit.lab.models import build_model

__all__ = ["load_run", "run"]

_EVAL_BATCH = 2048


def _as_config(config: Config | Mapping[str, Any]) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config.build(config)
    raise TypeError(f"run: config must be a Config or a mapping, but got {type(config).__name__}")


def _check_same_config(workdir: Path, config: Config) -> None:
    saved = saved_config(workdir).model_dump(mode="json")
    now = config.model_dump(mode="json")
    diff = sorted(k for k in now if saved.get(k) != now[k])
    if diff:
        raise ValueError(
            f"run: '{workdir}' holds a run with a different config ({', '.join(diff)} differ); "
            "use another workdir or delete that one"
        )


def _check_workdir(workdir: Path) -> None:
    """Refuse, with the path named, a workdir that is a file or lies under one."""
    for folder in (workdir, *workdir.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "workdir" if folder == workdir else "a parent of workdir"
                raise NotADirectoryError(
                    f"run: {what} '{folder}' is a file, not a folder; give another --workdir"
                )
            return


def _penalty(model: nn.Module, config: Config) -> torch.Tensor | float:
    if not (config.l1 or config.l2):
        return 0.0
    total = 0.0
    for param in model.parameters():
        if param.dim() > 1:  # weight matrices and filters; not biases or BatchNorm
            if config.l2:
                total = total + config.l2 * param.pow(2).sum()
            if config.l1:
                total = total + config.l1 * param.abs().sum()
    return total


@torch.no_grad()
def _apply_max_norm(model: nn.Module, c: float) -> None:
    # Each unit's incoming weight vector (a row of a Linear, one filter of a Conv) has norm <= c.
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            module.weight.copy_(torch.renorm(module.weight, p=2, dim=0, maxnorm=c))


def _augment(x: torch.Tensor, config: Config) -> torch.Tensor:
    if config.augment_shift:
        x = _random_shift(x, config.augment_shift)
    if config.augment_noise:
        x = x + config.augment_noise * torch.randn_like(x)
    return x


def _random_shift(x: torch.Tensor, s: int) -> torch.Tensor:
    """Shift each example by a random offset in [-s, s] along every spatial axis, filling with 0."""
    n, c, *spatial = x.shape
    padded = F.pad(x, [s, s] * len(spatial))
    dev = x.device
    offsets = torch.randint(0, 2 * s + 1, (n, len(spatial)), device=dev)
    if len(spatial) == 1:
        (length,) = spatial
        idx = offsets[:, :1] + torch.arange(length, device=dev)  # (N, L)
        return padded.gather(2, idx[:, None, :].expand(n, c, length))
    h, w = spatial
    rows = offsets[:, :1] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[:, 1:] + torch.arange(w, device=dev)  # (N, W)
    padded = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * s))
    return padded.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == "regression":
        return F.mse_loss(out.squeeze(-1), y)
    return F.cross_entropy(out, y)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: Prepared) -> dict:
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), _EVAL_BATCH):
        out = model(x[start : start + _EVAL_BATCH])
        yb = y[start : start + _EVAL_BATCH]
        total_loss += _loss(out, yb, data.task).item() * len(yb)
        if data.task == "classification":
            correct += int((out.argmax(1) == yb).sum())
    loss = total_loss / len(x)
    if data.task == "regression":
        return {"loss": loss, "rmse": math.sqrt(loss) * data.y_scale}
    return {"loss": loss, "acc": correct / len(x)}


def _epoch_record(epoch: int, model: nn.Module, data: Prepared, config: Config) -> dict:
    record: dict[str, Any] = {"epoch": epoch}
    parts = [
        ("train", data.x_train[: config.eval_train_max], data.y_train[: config.eval_train_max])
    ]
    if data.x_val is not None:
        parts.append(("val", data.x_val, data.y_val))
    parts.append(("test", data.x_test, data.y_test))
    for part, x, y in parts:
        for key, value in _evaluate(model, x, y, data).items():
            record[f"{part}_{key}"] = value
    return record


def _train_epoch(
    model, optimizer, data: Prepared, config: Config, rng: np.random.Generator, on_batch=None
) -> None:
    model.train()
    order = torch.from_numpy(rng.permutation(len(data.x_train))).to(data.x_train.device)
    for batch, start in enumerate(range(0, len(order), config.batch_size)):
        if on_batch is not None:
            on_batch(batch)
        idx = order[start : start + config.batch_size]
        if len(idx) < 2 and config.batchnorm != "none":
            continue  # BatchNorm cannot train on a batch of one
        xb = _augment(data.x_train[idx], config)
        loss = _loss(model(xb), data.y_train[idx], data.task) + _penalty(model, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if config.max_norm is not None:
            _apply_max_norm(model, config.max_norm)


def _scheduler(optimizer: torch.optim.Optimizer, config: Config):
    """The per-epoch learning-rate schedule of ``config.lr_schedule`` (None when constant)."""
    sched = torch.optim.lr_scheduler
    if config.lr_schedule == "step":
        return sched.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    if config.lr_schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=config.lr_gamma)
    if config.lr_schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def _optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    return torch.optim.Adam(model.parameters(), lr=config.lr)


def _dropout_schedule(model: nn.Module, config: Config, steps_per_epoch: int):
    """``set_time(epoch, batch)`` driving ``config.dropout_schedule`` (None for constant rates).

    Time is the step count or the epoch count (``config.schedule_per``), with the config's lengths,
    given in epochs, converted to match. The rates depend on the time alone, so a resumed run gets
    them right from its epoch.
    """
    if config.dropout_schedule == "constant":
        return None
    from dropkit.schedules import make_schedule

    per_step = config.schedule_per == "step"
    unit = steps_per_epoch if per_step else 1
    schedule = make_schedule(
        config.dropout_schedule,
        model,
        length=config.schedule_length * unit,
        gamma=config.schedule_gamma / unit,
    )

    def set_time(epoch: int, batch: int) -> None:
        schedule.step((epoch - 1) * steps_per_epoch + batch if per_step else epoch - 1)

    return set_time


def _save(path: Path, obj: Any) -> None:
    # Serialise in memory, then write from Python: a full disk is a plain OSError naming the file
    # (torch's zip writer turns it into an anonymous RuntimeError), and Ctrl-C waits for the file.
    def write(f) -> None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write(buf.getbuffer())

    atomic_write(path, write)


def _record_provenance(workdir: Path, config: Config, device, data: Prepared, epoch: int) -> None:
    """``provenance.json``: the session that started the run; each later session that resumed it
    (from ``epoch``) is appended to ``resumes``."""
    from dropkit.lab._data import data_files
    from dropkit.lab.provenance import collect

    now = collect(config, device, data, data_files(config))
    path = workdir / "provenance.json"
    saved = read_json(path) if path.is_file() else None
    if not isinstance(saved, dict):  # a new run (or a corrupt file: rewritten, not fatal)
        write_json(path, now)
    elif epoch > 0:
        write_json(
            path, {**saved, "resumes": [*saved.get("resumes", []), {**now, "from_epoch": epoch}]}
        )


def _warm_up(model: nn.Module, data: Prepared, config: Config, device: torch.device) -> float:
    """Seconds of one training step and one evaluation batch run before the timed epochs.

    The first call of a kernel compiles it (numba's dropout kernels: seconds; CUDA and torch's own
    first-call set-up: less), a one-off cost of the process, not of training: it is paid here and
    recorded apart (``warmup_s``), so ``wall_s`` times the training alone. The step leaves no
    trace: every RNG is forked, the weights and buffers are restored and the gradients cleared, and
    the optimiser is not touched, so the run's results are those it would have without it.
    """
    t0 = time.perf_counter()
    saved = copy.deepcopy(model.state_dict())
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.train()
        idx = slice(0, max(2, config.batch_size))  # BatchNorm needs two rows
        xb = _augment(data.x_train[idx], config)
        _loss(model(xb), data.y_train[idx], data.task).backward()
        model.eval()
        with torch.no_grad():
            model(data.x_train[:_EVAL_BATCH])
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _load_checkpoint(path: Path) -> dict:
    # On the CPU: RNG states must be CPU tensors; load_state_dict moves weights to the model's device.
    try:
        saved = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(saved, dict) or not {"model", "optimizer", "state"} <= set(saved):
            raise ValueError("not a dropkit checkpoint")
    except Exception as err:
        raise ValueError(
            f"run: checkpoint '{path}' cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'corrupt'}); delete it to restart this run "
            "from its first epoch"
        ) from None
    return saved


def run(
    config: Config | Mapping[str, Any],
    workdir: str | Path,
    *,
    loggers: Iterable[MetricsLogger] = (),
    progress: bool = False,
) -> dict:
    """Train ``config``'s model, writing to ``workdir``; return the summary (also in summary.json).

    Calling it again on a finished directory returns the saved summary; on an interrupted one, it
    resumes. A directory that holds a run with another config is refused (``ValueError``), and so
    is one that another process is training (:class:`~dropkit.lab._io.RunInUseError`). The config
    is saved only once the data and model have loaded, so a failed start can simply be rerun.

    Args:
        config: a :class:`Config`, or a mapping of its keys (validated).
        workdir: the run directory (created if needed).
        loggers: extra metric loggers (e.g. :class:`~dropkit.lab.loggers.StdoutLogger`); the JSONL/CSV
            files are always written.
        progress: show a tqdm bar over epochs.
    """
    config = _as_config(config)
    workdir = Path(workdir)
    _check_workdir(workdir)
    created = [d for d in (workdir, *workdir.parents) if not d.exists()]  # deepest first
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(err.errno, err.strerror, str(workdir)) from None
    with lock_dir(workdir):
        remove_stale_temp_files(workdir)  # left by a process killed mid-write
        if (workdir / "config.json").is_file():
            _check_same_config(workdir, config)
            if (workdir / "summary.json").is_file():
                return read_summary(workdir)
        threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        loggers = list(loggers)
        try:
            return _run(config, workdir, loggers, progress)
        except BaseException:
            if not (workdir / "config.json").is_file():  # it failed before its first file
                _forget_failed_start(workdir, created)
            raise
        finally:
            torch.set_num_threads(threads)
            for logger in loggers:
                close = getattr(logger, "close", None)
                if close is not None:
                    close()


def _forget_failed_start(workdir: Path, created: list[Path]) -> None:
    """Remove what a run that failed before saving its config made: the lock file (its lock still
    held) and the folders this call created, if empty; the corrected command starts afresh."""
    (workdir / ".lock").unlink(missing_ok=True)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run's files), or gone
            break


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (an error if CUDA is unavailable) or ``auto`` (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' but this torch build sees no CUDA device "
            f"(torch {torch.__version__}); use device=cpu or device=auto"
        )
    return torch.device(name)


def _to_device(data: Prepared, device: torch.device) -> Prepared:
    if device.type == "cpu":
        return data
    moved = {
        f.name: getattr(data, f.name).to(device)
        for f in dataclasses.fields(data)
        if isinstance(getattr(data, f.name), torch.Tensor)
    }
    return dataclasses.replace(data, **moved)


def _run(config: Config, workdir: Path, loggers: list, progress: bool) -> dict:
    device = resolve_device(config.device)
    data = _to_device(prepare(config), device)
    torch.manual_seed(config.seed)  # also seeds every CUDA device
    # Built (and initialised) on the CPU, then moved: the same initial weights on every device.
    model = build_model(config, data.input_shape, data.n_outputs).to(device)
    if config.mask_share > 1:  # k ranks seeded alike: masks tiled over k chunks of each batch
        from dropkit.lab.mask_share import share_masks

        share_masks(model, config.mask_share)
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config)
    steps_per_epoch = -(-len(data.x_train) // config.batch_size)
    schedule = _dropout_schedule(model, config, steps_per_epoch)
    rng = np.random.default_rng([config.seed, 1])
    state: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "elapsed": 0.0,
        "best_loss": math.inf,
        "best_epoch": 0,
        "best_model": None,
        "bad_epochs": 0,
    }

    checkpoint = workdir / "checkpoint.pt"
    if checkpoint.is_file():
        saved = _load_checkpoint(checkpoint)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        rng.bit_generator.state = saved["numpy_rng"]
        state = saved["state"]
    # Compilation and first-call set-up, timed apart from the epochs (summed over sessions: a
    # resumed run compiles again in its new process). A model that fails here fails a start.
    state["warmup_s"] = state.get("warmup_s", 0.0) + _warm_up(model, data, config, device)
    # The config is saved only once the data, the model, any checkpoint and a first step have
    # run: a run that fails before training leaves nothing behind to refuse the corrected command.
    write_json(workdir / "config.json", config.model_dump(mode="json"))
    _record_provenance(workdir, config, device, data, state["epoch"])
    file_logger = FileLogger(workdir, state["history"])

    # A run that early-stopped and was killed before its summary does not train on.
    epochs = range(0) if state.get("stopped") else range(state["epoch"] + 1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=config.name, initial=state["epoch"], total=config.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
        on_batch = None
        if schedule is not None:

            def on_batch(batch: int, epoch: int = epoch) -> None:
                schedule(epoch, batch)

        _train_epoch(model, optimizer, data, config, rng, on_batch)
        if scheduler is not None:
            scheduler.step()
        if epoch % config.eval_every and epoch != config.epochs:
            state["elapsed"] += time.perf_counter() - t0
            continue
        record = _epoch_record(epoch, model, data, config)
        if scheduler is not None:
            record["lr"] = lr
        state["elapsed"] += time.perf_counter() - t0
        record["elapsed_s"] = round(state["elapsed"], 3)

        stop = False
        if config.early_stopping:
            if record["val_loss"] < state["best_loss"]:
                state.update(
                    best_loss=record["val_loss"],
                    best_epoch=epoch,
                    bad_epochs=0,
                    best_model=copy.deepcopy(model.state_dict()),
                )
            else:
                state["bad_epochs"] += 1
                stop = state["bad_epochs"] >= config.early_stopping
        state["epoch"] = epoch
        state["stopped"] = stop
        file_logger.log(record)
        state["history"] = file_logger.records
        for logger in loggers:
            logger.log(record)
        _save(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                **({"scheduler": scheduler.state_dict()} if scheduler is not None else {}),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                "numpy_rng": rng.bit_generator.state,
                "state": state,
            },
        )
        if stop:
            break

    history = file_logger.records
    final = history[-1]
    if config.early_stopping and state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
        final = next(r for r in history if r["epoch"] == state["best_epoch"])
    _save(workdir / "model.pt", {k: v.cpu() for k, v in model.state_dict().items()})
    summary = {
        "name": config.name,
        "epochs_run": state["epoch"],
        "final_epoch": final["epoch"],
        "wall_s": round(state["elapsed"], 3),  # the epochs: training and evaluation
        "warmup_s": round(state.get("warmup_s", 0.0), 3),  # compilation etc., not in wall_s
        "n_params": sum(p.numel() for p in model.parameters()),
        **{k: v for k, v in final.items() if k not in ("epoch", "elapsed_s", "lr")},
    }
    if "train_acc" in final:
        summary["gap"] = final["train_acc"] - final["test_acc"]
    if config.plots:
        from dropkit.lab.plots import plot_run

        plot_run(history, workdir / "curves.png", title=config.name)
    write_json(workdir / "summary.json", summary)
    checkpoint.unlink(missing_ok=True)
    return summary
