"""A small GRU classifier on MNIST-1D learns with each recurrent dropout technique on.

MNIST-1D (Greydanus 2020, the ``mnist1d`` package) is regenerated offline by ``make_dataset``: 40-step
sequences, 10 classes. The signal is quantised into 16 levels so that embedding (word-type) dropout has
tokens to drop. Kept to a few seconds: 256 training sequences, 60 Adam steps. The test asserts the
eval-mode cross-entropy on the training subset falls below 80% of its starting value (~ln 10).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dropkit.nn as dnn

LEVELS, DIM, HIDDEN = 16, 16, 32


@pytest.fixture(scope="module")
def mnist1d_subset():
    import mnist1d.data as mdata

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to download")

    original = mdata.requests.get
    mdata.requests.get = no_network  # make_dataset must not touch the network
    try:
        args = mdata.get_dataset_args()
        args.num_samples = 400  # 320 train, 80 test
        data = mdata.make_dataset(args)
    finally:
        mdata.requests.get = original
    x = np.asarray(data["x"][:256], dtype=np.float32)  # (N, 40)
    edges = np.quantile(x, np.linspace(0, 1, LEVELS + 1)[1:-1])
    tokens = torch.as_tensor(np.digitize(x, edges), dtype=torch.long)  # (N, 40) in [0, 16)
    return tokens, torch.as_tensor(data["y"][:256], dtype=torch.long)


class Classifier(nn.Module):
    def __init__(self, technique: str) -> None:
        super().__init__()
        on = lambda name, p: p if technique in (name, "all") else 0.0  # noqa: E731
        self.embed = dnn.EmbeddingDropout(LEVELS, DIM, p=on("embedding", 0.1))
        self.locked = dnn.LockedDropout(on("locked", 0.2), batch_first=True)
        if technique in ("weight_drop", "all"):
            self.rnn = dnn.WeightDropGRU(DIM, HIDDEN, batch_first=True, weight_dropout=0.3)
        else:
            self.rnn = dnn.VariationalGRU(
                DIM,
                HIDDEN,
                batch_first=True,
                input_dropout=on("variational", 0.1),
                recurrent_dropout=on("variational", 0.2),
                output_dropout=on("variational", 0.1),
            )
        self.head = nn.Linear(HIDDEN, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.locked(self.embed(tokens)))  # (N, T, H)
        return self.head(self.locked(out)[:, -1])


@pytest.fixture
def one_thread():
    # Small RNN steps on a loaded 2-core machine are many times slower with 2 threads than with 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("technique", ["locked", "embedding", "weight_drop", "variational", "all"])
def test_loss_decreases(mnist1d_subset, one_thread, technique):
    tokens, labels = mnist1d_subset
    torch.manual_seed(0)
    model = Classifier(technique)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    loss_fn = nn.CrossEntropyLoss()

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return loss_fn(model(tokens), labels).item()

    before = eval_loss()
    model.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        idx = torch.randint(len(tokens), (64,), generator=gen)
        loss = loss_fn(model(tokens[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.train()
    after = eval_loss()
    assert after < 0.8 * before, (technique, before, after)
