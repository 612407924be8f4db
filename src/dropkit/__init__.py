"""dropkit: dropout for PyTorch.

Every variant in one drop-in API (:mod:`dropkit.nn`, :mod:`dropkit.functional`), a NumPy oracle
(:mod:`dropkit.reference`) and an experiment lab (the ``dropkit`` command).

The public names load on first use (PEP 562): ``import dropkit`` alone imports no torch, so the
``dropkit`` command answers ``--help`` at once. A process that has imported torch already (any
program that uses dropkit's layers) loads everything here, as an eager import would.
"""

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = ("functional", "nn", "random", "reference", "uncertainty")
_FUNCTIONAL = (
    "apply_mask",
    "dropout",
    "fast_dropout_enabled",
    "sample_mask",
    "set_fast_dropout",
    "use_fast_dropout",
)
_NN = (
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "SharedDropout",
    "add_dropconnect",
    "convert_dropout",
    "get_dropout_p",
    "remove_dropconnect",
    "set_dropout_p",
)
# dropkit.dropout & co. are the functional ops: wrapped for torch.fx here too (see dropkit.functional).
# torch.fx.wrap must run at a module's top level, on names in that module's globals: this code is
# run so, once the names are loaded.
_FX_WRAP = compile(
    "import torch.fx as _fx\nfor _name in ('apply_mask', 'dropout', 'sample_mask'):\n"
    "    _fx.wrap(_name)\ndel _fx, _name\n",
    __file__,
    "exec",
)

if TYPE_CHECKING:
    from dropkit import functional, nn, random, reference, uncertainty
    from dropkit.functional import (
        apply_mask,
        dropout,
        fast_dropout_enabled,
        sample_mask,
        set_fast_dropout,
        use_fast_dropout,
    )
    from dropkit.nn import (
        AlphaDropout,
        ConcreteDropout,
        DropBlock2d,
        DropBlock3d,
        DropConnectConv1d,
        DropConnectConv2d,
        DropConnectLinear,
        Dropout,
        Dropout1d,
        Dropout2d,
        Dropout3d,
        DropPath,
        FeatureAlphaDropout,
        GaussianDropout,
        SharedDropout,
        add_dropconnect,
        convert_dropout,
        get_dropout_p,
        remove_dropconnect,
        set_dropout_p,
    )


def _load_all() -> None:
    namespace = globals()
    for name in _SUBMODULES:
        namespace[name] = importlib.import_module(f"dropkit.{name}")
    for name in _FUNCTIONAL:
        namespace[name] = getattr(namespace["functional"], name)
    for name in _NN:
        namespace[name] = getattr(namespace["nn"], name)
    exec(_FX_WRAP, namespace)


def __getattr__(name: str) -> Any:
    if name in (*_SUBMODULES, *_FUNCTIONAL, *_NN):
        _load_all()
        return globals()[name]
    if not name.startswith("_") and importlib.util.find_spec(f"dropkit.{name}") is not None:
        return importlib.import_module(f"dropkit.{name}")  # dropkit.lab, dropkit.schedules, ...
    raise AttributeError(f"module 'dropkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "torch" in sys.modules:  # a torch program: load now, as before (and fx-wrap before any trace)
    _load_all()

__all__ = [
    "AlphaDropout",
    "ConcreteDropout",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectLinear",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "SharedDropout",
    "add_dropconnect",
    "convert_dropout",
    "get_dropout_p",
    "remove_dropconnect",
    "set_dropout_p",
    "__version__",
    "apply_mask",
    "dropout",
    "fast_dropout_enabled",
    "functional",
    "nn",
    "random",
    "reference",
    "sample_mask",
    "set_fast_dropout",
    "use_fast_dropout",
    "uncertainty",
]
