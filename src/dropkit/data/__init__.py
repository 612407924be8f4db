"""Offline datasets: loaders for data the user has or that a package regenerates. No downloads."""

from dropkit.data.uci import UCI_DATASETS, UCIDataset, load_uci

__all__ = ["UCI_DATASETS", "UCIDataset", "load_uci"]
