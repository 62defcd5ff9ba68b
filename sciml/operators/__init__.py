"""Neural operators as ``nn.Module``s, their losses, and the Spectral-Refiner that fine-tunes
a trained SFNO per trajectory on the Navier-Stokes residual.

Functions, and the losses' ``forward``, also take numpy arrays (converted at the
call: float64 stays float64; beside a tensor, its dtype and device); the models'
``forward`` takes tensors, as every ``nn.Module`` does.
"""

from ..spectral import fourier_resample
from ._layers import ChannelMLP, FourierBlock, Pointwise
from .bundled_fno import BundledFNO
from .dcdm import DCDMNet
from .fno import FNO, SFNO
from .losses import (
    NSResidualLoss,
    RelativeLpLoss,
    SobolevLoss,
    relative_lp,
    relative_sobolev,
)
from .mppde import MPPDE, MPPDELayer, periodic_graph
from .neural_process import ConditionalNP, DeepEnsemble, gaussian_nll
from .refiner import RefineResult, SpectralRefiner, refine

__all__ = [
    "FNO",
    "MPPDE",
    "SFNO",
    "BundledFNO",
    "ChannelMLP",
    "ConditionalNP",
    "DCDMNet",
    "DeepEnsemble",
    "FourierBlock",
    "MPPDELayer",
    "NSResidualLoss",
    "Pointwise",
    "RefineResult",
    "RelativeLpLoss",
    "SobolevLoss",
    "SpectralRefiner",
    "fourier_resample",
    "gaussian_nll",
    "periodic_graph",
    "refine",
    "relative_lp",
    "relative_sobolev",
]
