"""A small CNN on real data (scikit-learn's 8x8 digits) trains with channel dropout, DropBlock and
DropConnect, and its held-out loss decreases.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import dropkit.nn as dnn


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # (N, 8, 8, 8)
        nn.ReLU(),
        dnn.Dropout2d(0.1),
        dnn.DropBlock2d(0.1, block_size=3),
        dnn.DropConnectConv2d(8, 16, 3, padding=1, p=0.2),  # (N, 16, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 16, 4, 4)
        nn.Flatten(),
        dnn.DropConnectLinear(16 * 4 * 4, 10, p=0.2),
    )


@pytest.fixture
def one_thread():
    # Tiny tensors on a shared 2-core machine: intra-op threads only contend (50x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cnn_with_channel_dropout_dropblock_and_dropconnect_learns_digits(one_thread):
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1400], perm[1400:]
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loss_fn = nn.CrossEntropyLoss()

    def held_out():
        model.eval()
        with torch.no_grad():
            logits = model(x[test])
        model.train()
        return loss_fn(logits, y[test]).item(), (logits.argmax(1) == y[test]).float().mean().item()

    first_loss, _ = held_out()
    train_losses = []
    for _ in range(3):  # epochs
        for batch in train[torch.randperm(len(train))].split(100):
            loss = loss_fn(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_losses.append(loss.item())
    last_loss, accuracy = held_out()
    assert sum(train_losses[-5:]) / 5 < sum(train_losses[:5]) / 5 / 3
    assert last_loss < first_loss / 4, (first_loss, last_loss)
    assert accuracy > 0.85  # ten classes: chance is 0.1
