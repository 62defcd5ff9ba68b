"""Conjugate gradients, preconditioned or not, batched over right-hand sides.

For SPD ``A`` and an SPD preconditioner ``M ~ A^{-1}`` (Hestenes & Stiefel 1952):

.. math:: z_k = M r_k,\\quad \\rho_k = r_k^T z_k,\\quad
          p_k = z_k + (\\rho_k / \\rho_{k-1})\\, p_{k-1},\\quad
          \\alpha_k = \\rho_k / p_k^T A p_k,\\quad
          x_{k+1} = x_k + \\alpha_k p_k,\\quad r_{k+1} = r_k - \\alpha_k A p_k

until ``||r|| <= max(rtol ||b||, atol)``. The iterates are those of
``scipy.sparse.linalg.cg`` (same order of operations, same stopping rule up to ``<=``
for ``<``), so the iteration counts agree. Reference: Y. Saad, "Iterative Methods for
Sparse Linear Systems", 2nd ed., SIAM 2003, Algorithm 9.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..._frozen import frozen_settings
from ..._tolerances import resolve_tol
from ._common import Solution, check_tolerances
from ._krylov import Counter, prepare, rowdot, run


class _CGDirection:
    """The PCG direction update; ``rho <= 0`` flags a preconditioner that is not SPD."""

    def __init__(self, ops: Counter) -> None:
        self.ops = ops
        self.p: torch.Tensor | None = None
        self.rho: torch.Tensor | None = None
        self._rho_new: torch.Tensor | None = None

    def direction(self, r: torch.Tensor, z: torch.Tensor, fresh: torch.Tensor,
                  active: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rho = rowdot(r, z)
        if self.p is None or self.rho is None:
            p = z
        else:
            # frozen and restarted systems start over from the steepest direction
            beta = torch.where(fresh | ~active, 0.0, rho / self.rho)
            p = z + beta[:, None] * self.p
        self._rho_new = rho
        return p, self.ops.matvec(p), rho, rho <= 0

    def accept(self, p: torch.Tensor, Ap: torch.Tensor, den: torch.Tensor,
               ok: torch.Tensor) -> None:
        self.p = p
        self.rho = self._rho_new

    def select(self, keep: torch.Tensor) -> None:
        if self.p is not None and self.rho is not None:
            self.p = self.p.index_select(0, keep)
            self.rho = self.rho.index_select(0, keep)


@frozen_settings()
@dataclass(frozen=True)
class CG:
    """Settings of the (preconditioned) conjugate gradient solver; see :func:`cg`.

    Attributes:
        rtol, atol: stop a system when ``||b - A x|| <= max(rtol ||b||, atol)``. ``rtol``
            None: by dtype, see :func:`sciml.solvers.default_tol` (1e-5 in float64, scipy's
            default; 1e-4 in float32).
        max_iter: iteration limit; ``None`` is ``10 n`` (scipy's default).
        check_every: iterations between host-side looks at the residuals (each one
            synchronises with the device); ``None`` is 1 on CPU and 8 on CUDA. Systems
            are frozen on the device as soon as they converge, so this changes neither
            the iterates nor the iteration counts, only when finished systems leave the
            working set.
    """

    rtol: float | None = None
    atol: float = 0.0
    max_iter: int | None = None
    check_every: int | None = None

    def __post_init__(self) -> None:
        check_tolerances(self.rtol, self.atol, self.max_iter, self.check_every)

    def __call__(
        self,
        A: object,
        b: torch.Tensor,
        *,
        x0: torch.Tensor | None = None,
        M: object = None,
        callback: Callable[[torch.Tensor], Any] | None = None,
        throw: bool = False,
    ) -> Solution:
        op, mop, b2, x = prepare(A, b, x0, M)
        shape = tuple(np.shape(b))
        ops = Counter(op, mop)
        with torch.no_grad():
            return run(_CGDirection(ops), ops, b2, x, batch_shape=shape[:-1],
                       rtol=resolve_tol(self.rtol, "linear", b2.dtype),
                       atol=float(self.atol), max_iter=self.max_iter,
                       check_every=self.check_every, callback=callback, throw=throw)


def cg(
    A: object,
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    max_iter: int | None = None,
    M: object = None,
    callback: Callable[[torch.Tensor], Any] | None = None,
    throw: bool = False,
) -> Solution:
    """Solve ``A x = b`` for SPD ``A`` by (preconditioned) conjugate gradients.

    Equivalent to ``scipy.sparse.linalg.cg(A, b, x0=x0, rtol=rtol, atol=atol,
    maxiter=max_iter, M=M, callback=callback)`` (same iterates; scipy's ``maxiter`` is
    ``max_iter`` here, the name every sciml solver uses; ``rtol``, ``atol`` and the
    stopping rule are scipy's; scipy's ``(x, info)`` is :class:`Solution` ``(x, status,
    stats)``, ``info > 0`` being MAX_ITER; STALLED, which scipy lacks, stops a float32
    solve at its rounding floor instead of cycling to ``max_iter``), batched over the
    leading dimensions of ``b``: each system stops on its own. Runs on ``b``'s device and dtype
    (float32 or float64). Not differentiable; see :func:`sciml.solvers.linear.solve`.

    Args:
        A: the SPD system matrix: a dense or sparse CSR torch tensor, a scipy sparse matrix,
            a :class:`LinearOperator`, or a callable mapping ``(..., n)`` to ``(..., n)``.
        b: right-hand sides ``(..., n)``: a tensor, or a numpy array (converted to
            ``A``'s dtype and device when ``A`` is a tensor, else float32 kept, the rest
            float64).
        x0: initial guess, shaped like ``b`` or ``(n,)`` (a tensor or numpy array); zero
            by default.
        rtol, atol: stop when ``||b - A x|| <= max(rtol ||b||, atol)``. ``rtol`` None: by
            dtype, see :func:`sciml.solvers.default_tol` (1e-5 in float64, scipy's default; 1e-4
            in float32, whose rounding floor on ill-conditioned systems is near 1e-5);
            ``stats["rtol"]`` is the value used.
        max_iter: iteration limit; ``None`` is ``10 n``.
        M: an SPD preconditioner approximating ``A^{-1}``, applied as ``M.matvec(r)``
            (:class:`Jacobi`, :class:`IncompleteCholesky`, :class:`PyAMGPreconditioner`,
            or anything ``A`` may be).
        callback: called as ``callback(xk)`` after each iteration with the current
            iterate shaped like ``b``.
        throw: raise :class:`LinearSolveError` unless the status is CONVERGED.

    Returns:
        :class:`Solution`; ``stats`` as documented there.

    Raises:
        TypeError, ValueError: bad input (kind, dtype, device or shape; NaN/Inf in ``b``;
            a negative, NaN or non-numeric ``rtol``/``atol``).
        LinearSolveError: with ``throw=True``, when the solve does not converge.
    """
    return CG(rtol=rtol, atol=atol, max_iter=max_iter)(A, b, x0=x0, M=M, callback=callback,
                                                     throw=throw)
