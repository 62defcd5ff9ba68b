"""What the two cvxpylayers layers share: the lazy cvxpy import, Clarabel's settings, the
polishing tolerance, pickling, and the result of a solve (solution, status, stats).

:class:`~sciml.constraints.ConvexProjection` and
:class:`~sciml.constraints.ConvexHardConstraint` solve a convex program per row with an
interior-point method (Clarabel through cvxpylayers), then try to certify an exact
answer (the polish). cvxpylayers does not hand back Clarabel's own status, so the status
here is *measured* on the answer returned, row by row:

* a row whose polish passed its KKT certificate is ``CONVERGED`` (exact to rounding);
* otherwise the interior-point answer is ``CONVERGED`` when its constraint violation is
  within ``_FEAS_RTOL`` (1e-6) and its KKT residual (stationarity with the solver's multipliers,
  their signs, complementarity) within ``_KKT_IPM_RTOL`` (1e-5), both relative to the size of
  the terms;
* a row that misses its constraints is ``INFEASIBLE`` when a linear program (scipy's
  HiGHS, on the constraints alone) finds no feasible point, else ``MAX_ITER`` (the
  solver stopped before it reached them); a feasible row with a large KKT residual is
  ``MAX_ITER``; a non-finite answer is ``BREAKDOWN``.

The names match :class:`~sciml.constraints.LMStatus` where the condition is the same.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .hard import HardConstraintError

if TYPE_CHECKING:
    from cvxpylayers.torch import CvxpyLayer

__all__ = ["ConvexError", "ConvexResult", "ConvexStatus"]


@functools.cache
def _cvxpy() -> tuple[ModuleType, type[CvxpyLayer]]:
    """``(cvxpy, CvxpyLayer)``, imported on first use of a convex layer.

    cvxpy, cvxpylayers and diffcp take long to import, so ``import sciml.constraints``
    (and everything that imports it) does not load them; building a layer does.
    """
    import cvxpy
    from cvxpylayers.torch import CvxpyLayer

    return cvxpy, CvxpyLayer


# cvxpylayers 1.2.0 ships four backends: DIFFCP (CPU; diffcp then calls SCS, ECOS or
# Clarabel), MOREAU (a separate package), CUCLARABEL (CUDA + Julia) and MPAX (JAX,
# first-order). Only DIFFCP runs on every machine. Through it we choose Clarabel, an
# interior-point method: it reaches residuals of 1e-10 in ~20 iterations; SCS
# (diffcp's default, ADMM) took 7.5 s for 8 profiles of 201 points and was still 3e-4
# off, and ECOS is not installed (and cvxpy has deprecated it).
_SOLVER_ARGS: dict[str, Any] = {
    "solve_method": "Clarabel",
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "tol_ktratio": 1e-8,
    # Clarabel's default static regularisation (1e-8) caps the attainable accuracy here.
    "static_regularization_constant": 1e-12,
}
_KKT_RTOL = 1e-9  # relative tolerance of the polishing certificate


class _RebuiltOnLoad:
    """Pickling of a layer that holds a cvxpylayers problem in ``_layer``: cvxpy objects do
    not pickle, so the problem is dropped from the state and ``_build()`` makes it again
    on load."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_layer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        base = getattr(super(), "__setstate__", None)
        if base is not None:  # nn.Module restores its own bookkeeping
            base(state)
        else:
            self.__dict__.update(state)
        self._build()  # type: ignore[attr-defined]

_FEAS_RTOL = 1e-6  # constraint violation allowed, relative to the size of the terms
_KKT_IPM_RTOL = 1e-5  # KKT residual allowed for an interior-point (unpolished) answer: it is
# accurate to ~1e-7..1e-5 (see ConvexHardConstraint); a cut-short solve sits far above


class ConvexStatus(enum.Enum):
    """How a convex constraint solve ended (worst over the batch)."""

    CONVERGED = ("converged: the answer meets its constraints and its KKT (optimality) "
                 "conditions within tolerance")
    MAX_ITER = ("not converged: the interior-point solver stopped before the answer met its "
                "constraints or optimality conditions although the constraints are "
                "feasible; raise solver_args['max_iter'] (or loosen its tolerances)")
    INFEASIBLE = ("infeasible: no point meets the constraints for this data (a linear "
                  "program confirms it); check that the constraints are consistent, e.g. "
                  "with nonneg=True and G >= 0, b must be >= 0")
    BREAKDOWN = ("the solver returned a non-finite answer (NaN or Inf): rescale the data "
                 "(values near the float64 range overflow the squared norm)")


# statuses from best to worst: a batch's status is the worst of its members'
_WORST = [ConvexStatus.CONVERGED, ConvexStatus.MAX_ITER, ConvexStatus.INFEASIBLE,
          ConvexStatus.BREAKDOWN]


class ConvexError(HardConstraintError):
    """Raised by ``throw=True`` when a convex constraint solve ends with a status other than
    CONVERGED (a :class:`HardConstraintError`, so one ``except`` catches every
    constraint solve)."""


@dataclass(frozen=True)
class ConvexResult:
    """The answer of a convex constraint layer with its measured status.

    Attributes:
        solution: the projected profile ``u`` (:class:`ConvexProjection`) or the
            coefficients ``c`` (:class:`ConvexHardConstraint`), differentiable; rows that
            did not converge carry the interior-point answer (no gradient where the
            status was decided before a differentiable solve).
        status: a :class:`ConvexStatus`, the worst over the batch.
        stats: per row ``(B,)`` (``B = 1`` for an unbatched call): ``violation`` (largest
            constraint violation, relative to the size of the constraint terms),
            ``kkt_residual`` (relative KKT residual of the interior-point answer; NaN on a
            row returned by the polish, whose certificate holds to 1e-9 instead, or where
            no interior-point solve ran), ``polished`` (bool: the answer passed the KKT
            certificate), and ``member_status`` (each row's :class:`ConvexStatus`, a list).
            Clarabel's iteration count is not reported: cvxpylayers does not return it.
    """

    solution: Tensor
    status: ConvexStatus
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is ConvexStatus.CONVERGED

    @property
    def coeffs(self) -> Tensor:
        """The same tensor as ``solution`` (the name :class:`HardConstraintResult` uses)."""
        return self.solution


def _codes(finite: Tensor, polished: Tensor, violation: Tensor, kkt: Tensor,
           feasible: Any) -> Tensor:
    """Each row's status as its index in ``_WORST``; ``feasible(i) -> bool`` is asked only
    for rows that miss their constraints."""
    ok = polished | ((violation <= _FEAS_RTOL) & (kkt <= _KKT_IPM_RTOL))
    codes = torch.where(ok & finite, 0, 1)
    for i in (~ok & finite & ~(violation <= _FEAS_RTOL)).nonzero()[:, 0].tolist():
        if not feasible(i):
            codes[i] = 2
    return torch.where(finite, codes, 3)


def _result(solution: Tensor, codes: Tensor, violation: Tensor, kkt: Tensor,
            polished: Tensor) -> ConvexResult:
    members = [_WORST[i] for i in codes.tolist()]
    status = _WORST[int(codes.max())] if codes.numel() else ConvexStatus.CONVERGED
    return ConvexResult(solution, status, {"violation": violation, "kkt_residual": kkt,
                                           "polished": polished, "member_status": members})


def _raise(codes: Tensor, violation: Tensor, kkt: Tensor, what: str) -> None:
    """The ``throw=True`` error: the status, the rows that failed, the worst measures."""
    status = _WORST[int(codes.max())]
    bad = (codes != 0).nonzero()[:, 0].tolist()
    raise ConvexError(
        f"{status.name}: {status.value} ({len(bad)} of {codes.numel()} {what} did not "
        f"converge, first batch row {bad[0]}; relative constraint violation "
        f"{float(violation[bad[0]]):.3g}, KKT residual {float(kkt[bad[0]]):.3g})")


def _lp_feasible(A_ub: np.ndarray | None, b_ub: np.ndarray | None,
                 A_eq: np.ndarray | None, b_eq: np.ndarray | None, n: int,
                 bounds: Sequence[float] = (-np.inf, np.inf)) -> bool:
    """Whether ``A_ub x <= b_ub, A_eq x = b_eq, lo <= x <= hi`` has a solution (HiGHS).

    An independent check, run only on a row whose answer misses its constraints, to tell
    infeasible data from a solver stopped early. A failed LP solve counts as feasible (the
    status then reads MAX_ITER, not a claim of infeasibility).
    """
    from scipy.optimize import linprog

    lo, hi = (None if not np.isfinite(v) else float(v) for v in bounds)
    res = linprog(np.zeros(n), A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq,
                  bounds=[(lo, hi)] * n, method="highs")
    return res.status != 2
