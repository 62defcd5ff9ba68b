"""Maximum a posteriori estimation: minimise ``J(x) = phi(O(F(x)), d) + R(x)``.

Two methods, batched over independent problems (a leading axis of ``x``):

* ``"lbfgs"``: limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, 2nd
  ed., Alg. 7.4 and 7.5: the two-loop recursion with ``H_0 = gamma I``, ``gamma =
  s^T y / y^T y``) with a backtracking Armijo line search; every problem keeps its own
  curvature pairs, step length and stopping state.
* ``"adam"``: Adam (Kingma & Ba 2015) with a fixed learning rate ``lr``.

With a Gaussian prior ``N(m, Gamma)`` the optimisation runs in the whitened variable
``z = Gamma^{-1/2} (x - m)`` (``whiten=True``): the Hessian becomes ``I + Gamma^{1/2}
H_misfit Gamma^{1/2}``, which is far better conditioned than ``H_misfit + Gamma^{-1}``
for a smoothing prior, so L-BFGS needs about as many iterations as there are
informative data directions. A linear constraint ``G x = b`` is kept exactly: the start
is projected onto it, every gradient onto the null space of ``G`` (so every search
direction stays in it) and every trial point onto the constraint again (rounding).

Stopping rule (per problem): converged when ``||grad J(z_k)|| <= gtol ||grad J(z_0)||``
or when the last five iterations together decreased ``J`` by at most ``ftol |J|`` (a
single slow step of L-BFGS is not a plateau). Every problem's state and stopping test
stay on the device (``torch.where``, no boolean indexing); the host reads them once per
L-BFGS trial step (the line search's acceptance together with the outcome of the
iteration should it end there; a step of 1 is usually accepted, so about one
synchronisation per iteration) or once per Adam iteration. ``torch.optim.LBFGS`` is not
used: its line search and tests read several scalars per iteration.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .._frozen import frozen_settings
from .._validation import check_bool, check_choice, check_finite, check_int, check_real
from .prior import GaussianPrior
from .problem import InverseProblem

if TYPE_CHECKING:
    from .laplace import Laplace, Posterior

__all__ = ["MAP", "InverseError", "InverseResult", "InverseStatus", "solve_map"]

# per-problem codes; the order is the precedence of the overall status
_RUN, _CONV, _MAXIT, _STALL, _BREAK = 0, 1, 2, 3, 4
_PATIENCE = 5  # iterations over which the ftol decrease is measured


class InverseStatus(enum.Enum):
    """How a MAP solve (or a Laplace approximation, :class:`~sciml.inverse.Posterior`)
    ended; the value says what went wrong and what to do about it. The same names mean
    the same conditions as in the other families (linear solvers, optimal transport,
    hard constraints)."""

    CONVERGED = ("converged: the gradient norm fell below gtol (relative) or J stopped "
                 "decreasing (ftol); Laplace: the kept Ritz pairs met tol, or every CG "
                 "solve met cg_rtol")
    MAX_ITER = ("stopped at max_iter before the stopping rule held: raise max_iter, loosen "
                "gtol/ftol, use method='lbfgs' (Adam with a fixed lr only reaches a "
                "neighbourhood of the minimum), or whiten with a Gaussian prior; Laplace: "
                "raise steps (lowrank) or max_iter (cg)")
    STALLED = ("the line search found no decrease along the search direction: the iterate "
               "is at the precision limit of the dtype (use float64 or loosen gtol), or the "
               "gradient does not match the objective (check that the forward map is "
               "differentiable and deterministic)")
    BREAKDOWN = ("the objective or its gradient became non-finite (NaN or Inf): lower lr, "
                "check the forward map for overflow at the iterates (bound the unknown, "
                "e.g. solve for log(viscosity)), add a prior, or use float64; Laplace: the "
                "Hessian-vector products at the estimate were non-finite")


_STATUS = {_CONV: InverseStatus.CONVERGED, _MAXIT: InverseStatus.MAX_ITER,
           _STALL: InverseStatus.STALLED, _BREAK: InverseStatus.BREAKDOWN}


class InverseError(RuntimeError):
    """Raised by ``throw=True`` when a MAP solve or a Laplace approximation does not
    converge."""


@dataclass
class InverseResult:
    """Result of a MAP solve.

    Attributes:
        estimate: the MAP estimate, shaped like ``x0``.
        status: an :class:`InverseStatus`, the worst over the batch (BREAKDOWN, STALLED,
            MAX_ITER, then CONVERGED).
        history: ``(iterations + 1, B)``, the objective ``J`` at each iterate (row 0 at
            the projected start); a problem that has stopped keeps its last value.
        misfit: ``phi(O(F(x)), d)`` at the estimate, ``(B,)``.
        std: pointwise posterior standard deviations (shaped like ``estimate``) when a
            :class:`~sciml.inverse.Laplace` was passed as ``uncertainty``, else ``None``.
        posterior: the :class:`~sciml.inverse.Posterior` in that case, else ``None``.
        stats: ``iterations``, ``evaluations`` (objective + gradient evaluations),
            ``gradient_norm`` (``(B,)``, in the optimised variable), ``prior`` (``R`` at
            the estimate), ``objective``, ``codes`` (per-problem status names),
            ``constraint_residual`` (``max |G x - b|``, with a constraint), ``whitened``.
    """

    estimate: torch.Tensor
    status: InverseStatus
    history: torch.Tensor
    misfit: torch.Tensor
    std: torch.Tensor | None = None
    posterior: Posterior | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is InverseStatus.CONVERGED


class _Coordinates:
    """The optimised variable ``z``: ``x = m + Gamma^{1/2} z`` (whitened) or ``x = z``;
    the constraint ``G x = b`` becomes ``(G Gamma^{1/2}) z = b - G m``."""

    def __init__(self, problem: InverseProblem, x0: torch.Tensor, whiten: bool) -> None:
        self.shape = tuple(x0.shape)
        self.prior = problem.prior if whiten and isinstance(problem.prior,
                                                            GaussianPrior) else None
        self.A: torch.Tensor | None = None
        self.c: torch.Tensor | None = None
        con = problem.constraint
        if con is not None:
            G = con.G.to(device=x0.device, dtype=x0.dtype)
            b = con.b.to(device=x0.device, dtype=x0.dtype)
            if self.prior is not None:
                rows = G.reshape(G.shape[0], *self.shape[1:])
                # (G S)_ij = (S g_i)_j for the symmetric square root S
                self.A = self.prior.apply_sqrt(rows).reshape(G.shape[0], -1)
                m = self.prior.mean_like(x0).reshape(x0.shape[0], -1)
                self.c = b - m @ G.T
            else:
                self.A, self.c = G, b
            # the projection's operator, factored once here (float64, as project_mean):
            # the projections of every trial point and gradient are then free of checks
            # and host synchronisations
            self._A64 = self.A.to(torch.float64)
            self._c64 = self.c.to(torch.float64)
            # per problem, as project_mean batches it (the same rounding, step for step)
            self._Ab = self._A64.expand(x0.shape[0], *self._A64.shape).contiguous()
            L, info = torch.linalg.cholesky_ex(self._Ab @ self._A64.T)
            if bool((info > 0).any()):
                raise ValueError("the constraint G x = b has linearly dependent rows (G G^T "
                                 "is singular in the optimised variable): drop redundant "
                                 "rows of G")
            self._L = L

    def _project(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``z - A^T (A A^T)^{-1} (A z - c)`` in float64 (the arithmetic of
        :func:`sciml.constraints.project_mean`), in ``z``'s dtype."""
        z64 = z.to(torch.float64)
        r = (self._A64 @ z64.unsqueeze(-1)).squeeze(-1) - c
        X = torch.cholesky_solve(torch.cat([r.unsqueeze(-1), self._Ab], dim=-1), self._L)
        return (z64 - (self._Ab.transpose(-1, -2) @ X[..., :1]).squeeze(-1)).to(z.dtype)

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(self.shape)
        if self.prior is None:
            return z
        return self.prior.mean_like(z) + self.prior.apply_sqrt(z)

    def to_z(self, x: torch.Tensor) -> torch.Tensor:
        if self.prior is not None:
            x = self.prior.apply_inverse_sqrt(x - self.prior.mean_like(x))
        return x.reshape(x.shape[0], -1)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        if self.A is None:
            return z
        return self._project(z, self._c64)

    def project_tangent(self, g: torch.Tensor) -> torch.Tensor:
        if self.A is None:
            return g
        return self._project(g, torch.zeros_like(self._c64))


def _value_and_grad(fun: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        f = fun(zr)
        (g,) = torch.autograd.grad(f.sum(), zr)
    return f.detach(), g


def _two_loop(g: torch.Tensor, pairs: list, gamma: torch.Tensor) -> torch.Tensor:
    """``H_k g`` by the L-BFGS two-loop recursion, per problem (``rho = 0`` skips a pair)."""
    q = g.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * (s * q).sum(-1)
        q = q - a[:, None] * y
        alphas.append(a)
    r = gamma[:, None] * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * (y * r).sum(-1)
        r = r + (a - b)[:, None] * s
    return r


@frozen_settings()
@dataclass(frozen=True)
class MAP:
    """Settings of the MAP solver (see the module docstring and :func:`solve_map`).

    Attributes:
        method: ``"lbfgs"`` or ``"adam"``.
        max_iter: iteration limit.
        gtol: relative gradient-norm tolerance.
        ftol: relative decrease tolerance (0 switches it off).
        lr: Adam's learning rate (L-BFGS starts each line search at step 1).
        history_size: L-BFGS curvature pairs kept.
        max_linesearch: L-BFGS step halvings before a problem is STALLED.
        whiten: optimise in the prior-whitened variable when the prior is Gaussian.
        progress: show a tqdm progress bar.
    """

    method: str = "lbfgs"
    max_iter: int = 500
    gtol: float = 1e-8
    ftol: float = 1e-13
    lr: float = 1e-2
    history_size: int = 20
    max_linesearch: int = 40
    whiten: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("lbfgs", "adam"))
        check_int("max_iter", self.max_iter, minimum=1)
        check_real("gtol", self.gtol, minimum=0.0)
        check_real("ftol", self.ftol, minimum=0.0)
        check_real("lr", self.lr, positive=True)
        check_int("history_size", self.history_size, minimum=1)
        check_int("max_linesearch", self.max_linesearch, minimum=1)
        check_bool("whiten", self.whiten)
        check_bool("progress", self.progress)

    def __call__(self, problem: InverseProblem, x0: torch.Tensor, *,
                 uncertainty: Laplace | None = None, throw: bool = False) -> InverseResult:
        if not isinstance(problem, InverseProblem):
            raise TypeError(f"problem must be an InverseProblem, got {type(problem).__name__}")
        x0 = problem.check(x0).detach()
        check_finite("x0", x0)
        problem.check_differentiable(x0)
        coords = _Coordinates(problem, x0, self.whiten)

        def fun(z: torch.Tensor) -> torch.Tensor:
            return problem.objective(coords.to_x(z))

        z = coords.project(coords.to_z(x0))
        B = z.shape[0]
        f, g = _value_and_grad(fun, z)
        g = coords.project_tangent(g)
        evals = 1
        code = torch.full((B,), _RUN, dtype=torch.long, device=z.device)
        code = torch.where(torch.isfinite(f) & torch.isfinite(g).all(-1), code, _BREAK)
        g0 = g.norm(dim=-1)
        code = torch.where((code == _RUN) & (g0 <= self.gtol * g0), _CONV, code)
        history = [f]

        def outcome(code: torch.Tensor, moved: torch.Tensor, gn: torch.Tensor,
                    fn: torch.Tensor) -> torch.Tensor:
            """The codes after an iteration that ends at ``(fn, gn)`` (``history`` not yet
            holding ``fn``): CONVERGED where a problem moved and passed a test."""
            small = gn.norm(dim=-1) <= self.gtol * g0
            if len(history) >= _PATIENCE:
                small = small | ((history[-_PATIENCE] - fn).abs() <= self.ftol * fn.abs())
            return torch.where(moved & small, _CONV, code)

        def read(*flags: torch.Tensor, fn: torch.Tensor) -> list[float]:
            """The iteration's one host synchronisation: the flags and the largest J."""
            return torch.stack([*(v.to(torch.float64) for v in flags),
                                fn.max().to(torch.float64)]).tolist()

        bar = tqdm(total=self.max_iter, desc=f"map ({self.method})", disable=not self.progress,
                   leave=False)
        it = 0
        if self.method == "lbfgs":
            pairs: list = []
            gamma = torch.ones(B, dtype=z.dtype, device=z.device)
        else:
            zp = torch.nn.Parameter(z.clone())
            opt = torch.optim.Adam([zp], lr=self.lr)
        running = bool((code == _RUN).any())
        while it < self.max_iter and running:
            it += 1
            active = code == _RUN
            if self.method == "lbfgs":
                d = -coords.project_tangent(_two_loop(g, pairs, gamma))
                gd = (g * d).sum(-1)
                uphill = ~(gd < 0)
                d = torch.where(uphill[:, None], -g, d)
                gd = torch.where(uphill, -(g * g).sum(-1), gd)
                d = d * active[:, None]
                t = torch.ones(B, dtype=z.dtype, device=z.device)
                if not pairs:
                    t = torch.clamp(1.0 / g.norm(dim=-1).clamp_min(1e-300), max=1.0)
                done = ~active
                zn, fn, gn = z, f, g
                for _ in range(self.max_linesearch):
                    trial = coords.project(z + t[:, None] * d)
                    ft, gt = _value_and_grad(fun, trial)
                    evals += 1
                    ok = ~done & torch.isfinite(ft) & torch.isfinite(gt).all(-1) & (
                        ft <= f + 1e-4 * t * gd)
                    zn = torch.where(ok[:, None], trial, zn)
                    fn = torch.where(ok, ft, fn)
                    gn = torch.where(ok[:, None], gt, gn)
                    done = done | ok
                    # the iteration's outcome should the line search end here, read with
                    # its own test: one synchronisation per trial step
                    gp = coords.project_tangent(gn)
                    end = outcome(torch.where(active & ~done, _STALL, code), active & done,
                                  gp, fn)
                    all_done, running, fmax = read(done.all(), (end == _RUN).any(), fn=fn)
                    if all_done:
                        break
                    t = torch.where(done, t, 0.5 * t)
                code, gn = end, gp
                s, y = zn - z, gn - g
                sy, yy = (s * y).sum(-1), (y * y).sum(-1)
                good = active & done & (sy > 1e-10 * yy.sqrt() * s.norm(dim=-1))
                pairs.append((s, y, torch.where(good, 1.0 / torch.where(good, sy, 1.0), 0.0)))
                if len(pairs) > self.history_size:
                    pairs.pop(0)
                gamma = torch.where(good, sy / torch.where(good, yy, 1.0), gamma)
            else:
                zp.grad = g * active[:, None]
                opt.step()
                with torch.no_grad():
                    trial = coords.project(torch.where(active[:, None], zp, z))
                fn, gn = _value_and_grad(fun, trial)
                gn = coords.project_tangent(gn)
                evals += 1
                finite = torch.isfinite(fn) & torch.isfinite(gn).all(-1)
                code = torch.where(active & ~finite, _BREAK, code)
                moved = active & finite
                zn = torch.where(moved[:, None], trial, z)
                fn = torch.where(moved, fn, f)
                gn = torch.where(moved[:, None], gn, g)
                with torch.no_grad():
                    zp.copy_(zn)
                code = outcome(code, moved, gn, fn)
                running, fmax = read((code == _RUN).any(), fn=fn)
            z, f, g = zn, fn, gn
            history.append(f)
            bar.update(1)
            if self.progress:
                bar.set_postfix(objective=f"{fmax:.4g}")
        bar.close()
        code = torch.where(code == _RUN, _MAXIT, code)
        x = coords.to_x(z).detach()
        with torch.no_grad():
            misfit = problem.misfit_value(x)
            prior = problem.prior_energy(x)
        codes = code.tolist()
        status = _STATUS[max(codes)]
        stats: dict[str, Any] = {
            "iterations": it, "evaluations": evals, "gradient_norm": g.norm(dim=-1),
            "objective": f, "prior": prior, "whitened": coords.prior is not None,
            "codes": [_STATUS[c].name for c in codes],
        }
        if problem.constraint is not None:
            stats["constraint_residual"] = float(problem.constraint.residual(x).abs().max())
        result = InverseResult(estimate=x, status=status, history=torch.stack(history),
                               misfit=misfit, stats=stats)
        if throw and status is not InverseStatus.CONVERGED:
            bad = sum(c != "CONVERGED" for c in stats["codes"])
            raise InverseError(f"{status.name}: {status.value} ({bad} of {B} problem(s) did "
                               f"not converge after {it} iterations)")
        if uncertainty is not None:
            # throw=True also covers the posterior (its own status otherwise)
            post = uncertainty(problem, x, throw=throw)
            result.posterior, result.std = post, post.std
        return result


def solve_map(
    problem: InverseProblem,
    x0: torch.Tensor,
    *,
    method: str = "lbfgs",
    max_iter: int = 500,
    gtol: float = 1e-8,
    ftol: float = 1e-13,
    lr: float = 1e-2,
    whiten: bool = True,
    progress: bool = False,
    uncertainty: Laplace | None = None,
    throw: bool = False,
) -> InverseResult:
    """The MAP estimate ``argmin_x phi(O(F(x)), d) + R(x)`` (subject to ``G x = b``).

    Equivalent in purpose to ``scipy.optimize.minimize(J, x0, jac=True,
    method="L-BFGS-B")`` per problem, batched and on the device, with gradients by
    autograd through the forward map. Names: scipy's ``options={"maxiter": ...}`` is
    ``max_iter``, ``"maxcor"`` is ``history_size`` (of :class:`MAP`) and ``"maxls"`` is
    ``max_linesearch``; ``gtol`` and ``ftol`` keep scipy's names but not its exact
    tests: ``gtol`` is relative to the starting gradient norm (scipy: the absolute
    largest projected gradient entry) and ``ftol`` measures the decrease of ``J`` over
    the last five iterations relative to ``|J|`` (scipy: one iteration, relative to
    ``max(|J_k|, |J_k+1|, 1)``). ``OptimizeResult.success``/``message``/``nit`` are
    ``converged``/``status``/``stats["iterations"]``.

    Args:
        problem: the :class:`~sciml.inverse.InverseProblem`.
        x0: the start, ``(B, ...)`` (a batch of independent problems sharing the data
            layout; data may be ``(B, m)`` or broadcast).
        method, max_iter, gtol, ftol, lr, whiten, progress: see :class:`MAP`.
        uncertainty: a :class:`~sciml.inverse.Laplace` to attach the Laplace posterior
            (and its pointwise ``std``) at the estimate; its own ``status`` says whether it
            converged.
        throw: raise :class:`InverseError` unless the status is CONVERGED (and, with
            ``uncertainty``, unless the posterior's is).

    Returns:
        :class:`InverseResult`.

    Raises:
        TypeError, ValueError: bad settings or inputs (the message names the value).
        InverseError: with ``throw=True``, when the solve does not converge.
    """
    solver = MAP(method=method, max_iter=max_iter, gtol=gtol, ftol=ftol, lr=lr,
                 whiten=whiten, progress=progress)
    return solver(problem, x0, uncertainty=uncertainty, throw=throw)
