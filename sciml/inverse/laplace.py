"""The Laplace approximation of the posterior at the MAP point.

Linearising the forward map at the MAP estimate ``x*`` gives the Gaussian

.. math:: x \\mid d \\approx N(x^*, H^{-1}), \\qquad
          H = J^T W J + \\Gamma_{pr}^{-1}

with ``J`` the Jacobian of ``x -> O(F(x))`` at ``x*``, ``W`` the misfit Hessian (the
noise precision ``Gamma_noise^{-1}`` of a Gaussian likelihood) and ``Gamma_pr`` the
prior covariance (the Gauss-Newton Hessian: exact for a linear forward map). ``H`` is
never formed by the low-rank method: it is applied by a Jacobian-vector product and a
vector-Jacobian product through the forward map (:func:`gauss_newton_hvp`).

Methods:

* ``"lowrank"`` (a Gaussian prior): Lanczos on the prior-preconditioned data Hessian
  ``Gamma_pr^{1/2} J^T W J Gamma_pr^{1/2}`` gives its top ``r`` eigenpairs
  ``(lambda_i, v_i)`` and

  .. math:: \\Gamma_{post} \\approx \\Gamma_{pr}^{1/2} \\big(I - V \\operatorname{diag}
            \\big(\\tfrac{\\lambda_i}{1 + \\lambda_i}\\big) V^T\\big) \\Gamma_{pr}^{1/2}

  exact when ``r`` covers the nonzero spectrum (at most the number of observations);
  dropping eigenpairs only drops nonnegative corrections, so the variances are then
  upper bounds. Its diagonal is the (constant, exact) prior variance minus a rank-``r``
  correction; samples are ``x* + Gamma_pr^{1/2} (I - V diag(1 - (1 + lambda)^{-1/2})
  V^T) xi`` (Bui-Thanh, Ghattas, Martin & Stadler, SIAM J. Sci. Comput. 35, 2013;
  Spantini et al., SIAM J. Sci. Comput. 37, 2015).
* ``"dense"``: form ``H`` column by column (``n`` products in one batched call) and
  invert it by Cholesky: for a few scalars (then no prior is needed) or small grids.
* ``"cg"``: solve ``H c_j = e_j`` for every column by :func:`sciml.solvers.linear.cg`
  on the matrix-free ``H`` (a check of the others on small problems).

Status (per problem, the worst over the batch in :attr:`Posterior.status`, an
:class:`~sciml.inverse.InverseStatus` as for MAP): ``"lowrank"`` is CONVERGED when every
kept Ritz pair ``(theta_i, v_i)`` of the whitened data Hessian ``A`` has ``||A v_i -
theta_i v_i|| <= tol (1 + theta_1)`` (the pairs are exact for an operator within a
relative distance ``tol`` of the whitened Hessian ``I + A``), else MAX_ITER (``steps``
was too small); ``"cg"`` is MAX_ITER when a column's solve stops at ``max_iter`` before
``cg_rtol``; ``"dense"`` is not iterative. BREAKDOWN, for every method, means that the
Hessian-vector products at the estimate were not finite; that problem's ``std``,
covariance and samples are then NaN.

A constraint ``G x = b`` of the problem conditions the Gaussian on it (the ProbConserv
update with exact constraints: ``C - C G^T (G C G^T)^{-1} G C``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._frozen import frozen_settings
from .._validation import (
    as_tensor,
    as_tensors,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_real,
    check_tensor,
    reference_tensor,
)
from ..solvers.linear import CallableOperator, LinearStatus, cg
from ._lanczos import lanczos
from .map import _BREAK, _CONV, _MAXIT, _STATUS, InverseError, InverseStatus
from .misfit import QuadraticMisfit
from .prior import GaussianPrior
from .problem import InverseProblem

__all__ = ["Laplace", "Posterior", "gauss_newton_hvp", "laplace"]



def _quadratic(problem: InverseProblem) -> QuadraticMisfit:
    misfit = problem.misfit
    if not isinstance(misfit, QuadraticMisfit):
        raise TypeError(f"the Laplace approximation needs a quadratic misfit with "
                        f"hessian_vector (L2Misfit, SobolevMisfit), got "
                        f"{type(misfit).__name__}; a W2Misfit has no Gauss-Newton noise "
                        f"model: estimate with it, then run Laplace on an L2 problem")
    return misfit

def gauss_newton_hvp(problem: InverseProblem, x: torch.Tensor, v: torch.Tensor,
                     *, prior: bool = True) -> torch.Tensor:
    """The Gauss-Newton Hessian-vector product ``(J^T W J + Gamma_pr^{-1}) v`` at ``x``.

    ``x`` and ``v`` are ``(K, ...)`` (row ``i`` of ``v`` is applied at row ``i`` of
    ``x``); ``prior=False`` leaves out the prior term. One forward pass through
    ``x -> O(F(x))`` and three reverse passes (``J v`` as the vjp of ``u -> J^T u``,
    then ``J^T (W J v)``); the forward map needs to be twice differentiable in reverse
    mode only.
    """
    if not isinstance(problem, InverseProblem):
        raise TypeError(f"problem must be an InverseProblem, got {type(problem).__name__}")
    # numpy inputs follow the first tensor among x and v, else the data
    x, v = as_tensors(x, v, like=reference_tensor(x, v, problem.data))
    x = check_tensor("x", x, min_ndim=1, real=True)
    v = check_tensor("v", v, min_ndim=1, real=True)
    misfit = _quadratic(problem)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        pred = problem.predict(xr)
        # J v by the double-vjp trick: u -> J^T u is linear, and its vjp with v is J v.
        # Reverse mode only, so it also runs through custom autograd Functions (implicit
        # solves, Sinkhorn) that define no forward-mode rule.
        u = torch.zeros_like(pred, requires_grad=True)
        (jtu,) = torch.autograd.grad(pred, xr, grad_outputs=u, create_graph=True)
        (jv,) = torch.autograd.grad(jtu, u, grad_outputs=v, retain_graph=True,
                                    allow_unused=True)
        if jv is None:  # the predictions do not depend on x
            jv = torch.zeros_like(pred)
        w = misfit.hessian_vector(jv.detach())
        (out,) = torch.autograd.grad(pred, xr, grad_outputs=w)
    if prior and problem.prior is not None:
        out = out + problem.prior.hessian_vector(x, v)
    return out.detach()


@dataclass
class Posterior:
    """The Laplace (Gaussian) posterior ``N(mean, C)`` of a batch of problems.

    Attributes:
        mean: the MAP estimate, ``(B, ...)``.
        std: pointwise standard deviations ``sqrt(diag C)``, shaped like ``mean`` (NaN
            for a problem whose status is BREAKDOWN).
        method: ``"lowrank"``, ``"dense"`` or ``"cg"``.
        status: an :class:`~sciml.inverse.InverseStatus`, the worst over the batch
            (BREAKDOWN, then MAX_ITER, then CONVERGED; see the module docstring).
        stats: for every method ``iterations`` (lowrank: the Lanczos steps; cg: the most
            CG iterations over the columns' solves; dense: 0) and ``codes`` (each
            problem's status name); ``eigenvalues`` (lowrank: ``(B, r)``, decreasing),
            ``rank``, ``lanczos_steps``, ``ritz_residual`` (lowrank: ``(B, r)``, each kept
            pair's ``||A v - theta v|| / (1 + theta_1)``), ``tol``; ``hessian`` (dense: the
            Gauss-Newton ``H``, ``(B, n, n)``); ``cg_iterations`` (cg, as ``iterations``).
    """

    mean: torch.Tensor
    std: torch.Tensor
    method: str
    status: InverseStatus = InverseStatus.CONVERGED
    stats: dict[str, Any] = field(default_factory=dict)
    _apply: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    _draw: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def converged(self) -> bool:
        return self.status is InverseStatus.CONVERGED

    def apply_covariance(self, Y: torch.Tensor) -> torch.Tensor:
        """``C Y`` for ``Y`` of shape ``(B, n, K)`` (``n`` unknowns per problem)."""
        return self._apply(Y)  # type: ignore[misc]

    def covariance(self) -> torch.Tensor:
        """The full ``(B, n, n)`` covariance (for small ``n``)."""
        B, n = self.mean.shape[0], self.mean[0].numel()
        eye = torch.eye(n, dtype=self.mean.dtype, device=self.mean.device)
        return self._apply(eye.expand(B, n, n))  # type: ignore[misc]

    def sample(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` posterior draws ``(num, B, ...)`` (``generator``: a CPU generator)."""
        num = check_int("num", num, minimum=1)
        B, n = self.mean.shape[0], self.mean[0].numel()
        xi = torch.randn((num, B, n), generator=generator, dtype=self.mean.dtype)
        out = self._draw(xi.to(self.mean.device))  # type: ignore[misc]
        return self.mean + out.reshape(num, *self.mean.shape)


@frozen_settings()
@dataclass(frozen=True)
class Laplace:
    """Settings of the Laplace approximation (see the module docstring).

    Attributes:
        method: ``"auto"`` (``"lowrank"`` with a Gaussian prior, else ``"dense"``),
            ``"lowrank"``, ``"dense"`` or ``"cg"``.
        rank: eigenpairs kept by ``"lowrank"``; ``None`` is ``min(n, m)`` (``m``
            observations per problem), which is exact.
        steps: Lanczos steps; ``None`` is ``min(n, 2 rank + 10)`` (more steps than kept
            pairs, so the kept pairs are converged).
        seed: the seed of Lanczos's random start vector.
        cg_rtol: the relative residual of the ``"cg"`` solves (``rtol`` of
            :func:`~sciml.solvers.linear.cg`).
        tol: ``"lowrank"``: the Ritz residual, relative to ``1 + theta_1``, that every
            kept pair must meet for CONVERGED (see the module docstring); ``None`` is the
            square root of the dtype's machine epsilon (1.5e-8 in float64, 3.5e-4 in
            float32).
        max_iter: ``"cg"``: the iteration limit of each column's CG solve; ``None`` is
            ``10 n`` (``n`` unknowns per problem). ``"lowrank"`` always runs ``steps``
            Lanczos steps, its budget.

    The settings are read-only (build a new ``Laplace`` or use ``dataclasses.replace``).
    Call ``Laplace(...)(problem, x_map, throw=False)``; ``throw=True`` raises
    :class:`~sciml.inverse.InverseError` unless the status is CONVERGED.
    """

    method: str = "auto"
    rank: int | None = None
    steps: int | None = None
    seed: int = 0
    cg_rtol: float = 1e-10
    tol: float | None = None
    max_iter: int | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("auto", "lowrank", "dense", "cg"))
        if self.rank is not None:
            check_int("rank", self.rank, minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_real("cg_rtol", self.cg_rtol, positive=True)
        if self.tol is not None:
            check_real("tol", self.tol, positive=True)
        if self.max_iter is not None:
            check_int("max_iter", self.max_iter, minimum=1)

    def __call__(self, problem: InverseProblem, x_map: torch.Tensor, *,
                 throw: bool = False) -> Posterior:
        if not isinstance(problem, InverseProblem):
            raise TypeError(f"problem must be an InverseProblem, got {type(problem).__name__}")
        x_map = as_tensor(x_map, like=problem.data)  # a numpy x_map: the data's dtype
        x = check_tensor("x_map", x_map, min_ndim=2, real=True).detach()
        check_finite("x_map", x)
        check_bool("throw", throw)
        _quadratic(problem)
        problem.check_differentiable(x)
        method = self.method
        gaussian = isinstance(problem.prior, GaussianPrior)
        if method == "auto":
            method = "lowrank" if gaussian else "dense"
        if method == "lowrank":
            if not gaussian:
                raise TypeError(f"method='lowrank' needs a Gaussian prior (SobolevPrior, "
                                f"ScalarPrior), got {type(problem.prior).__name__}; use "
                                "method='dense' or 'cg'")
            post, codes = self._lowrank(problem, x)
        else:
            cov, stats, codes = self._cov(problem, x, method)
            post = _from_covariance(x, method, cov, stats)
        if problem.constraint is not None:
            _condition(post, problem.constraint.G.to(x))
        broken = codes == _BREAK
        if bool(broken.any()):
            _poison(post, broken)
        post.status = _STATUS[int(codes.max())]
        post.stats["codes"] = [_STATUS[int(c)].name for c in codes.tolist()]
        if throw and post.status is not InverseStatus.CONVERGED:
            raise InverseError(_failure(post, method))
        return post

    # -- low rank -------------------------------------------------------------------
    def _lowrank(self, problem: InverseProblem, x: torch.Tensor
                 ) -> tuple[Posterior, torch.Tensor]:
        prior: Any = problem.prior
        B, fs = x.shape[0], tuple(x.shape[1:])
        n = x[0].numel()
        with torch.no_grad():
            m = problem.predict(x)[0].numel()
        rank = min(n, m) if self.rank is None else self.rank
        if rank > n:
            raise ValueError(f"rank = {rank} exceeds the {n} unknowns per problem")
        steps = min(n, 2 * rank + 10) if self.steps is None else self.steps
        if not rank <= steps <= n:
            raise ValueError(f"steps = {steps} must lie between rank = {rank} and n = {n}")

        def S(Y: torch.Tensor) -> torch.Tensor:  # Gamma^{1/2} on (K, B, n)
            K = Y.shape[0]
            return prior.apply_sqrt(Y.reshape(K * B, *fs)).reshape(K, B, n)

        broken = torch.zeros(B, dtype=torch.bool, device=x.device)
        qs: list[torch.Tensor] = []
        ws: list[torch.Tensor] = []

        def op(z: torch.Tensor) -> torch.Tensor:  # Gamma^{1/2} J^T W J Gamma^{1/2}
            sz = S(z[None])[0].reshape(B, *fs)
            hv = gauss_newton_hvp(problem, x, sz, prior=False)
            w = S(hv.reshape(1, B, n))[0]
            # a non-finite product ends that problem (BREAKDOWN); zeros keep Lanczos
            # running for the others
            finite = torch.isfinite(w).all(-1)
            broken.logical_or_(~finite)
            w = torch.where(finite[:, None], w, 0.0)
            qs.append(z)
            ws.append(w)
            return w

        theta, U = lanczos(op, n, steps, batch=B, dtype=x.dtype, device=x.device,
                           seed=self.seed)
        lam = theta[:, :rank].clamp_min(0.0)
        V = U[:, :, :rank]  # (B, n, r)
        # Ritz residuals from the stored products, no new ones: V = Q^T Y, so A V = (A
        # Q^T) (Q V)
        Q, AQ = torch.stack(qs, 1), torch.stack(ws, 1)  # (B, steps, n)
        AV = AQ.transpose(1, 2) @ (Q @ V)
        scale = 1.0 + theta[:, :1].clamp_min(0.0)
        ritz = (AV - V * theta[:, None, :rank]).norm(dim=1) / scale  # (B, r)
        tol = _default_tol(x.dtype) if self.tol is None else self.tol
        codes = torch.where((ritz <= tol).all(-1), _CONV, _MAXIT)
        codes = torch.where(broken, _BREAK, codes).cpu()
        D = lam / (1.0 + lam)
        SV = S(V.permute(2, 0, 1))  # (r, B, n)
        var = prior.variance(x).reshape(B, n) - (D.T[:, :, None] * SV**2).sum(0)
        a = 1.0 - torch.rsqrt(1.0 + lam)

        def apply(Y: torch.Tensor) -> torch.Tensor:  # (B, n, K)
            SY = S(Y.permute(2, 0, 1)).permute(1, 2, 0)
            W = SY - V @ (D[:, :, None] * (V.transpose(1, 2) @ SY))
            return S(W.permute(2, 0, 1)).permute(1, 2, 0)

        def draw(xi: torch.Tensor) -> torch.Tensor:  # (num, B, n)
            w = xi - torch.einsum("bnr,br,kbr->kbn", V, a, torch.einsum("bnr,kbn->kbr", V, xi))
            return S(w)

        std = var.clamp_min(0.0).sqrt().reshape(x.shape)
        stats = {"iterations": steps, "eigenvalues": lam, "rank": rank,
                 "lanczos_steps": steps, "ritz_residual": ritz, "tol": tol}
        return Posterior(mean=x, std=std, method="lowrank", stats=stats, _apply=apply,
                         _draw=draw), codes

    # -- dense and CG -----------------------------------------------------------------
    def _cov(self, problem: InverseProblem, x: torch.Tensor,
             method: str) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor]:
        """The covariance ``(B, n, n)``, the stats and each problem's status code; a
        broken problem's covariance is the identity here (finite, for the batched
        conditioning) and NaN after :func:`_poison`."""
        B, fs = x.shape[0], tuple(x.shape[1:])
        n = x[0].numel()
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        if method == "dense":
            xr = x[None].expand(n, *x.shape).reshape(n * B, *fs).contiguous()
            E = eye[:, None, :].expand(n, B, n).reshape(n * B, *fs).contiguous()
            H = gauss_newton_hvp(problem, xr, E).reshape(n, B, n).permute(1, 2, 0)
            H = 0.5 * (H + H.transpose(1, 2))
            broken = ~torch.isfinite(H).flatten(1).all(-1)
            H = torch.where(broken[:, None, None], eye, H)
            L, info = torch.linalg.cholesky_ex(H)
            if bool((info > 0).any()):
                raise ValueError(_NOT_PD)
            codes = torch.where(broken, _BREAK, _CONV).cpu()
            return torch.cholesky_inverse(L), {"iterations": 0, "hessian": H}, codes
        covs, iters, codes = [], 0, []
        for b in range(B):
            xb = x[b:b + 1]

            def matvec(V: torch.Tensor, xb: torch.Tensor = xb) -> torch.Tensor:
                K = V.shape[0]
                xr = xb.expand(K, *fs).contiguous()
                return gauss_newton_hvp(problem, xr, V.reshape(K, *fs)).reshape(K, n)

            A = CallableOperator(matvec, (n, n), x.dtype, x.device)
            max_iter = 10 * n if self.max_iter is None else self.max_iter
            sol = cg(A, eye, rtol=self.cg_rtol, max_iter=max_iter)
            if sol.status is LinearStatus.INDEFINITE:
                raise ValueError(_NOT_PD)
            # stagnated: CG reached what this precision allows short of cg_rtol, like an
            # exhausted budget (a usable, less accurate covariance), not a breakdown
            code = {LinearStatus.CONVERGED: _CONV, LinearStatus.MAX_ITER: _MAXIT,
                    LinearStatus.STALLED: _MAXIT}.get(sol.status, _BREAK)
            if code == _BREAK or not bool(torch.isfinite(sol.x).all()):
                code, cov = _BREAK, eye
            else:
                cov = 0.5 * (sol.x + sol.x.T)
            covs.append(cov)
            codes.append(code)
            iters = max(iters, int(sol.stats["iterations"]))
        return (torch.stack(covs), {"iterations": iters, "cg_iterations": iters},
                torch.tensor(codes))


_NOT_PD = ("the Gauss-Newton Hessian is not positive definite at the estimate: the data do "
           "not determine every unknown (fewer independent observations than unknowns, or "
           "an unidentifiable parameter); add a prior (e.g. ScalarPrior) or more "
           "observations")


def _default_tol(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps ** 0.5


def _poison(post: Posterior, broken: torch.Tensor) -> None:
    """NaN for the problems marked ``broken`` (``(B,)``): their std, covariance and
    samples, so that a BREAKDOWN cannot pass for an answer."""
    broken = broken.to(post.mean.device)
    base_apply, base_draw = post._apply, post._draw
    nan = float("nan")
    post.std = torch.where(broken.reshape(-1, *[1] * (post.std.ndim - 1)), nan, post.std)

    def apply(Y: torch.Tensor) -> torch.Tensor:  # (B, n, K)
        return torch.where(broken[:, None, None], nan, base_apply(Y))  # type: ignore[misc]

    def draw(xi: torch.Tensor) -> torch.Tensor:  # (num, B, n)
        return torch.where(broken[None, :, None], nan, base_draw(xi))  # type: ignore[misc]

    post._apply, post._draw = apply, draw


def _failure(post: Posterior, method: str) -> str:
    """The ``throw=True`` message: the status, how many problems, what to do."""
    codes = post.stats["codes"]
    bad = sum(c != "CONVERGED" for c in codes)
    if post.status is InverseStatus.BREAKDOWN:
        fix = ("the Gauss-Newton Hessian-vector products at x_map are not finite (NaN or "
               "Inf): check the forward map and its derivative at the estimate (overflow, "
               "sqrt or log at 0, a MAP solve that broke down), or use float64")
    elif method == "lowrank":
        worst = float(post.stats["ritz_residual"].max())
        fix = (f"the kept Ritz pairs did not converge in steps = "
               f"{post.stats['lanczos_steps']} Lanczos steps (largest relative residual "
               f"{worst:.3g} > tol = {post.stats['tol']:.3g}): raise steps (up to n), keep "
               "fewer pairs (rank), or loosen tol")
    else:
        fix = (f"a column's CG solve stopped at max_iter ({post.stats['cg_iterations']} "
               "iterations) before cg_rtol: raise max_iter, loosen cg_rtol, or use "
               "method='dense' for a small problem")
    return f"{post.status.name}: {fix} ({bad} of {len(codes)} problem(s))"


def _from_covariance(x: torch.Tensor, method: str, cov: torch.Tensor,
                     stats: dict[str, Any]) -> Posterior:
    def apply(Y: torch.Tensor) -> torch.Tensor:
        return cov @ Y

    def draw(xi: torch.Tensor) -> torch.Tensor:
        L, info = torch.linalg.cholesky_ex(cov)
        if bool((info > 0).any()):  # semidefinite after conditioning: use eigh
            w, Q = torch.linalg.eigh(cov)
            L = Q * w.clamp_min(0.0).sqrt()[:, None, :]
        return torch.einsum("bij,kbj->kbi", L, xi)

    std = cov.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt().reshape(x.shape)
    return Posterior(mean=x, std=std, method=method, stats=stats,
                     _apply=apply, _draw=draw)


def _condition(post: Posterior, G: torch.Tensor) -> None:
    """Condition ``post`` on ``G x = b`` in place (its mean already satisfies it)."""
    B, n = post.mean.shape[0], post.mean[0].numel()
    base_apply, base_draw = post._apply, post._draw
    A = base_apply(G.T.expand(B, n, G.shape[0]))  # C G^T, (B, n, k)
    Sg = G @ A
    Sg = 0.5 * (Sg + Sg.transpose(1, 2))
    L, info = torch.linalg.cholesky_ex(Sg)
    if bool((info > 0).any()):
        raise ValueError("G C G^T is singular: the constraints are linearly dependent or "
                         "already fixed by the data; drop redundant rows of G")

    def apply(Y: torch.Tensor) -> torch.Tensor:
        return base_apply(Y) - A @ torch.cholesky_solve(A.transpose(1, 2) @ Y, L)

    def draw(xi: torch.Tensor) -> torch.Tensor:
        d = base_draw(xi)  # Matheron's rule: d - C G^T (G C G^T)^{-1} G d
        Gd = torch.einsum("kn,mbn->bkm", G, d)
        return d - torch.einsum("bnk,bkm->mbn", A, torch.cholesky_solve(Gd, L))

    var = post.std.reshape(B, n) ** 2 - (A * torch.cholesky_solve(
        A.transpose(1, 2), L).transpose(1, 2)).sum(-1)
    post.std = var.clamp_min(0.0).sqrt().reshape(post.mean.shape)
    post._apply, post._draw = apply, draw


def laplace(problem: InverseProblem, x_map: torch.Tensor, *, method: str = "auto",
            rank: int | None = None, steps: int | None = None, seed: int = 0,
            cg_rtol: float = 1e-10, tol: float | None = None, max_iter: int | None = None,
            throw: bool = False) -> Posterior:
    """The Laplace approximation ``N(x_map, H^{-1})``: ``Laplace(...)(problem, x_map)``.

    Args:
        problem: the :class:`~sciml.inverse.InverseProblem` (its misfit must be
            quadratic: :class:`~sciml.inverse.L2Misfit` or
            :class:`~sciml.inverse.SobolevMisfit`).
        x_map: the MAP estimate ``(B, ...)``, e.g. ``solve_map(problem, x0).estimate``.
        method, rank, steps, seed, cg_rtol, tol, max_iter: see :class:`Laplace`.
        throw: raise :class:`~sciml.inverse.InverseError` unless the status is CONVERGED.

    Returns:
        :class:`Posterior` (``std``, ``sample``, ``covariance``, ``status``, ``stats``,
        ``converged``).

    Raises:
        TypeError: a non-quadratic misfit, or ``"lowrank"`` without a Gaussian prior.
        ValueError: a Hessian that is not positive definite (``"dense"``, ``"cg"``), bad
            ``rank``/``steps``, a non-finite ``x_map``.
        InverseError: with ``throw=True``, a status other than CONVERGED.
    """
    return Laplace(method=method, rank=rank, steps=steps, seed=seed, cg_rtol=cg_rtol,
                   tol=tol, max_iter=max_iter)(problem, x_map, throw=throw)
