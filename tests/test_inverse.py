"""sciml.inverse: observations, misfits, priors, MAP estimation, Laplace uncertainty.

References: the closed-form posterior of a linear-Gaussian problem (float64 dense numpy
solves; the heat semigroup and the Sobolev precision built from numpy's full complex
DFT), a KKT solve for the constrained MAP, the exact 1D W2 distance from quantile
functions, central finite differences for gradients and Jacobians, and the statistics
of repeated noisy experiments. Defining criteria: the gradient vanishes at the MAP,
the constraint holds, truncated variances are upper bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciml.inverse import (
    MAP,
    FullObservation,
    InverseError,
    InverseProblem,
    InverseStatus,
    L2Misfit,
    Laplace,
    LinearConstraint,
    PointObservation,
    ScalarPrior,
    SobolevMisfit,
    SobolevPrior,
    TotalVariation,
    W2Misfit,
    gauss_newton_hvp,
    laplace,
    random_points,
    solve_map,
)
from sciml.spectral import sobolev_norm

DT = torch.float64
N = 48
NU_T = 1e-3  # viscosity x time of the smoothing forward map
SIGMA = 0.05
PRIOR = SobolevPrior(s=2.0, weight=2e-3, lengths=(1.0,), alpha=25.0)


# ----------------------------------------------------------------------------- references
def _k(n: int, length: float = 1.0) -> np.ndarray:
    return 2 * np.pi * np.fft.fftfreq(n, d=1.0 / n) / length


def _fourier_matrix(n: int, mult: np.ndarray) -> np.ndarray:
    """The real circulant matrix of the Fourier multiplier ``mult`` (full fft order)."""
    return np.real(np.fft.ifft(mult[:, None] * np.fft.fft(np.eye(n), axis=0), axis=0))


def _heat_np(n: int) -> np.ndarray:
    return _fourier_matrix(n, np.exp(-NU_T * _k(n) ** 2))


def _precision_np(prior: SobolevPrior, n: int) -> np.ndarray:
    lam = (prior.alpha + _k(n, prior.lengths[0]) ** 2) ** prior.s
    return prior.weight * prior.lengths[0] / n * _fourier_matrix(n, lam)


def _smooth(u: torch.Tensor) -> torch.Tensor:
    k = 2 * math.pi * torch.arange(u.shape[-1] // 2 + 1, dtype=u.dtype)
    return torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-NU_T * k**2), n=u.shape[-1])


def _linear_problem(fraction: float = 0.25, seed: int = 0, constraint=None):
    g = torch.Generator().manual_seed(seed)
    obs = random_points((N,), fraction, noise_std=SIGMA, generator=g)
    truth = PRIOR.sample(1, (N,), generator=g)
    data = obs.add_noise(obs(_smooth(truth)), generator=g)
    problem = InverseProblem(_smooth, obs, data, prior=PRIOR, constraint=constraint)
    P = np.eye(N)[list(obs.indices)]
    A = P @ _heat_np(N)
    H = A.T @ A / SIGMA**2 + _precision_np(PRIOR, N)
    rhs = A.T @ data.numpy()[0] / SIGMA**2
    return problem, A, H, rhs


def _exact_w2_sq(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """W2^2 of two discrete measures on the points ``x`` from their quantile functions."""
    ca, cb = np.cumsum(a), np.cumsum(b)
    ca[-1] = cb[-1] = 1.0
    t = np.unique(np.concatenate([[0.0], ca, cb]))
    mid = 0.5 * (t[1:] + t[:-1])
    qa = x[np.searchsorted(ca, mid)]
    qb = x[np.searchsorted(cb, mid)]
    return float(np.sum(np.diff(t) * (qa - qb) ** 2))


# --------------------------------------------------------------------- observations, priors
def test_point_observation_indexes_and_frames():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 5, 8, 6, generator=g, dtype=DT)  # (B, T, 8, 6)
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[2, 3] = mask[7, 0] = mask[0, 5] = True
    obs = PointObservation.from_mask(mask, noise_std=0.1, frames=(4, 1))
    got = obs(u)
    want = torch.cat([u[:, 4][:, mask], u[:, 1][:, mask]], dim=1)
    assert got.shape == (3, 6) and obs.num_obs == 6
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(obs.mask(), mask)
    pts = random_points((10, 10), 0.3, generator=torch.Generator().manual_seed(0))
    assert len(pts.indices) == 30 and len(set(pts.indices)) == 30
    noisy = obs.add_noise(torch.zeros(20000, 1, dtype=DT), generator=g)
    assert abs(float(noisy.std()) - 0.1) < 0.003


def test_sobolev_prior_against_dense_reference():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, N, generator=g, dtype=DT)
    Q = _precision_np(PRIOR, N)
    C = np.linalg.inv(Q)
    xn = x.numpy()
    np.testing.assert_allclose(PRIOR.energy(x).numpy(),
                               0.5 * np.einsum("bi,ij,bj->b", xn, Q, xn), rtol=1e-11)
    np.testing.assert_allclose(
        PRIOR.energy(x).numpy(),
        0.5 * PRIOR.weight * sobolev_norm(x, 2.0, alpha=25.0, lengths=(1.0,)).numpy() ** 2,
        rtol=1e-11)
    np.testing.assert_allclose(PRIOR.hessian_vector(x, x).numpy(), xn @ Q, rtol=1e-10,
                               atol=1e-12 * np.abs(xn @ Q).max())
    SSx = PRIOR.apply_sqrt(PRIOR.apply_sqrt(x)).numpy()
    np.testing.assert_allclose(SSx, xn @ C, rtol=1e-9, atol=1e-12 * np.abs(xn @ C).max())
    np.testing.assert_allclose(PRIOR.apply_inverse_sqrt(PRIOR.apply_sqrt(x)).numpy(), xn,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(PRIOR.variance(x).numpy(), np.broadcast_to(np.diag(C), (2, N)),
                               rtol=1e-10)


def test_sobolev_misfit_matches_sobolev_norm_and_has_finite_gradient_at_fit():
    g = torch.Generator().manual_seed(3)
    p = torch.randn(2, 4, 16, 12, generator=g, dtype=DT)
    d = torch.randn(2, 4, 16, 12, generator=g, dtype=DT)
    mis = SobolevMisfit(s=-1.0, lengths=(2.0, 1.5), weight=3.0)
    ref = 0.5 * 3.0 * (sobolev_norm(p - d, -1.0, lengths=(2.0, 1.5)) ** 2).sum(-1)
    torch.testing.assert_close(mis(p, d), ref, rtol=1e-12, atol=0)
    q = d.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mis(q, d).sum(), q)
    assert torch.isfinite(grad).all() and grad.abs().max() == 0
    # hessian_vector is the Hessian of the quadratic: grad at d + v equals H v
    v = torch.randn(2, 4, 16, 12, generator=g, dtype=DT)
    q = (d + v).requires_grad_(True)
    (grad,) = torch.autograd.grad(mis(q, d).sum(), q)
    torch.testing.assert_close(mis.hessian_vector(v), grad, rtol=1e-10, atol=1e-12)


def test_total_variation_of_a_step_and_its_hessian():
    x = torch.zeros(1, 64, dtype=DT)
    x[:, 16:40] = 1.5
    tv = TotalVariation(weight=2.0, eps=1e-6)
    h = 1.0 / 64  # two jump cells, 62 flat cells of value sqrt(0 + eps^2) h
    exact = 2.0 * (2 * math.sqrt(1.5**2 + (1e-6 * h) ** 2) + 62 * h * 1e-6)
    assert abs(float(tv.energy(x)) - exact) < 1e-13
    g = torch.Generator().manual_seed(4)
    y, v = torch.randn(2, 1, 64, generator=g, dtype=DT)
    tv = TotalVariation(weight=1.0, eps=0.5)
    h = 1e-6

    def grad(z):
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(tv.energy(z).sum(), z)[0]

    fd = (grad(y + h * v) - grad(y - h * v)) / (2 * h)
    torch.testing.assert_close(tv.hessian_vector(y, v), fd, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- linear-Gaussian: the MAP
def test_map_equals_closed_form_posterior_mean():
    problem, _, H, rhs = _linear_problem()
    mean = np.linalg.solve(H, rhs)
    # the raw problem (prior condition number ~1e6) stops on ftol a little earlier
    for whiten, iters, tol in ((True, 200, 1e-7), (False, 3000, 1e-6)):
        res = solve_map(problem, torch.zeros(1, N, dtype=DT), gtol=1e-11, max_iter=iters,
                        whiten=whiten)
        assert res.status is InverseStatus.CONVERGED, (whiten, res.status, res.stats)
        np.testing.assert_allclose(res.estimate.numpy()[0], mean, rtol=0,
                                   atol=tol * np.abs(mean).max())
        assert torch.all(res.history[1:] <= res.history[:-1] + 1e-12)  # monotone
    # whitening needs far fewer iterations than the raw ill-conditioned problem
    fast = solve_map(problem, torch.zeros(1, N, dtype=DT), gtol=1e-11)
    slow = solve_map(problem, torch.zeros(1, N, dtype=DT), gtol=1e-11, whiten=False,
                     max_iter=3000)
    assert fast.stats["iterations"] < slow.stats["iterations"]
    # the objective at the estimate is the sum of its parts
    torch.testing.assert_close(fast.stats["objective"], fast.misfit + fast.stats["prior"])


# --------------------------------------------------------------- linear-Gaussian: Laplace
@pytest.mark.parametrize("method", ["lowrank", "dense", "cg"])
def test_laplace_std_equals_dense_posterior(method):
    problem, _, H, rhs = _linear_problem()
    cov = np.linalg.inv(H)
    x_map = torch.from_numpy(np.linalg.solve(H, rhs))[None]
    post = laplace(problem, x_map, method=method)
    np.testing.assert_allclose(post.std.numpy()[0], np.sqrt(np.diag(cov)), rtol=1e-8)
    np.testing.assert_allclose(post.covariance().numpy()[0], cov, rtol=0,
                               atol=1e-8 * np.abs(cov).max())
    if method == "lowrank":
        assert post.stats["rank"] == 12  # the number of observations: exact


def test_laplace_truncated_rank_is_an_upper_bound_and_matches_exact_eigenpairs():
    problem, A, H, rhs = _linear_problem(fraction=0.5)
    x_map = torch.from_numpy(np.linalg.solve(H, rhs))[None]
    exact = np.sqrt(np.diag(np.linalg.inv(H)))
    # the reference truncation from a dense eigendecomposition
    C = np.linalg.inv(_precision_np(PRIOR, N))
    w, U = np.linalg.eigh(C)
    S = (U * np.sqrt(w)) @ U.T  # the symmetric square root
    lam, V = np.linalg.eigh(S @ A.T @ A @ S / SIGMA**2)
    lam, V = lam[::-1], V[:, ::-1]
    previous = np.full(N, np.inf)
    for r in (2, 5, 10):
        post = laplace(problem, x_map, method="lowrank", rank=r)
        D = lam[:r] / (1 + lam[:r])
        SV = S @ V[:, :r]
        ref = np.sqrt(np.diag(C) - (SV**2 * D).sum(1))
        np.testing.assert_allclose(post.std.numpy()[0], ref, rtol=1e-7)
        np.testing.assert_allclose(post.stats["eigenvalues"].numpy()[0], lam[:r], rtol=1e-8)
        assert np.all(post.std.numpy()[0] >= exact * (1 - 1e-12))
        assert np.all(post.std.numpy()[0] <= previous * (1 + 1e-12))  # shrinks with r
        previous = post.std.numpy()[0]


@pytest.mark.parametrize("method", ["lowrank", "dense"])
def test_posterior_samples_have_the_posterior_covariance(method):
    problem, _, H, rhs = _linear_problem()
    cov = np.linalg.inv(H)
    x_map = torch.from_numpy(np.linalg.solve(H, rhs))[None]
    post = Laplace(method=method)(problem, x_map)
    num = 8000
    draws = post.sample(num, generator=torch.Generator().manual_seed(5))
    assert draws.shape == (num, 1, N)
    X = draws.numpy()[:, 0]
    emp = np.cov(X, rowvar=False)
    # entrywise sampling error ~ sqrt((C_ii C_jj + C_ij^2) / num)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / num)
    assert np.all(np.abs(emp - cov) < 5 * se)
    assert np.all(np.abs(X.mean(0) - x_map.numpy()[0]) < 5 * np.sqrt(np.diag(cov) / num))


def test_gauss_newton_hvp_matches_the_dense_hessian():
    problem, _, H, _ = _linear_problem()
    g = torch.Generator().manual_seed(6)
    x, v = torch.randn(2, 3, N, generator=g, dtype=DT)
    np.testing.assert_allclose(gauss_newton_hvp(problem, x, v).numpy(), v.numpy() @ H,
                               rtol=1e-9, atol=1e-9 * np.abs(v.numpy() @ H).max())


# -------------------------------------------------------------------------- constraints
def test_constrained_map_and_laplace():
    G = torch.zeros(2, N, dtype=DT)
    G[0] = 1.0 / N  # the mean
    G[1, 5] = 1.0  # one point value
    b = torch.tensor([0.3, -0.2], dtype=DT)
    problem, _, H, rhs = _linear_problem(constraint=LinearConstraint(G, b))
    Gn, bn = G.numpy(), b.numpy()
    kkt = np.block([[H, Gn.T], [Gn, np.zeros((2, 2))]])
    ref = np.linalg.solve(kkt, np.concatenate([rhs, bn]))[:N]
    for method in ("lbfgs", "adam"):
        iters = 200 if method == "lbfgs" else 400
        res = solve_map(problem, torch.zeros(1, N, dtype=DT), method=method, gtol=1e-10,
                        max_iter=iters, lr=0.05)
        assert res.stats["constraint_residual"] <= 1e-10
        assert float(problem.constraint.residual(res.estimate).abs().max()) <= 1e-10
        if method == "lbfgs":
            np.testing.assert_allclose(res.estimate.numpy()[0], ref, rtol=0,
                                       atol=1e-7 * np.abs(ref).max())
    # the posterior conditioned on G x = b
    C = np.linalg.inv(H)
    Cc = C - C @ Gn.T @ np.linalg.solve(Gn @ C @ Gn.T, Gn @ C)
    x_map = torch.from_numpy(ref)[None]
    for method in ("lowrank", "dense"):
        post = laplace(problem, x_map, method=method)
        np.testing.assert_allclose(post.std.numpy()[0] ** 2, np.diag(Cc), rtol=1e-7,
                                   atol=1e-10 * np.diag(C).max())
        draws = post.sample(16, generator=torch.Generator().manual_seed(7))
        assert float(problem.constraint.residual(draws[:, 0]).abs().max()) <= 1e-10


def test_tv_denoising_map_and_dense_laplace():
    n, sigma = 32, 0.1
    g = torch.Generator().manual_seed(12)
    truth = torch.zeros(1, n, dtype=DT)
    truth[:, 8:20] = 1.0
    obs = FullObservation((n,), noise_std=sigma)
    data = obs.add_noise(truth, generator=g)
    tv = TotalVariation(weight=0.05, eps=0.1)
    problem = InverseProblem(lambda x: x, obs, data, prior=tv)
    res = solve_map(problem, data.clone(), gtol=1e-10, progress=True)
    assert res.converged and not res.stats["whitened"]
    x = res.estimate.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(problem.objective(x).sum(), x)
    assert float(grad.norm()) < 1e-6
    # the reference Hessian: I / sigma^2 + the exact Hessian of the TV energy
    H = torch.eye(n, dtype=DT) / sigma**2 + torch.autograd.functional.hessian(
        lambda y: tv.energy(y[None]).sum(), res.estimate[0])
    ref = torch.linalg.inv(H).diagonal().sqrt()
    for method in ("auto", "cg"):
        post = laplace(problem, res.estimate, method=method)
        torch.testing.assert_close(post.std[0], ref, rtol=1e-8, atol=0)


# ------------------------------------------------------------------------------ nonlinear
def _nonlinear_problem():
    g = torch.Generator().manual_seed(8)
    obs = random_points((N,), 0.3, noise_std=SIGMA, generator=g)

    def forward(u):
        return _smooth(u + 0.1 * u**3)

    truth = PRIOR.sample(1, (N,), generator=g)
    data = obs.add_noise(obs(forward(truth)), generator=g)
    return InverseProblem(forward, obs, data, prior=PRIOR), truth


def test_nonlinear_map_lbfgs_and_adam_agree_and_gradient_vanishes():
    problem, _ = _nonlinear_problem()
    x0 = torch.zeros(1, N, dtype=DT)
    res = solve_map(problem, x0, gtol=1e-10)
    assert res.converged, res.status

    def grad(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(problem.objective(x).sum(), x)[0]

    # the defining criterion, in the original variable
    assert float(grad(res.estimate).norm()) <= 1e-7 * float(grad(x0).norm())
    adam = MAP(method="adam", max_iter=1000, lr=0.1, gtol=1e-6)(problem, x0)
    assert adam.status in (InverseStatus.CONVERGED, InverseStatus.MAX_ITER)
    err = float((adam.estimate - res.estimate).norm() / res.estimate.norm())
    assert err < 1.5e-2, err  # Adam with a fixed lr ends in a neighbourhood
    assert float(adam.stats["objective"]) >= float(res.stats["objective"]) - 1e-9


def test_batched_map_solves_independent_problems():
    problem, _ = _nonlinear_problem()
    g = torch.Generator().manual_seed(9)
    x0 = 0.5 * torch.randn(3, N, generator=g, dtype=DT)
    batch = solve_map(problem, x0, gtol=1e-10)
    one = solve_map(problem, x0[1:2], gtol=1e-10)
    assert batch.converged and batch.history.shape[1] == 3
    torch.testing.assert_close(batch.estimate[1:2], one.estimate, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------- W2
X128 = torch.arange(128, dtype=DT) / 128


def _pulse(mu, width=0.04, x=X128):
    mu = torch.as_tensor(mu, dtype=DT).reshape(-1, 1)
    return torch.exp(-0.5 * ((x - mu) / width) ** 2)


def test_w2_of_translated_pulses_is_the_squared_shift():
    mis = W2Misfit(X128, reg=1e-2, temperature=1e-6)
    shifts = torch.tensor([-0.3, -0.1, 0.05, 0.2, 0.4], dtype=DT)
    mu = (0.45 + shifts).requires_grad_(True)
    value = mis(_pulse(mu), _pulse(0.45))
    torch.testing.assert_close(value, shifts**2, rtol=2e-3, atol=1e-6)
    (grad,) = torch.autograd.grad(value.sum(), mu)
    torch.testing.assert_close(grad, 2 * shifts, rtol=2e-3, atol=1e-5)
    # zero at a perfect fit (the Sinkhorn divergence is debiased)
    assert abs(float(mis(_pulse(0.45), _pulse(0.45)))) < 1e-9


def test_sinkhorn_w2_approaches_the_exact_quantile_w2():
    p = _pulse(0.3, 0.03) + 0.6 * _pulse(0.7, 0.06)
    q = 0.8 * _pulse(0.45, 0.05) + 0.3 * _pulse(0.85, 0.02)
    errors = []
    for reg in (1e-2, 3e-3):
        mis = W2Misfit(X128, reg=reg, temperature=1e-3, tol=1e-6)
        exact = _exact_w2_sq(mis.density(p).numpy()[0], mis.density(q).numpy()[0],
                             X128.numpy())
        errors.append(abs(float(mis(p, q)) - exact) / exact)
    # the Sinkhorn divergence's bias is O(reg) here
    assert errors[1] < 0.4 * errors[0] and errors[1] < 1.5e-2, errors


def test_w2_gradient_is_the_envelope_gradient():
    mis = W2Misfit(X128[::4], reg=1e-2, temperature=0.05, shift=0.1, tol=1e-13)
    g = torch.Generator().manual_seed(10)
    p = torch.rand(2, 32, generator=g, dtype=DT)
    q = torch.rand(2, 32, generator=g, dtype=DT)
    v = torch.randn(2, 32, generator=g, dtype=DT)
    pr = p.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mis(pr, q).sum(), pr)
    h = 1e-5
    fd = (mis(p + h * v, q) - mis(p - h * v, q)) / (2 * h)
    torch.testing.assert_close((grad * v).sum(-1), fd, rtol=1e-6, atol=1e-9)


def test_w2_sees_far_shifts_where_l2_goes_flat():
    data = _pulse(0.3)
    w2 = W2Misfit(X128, reg=1e-2, temperature=1e-6)
    l2 = L2Misfit(0.1)
    shifts = torch.linspace(0.02, 0.5, 13, dtype=DT)
    mu = (0.3 + shifts).requires_grad_(True)
    (g_w2,) = torch.autograd.grad(w2(_pulse(mu), data).sum(), mu)
    (g_l2,) = torch.autograd.grad(l2(_pulse(mu), data).sum(), mu)
    assert torch.all(g_w2 > 0) and torch.all(g_w2[1:] > g_w2[:-1])  # right sign, convex
    assert float(g_l2[-1].abs()) < 1e-8 * float(g_l2.abs().max())  # vanishes far away
    # inversion for the position from far away: W2 finds it, L2 stays stuck
    obs = FullObservation((128,), noise_std=0.1)

    def forward(theta):  # the position 0.5 + 0.1 theta (L-BFGS's first step is of length 1)
        return _pulse(0.5 + 0.1 * theta)

    start = torch.tensor([[2.5]], dtype=DT)  # at 0.75, 0.45 away: no overlap with the data
    found = solve_map(InverseProblem(forward, obs, data, misfit=w2), start, gtol=1e-6,
                      max_iter=50)
    stuck = solve_map(InverseProblem(forward, obs, data), start, gtol=1e-6, max_iter=50)
    assert abs(0.5 + 0.1 * float(found.estimate) - 0.3) < 1e-3, found.estimate
    assert abs(0.5 + 0.1 * float(stuck.estimate) - 0.3) > 0.3, stuck.estimate


# -------------------------------------------------------------------------- scalars
_T = torch.tensor([0.01, 0.03, 0.06], dtype=DT)
_XS = torch.arange(32, dtype=DT) / 32
_U0 = (torch.sin(2 * math.pi * _XS) + 0.5 * torch.cos(4 * math.pi * _XS)
       + 0.3 * torch.sin(6 * math.pi * _XS))


def _heat(theta: torch.Tensor) -> torch.Tensor:
    """``u(t, x) = A exp(nu t Lap) u0`` at the times ``_T``: ``theta = (nu, A)``."""
    k2 = (2 * math.pi * torch.arange(17, dtype=DT)) ** 2
    nu, amp = theta[:, :1, None], theta[:, 1:, None]
    decay = torch.exp(-nu * _T[None, :, None] * k2)  # (B, T, 17)
    return amp * torch.fft.irfft(torch.fft.rfft(_U0) * decay, n=32)


def test_scalar_parameters_recovered_with_laplace_std():
    B, sigma = 64, 0.02
    truth = torch.tensor([0.2, 1.3], dtype=DT)
    g = torch.Generator().manual_seed(11)
    obs = PointObservation(tuple(range(1, 32, 4)), (32,), sigma, frames=(0, 1, 2))
    data = obs.add_noise(obs(_heat(truth[None])).expand(B, -1), generator=g)
    problem = InverseProblem(_heat, obs, data)
    x0 = torch.tensor([[0.5, 1.0]], dtype=DT).expand(B, 2)
    res = solve_map(problem, x0, gtol=1e-10, uncertainty=Laplace())
    assert res.converged, res.stats["codes"]
    assert res.posterior.method == "dense"
    # reference: central finite differences of the forward map at each estimate
    for b in (0, 1):
        J = torch.zeros(24, 2, dtype=DT)
        for j in range(2):
            e = torch.zeros(1, 2, dtype=DT)
            e[0, j] = 1e-6
            xb = res.estimate[b:b + 1]
            J[:, j] = ((problem.predict(xb + e) - problem.predict(xb - e)) / 2e-6)[0]
        cov = torch.linalg.inv(J.T @ J / sigma**2)
        torch.testing.assert_close(res.std[b], cov.diagonal().sqrt(), rtol=1e-6, atol=0)
    # repeated experiments: unbiased to within the sampling error, spread = Laplace std
    est = res.estimate
    std = res.std.mean(0)
    assert torch.all((est.mean(0) - truth).abs() < 4 * std / math.sqrt(B))
    ratio = est.std(0) / std
    assert torch.all((ratio > 0.65) & (ratio < 1.35)), ratio
    # with a (broad) Gaussian prior on the scalars, lowrank (whitened Lanczos) = dense
    pp = InverseProblem(_heat, obs, data[:2], prior=ScalarPrior((0.3, 1.0), (0.5, 2.0)))
    xm = solve_map(pp, x0[:2], gtol=1e-10).estimate
    torch.testing.assert_close(laplace(pp, xm, method="lowrank").std,
                               laplace(pp, xm, method="dense").std, rtol=1e-8, atol=0)


# ------------------------------------------------------------------- statuses, bad inputs
def test_statuses_and_throw():
    problem, _ = _nonlinear_problem()
    x0 = torch.zeros(1, N, dtype=DT)
    res = solve_map(problem, x0, max_iter=2)
    assert res.status is InverseStatus.MAX_ITER and res.history.shape == (3, 1)
    with pytest.raises(InverseError, match="MAX_ITER"):
        solve_map(problem, x0, max_iter=2, throw=True)
    bad = InverseProblem(lambda x: _smooth(x) / (x.sum(-1, keepdim=True) - x.sum(-1, keepdim=True)),
                         problem.observation, problem.data, prior=PRIOR)
    assert solve_map(bad, x0 + 1).status is InverseStatus.BREAKDOWN
    # a gradient of the wrong sign (value of F(x), gradient of F(-x)): no descent found
    wrong = InverseProblem(lambda x: _smooth(2 * x.detach() - x), problem.observation,
                           problem.data, prior=PRIOR)
    stalled = solve_map(wrong, x0)
    assert stalled.status is InverseStatus.STALLED and stalled.stats["codes"] == ["STALLED"]


def test_bad_inputs_name_the_value():
    obs = PointObservation((0, 3), (8,), 0.1)
    with pytest.raises(ValueError, match="fraction"):
        random_points((8,), 0.0)
    with pytest.raises(ValueError, match="fraction"):
        random_points((8,), 1.5)
    with pytest.raises(ValueError, match="noise_std"):
        PointObservation((0,), (8,), -0.1)
    with pytest.raises(ValueError, match="noise_std"):
        L2Misfit(-1.0)
    with pytest.raises(ValueError, match="outside the grid"):
        PointObservation((0, 8), (8,))
    with pytest.raises(TypeError, match="bool"):
        PointObservation.from_mask(torch.ones(8))
    with pytest.raises(ValueError, match=r"\(8, 5\)"):
        obs(torch.zeros(8, 5))
    with pytest.raises(ValueError, match="'newton'"):
        MAP(method="newton")
    with pytest.raises(ValueError, match="method"):
        Laplace(method="exact")
    problem, _, _, _ = _linear_problem()
    with pytest.raises(ValueError, match=r"shape \(1, 40\)"):
        solve_map(problem, torch.zeros(1, 40, dtype=DT))
    with pytest.raises(ValueError, match="batch axis"):
        solve_map(problem, torch.zeros(N, dtype=DT))
    with pytest.raises(ValueError, match="noise_std"):
        InverseProblem(_smooth, PointObservation((0,), (N,)), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="k = 2 rows"):
        LinearConstraint(torch.ones(2, N), torch.zeros(3))
    w2 = InverseProblem(_smooth, FullObservation((N,)), torch.zeros(1, N),
                        misfit=W2Misfit(torch.arange(N) / N))
    with pytest.raises(TypeError, match="quadratic misfit"):
        laplace(w2, torch.zeros(1, N, dtype=DT))
    tv = InverseProblem(_smooth, problem.observation, problem.data,
                        prior=TotalVariation())
    with pytest.raises(TypeError, match="Gaussian prior"):
        laplace(tv, torch.zeros(1, N, dtype=DT), method="lowrank")
    flat = InverseProblem(lambda th: _heat(th[:, :1].expand(-1, 2)),
                          PointObservation((1, 5), (32,), 0.1, frames=(0, 1, 2)),
                          torch.zeros(1, 6, dtype=DT))
    with pytest.raises(ValueError, match="not positive definite"):
        laplace(flat, torch.tensor([[0.2, 1.0]], dtype=DT), method="dense")
    with pytest.raises(ValueError, match="rank"):
        laplace(problem, torch.zeros(1, N, dtype=DT), rank=N + 1)


@pytest.mark.parametrize("detach", [
    lambda x: _smooth(x).detach(),
    lambda x: torch.as_tensor(_smooth(x).detach().numpy()),
    lambda x: _smooth(x.detach()),
])
def test_a_forward_map_detached_from_x_is_refused(detach):
    """Used to return CONVERGED at iteration 0 with the start as the estimate."""
    problem, _, _, _ = _linear_problem()
    cut = InverseProblem(detach, problem.observation, problem.data, prior=PRIOR)
    x0 = torch.zeros(1, N, dtype=DT)
    with pytest.raises(ValueError, match="does not depend on x through autograd"):
        solve_map(cut, x0)
    with pytest.raises(ValueError, match="does not depend on x through autograd"):
        laplace(cut, x0, method="dense")
    # the same problem with the graph kept moves away from its start
    assert solve_map(problem, x0, max_iter=3).stats["iterations"] == 3
