"""DCDM: a learned search direction for conjugate-gradient-like solves.

Kaneda et al. (ICML 2023): a convolutional network trained on Ritz vectors of the
Poisson matrix of fluid scenes; the shipped weights were trained with this pipeline.
"""

from .pipeline import (
    DCDMData,
    dcdm_energy_loss,
    dcdm_loss,
    ritz_rhs,
    save_pretrained,
    train_dcdm,
    training_scenes,
)

__all__ = [
    "DCDMData",
    "dcdm_energy_loss",
    "dcdm_loss",
    "ritz_rhs",
    "save_pretrained",
    "train_dcdm",
    "training_scenes",
]
