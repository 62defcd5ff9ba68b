"""Shared pieces of the linear solvers: the status, the error, the result, setting checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from ... import _validation
from ..._tolerances import check_tol
from ..._validation import check_int


class LinearStatus(enum.Enum):
    """How a linear solve ended; the value says what went wrong and what to do about it."""

    CONVERGED = "converged: ||b - A x|| <= max(rtol ||b||, atol) for every system"
    MAX_ITER = (
        "stopped at max_iter before ||b - A x|| <= max(rtol ||b||, atol): raise max_iter, "
        "loosen rtol/atol (float32 cannot go much below rtol ~ 1e-6 on ill-conditioned "
        "systems: use float64), or pass a (better) preconditioner M"
    )
    STALLED = (
        "stopped early at the rounding floor: the recursive residual met the tolerance but "
        "the true ||b - A x|| did not, with no 1% gain on the best such check for 200 "
        "iterations (float32, or a very ill-conditioned A); x is as good as this dtype gets: "
        "use float64, loosen "
        "rtol/atol to the level reached (stats['residual_norm']), or pass a preconditioner M"
    )
    INDEFINITE = (
        "a search direction p gave p^T A p <= 0 (or r^T M r <= 0): the operator A or the "
        "preconditioner M is not symmetric positive definite; check that A is SPD (assemble "
        "-Laplacian, not Laplacian; fix boundary rows), that M is SPD (IC(0) and Jacobi need "
        "a positive diagonal), or use a solver for indefinite systems (MINRES, GMRES)"
    )
    BREAKDOWN = (
        "the iteration produced non-finite values (NaN or Inf): check A, b and M for NaN/Inf "
        "(A.matvec and M.matvec must return finite values), rescale the problem, or use "
        "float64"
    )


class LinearSolveError(RuntimeError):
    """Raised by ``throw=True`` when a solve ends with a status other than CONVERGED."""


@dataclass
class Solution:
    """Result of a linear solve.

    Attributes:
        x: the solution, shaped like ``b`` (``(..., n)``).
        status: a :class:`LinearStatus`, the worst over the batch (BREAKDOWN, then
            INDEFINITE, then STALLED, then MAX_ITER).
        stats: ``iterations`` (int, the largest over the batch),
            ``iterations_per_system`` (int64 tensor of the batch shape),
            ``converged`` (bool tensor of the batch shape),
            ``residual_norm`` (the true ``||b - A x||`` per system, recomputed at the end),
            ``tolerance`` (``max(rtol ||b||, atol)`` per system), ``rtol`` and ``atol``
            (the values used: ``rtol=None`` resolves to the default for ``b``'s dtype
            from :func:`sciml.solvers.default_tol`),
            ``history`` (tensor ``(iterations + 1, *batch)``: row ``k`` holds the recursive
            residual norms after ``k`` iterations, row 0 the initial ones; a system that
            has stopped keeps its last value), ``matvecs`` (batched products with ``A``),
            ``preconditioner_applications``, ``seconds``.
    """

    x: torch.Tensor
    status: LinearStatus
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is LinearStatus.CONVERGED


def check_tolerances(rtol: object, atol: object, max_iter: object,
                     check_every: object) -> None:
    """Validate the settings every Krylov solver shares (``rtol=None``: by dtype)."""
    if rtol is None:
        _validation.check_positive("atol", atol, allow_zero=True,
                                   fix="0 switches that test off")
    else:
        check_tol("rtol", rtol)
        _validation.check_tolerances(rtol, atol, fix="0 switches that test off")
    for name, v in (("max_iter", max_iter), ("check_every", check_every)):
        if v is not None:
            check_int(name, v, minimum=1, fix="use None for the default")


def raise_if_failed(status: LinearStatus, stats: dict[str, Any]) -> None:
    """The ``throw=True`` path: raise :class:`LinearSolveError` with the status message."""
    if status is LinearStatus.CONVERGED:
        return
    bad = int((~stats["converged"]).sum())
    total = stats["converged"].numel()
    rel = stats["residual_norm"] / stats["tolerance"].clamp_min(torch.finfo(
        stats["residual_norm"].dtype).tiny)
    raise LinearSolveError(
        f"{status.name}: {status.value} ({bad} of {total} system(s) did not converge after "
        f"{stats['iterations']} iterations; largest residual / tolerance "
        f"{float(rel.max()):.3g})"
    )
