"""Neural operators as ``nn.Module``s and their losses."""

from ._layers import ChannelMLP, FourierBlock, Pointwise, fourier_resample
from .dcdm import DCDMNet
from .fno import FNO, SFNO
from .losses import (
    NSResidualLoss,
    RelativeLpLoss,
    SobolevLoss,
    relative_lp,
    relative_sobolev,
)
from .neural_process import ConditionalNP, DeepEnsemble, gaussian_nll

__all__ = [
    "FNO",
    "SFNO",
    "ChannelMLP",
    "ConditionalNP",
    "DCDMNet",
    "DeepEnsemble",
    "FourierBlock",
    "NSResidualLoss",
    "Pointwise",
    "RelativeLpLoss",
    "SobolevLoss",
    "fourier_resample",
    "gaussian_nll",
    "relative_lp",
    "relative_sobolev",
]
