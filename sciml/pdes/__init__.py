"""Classical PDE solvers and data generators for the benchmark problems."""

from .diffusion_sorption import DiffusionSorption, solve_diffusion_sorption
from .gpme import (
    T_FINAL,
    TEST_VALUES,
    TRAIN_RANGES,
    Diffusion,
    GPMEProblem,
    PorousMedium,
    Stefan,
    make_problem,
    sample_points,
)
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
    "TEST_VALUES",
    "TRAIN_RANGES",
    "T_FINAL",
    "Diffusion",
    "DiffusionSorption",
    "GPMEProblem",
    "NavierStokes2D",
    "NavierStokesBlowUp",
    "PorousMedium",
    "Stefan",
    "fno_forcing",
    "gaussian_random_field",
    "grid_coordinates",
    "kolmogorov_forcing",
    "make_problem",
    "mcwilliams_vorticity",
    "sample_points",
    "solve_diffusion_sorption",
    "solve_navier_stokes",
    "taylor_green_vorticity",
    "time_derivative",
]
