"""The library held to its word: every reported status and error is recomputed here.

For each iterative solver and constraint layer, what the call reports (``status``,
``converged``, residual and gradient norms, objective values, constraint residuals) is
recomputed independently from what it *returns* (``b - A x`` in float64, the
optimality condition at the returned coefficients, ``G u - b`` of the returned
profile), on easy and on hard inputs: float32, ill-conditioned systems, tight
tolerances, iteration limits that stop early, and batches that mix easy and hard
members. Any disagreement fails. The optimal-transport solvers are held to the same
standard in ``test_honesty_ot.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sciml.constraints import (
    ConvexHardConstraint,
    ConvexProjection,
    HardConstraint,
    LMStatus,
    MoEHardConstraint,
    probconserv,
)
from sciml.inverse import (
    InverseProblem,
    InverseStatus,
    LinearConstraint,
    SobolevPrior,
    random_points,
    solve_map,
)
from sciml.solvers.linear import Jacobi, LinearStatus, cg, flexible_cg, solve

D = torch.float64


# ----------------------------------------------------------------------- linear solvers
def _varcoef(m: int, contrast: float, seed: int) -> sp.csr_array:
    """A 2D variable-coefficient diffusion matrix (ill-conditioned for a large contrast)."""
    rng = np.random.default_rng(seed)
    c = np.exp(rng.uniform(0, math.log(contrast), (m + 1, m + 1)))
    n = m * m
    rows, cols, vals = [], [], []
    for i in range(m):
        for j in range(m):
            k = i * m + j
            diag = 0.0
            for di, dj, w in ((1, 0, c[i + 1, j]), (-1, 0, c[i, j]), (0, 1, c[i, j + 1]),
                              (0, -1, c[i, j])):
                diag += w
                ii, jj = i + di, j + dj
                if 0 <= ii < m and 0 <= jj < m:
                    rows.append(k)
                    cols.append(ii * m + jj)
                    vals.append(-w)
            rows.append(k)
            cols.append(k)
            vals.append(diag)
    return sp.csr_array((vals, (rows, cols)), shape=(n, n))


def _mixed_rhs(n: int, dtype: torch.dtype) -> torch.Tensor:
    """A batch mixing easy and hard members: a smooth b, a rough b, a tiny b, b = 0."""
    g = torch.Generator().manual_seed(5)
    x = torch.linspace(0, 1, n, dtype=D)
    b = torch.stack([torch.sin(math.pi * x), torch.randn(n, generator=g, dtype=D),
                     1e-30 * torch.randn(n, generator=g, dtype=D), torch.zeros(n, dtype=D)])
    return b.to(dtype)


def _check_linear(sol, A: sp.csr_array, b: torch.Tensor, rtol: float, max_iter: int) -> None:
    Ad = torch.as_tensor(A.toarray())
    x = sol.x.double()
    true = (b.double() - x @ Ad.T).norm(dim=-1)
    st = sol.stats
    reported = st["residual_norm"].double()
    # the reported residual is the true one, up to rounding in the working dtype
    eps = torch.finfo(b.dtype).eps
    slack = 10 * eps * (Ad.abs().sum(1).max() * x.abs().amax(-1) + b.double().abs().amax(-1))
    assert torch.all((reported - true).abs() <= slack + 1e-300), (reported, true)
    tol = torch.clamp_min(rtol * b.double().norm(dim=-1), 0.0)
    torch.testing.assert_close(st["tolerance"].double(), tol, rtol=10 * eps, atol=0)
    # a converged system meets its tolerance; one reported as not converged does not
    ok = st["converged"]
    assert torch.all(reported[ok] <= st["tolerance"].double()[ok])
    assert torch.all(true[ok] <= tol[ok] + slack[ok])
    assert torch.all(~ok | (st["iterations_per_system"] <= max_iter))
    assert sol.converged == bool(ok.all())
    assert (sol.status is LinearStatus.CONVERGED) == bool(ok.all())
    if not bool(ok.all()):
        assert sol.status in (LinearStatus.MAX_ITER, LinearStatus.BREAKDOWN,
                              LinearStatus.INDEFINITE)
    assert st["iterations"] == int(st["iterations_per_system"].max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rtol, max_iter", [(1e-5, 2000), (1e-10, 2000), (1e-8, 15)])
@pytest.mark.parametrize("method", ["cg", "pcg", "fcg"])
def test_linear_solvers_report_what_they_return(dtype, rtol, max_iter, method):
    A = _varcoef(12, 1e3, seed=1)
    b = _mixed_rhs(A.shape[0], dtype)
    x0 = torch.ones_like(b)
    if method == "cg":
        sol = cg(A, b, x0=x0, rtol=rtol, max_iter=max_iter)
    elif method == "pcg":
        sol = cg(A, b, x0=x0, rtol=rtol, max_iter=max_iter, M=Jacobi(A))
    else:
        sol = flexible_cg(A, b, x0=x0, rtol=rtol, max_iter=max_iter, M=Jacobi(A))
    _check_linear(sol, A, b, rtol, max_iter)
    if max_iter == 15:  # a limit this low stops the rough member: it must say so
        assert not sol.converged and sol.status is LinearStatus.MAX_ITER


def test_differentiable_solve_reports_its_forward_solve():
    A = _varcoef(8, 1e2, seed=2)
    b = _mixed_rhs(A.shape[0], D).requires_grad_()
    sol = solve(A, b, rtol=1e-9, max_iter=500)
    _check_linear(sol, A, b.detach(), 1e-9, 500)
    short = solve(A, b, rtol=1e-9, max_iter=3)
    _check_linear(short, A, b.detach(), 1e-9, 3)
    assert short.status is LinearStatus.MAX_ITER


# ----------------------------------------------------------------------- hard constraints
def _cubic(c, Phi, y):
    u = (Phi @ c.unsqueeze(-1)).squeeze(-1)
    return u + 0.5 * u**3 - y


def _lm_problem(B: int, seed: int, hard_scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    Phi = torch.randn(B, 10, 4, generator=g, dtype=D)
    y = torch.randn(B, 10, generator=g, dtype=D)
    y[1:] *= hard_scale  # the first member easy, the others far from the start
    return Phi, y


def _optimality(residual, c: torch.Tensor, data, ridge: float):
    """|grad f|_inf and the stopping scale at c, from scratch (autograd, float64)."""
    c = c.detach().double()
    J = torch.func.vmap(torch.func.jacrev(
        lambda cc, *d: residual(cc[None], *(x[None] for x in d))[0]))(c, *data)
    r = residual(c, *data)
    g = (J.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1) + ridge * c
    scale = J.abs().amax((-1, -2)) * r.norm(dim=-1) + ridge * c.abs().amax(-1)
    return g.abs().amax(-1), scale.clamp_min(1.0), r.norm(dim=-1)


@pytest.mark.parametrize("max_iter", [2, 200])
@pytest.mark.parametrize("hard_scale", [1.0, 30.0])
def test_hard_constraint_reports_what_it_returns(max_iter, hard_scale):
    # tol 1e-8: with a nonzero residual the objective's rounding floor keeps |grad f|
    # near 1e-9 here, so a tighter tol is honestly reported as MAX_ITER
    ridge, tol = 1e-6, 1e-8
    Phi, y = _lm_problem(4, seed=3, hard_scale=hard_scale)
    res = HardConstraint(_cubic, ridge=ridge, max_iter=max_iter, tol=tol)(
        Phi, y, c0=torch.zeros(4, 4))
    gnorm, scale, rnorm = _optimality(_cubic, res.coeffs, (Phi, y), ridge)
    torch.testing.assert_close(res.grad_norm, gnorm, rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(res.residual_norm, rnorm, rtol=1e-12, atol=1e-14)
    meets = gnorm <= tol * scale * (1 + 1e-8)
    assert torch.all(res.iterations <= max_iter)
    if res.status is LMStatus.CONVERGED:
        assert bool(meets.all()), (gnorm, tol * scale)
    else:
        assert res.status is LMStatus.MAX_ITER and not bool(meets.all())
    if max_iter == 200:  # enough for every member, easy or hard
        assert res.status is LMStatus.CONVERGED


def test_moe_hard_constraint_reports_what_it_returns():
    ridge, tol = 1e-6, 1e-8
    g = torch.Generator().manual_seed(4)
    Phi = torch.randn(2, 3, 10, 4, generator=g, dtype=D)
    y = torch.randn(2, 3, 10, generator=g, dtype=D)
    y[:, 2] *= 30  # one hard expert per sample
    for max_iter in (2, 50):
        res = MoEHardConstraint(_cubic, 3, ridge=ridge, max_iter=max_iter, tol=tol)(
            Phi, y, c0=torch.zeros(2, 3, 4))
        gnorm, scale, rnorm = _optimality(_cubic, res.coeffs.reshape(6, 4),
                                          (Phi.reshape(6, 10, 4), y.reshape(6, 10)), ridge)
        torch.testing.assert_close(res.grad_norm.reshape(6), gnorm, rtol=1e-8, atol=1e-14)
        torch.testing.assert_close(res.residual_norm.reshape(6), rnorm, rtol=1e-12,
                                   atol=1e-14)
        meets = bool((gnorm <= tol * scale * (1 + 1e-8)).all())
        assert (res.status is LMStatus.CONVERGED) == meets


# ----------------------------------------------------------------------- MAP
def _smooth(u: torch.Tensor) -> torch.Tensor:
    k = 2 * math.pi * torch.arange(u.shape[-1] // 2 + 1, dtype=u.dtype)
    return torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-1e-3 * k**2), n=u.shape[-1])


@pytest.mark.parametrize("max_iter", [3, 300])
@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_map_reports_what_it_returns(max_iter, method):
    n = 32
    g = torch.Generator().manual_seed(6)
    obs = random_points((n,), 0.5, noise_std=0.05, generator=g)
    prior = SobolevPrior(s=2.0, weight=2e-3, lengths=(1.0,), alpha=25.0)
    truth = prior.sample(3, (n,), generator=g)
    data = obs.add_noise(obs(_smooth(truth) ** 3), generator=g)
    G = torch.ones(1, n, dtype=D) / n
    problem = InverseProblem(lambda x: _smooth(x) ** 3, obs, data, prior=prior,
                             constraint=LinearConstraint(G, truth @ G.T))
    x0 = torch.zeros(3, n, dtype=D)
    x0[2] = 3.0  # a batch mixing an easy start and a far one
    res = solve_map(problem, x0, method=method, max_iter=max_iter, lr=0.05)
    x = res.estimate
    with torch.no_grad():
        misfit = problem.misfit_value(x)
        energy = problem.prior_energy(x)
    torch.testing.assert_close(res.misfit, misfit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.stats["prior"], energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.stats["objective"], misfit + energy, rtol=1e-9,
                               atol=1e-9)
    torch.testing.assert_close(res.history[-1], res.stats["objective"], rtol=0, atol=0)
    assert res.stats["constraint_residual"] == pytest.approx(
        float(problem.constraint.residual(x).abs().max()), abs=1e-15)
    assert res.stats["constraint_residual"] <= 1e-10
    codes = res.stats["codes"]
    assert res.converged == all(c == "CONVERGED" for c in codes)
    assert res.status.name == max(codes, key=[s.name for s in (
        InverseStatus.CONVERGED, InverseStatus.MAX_ITER, InverseStatus.STALLED,
        InverseStatus.BREAKDOWN)].index)
    assert res.stats["iterations"] <= max_iter
    if max_iter == 3:
        assert res.status is InverseStatus.MAX_ITER
    # the estimate is finite and the objective never rose (L-BFGS) above the start
    assert bool(torch.isfinite(x).all())
    if method == "lbfgs":
        assert torch.all(res.history[-1] <= res.history[0] + 1e-12)


# ----------------------------------------------------------------------- conservation
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("full", [False, True])
def test_probconserv_returns_a_profile_that_meets_the_constraint(dtype, full):
    g = torch.Generator().manual_seed(7)
    n, k = 40, 2
    mean = torch.randn(3, n, generator=g, dtype=D) * torch.tensor([[1.0], [1e3], [1e-3]],
                                                                  dtype=D)
    if full:
        L = torch.randn(3, n, n, generator=g, dtype=D) / n
        cov = L @ L.mT + 1e-6 * torch.eye(n, dtype=D)
    else:
        cov = torch.rand(3, n, generator=g, dtype=D) * torch.logspace(-6, 0, n, dtype=D)
    G = torch.rand(k, n, generator=g, dtype=D)
    b = torch.randn(3, k, generator=g, dtype=D)
    out = probconserv(mean.to(dtype), cov.to(dtype), G.to(dtype), b.to(dtype))
    # float64 arithmetic whatever the input: the constraint holds to float64 rounding of
    # the (rounded) inputs it was given
    Gi, bi = G.to(dtype).double(), b.to(dtype).double()
    err = (out.mean @ Gi.T - bi).abs()
    assert float(err.max()) <= 1e-9 * (1 + float(bi.abs().max()) + float(
        (out.mean.abs() @ Gi.abs().T).max()))
    assert bool(torch.isfinite(out.cov).all()) and bool((out.std >= 0).all())


def test_convex_layers_return_feasible_answers():
    g = torch.Generator().manual_seed(8)
    n = 12
    y = torch.randn(3, n, generator=g, dtype=D)
    y[2] *= 1e3
    G = torch.ones(1, n, dtype=D)
    b = torch.tensor([[1.0], [5.0], [0.5]], dtype=D)
    res = ConvexProjection(n, nonneg=True, monotone="increasing", n_eq=1)(y, G=G, b=b)
    assert res.converged
    u = res.solution
    assert float(u.min()) >= -1e-9
    assert float((u[:, :-1] - u[:, 1:]).max()) <= 1e-9
    torch.testing.assert_close(u @ G.T, b, rtol=0, atol=1e-9)
    A = torch.randn(3, 8, 4, generator=g, dtype=D)
    rhs = torch.randn(3, 8, generator=g, dtype=D) * 10
    Gc = torch.cat([torch.eye(4, dtype=D), -torch.eye(4, dtype=D)])
    h = torch.ones(8, dtype=D)
    res = ConvexHardConstraint(8, 4, ridge=1e-6, n_ineq=8)(A, rhs, G=Gc, h=h)
    assert res.converged
    c = res.solution
    assert float((c @ Gc.T - h).max()) <= 1e-9  # |c| <= 1 holds
