"""Offline datasets: loaders for data the user has or that a package regenerates. No downloads."""

from dropkit.data.digits import load_digits_split
from dropkit.data.idx import FASHION_MNIST_DEFAULT_DIR, load_idx, load_mnist_like, read_idx
from dropkit.data.mnist1d import load_mnist1d
from dropkit.data.uci import UCI_DATASETS, UCIDataset, load_uci

__all__ = [
    "FASHION_MNIST_DEFAULT_DIR",
    "UCI_DATASETS",
    "UCIDataset",
    "load_digits_split",
    "load_idx",
    "load_mnist1d",
    "load_mnist_like",
    "load_uci",
    "read_idx",
]
