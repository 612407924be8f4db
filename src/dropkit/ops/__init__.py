"""dropkit's operators and the machinery under the public ops (private: import nothing from here).

Layers, bottom up (every import points down):

* :mod:`~dropkit.ops._torch`: the torch internals dropkit reads, in one place;
* :mod:`~dropkit.ops.registry`: one registration mechanism: an operator's kernel, fake kernel,
  autograd formula, jvp, vmap and DTensor rule, defined once for the eager and the graph lanes;
* :mod:`~dropkit.ops.switch`: the fast path's switch, threshold and layout helpers;
* :mod:`dropkit.random` (beside this package): every draw, and the seed/Bernoulli/noise operators;
* :mod:`~dropkit.ops.cpu`, :mod:`~dropkit.ops.cuda`: the backends (numba and Triton kernels of
  :mod:`dropkit.kernels`), one interface;
* :mod:`~dropkit.ops.sharding`: DTensor rules (each shard's slice of the global mask);
* :mod:`~dropkit.ops.dropout`, :mod:`~dropkit.ops.family`: the operators of dropout and of the
  family (alpha, Gaussian, DropBlock);
* :mod:`~dropkit.ops.rnn`, :mod:`~dropkit.ops.torchscript`: the fused recurrence of the variational
  RNNs, and the TorchScript branch of every module.

:mod:`dropkit.functional` holds the public ops, which call down into this package.
"""
