"""Neural operators as ``nn.Module``s and their losses."""

from ._layers import ChannelMLP, FourierBlock, Pointwise, fourier_resample
from .fno import FNO, SFNO
from .losses import (
    NSResidualLoss,
    RelativeLpLoss,
    SobolevLoss,
    relative_lp,
    relative_sobolev,
)

__all__ = [
    "FNO",
    "SFNO",
    "ChannelMLP",
    "FourierBlock",
    "NSResidualLoss",
    "Pointwise",
    "RelativeLpLoss",
    "SobolevLoss",
    "fourier_resample",
    "relative_lp",
    "relative_sobolev",
]
