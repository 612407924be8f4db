"""Loading dropkit's Triton kernels for tests: on the GPU when there is one, else in Triton's CPU
interpreter (``TRITON_INTERPRET=1``), on CPU tensors."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

# Triton's interpreter runs the kernels with NumPy, which warns on NaN * 0 and on overflow to Inf
# (the cases being tested).
INTERPRETER_WARNINGS = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]


def load_triton_kernels():
    """(dropkit.kernels.gpu, device): CUDA if available, else "cpu" with the kernels interpreted.

    Skips the calling test module when triton is not installed. Triton decides at decoration time
    whether a kernel is interpreted, so the module is reloaded if it was imported the other way.
    """
    interpret = not torch.cuda.is_available()
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401
    except ImportError as err:  # not installed, or installed but broken
        pytest.skip(
            f"triton cannot be imported ({err}); install it with pip install 'dropkit[gpu]'",
            allow_module_level=True,
        )
    from dropkit.kernels import gpu

    if gpu.interpreted() != interpret:
        gpu = importlib.reload(gpu)
    return gpu, torch.device("cpu" if interpret else "cuda")
