"""Constraints on predictions: conservation laws (ProbConserv, HardC) and convex sets.

* :class:`ProbConserv` / :func:`probconserv`: condition a Gaussian prediction on linear
  constraints ``G u = b`` (Hansen et al. 2023); :func:`project_mean` is HardC.
* :func:`trapezoid_weights`, :func:`box_weights`, :func:`mass_from_fluxes`: build ``G``
  and ``b`` from the grid, the initial mass and the boundary fluxes.
* :class:`ConvexProjection` / :func:`project_convex`: a differentiable (cvxpylayers)
  projection onto nonnegative, monotone or bounded profiles that keeps ``G u = b``.
* :class:`HardConstraint`: basis coefficients that make a (nonlinear) residual vanish in
  least squares, by batched Levenberg-Marquardt with an implicit-function backward
  (Chalapathi et al. 2024); :class:`MoEHardConstraint` solves one such problem per piece
  of a :class:`Partition` in one batched call (or across ``torch.distributed`` ranks);
  :class:`ChainedHardConstraint` solves slabs in time in sequence, each starting from the
  previous one's end state; :class:`ConvexHardConstraint` is the cvxpylayers version for
  linear residuals with inequality constraints. Their results carry ``status``, a
  ``stats`` dict and ``converged``; ``throw=True`` raises :class:`HardConstraintError`
  (:func:`levenberg_marquardt` too). The convex layers return a :class:`ConvexResult`
  with a measured :class:`ConvexStatus`; ``throw=True`` raises :class:`ConvexError` (a
  :class:`HardConstraintError`).

Functions and layers that take tensors also take numpy arrays (and Python numbers where a
scalar tensor is expected), converted at the call: float64 stays float64, float32
float32, a numpy input goes to the device of a tensor beside it, and the float64 solves
(ProbConserv, the hard-constraint and convex layers) read numpy input at full precision.
"""

from ._convex_common import ConvexError, ConvexResult, ConvexStatus
from .chain import ChainedHardConstraint
from .conservation import box_weights, mass_from_fluxes, trapezoid_weights
from .convex import ConvexProjection, project_convex
from .convex_hard import ConvexHardConstraint
from .hard import (
    HardConstraint,
    HardConstraintError,
    HardConstraintResult,
    LMStatus,
    levenberg_marquardt,
)
from .moe import MoEHardConstraint, MoEResult, Partition, assemble
from .probconserv import ConservedGaussian, ProbConserv, probconserv, project_mean

__all__ = [
    "ChainedHardConstraint",
    "ConservedGaussian",
    "ConvexError",
    "ConvexHardConstraint",
    "ConvexProjection",
    "ConvexResult",
    "ConvexStatus",
    "HardConstraint",
    "HardConstraintError",
    "HardConstraintResult",
    "LMStatus",
    "MoEHardConstraint",
    "MoEResult",
    "Partition",
    "ProbConserv",
    "assemble",
    "box_weights",
    "levenberg_marquardt",
    "mass_from_fluxes",
    "probconserv",
    "project_convex",
    "project_mean",
    "trapezoid_weights",
]
