"""sciml: scientific machine learning for PDEs and inverse problems."""

from . import spectral
from ._validation import checks

__version__ = "0.1.0"
__all__ = ["__version__", "checks", "spectral"]
