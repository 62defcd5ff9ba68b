"""Inverse problems: recover unknowns from sparse noisy observations through any
differentiable forward map.

* observations: :class:`PointObservation` (and :func:`random_points`),
  :class:`FullObservation`;
* misfits: :class:`L2Misfit`, :class:`SobolevMisfit`, :class:`W2Misfit` (Sinkhorn);
* priors: :class:`SobolevPrior`, :class:`TotalVariation`, :class:`ScalarPrior`;
* the problem: :class:`InverseProblem` (with an optional :class:`LinearConstraint`);
* the MAP estimate: :class:`MAP` / :func:`solve_map` -> :class:`InverseResult`;
* uncertainty: :class:`Laplace` / :func:`laplace` -> :class:`Posterior` (low-rank
  prior-preconditioned Lanczos, dense, or CG), :func:`gauss_newton_hvp`;
* 2D Navier-Stokes: the forward maps :class:`SolverForward` (initial vorticity through
  the solver), :class:`SurrogateForward` (through a trained SFNO) and
  :class:`ParameterForward` (viscosity and forcing amplitude), the data's prior
  :func:`grf_prior` and :func:`calibration`.

The experiments built on these (the Navier-Stokes recoveries, the cycle-skipping study of
the L2 against the W2 misfit) live in :mod:`sciml_recipes`.

Functions that take fields also take numpy arrays (and Python numbers where a scalar
tensor is expected), converted at the call: float64 stays float64, float32 float32,
and a numpy input beside a tensor takes that tensor's dtype and device.
"""

from .laplace import Laplace, Posterior, gauss_newton_hvp, laplace
from .map import MAP, InverseError, InverseResult, InverseStatus, solve_map
from .misfit import L2Misfit, Misfit, QuadraticMisfit, SobolevMisfit, W2Misfit
from .navier_stokes import (
    ParameterForward,
    SolverForward,
    SurrogateForward,
    calibration,
    grf_prior,
)
from .observe import FullObservation, Observation, PointObservation, random_points
from .prior import GaussianPrior, Prior, ScalarPrior, SobolevPrior, TotalVariation
from .problem import InverseProblem, LinearConstraint

__all__ = [
    "MAP",
    "FullObservation",
    "GaussianPrior",
    "InverseError",
    "InverseProblem",
    "InverseResult",
    "InverseStatus",
    "L2Misfit",
    "Laplace",
    "LinearConstraint",
    "Misfit",
    "Observation",
    "ParameterForward",
    "PointObservation",
    "Posterior",
    "Prior",
    "QuadraticMisfit",
    "ScalarPrior",
    "SobolevMisfit",
    "SobolevPrior",
    "SolverForward",
    "SurrogateForward",
    "TotalVariation",
    "W2Misfit",
    "calibration",
    "gauss_newton_hvp",
    "grf_prior",
    "laplace",
    "random_points",
    "solve_map",
]
