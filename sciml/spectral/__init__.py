"""The spectral core: truncated real FFTs, spectral convolution, spectral calculus."""

from ._paths import best_order, choose_method
from .calculus import (
    dealias,
    dealias_mask,
    gradient,
    integer_wavenumbers,
    inverse_laplacian,
    laplacian,
    sobolev_norm,
    wavenumbers,
)
from .conv import SpectralConv
from .fields import cell_average_resample, error_spectrum, fourier_resample, shell_spectrum
from .modes import check_modes, hermitian_weights, kept_frequencies, modes_from_kept_shape
from .transforms import irfftn_truncated, rfftn_truncated

__all__ = [
    "SpectralConv",
    "best_order",
    "cell_average_resample",
    "check_modes",
    "choose_method",
    "dealias",
    "dealias_mask",
    "error_spectrum",
    "fourier_resample",
    "gradient",
    "hermitian_weights",
    "integer_wavenumbers",
    "inverse_laplacian",
    "irfftn_truncated",
    "kept_frequencies",
    "laplacian",
    "modes_from_kept_shape",
    "rfftn_truncated",
    "shell_spectrum",
    "sobolev_norm",
    "wavenumbers",
]
