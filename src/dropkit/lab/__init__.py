"""The experiment lab: typed configs, a runner, sweeps on Optuna, and reports with plots.

``run(config, workdir)`` trains one model and writes its run directory; ``sweep`` runs a grid of
configs (resumable, several workers share one Optuna storage); ``report`` aggregates run directories.
The ``dropkit`` command (``dropkit run|sweep|report|demo``) is a thin shell over these.

``run`` and ``load_run`` are imported on first use: the config (and so ``dropkit --help``) loads
without torch.
"""

from typing import TYPE_CHECKING, Any

try:
    import pydantic  # noqa: F401  (the config's validation; the first lab dependency imported)
except ModuleNotFoundError as err:  # a base install: say which extra brings the lab
    raise ModuleNotFoundError(
        f"dropkit.lab needs the 'lab' extra ({err.name} is not installed): "
        "pip install 'dropkit[lab]'",
        name=err.name,
    ) from None

from dropkit.lab.config import Config, load_config, parse_overrides

if TYPE_CHECKING:
    from dropkit.lab.runner import load_run, run

__all__ = ["Config", "load_config", "load_run", "parse_overrides", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from dropkit.lab.runner import run

        return run
    if name == "load_run":
        from dropkit.lab._rundir import load_run

        return load_run
    raise AttributeError(f"module 'dropkit.lab' has no attribute {name!r}")
