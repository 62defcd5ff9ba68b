"""Tools for testing code that uses sciml: simulated CUDA on a CPU-only machine."""

from .simcuda import Counts, SimCuda, SimCudaError

__all__ = ["Counts", "SimCuda", "SimCudaError"]
