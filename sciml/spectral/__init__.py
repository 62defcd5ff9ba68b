"""The spectral core: truncated real FFTs, spectral convolution, spectral calculus.

The choice between the transform paths is calibrated per machine (CPU cost-model
constants measured once, GPU timings recorded by the GPU suite with
:func:`record_gpu_timings`); see :mod:`sciml.spectral._calibration` and the environment
variable ``SCIML_CALIBRATION`` (``off`` for the built-in constants).

Functions that take fields also take numpy arrays (and Python numbers where a scalar
tensor is expected), converted at the call: float64 stays float64, float32 float32,
and a numpy input beside a tensor takes that tensor's dtype and device.
"""

from ._calibration import record_gpu_timings
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
    "record_gpu_timings",
    "rfftn_truncated",
    "shell_spectrum",
    "sobolev_norm",
    "wavenumbers",
]
