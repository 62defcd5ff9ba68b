"""Classical PDE solvers and data generators for the benchmark problems."""

from .navier_stokes import (
    NavierStokes2D,
    NavierStokesBlowUp,
    solve_navier_stokes,
    time_derivative,
)
from .ns_fields import (
    fno_forcing,
    gaussian_random_field,
    grid_coordinates,
    kolmogorov_forcing,
    mcwilliams_vorticity,
    taylor_green_vorticity,
)

__all__ = [
    "NavierStokes2D",
    "NavierStokesBlowUp",
    "fno_forcing",
    "gaussian_random_field",
    "grid_coordinates",
    "kolmogorov_forcing",
    "mcwilliams_vorticity",
    "solve_navier_stokes",
    "taylor_green_vorticity",
    "time_derivative",
]
