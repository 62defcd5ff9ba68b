"""A differentiable SPD solve: CG forward, one adjoint CG solve backward (no unrolling).

For ``x = A(theta)^{-1} b`` and a loss ``l(x)``, implicit differentiation of
``A(theta) x = b`` gives, with the adjoint ``lambda = A^{-T} dl/dx``,

.. math:: \\frac{dl}{db} = \\lambda, \\qquad
          \\frac{dl}{d\\theta} = -\\lambda^T \\frac{\\partial (A(\\theta) x)}{\\partial \\theta}

(x held fixed). ``A`` is SPD, so ``A^T = A`` and the same CG serves the adjoint; the
``theta`` term is one vector-Jacobian product through a single matvec, whatever the
number of CG iterations. Memory is that of ``x``, not of the iteration history.
Reference: M. B. Giles, N. A. Pierce, "An introduction to the adjoint approach to
design", Flow Turbul. Combust. 65 (2000); the same rule as ``jax.scipy.sparse.linalg.cg``
and lineax's linear-solve derivative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ._common import LinearSolveError, Solution, raise_if_failed
from ._krylov import check_rhs, prepare
from .cg import CG
from .operators import CallableOperator


def _bind(matvec: Callable[..., torch.Tensor], params: tuple[torch.Tensor, ...], n: int,
          like: torch.Tensor) -> CallableOperator:
    held = tuple(p.detach() for p in params)
    return CallableOperator(lambda v: matvec(v, *held), (n, n), like.dtype, like.device)


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, solver, matvec, M, x0, out, b, *params):  # type: ignore[override]
        n = b.shape[-1]
        A = _bind(matvec, params, n, b) if matvec is not None else out.pop()
        sol = solver(A, b.detach(), x0=x0, M=M)
        out.append(sol)
        ctx.solver, ctx.matvec, ctx.M, ctx.A = solver, matvec, M, A
        ctx.save_for_backward(sol.x, *params)
        return sol.x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):  # type: ignore[override]
        x, *params = ctx.saved_tensors
        adj = ctx.solver(ctx.A, grad_x.contiguous(), M=ctx.M)
        if not adj.converged:
            raise LinearSolveError(
                f"the adjoint solve A lambda = dl/dx ended {adj.status.name}: "
                f"{adj.status.value}; the gradient would be wrong")
        lam = adj.x
        grads: list[torch.Tensor | None] = [None] * len(params)
        need = [ctx.needs_input_grad[6 + i] for i in range(len(params))]
        if any(need):
            with torch.enable_grad():
                leaves = [p.detach().requires_grad_(w) for p, w in zip(params, need)]
                y = ctx.matvec(x, *leaves)
                wanted = [p for p, w in zip(leaves, need) if w]
                got = iter(torch.autograd.grad(y, wanted, grad_outputs=-lam, allow_unused=True))
            grads = [next(got) if w else None for w in need]
        grad_b = lam if ctx.needs_input_grad[5] else None
        return (None, None, None, None, None, grad_b, *grads)


def solve(
    A: object,
    b: torch.Tensor,
    *,
    params: tuple[torch.Tensor, ...] = (),
    x0: torch.Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: object = None,
    throw: bool = False,
) -> Solution:
    """Solve ``A x = b`` (SPD ``A``) by CG with ``x`` differentiable in ``b`` and in ``A``.

    Gradients come from the adjoint method (see the module docstring): one more CG solve
    with the same ``M`` and tolerances, plus one vector-Jacobian product through the
    matvec. Their accuracy is that of the solves: use a tight ``rtol`` (e.g. 1e-10 in
    float64) when gradients must be exact. Only first derivatives are supported.

    Args:
        A: either a callable ``A(x, *params)`` mapping ``(..., n)`` to ``(..., n)`` whose
            tensors ``params`` may require grad (e.g. a coefficient field or a shift);
            or, with ``params=()``, anything :func:`cg` accepts: a dense tensor that
            requires grad gets the gradient ``-lambda x^T``; other operators are constants.
        b: right-hand sides ``(..., n)``; may require grad.
        params: the tensors passed to ``A`` after ``x``.
        x0, rtol, atol, maxiter, M, throw: as for :func:`cg` (``M`` is a constant).

    Returns:
        :class:`Solution` whose ``x`` carries the autograd graph.

    Raises:
        LinearSolveError: with ``throw=True`` when the forward solve fails, and always when
            the adjoint solve fails during backward.
    """
    if not isinstance(params, (tuple, list)) or not all(
        isinstance(p, torch.Tensor) for p in params
    ):
        raise TypeError(f"params must be a tuple of tensors, got {params!r}")
    params = tuple(params)
    matvec: Callable[..., torch.Tensor] | None = None
    if params:
        if not callable(A) or isinstance(A, torch.Tensor):
            raise TypeError("with params, A must be a callable A(x, *params), got "
                            f"{type(A).__name__}")
        matvec = A  # type: ignore[assignment]
    elif isinstance(A, torch.Tensor) and A.layout is torch.strided and A.requires_grad:
        matvec, params = _dense_matvec, (A,)
    elif callable(A) and not isinstance(A, torch.Tensor) and not hasattr(A, "matvec"):
        matvec = A  # type: ignore[assignment]
    n = check_rhs(b)
    solver = CG(rtol=rtol, atol=atol, maxiter=maxiter)
    if matvec is not None:
        for i, p in enumerate(params):
            if p.device != b.device:
                raise ValueError(f"params[{i}] is on {p.device} but b is on {b.device}: move "
                                 "it with .to(b.device)")
    wants_grad = torch.is_grad_enabled() and (
        b.requires_grad or any(p.requires_grad for p in params))
    if not wants_grad:
        op = A if matvec is None else _bind(matvec, params, n, b)
        return solver(op, b, x0=x0, M=M, throw=throw)
    out: list[Any] = []
    if matvec is None:
        # a constant operator: validate and adapt it once, hand it to forward through `out`
        out.append(prepare(A, b, None, None)[0])
    x = _AdjointSolve.apply(solver, matvec, M, x0, out, b, *params)
    sol: Solution = out[-1]
    if throw:
        raise_if_failed(sol.status, sol.stats)
    return Solution(x=x, status=sol.status, stats=sol.stats)


def _dense_matvec(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    return torch.matmul(x, A.mT)
