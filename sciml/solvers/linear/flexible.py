"""Flexible conjugate directions for preconditioners that vary or are nonlinear.

Each iteration takes the preconditioned residual as a new direction and makes it
A-orthogonal to the last ``k`` directions kept in memory (modified Gram-Schmidt in the A
inner product, using the stored ``p_j`` and ``A p_j``, so one product with ``A`` per
iteration):

.. math:: q = M(r_k),\\quad
          p_k = q - \\sum_{j=k-k'}^{k-1} \\frac{q^T A p_j}{p_j^T A p_j}\\, p_j,\\quad
          \\alpha_k = \\frac{p_k^T r_k}{p_k^T A p_k},\\quad
          x_{k+1} = x_k + \\alpha_k p_k,\\quad r_{k+1} = r_k - \\alpha_k A p_k.

``alpha_k`` minimises the A-norm of the error along ``p_k`` whatever ``M`` returns, so
the method converges for any ``M`` that keeps giving directions with a component along
``A^{-1} r``; with a fixed SPD ``M`` and ``k >= 1`` it reproduces PCG in exact arithmetic
(the projection on ``p_{k-1}`` is PCG's beta step, and ``p_k^T r_k = z^T r_k``).
References: Y. Notay, "Flexible conjugate gradients", SIAM J. Sci. Comput. 22 (2000);
A. Kaneda, O. Akar, J. Chen, V. A. T. Kala, D. Hyde, J. Teran, "A deep conjugate
direction method for iteratively solving linear systems", ICML 2023 (DCDM, k = 2).

The hook for a learned preconditioner: ``M`` may be any callable ``M(r)`` mapping
``(W, n)`` residuals to ``(W, n)`` directions (``W`` is the number of unfinished
systems, which shrinks as systems converge). A DCDM solver is this loop with
``M(r) = model(r / ||r||)``; since ``alpha`` is invariant to the scale of ``p``, only
the normalisation of the model's *input* matters::

    @dataclass(frozen=True)
    class DCDM:
        model: torch.nn.Module
        k: int = 2
        def __call__(self, A, b, **kw):
            M = lambda r: self.model(r / r.norm(dim=-1, keepdim=True))
            return FlexibleCG(k=self.k)(A, b, M=M, **kw)

``M`` runs under ``torch.no_grad()``.
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
from ._krylov import Counter, prepare, run


class _FlexDirection:
    """Directions A-orthogonalised against the last ``k`` kept in memory."""

    def __init__(self, ops: Counter, k: int) -> None:
        self.ops = ops
        self.k = k
        self.P: list[torch.Tensor] = []
        self.AP: list[torch.Tensor] = []
        self.D: list[torch.Tensor] = []

    def direction(self, r: torch.Tensor, z: torch.Tensor, fresh: torch.Tensor,
                  active: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p, Ap = z, self.ops.matvec(z)
        for pj, apj, dj in zip(self.P, self.AP, self.D):
            # q^T A p_j computed as (A q)^T p_j (A symmetric); a slot holding zeros (a system
            # that did not step) has d_j = 0 and contributes nothing
            c = torch.where(dj > 0, (Ap * pj).sum(-1) / torch.where(dj > 0, dj, 1.0), 0.0)
            p = p - c[:, None] * pj
            Ap = Ap - c[:, None] * apj
        return p, Ap, (p * r).sum(-1), torch.zeros_like(active)

    def accept(self, p: torch.Tensor, Ap: torch.Tensor, den: torch.Tensor,
               ok: torch.Tensor) -> None:
        if self.k == 0:
            return
        step = ok[:, None]
        self.P.append(torch.where(step, p, 0.0))
        self.AP.append(torch.where(step, Ap, 0.0))
        self.D.append(torch.where(ok, den, 0.0))
        if len(self.P) > self.k:
            del self.P[0], self.AP[0], self.D[0]

    def select(self, keep: torch.Tensor) -> None:
        self.P = [t.index_select(0, keep) for t in self.P]
        self.AP = [t.index_select(0, keep) for t in self.AP]
        self.D = [t.index_select(0, keep) for t in self.D]


@frozen_settings()
@dataclass(frozen=True)
class FlexibleCG:
    """Settings of flexible conjugate directions; see :func:`flexible_cg`.

    Attributes:
        k: how many previous directions each new one is made A-orthogonal to (memory
            ``2 k`` vectors per system); ``k = 0`` is preconditioned steepest descent.
        rtol, atol, max_iter, check_every: as for :class:`CG` (``rtol`` None: by dtype,
            see :func:`sciml.solvers.default_tol`).
    """

    k: int = 2
    rtol: float | None = None
    atol: float = 0.0
    max_iter: int | None = None
    check_every: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k must be an int >= 0 (directions kept), got {self.k!r}")
        check_tolerances(self.rtol, self.atol, self.max_iter, self.check_every)

    def __call__(
        self,
        A: object,
        b: torch.Tensor,
        *,
        M: object,
        x0: torch.Tensor | None = None,
        callback: Callable[[torch.Tensor], Any] | None = None,
        throw: bool = False,
    ) -> Solution:
        op, mop, b2, x = prepare(A, b, x0, M)
        shape = tuple(np.shape(b))
        ops = Counter(op, mop)
        with torch.no_grad():
            return run(_FlexDirection(ops, self.k), ops, b2, x,
                       batch_shape=shape[:-1],
                       rtol=resolve_tol(self.rtol, "linear", b2.dtype),
                       atol=float(self.atol), max_iter=self.max_iter,
                       check_every=self.check_every, callback=callback, throw=throw)


def flexible_cg(
    A: object,
    b: torch.Tensor,
    *,
    M: object,
    k: int = 2,
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    max_iter: int | None = None,
    callback: Callable[[torch.Tensor], Any] | None = None,
    throw: bool = False,
) -> Solution:
    """Solve ``A x = b`` (SPD ``A``) by flexible conjugate directions with preconditioner ``M``.

    Use it when ``M`` changes between iterations or is nonlinear (a neural network, an
    inner iterative solve, a multigrid cycle with varying smoothing); with a fixed SPD
    ``M`` it takes as many iterations as :func:`cg` (up to rounding) at the cost of
    ``2 k`` stored vectors and ``2 k`` extra dot products/updates per iteration.

    Args:
        A: the SPD system matrix, as for :func:`cg`.
        b: right-hand sides ``(..., n)``; each system stops on its own.
        M: the preconditioner: any object with ``matvec(r)`` or any callable ``M(r)``,
            mapping ``(W, n)`` to ``(W, n)``; need not be linear or fixed. ``None`` runs
            conjugate directions without preconditioning (CG when ``k >= 1``).
        k: directions kept for the A-orthogonalisation.
        x0, rtol, atol, max_iter, callback, throw: as for :func:`cg` (``rtol`` None: by
            dtype, see :func:`sciml.solvers.default_tol`).

    Returns:
        :class:`Solution`.
    """
    return FlexibleCG(k=k, rtol=rtol, atol=atol, max_iter=max_iter)(
        A, b, M=M, x0=x0, callback=callback, throw=throw)
