"""Spatiotemporal FNO with negative-Sobolev losses and Spectral-Refiner fine-tuning.

Cao et al. (ICLR 2025): an SFNO trained on 2D Navier-Stokes trajectories, evaluated
against the pseudo-spectral solver and fine-tuned by the Spectral Refiner.
"""

from .figures import (
    plot_evaluation,
    plot_refinement,
)
from .pipeline import (
    NSData,
    evaluate_model,
    load_sfno,
    refine_model,
    train_sfno,
    write_json,
)

__all__ = [
    "NSData",
    "evaluate_model",
    "load_sfno",
    "plot_evaluation",
    "plot_refinement",
    "refine_model",
    "train_sfno",
    "write_json",
]
