"""Recovering a Navier-Stokes initial condition and parameters from sparse data.

MAP estimates and Laplace uncertainty through the pseudo-spectral solver and
through a trained SFNO surrogate.
"""

from .experiment import (
    NSInverseData,
    NSInverseSetup,
    experiment_settings,
    plot_ns_inverse,
    recover_initial_condition,
    recover_parameters,
    run_ns_inverse,
    train_surrogate,
)

__all__ = [
    "NSInverseData",
    "NSInverseSetup",
    "experiment_settings",
    "plot_ns_inverse",
    "recover_initial_condition",
    "recover_parameters",
    "run_ns_inverse",
    "train_surrogate",
]
