"""The UCI regression benchmark of Gal & Ghahramani (2016), protocol of their public code (2018 version).

Per train/test split: the first 80% of the training rows train, the last 20% validate; every
(dropout rate, tau) of the dataset's grid is trained and scored by the validation test log-likelihood
(Monte-Carlo dropout); the best pair is retrained on the whole training split and tested with
``test_samples`` Monte-Carlo samples. The network: dropout on the inputs, one hidden ReLU layer
(``n_hidden`` units), dropout, a linear output; inputs and target normalised with the statistics of the
rows it trains on; mean squared error plus the L2 term ``l^2 (1 - p) / (2 N tau)`` on the weights
(not the biases); Adam (lr 1e-3, eps 1e-7 as Keras), batches of 128, ``n_epochs * epochs_multiplier``
epochs. The authors' README calls its grid-search runs "10x epochs", but the result files in their
repository that match the published column are named ``*_100_xepochs_1_hidden_layers.txt`` (e.g.
energy's validation RMSE near 0.5); the default here is 10, pass 100 to match.

Speed: all grid configurations of several splits train at once as one batched model (``torch.bmm`` over
a leading model dimension). The models share nothing: the loss is a sum of per-model losses, so each
model's gradient and Adam step are those it would get alone; each model draws its own batch order and
dropout masks.

Resumable: each split's result is written atomically to ``<out>/<dataset>/split_<i>.json`` and a rerun
skips the splits already there.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dropkit.data.uci import UCIDataset, load_uci

__all__ = [
    "PUBLISHED",
    "UCIConfig",
    "compare_with_published",
    "find_uci_datasets",
    "run_uci",
    "run_uci_dataset",
    "summarise_uci",
]

# Gal & Ghahramani's public code, 2018 "grid search" column: (RMSE, SE), (test LL, SE).
PUBLISHED = {
    "bostonHousing": ((2.90, 0.18), (-2.40, 0.04)),
    "concrete": ((4.82, 0.16), (-2.93, 0.02)),
    "energy": ((0.54, 0.06), (-1.21, 0.01)),
    "kin8nm": ((0.08, 0.00), (1.14, 0.01)),
    "naval-propulsion-plant": ((0.00, 0.00), (4.45, 0.00)),
    "power-plant": ((4.01, 0.04), (-2.80, 0.01)),
    "protein-tertiary-structure": ((4.27, 0.02), (-2.87, 0.00)),
    "wine-quality-red": ((0.62, 0.01), (-0.93, 0.01)),
    "yacht": ((0.67, 0.05), (-1.25, 0.01)),
}


@dataclass(frozen=True)
class UCIConfig:
    """Settings of one benchmark run; saved beside the results."""

    epochs_multiplier: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lengthscale: float = 1e-2
    val_fraction: float = 0.2
    val_samples: int = 1000
    test_samples: int = 10_000
    splits: tuple[int, ...] | None = None  # None: all splits of each dataset
    splits_per_batch: int = 20  # splits trained together (one batched model)
    max_epochs: int | None = None  # cap, for smoke tests
    seed: int = 1
    memory_budget: int = 2**26  # floats per Monte-Carlo chunk

    def __post_init__(self) -> None:
        for name in ("epochs_multiplier", "batch_size", "val_samples", "test_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UCIConfig: {name} must be a positive int, but got {value!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"UCIConfig: val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.splits_per_batch < 1:
            raise ValueError(
                f"UCIConfig: splits_per_batch must be >= 1, got {self.splits_per_batch}"
            )


# --------------------------------------------------------------------------------------------------
# A batch of independent one-hidden-layer MLPs with dropout on the input and the hidden layer.


class _BatchedMLP(torch.nn.Module):
    """M independent networks; ``p`` (M,) holds each one's dropout rate."""

    def __init__(self, m: int, d: int, h: int, p: torch.Tensor, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("p", p.float())
        # Glorot-uniform weights, zero biases (Keras' Dense defaults).
        a1, a2 = math.sqrt(6.0 / (d + h)), math.sqrt(6.0 / (h + 1))
        self.w1 = torch.nn.Parameter((torch.rand(m, d, h, generator=generator) * 2 - 1) * a1)
        self.b1 = torch.nn.Parameter(torch.zeros(m, 1, h))
        self.w2 = torch.nn.Parameter((torch.rand(m, h, 1, generator=generator) * 2 - 1) * a2)
        self.b2 = torch.nn.Parameter(torch.zeros(m, 1, 1))

    def _mask(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        keep = 1.0 - self.p.view(-1, 1, 1)  # (M, 1, 1)
        return x * (torch.rand(x.shape, generator=generator) < keep)

    def forward(
        self, x: torch.Tensor, mc: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # x: (M, B, D) -> (M, B). Inverted dropout, with the 1/(1-p) factor folded into the next
        # layer's weights: (x * mask / (1-p)) @ W == (x * mask) @ (W / (1-p)), one pass fewer.
        w1, w2 = self.w1, self.w2
        if mc:
            inv_keep = 1.0 / (1.0 - self.p.view(-1, 1, 1))
            x, w1, w2 = self._mask(x, generator), w1 * inv_keep, w2 * inv_keep
        h = torch.relu(torch.baddbmm(self.b1, x, w1))  # (M, B, H)
        if mc:
            h = self._mask(h, generator)
        return torch.baddbmm(self.b2, h, w2).squeeze(-1)

    def l2(self) -> torch.Tensor:
        return self.w1.square().sum(dim=(1, 2)) + self.w2.square().sum(dim=(1, 2))  # (M,)


def _train(
    x: torch.Tensor,
    y: torch.Tensor,
    owner: torch.Tensor,
    p: torch.Tensor,
    reg: torch.Tensor,
    n_hidden: int,
    epochs: int,
    config: UCIConfig,
    generator: torch.Generator,
) -> _BatchedMLP:
    """Train M models; model m sees the rows of data set ``owner[m]``: x (S, N, D), y (S, N)."""
    m, (_, n, d) = owner.numel(), x.shape
    model = _BatchedMLP(m, d, n_hidden, p, generator)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, eps=1e-7)
    bs = config.batch_size
    rows = owner.view(-1, 1)  # (M, 1)
    for _ in range(epochs):
        perm = torch.argsort(torch.rand(m, n, generator=generator), dim=1)  # (M, N)
        for start in range(0, n, bs):
            idx = perm[:, start : start + bs]  # (M, b)
            xb, yb = x[rows, idx], y[rows, idx]  # (M, b, D), (M, b)
            pred = model(xb, mc=True, generator=generator)
            loss = ((pred - yb).square().mean(dim=1) + reg * model.l2()).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


@torch.no_grad()
def _evaluate(
    model: _BatchedMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    owner: torch.Tensor,
    y_mean: torch.Tensor,
    y_std: torch.Tensor,
    tau: torch.Tensor,
    samples: int,
    config: UCIConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """MC-dropout and weight-scaled RMSE and test log-likelihood per model, in the target's units.

    x (S, B, D) normalised inputs, y (S, B) raw targets; ``y_mean``, ``y_std``, ``tau`` per model (M,).
    """
    xs, ys = x[owner], y[owner].double()  # (M, B, D), (M, B)
    m, b, _ = xs.shape
    mu, sd, t = y_mean.view(-1, 1).double(), y_std.view(-1, 1).double(), tau.view(-1, 1).double()
    hidden = model.w1.shape[-1]
    chunk = max(1, min(samples, config.memory_budget // max(1, m * b * (hidden + xs.shape[-1]))))
    total = torch.zeros(m, b, dtype=torch.float64)
    lse = torch.full((m, b), -math.inf, dtype=torch.float64)
    done = 0
    while done < samples:
        c = min(chunk, samples - done)
        xr = xs.unsqueeze(1).expand(m, c, b, xs.shape[-1]).reshape(m, c * b, -1)  # (M, c*B, D)
        out = (
            model(xr, mc=True, generator=generator).view(m, c, b).double() * sd[:, None]
            + mu[:, None]
        )  # (M, c, B) in target units
        total += out.sum(dim=1)
        lse = torch.logaddexp(lse, torch.logsumexp(-0.5 * t[:, None] * (ys[:, None] - out) ** 2, 1))
        done += c
    mc_mean = total / samples
    const = -0.5 * math.log(2 * math.pi) + 0.5 * torch.log(t)
    ll_mc = (lse - math.log(samples) + const).mean(dim=1)
    ws = model(xs, mc=False).double() * sd + mu  # weight scaling: inverted dropout off
    ll_ws = (-0.5 * t * (ys - ws) ** 2 + const).mean(dim=1)
    return {
        "rmse_mc": (ys - mc_mean).square().mean(dim=1).sqrt(),
        "ll_mc": ll_mc,
        "rmse_ws": (ys - ws).square().mean(dim=1).sqrt(),
        "ll_ws": ll_ws,
    }


def _normalise(
    x_train: np.ndarray, y_train: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    x_mean, x_std = x_train.mean(0), x_train.std(0)
    x_std[x_std == 0] = 1.0
    return x_mean, x_std, float(y_train.mean()), float(y_train.std())


def _stack(parts: list[np.ndarray]) -> torch.Tensor:
    return torch.as_tensor(np.stack(parts), dtype=torch.float32)


def _atomic_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=1)
    os.replace(tmp, path)


def _run_splits(
    data: UCIDataset, splits: list[int], config: UCIConfig, generator: torch.Generator
) -> list[dict]:
    """Grid search, retraining and testing for several splits at once (one batched model each)."""
    t0 = time.perf_counter()
    rates, taus = data.dropout_rates or (0.05,), data.tau_values or (1.0,)
    grid = [(p, tau) for p in rates for tau in taus]
    epochs = data.n_epochs * config.epochs_multiplier
    if config.max_epochs is not None:
        epochs = min(epochs, config.max_epochs)
    s, g = len(splits), len(grid)

    # Phase 1: every grid point of every split, trained on the first 80%, scored on the last 20%.
    tr_x, tr_y, va_x, va_y, stats = [], [], [], [], []
    for i in splits:
        x_train, y_train, _, _ = data.split(i)
        n_fit = int((1.0 - config.val_fraction) * len(x_train))
        xm, xsd, ym, ysd = _normalise(x_train[:n_fit], y_train[:n_fit])
        tr_x.append((x_train[:n_fit] - xm) / xsd)
        tr_y.append((y_train[:n_fit] - ym) / ysd)
        va_x.append((x_train[n_fit:] - xm) / xsd)
        va_y.append(y_train[n_fit:])
        stats.append((ym, ysd))
    owner = torch.arange(s).repeat_interleave(g)  # model k = split k // g, grid point k % g
    p = torch.tensor([grid[k % g][0] for k in range(s * g)])
    tau = torch.tensor([grid[k % g][1] for k in range(s * g)], dtype=torch.float64)
    n_fit = tr_x[0].shape[0]
    reg = (config.lengthscale**2 * (1 - p.double()) / (2.0 * n_fit * tau)).float()
    model = _train(
        _stack(tr_x), _stack(tr_y), owner, p, reg, data.n_hidden, epochs, config, generator
    )
    y_mean = torch.tensor([stats[k // g][0] for k in range(s * g)])
    y_std = torch.tensor([stats[k // g][1] for k in range(s * g)])
    val = _evaluate(
        model,
        _stack(va_x),
        torch.as_tensor(np.stack(va_y)),
        owner,
        y_mean,
        y_std,
        tau,
        config.val_samples,
        config,
        generator,
    )
    val_ll = val["ll_mc"].view(s, g)
    best = val_ll.argmax(dim=1)  # (S,)

    # Phase 2: retrain the best grid point of each split on its whole training split and test.
    fx, fy, te_x, te_y, fstats = [], [], [], [], []
    for i in splits:
        x_train, y_train, x_test, y_test = data.split(i)
        xm, xsd, ym, ysd = _normalise(x_train, y_train)
        fx.append((x_train - xm) / xsd)
        fy.append((y_train - ym) / ysd)
        te_x.append((x_test - xm) / xsd)
        te_y.append(y_test)
        fstats.append((ym, ysd))
    owner2 = torch.arange(s)
    p2 = torch.tensor([grid[int(k)][0] for k in best])
    tau2 = torch.tensor([grid[int(k)][1] for k in best], dtype=torch.float64)
    n_full = fx[0].shape[0]
    reg2 = (config.lengthscale**2 * (1 - p2.double()) / (2.0 * n_full * tau2)).float()
    model2 = _train(
        _stack(fx), _stack(fy), owner2, p2, reg2, data.n_hidden, epochs, config, generator
    )
    test = _evaluate(
        model2,
        _stack(te_x),
        torch.as_tensor(np.stack(te_y)),
        owner2,
        torch.tensor([st[0] for st in fstats]),
        torch.tensor([st[1] for st in fstats]),
        tau2,
        config.test_samples,
        config,
        generator,
    )
    seconds = (time.perf_counter() - t0) / s
    results = []
    for j, i in enumerate(splits):
        results.append(
            {
                "dataset": data.name,
                "split": i,
                "dropout_rate": float(p2[j]),
                "tau": float(tau2[j]),
                "epochs": epochs,
                "rmse_mc": float(test["rmse_mc"][j]),
                "ll_mc": float(test["ll_mc"][j]),
                "rmse_ws": float(test["rmse_ws"][j]),
                "ll_ws": float(test["ll_ws"][j]),
                "validation_ll": {
                    f"p={pp},tau={tt}": float(val_ll[j, k]) for k, (pp, tt) in enumerate(grid)
                },
                "seconds": seconds,
            }
        )
    return results


def run_uci_dataset(
    data: UCIDataset, out: str | Path, config: UCIConfig = UCIConfig(), log=print
) -> list[dict]:
    """Run (or resume) the benchmark on one dataset; returns the per-split results, all splits."""
    out = Path(out) / data.name
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "config.json", asdict(config))
    wanted = list(range(data.n_splits)) if config.splits is None else list(config.splits)
    for i in wanted:
        if not 0 <= i < data.n_splits:
            raise ValueError(f"run_uci: {data.name} has splits 0..{data.n_splits - 1}, got {i}")
    todo = [i for i in wanted if not (out / f"split_{i}.json").is_file()]
    if len(todo) < len(wanted):
        log(f"{data.name}: {len(wanted) - len(todo)} split(s) already done, skipped")
    for start in range(0, len(todo), config.splits_per_batch):
        chunk = todo[start : start + config.splits_per_batch]
        # One generator per chunk, seeded from the run seed and the chunk's first split: reruns of
        # an unfinished chunk repeat it exactly.
        gen = torch.Generator().manual_seed(config.seed * 100_003 + chunk[0])
        t0 = time.perf_counter()
        for r in _run_splits(data, chunk, config, gen):
            _atomic_json(out / f"split_{r['split']}.json", r)
        log(f"{data.name}: splits {chunk} done in {time.perf_counter() - t0:.1f} s")
    return [json.loads((out / f"split_{i}.json").read_text()) for i in wanted]


def summarise_uci(results: list[dict]) -> dict[str, float]:
    """Mean and standard error of each metric over the splits: std (ddof=0, as in Gal & Ghahramani's
    code) over sqrt(n)."""
    summary: dict[str, float] = {"n_splits": len(results)}
    for key in ("rmse_mc", "ll_mc", "rmse_ws", "ll_ws", "seconds"):
        v = np.array([r[key] for r in results], dtype=np.float64)
        summary[key] = float(v.mean())
        summary[key + "_se"] = float(v.std() / math.sqrt(len(v)))
    return summary


def find_uci_datasets(directory: str | Path) -> list[Path]:
    """The dataset folders under ``directory`` (or ``directory`` itself if it is one)."""
    directory = Path(directory)
    if (directory / "data.txt").is_file():
        return [directory]
    if not directory.is_dir():
        raise FileNotFoundError(f"run_uci: no directory at '{directory}'")
    found = sorted(d for d in directory.iterdir() if (d / "data.txt").is_file())
    if not found:
        raise FileNotFoundError(f"run_uci: no dataset folders (with data.txt) under '{directory}'")
    return found


def run_uci(
    directory: str | Path,
    out: str | Path,
    config: UCIConfig = UCIConfig(),
    datasets: list[str] | None = None,
    log=print,
) -> dict[str, dict[str, float]]:
    """Run (or resume) the benchmark on every dataset under ``directory``; returns the summaries."""
    folders = find_uci_datasets(directory)
    if datasets:
        names = {f.name for f in folders}
        unknown = sorted(set(datasets) - names)
        if unknown:
            raise ValueError(f"run_uci: unknown dataset(s) {unknown}; found {sorted(names)}")
        folders = [f for f in folders if f.name in datasets]
    summaries = {}
    for folder in folders:
        results = run_uci_dataset(load_uci(folder), out, config, log=log)
        summaries[folder.name] = summarise_uci(results)
        _atomic_json(Path(out) / folder.name / "summary.json", summaries[folder.name])
    return summaries


def _agrees(ours: float, se: float, pub: float, pub_se: float, higher_is_better: bool) -> bool:
    # Compared at the published precision (two decimals); "within one SE" uses the standard error
    # of the difference, sqrt(se_ours^2 + se_published^2).
    tol = math.hypot(se, pub_se) + 1e-9
    ours = round(ours, 2)
    return ours >= pub - tol if higher_is_better else ours <= pub + tol


def compare_with_published(summaries: dict[str, dict[str, float]]) -> str:
    """A Markdown table: ours (MC and weight scaling) beside the published grid-search column.

    A dataset "agrees" when both its RMSE and its test LL are within one standard error of the
    published value or better (ours rounded to the published two decimals; the SE of the difference).
    """
    rows = [
        "| dataset | splits | RMSE MC (ours) | RMSE published | LL MC (ours) | LL published "
        "| RMSE weight scaling | LL weight scaling | agrees |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    agree = 0
    for name, s in summaries.items():
        (r, rse), (ll, llse) = PUBLISHED.get(name, ((math.nan, 0.0), (math.nan, 0.0)))
        ok = _agrees(s["rmse_mc"], s["rmse_mc_se"], r, rse, False) and _agrees(
            s["ll_mc"], s["ll_mc_se"], ll, llse, True
        )
        agree += ok

        c = {
            k: f"{s[k]:.3f} ± {s[k + '_se']:.3f}" for k in ("rmse_mc", "ll_mc", "rmse_ws", "ll_ws")
        }
        rows.append(
            f"| {name} | {s['n_splits']} | {c['rmse_mc']} | {r:.2f} ± {rse:.2f} | {c['ll_mc']} "
            f"| {ll:.2f} ± {llse:.2f} | {c['rmse_ws']} | {c['ll_ws']} | {'yes' if ok else 'no'} |"
        )
    rows.append("")
    rows.append(
        f"{agree} of {len(summaries)} datasets agree (RMSE and LL within one SE, or better)."
    )
    return "\n".join(rows)
