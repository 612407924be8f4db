"""A small, self-contained demonstration: the same MLP trained with and without dropout.

Data: scikit-learn's bundled 8x8 digits (1,797 images, no download), standardised with training
statistics, split 70/30 stratified by ``seed``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import dropkit.nn as dnn


def _mlp(p_input: float, p_hidden: float, width: int = 256) -> nn.Sequential:
    return nn.Sequential(
        dnn.Dropout(p_input),
        nn.Linear(64, width),
        nn.ReLU(),
        dnn.Dropout(p_hidden),
        nn.Linear(width, width),
        nn.ReLU(),
        dnn.Dropout(p_hidden),
        nn.Linear(width, 10),
    )


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def run_demo(epochs: int = 150, seed: int = 0) -> list[tuple[str, float, float]]:
    """Train the MLP without dropout and with dropout (0.2 inputs, 0.5 hidden).

    Returns ``(name, train accuracy, test accuracy)`` for each model.
    """
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    to_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    x_tr, x_te = to_x(x_tr), to_x(x_te)
    y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)

    rows = []
    for name, p_in, p_hid in (("no dropout", 0.0, 0.0), ("dropout (0.2 in, 0.5 hidden)", 0.2, 0.5)):
        torch.manual_seed(seed)
        model = _mlp(p_in, p_hid)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = np.random.default_rng(seed)
        for _ in range(epochs):
            model.train()
            for idx in np.array_split(gen.permutation(len(x_tr)), max(1, len(x_tr) // 128)):
                idx = torch.from_numpy(idx)
                loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        rows.append((name, _accuracy(model, x_tr, y_tr), _accuracy(model, x_te, y_te)))
    return rows
