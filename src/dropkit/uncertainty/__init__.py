"""Monte-Carlo dropout: MC mode, sampling, uncertainty summaries, metrics and the UCI benchmark.

The plots need matplotlib and the Fig. 11 experiment (:mod:`dropkit.uncertainty.ensemble`) needs
``mnist1d`` for its default data set: both come with the ``lab`` extra.
"""

from dropkit.uncertainty.mc import (
    NoDropoutError,
    NoDropoutWarning,
    dropout_layers,
    is_dropout_layer,
    mc_mode,
    mc_predict,
    to_baal_layout,
)
from dropkit.uncertainty.metrics import (
    brier_score,
    calibration_bins,
    expected_calibration_error,
    gaussian_log_likelihood,
    mc_classification_nll,
    rmse,
)
from dropkit.uncertainty.plots import plot_mc_vs_weight_scaling, plot_reliability_diagram
from dropkit.uncertainty.summaries import (
    expected_entropy,
    mc_mean,
    mc_variance,
    mutual_information,
    predictive_entropy,
    regression_predictive,
)

__all__ = [
    "brier_score",
    "calibration_bins",
    "dropout_layers",
    "expected_calibration_error",
    "expected_entropy",
    "gaussian_log_likelihood",
    "is_dropout_layer",
    "mc_classification_nll",
    "mc_mean",
    "mc_mode",
    "mc_predict",
    "mc_variance",
    "mutual_information",
    "NoDropoutError",
    "NoDropoutWarning",
    "plot_mc_vs_weight_scaling",
    "plot_reliability_diagram",
    "predictive_entropy",
    "regression_predictive",
    "rmse",
    "to_baal_layout",
]
