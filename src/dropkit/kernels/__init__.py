"""Compiled kernels behind dropkit's fast paths.

:mod:`dropkit.kernels.cpu` holds numba kernels for element-wise dropout with a counter-based
Philox4x32-10 generator (the contract is written down in :mod:`dropkit.reference.philox`), run on
torch's own OpenMP team (:mod:`dropkit.kernels._openmp`), with huge-page outputs
(:mod:`dropkit.kernels._hugepages`); :mod:`dropkit.kernels.cpu_family` the structured members and
Gaussian dropout, :mod:`dropkit.kernels.cpu_rnn` the element-wise work of an LSTM step;
:mod:`dropkit.kernels.gpu` the Triton kernels with the same
contract. Importing this package imports numba, so ``import dropkit`` does not: the functional ops
load the kernels on their first fast-path call.
"""

from dropkit.kernels.cpu import keep_mask, philox4x32_10

__all__ = ["keep_mask", "philox4x32_10"]
