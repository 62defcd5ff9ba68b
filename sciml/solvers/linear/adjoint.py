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

import torch

from ._common import LinearSolveError, Solution, raise_if_failed
from ._krylov import check_rhs, prepare
from .cg import CG
from .operators import CallableOperator


def _bind(matvec: Callable[..., torch.Tensor], params: tuple[torch.Tensor, ...], n: int,
          like: torch.Tensor) -> CallableOperator:
    held = tuple(p.detach() for p in params)
    return CallableOperator(lambda v: matvec(v, *held), (n, n), like.dtype, like.device)


class _Call:
    """What one solve hands its autograd node: the constant operator in, the Solution out."""

    def __init__(self, A: object) -> None:
        self.A = A
        self.sol: Solution | None = None


def _require(sol: Solution, what: str) -> torch.Tensor:
    if not sol.converged:
        raise LinearSolveError(f"the {what} ended {sol.status.name}: {sol.status.value}; the "
                               "derivative would be wrong")
    return sol.x


class _AdjointSolve(torch.autograd.Function):
    """``x = A(params)^{-1} b`` with reverse mode (also twice) and forward mode.

    Reverse: ``lambda = A^{-1} dl/dx`` by :func:`solve` itself, so that with
    ``create_graph=True`` the backward is again differentiable (second derivatives are
    adjoint solves of adjoint solves). Forward: ``dx = A^{-1} (db - dA x)``, with ``dA x``
    a forward-mode product through the matvec.
    """

    @staticmethod
    def forward(solver, matvec, M, x0, call, b, *params):  # type: ignore[override]
        n = b.shape[-1]
        A = _bind(matvec, params, n, b) if matvec is not None else call.A
        call.A = A if matvec is None else None
        call.sol = solver(A, b.detach(), x0=x0, M=M)
        return call.sol.x

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        solver, matvec, M, _x0, call, _b, *params = inputs
        ctx.solver, ctx.matvec, ctx.M, ctx.A = solver, matvec, M, call.A
        ctx.save_for_backward(output, *params)
        ctx.save_for_forward(output, *params)

    @staticmethod
    def backward(ctx, grad_x):  # type: ignore[override]
        x, *params = ctx.saved_tensors
        s = ctx.solver
        # a differentiable adjoint solve: plain CG unless the graph of this backward is kept
        A = ctx.A if ctx.matvec is None else ctx.matvec
        lam = _require(solve(A, grad_x.contiguous(), params=tuple(params) if ctx.matvec
                             is not None else (), M=ctx.M, rtol=s.rtol, atol=s.atol,
                             max_iter=s.max_iter), "adjoint solve A lambda = dl/dx")
        grads: list[torch.Tensor | None] = [None] * len(params)
        need = [ctx.needs_input_grad[6 + i] for i in range(len(params))]
        if any(need):
            # the partial derivative in params at fixed x: a functorch vjp treats x as a
            # constant at its own level, while the outer graph (create_graph=True) still
            # sees how x and params enter, so second derivatives are complete
            keep = tuple(p if torch.is_grad_enabled() else p.detach() for p in params)
            xk = x if torch.is_grad_enabled() else x.detach()
            pos = [i for i, w in enumerate(need) if w]

            def partial(*chosen: torch.Tensor) -> torch.Tensor:
                full = list(keep)
                for i, c in zip(pos, chosen):
                    full[i] = c
                return ctx.matvec(xk, *full)

            _, pull = torch.func.vjp(partial, *(keep[i] for i in pos))
            got = iter(pull(-lam))
            grads = [next(got) if w else None for w in need]
        grad_b = lam if ctx.needs_input_grad[5] else None
        return (None, None, None, None, None, grad_b, *grads)

    @staticmethod
    def jvp(ctx, _s, _m, _M, _x0, _call, db, *dparams):  # type: ignore[override]
        x, *params = ctx.saved_tensors
        rhs = torch.zeros_like(x) if db is None else db.expand_as(x)
        if any(d is not None for d in dparams):
            tangents = tuple(torch.zeros_like(p) if d is None else d
                             for p, d in zip(params, dparams))
            rhs = rhs - _jvp_by_double_vjp(ctx.matvec, x, tuple(params), tangents)
        return _require(ctx.solver(ctx.A if ctx.matvec is None else
                                   _bind(ctx.matvec, tuple(params), x.shape[-1], x),
                                   rhs.contiguous(), M=ctx.M), "tangent solve A dx = db - dA x")


def solve(
    A: object,
    b: torch.Tensor,
    *,
    params: tuple[torch.Tensor, ...] = (),
    x0: torch.Tensor | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    max_iter: int | None = None,
    M: object = None,
    throw: bool = False,
) -> Solution:
    """Solve ``A x = b`` (SPD ``A``) by CG with ``x`` differentiable in ``b`` and in ``A``.

    Gradients come from the adjoint method (see the module docstring): one more CG solve
    with the same ``M`` and tolerances, plus one vector-Jacobian product through the
    matvec. Their accuracy is that of the solves: use a tight ``rtol`` (e.g. 1e-10 in
    float64) when gradients must be exact. Higher derivatives (``create_graph=True``)
    differentiate the adjoint solve again, and forward mode (``torch.func.jvp``,
    ``torch.autograd.forward_ad``) solves ``A dx = db - dA x``; each such solve must
    converge or :class:`LinearSolveError` is raised.

    Args:
        A: either a callable ``A(x, *params)`` mapping ``(..., n)`` to ``(..., n)`` whose
            tensors ``params`` may require grad (e.g. a coefficient field or a shift);
            or, with ``params=()``, anything :func:`cg` accepts: a dense tensor that
            requires grad gets the gradient ``-lambda x^T``; other operators are constants.
        b: right-hand sides ``(..., n)``; may require grad.
        params: the tensors passed to ``A`` after ``x``.
        x0, rtol, atol, max_iter, M, throw: as for :func:`cg` (``M`` is a constant;
            ``rtol`` None: by dtype, see :func:`sciml.solvers.default_tol`).

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
    elif isinstance(A, torch.Tensor) and A.layout is torch.strided:
        # always as a parameter: a tangent (forward mode) or a graph may reach it either
        # way, and requires_grad does not show a forward-mode dual tensor
        prepare(A, b, None, None)  # the shape, dtype and device checks of cg
        matvec, params = _dense_matvec, (A,)
    elif callable(A) and not isinstance(A, torch.Tensor) and not hasattr(A, "matvec"):
        matvec = A  # type: ignore[assignment]
    check_rhs(b)
    solver = CG(rtol=rtol, atol=atol, max_iter=max_iter)
    if matvec is not None:
        for i, p in enumerate(params):
            if p.device != b.device:
                raise ValueError(f"params[{i}] is on {p.device} but b is on {b.device}: move "
                                 "it with .to(b.device)")
    # every call goes through the autograd node (free without gradients): it is what
    # carries reverse-mode graphs, double backward and forward-mode tangents (whose dual
    # tensors do not set requires_grad, so no test on requires_grad can see them)
    call = _Call(prepare(A, b, None, None)[0] if matvec is None else None)
    x = _AdjointSolve.apply(solver, matvec, M, x0, call, b, *params)
    sol: Solution = call.sol  # type: ignore[assignment]  # set by forward
    if throw:
        raise_if_failed(sol.status, sol.stats)
    return Solution(x=x, status=sol.status, stats=sol.stats)


def _jvp_by_double_vjp(matvec: Callable[..., torch.Tensor], x: torch.Tensor,
                       params: tuple[torch.Tensor, ...],
                       tangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``sum_i d(matvec(x, *params))/d params_i . tangents_i`` by reverse mode only.

    ``u -> <J^T u, t>`` is linear in ``u`` with gradient ``J t``. Reverse mode twice
    instead of a nested forward mode, which torch does not support inside a forward-mode
    pass (``gradcheck(check_forward_ad=True)``, ``forward_ad.dual_level``); functorch's
    transforms nest, so this works under ``torch.func.jvp`` as well.
    """
    def inner(u: torch.Tensor) -> torch.Tensor:
        _, pull = torch.func.vjp(lambda *p: matvec(x, *p), *params)
        return sum(((g * t).sum() for g, t in zip(pull(u), tangents)),
                   torch.zeros((), dtype=u.dtype, device=u.device))

    return torch.func.grad(inner)(torch.zeros_like(x))


def _dense_matvec(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    return torch.matmul(x, A.mT)
