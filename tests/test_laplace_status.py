"""The Laplace posterior reports how it ended, in MAP's vocabulary.

Statuses (:class:`~sciml.inverse.InverseStatus`): CONVERGED on a well-posed problem,
MAX_ITER when the iteration budget (Lanczos ``steps``, CG ``max_iter``) is too small,
BREAKDOWN when the Hessian-vector products are not finite; ``throw=True`` raises
:class:`~sciml.inverse.InverseError`. Reference: the closed-form posterior covariance of
a linear-Gaussian problem, ``(A^T A / sigma^2 + Q)^{-1}`` by a float64 dense numpy
inverse; defining criterion of a kept Ritz pair: its residual ``||A v - theta v||``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciml.inverse import (
    InverseError,
    InverseProblem,
    InverseStatus,
    Laplace,
    SobolevPrior,
    laplace,
    random_points,
    solve_map,
)

DT = torch.float64
N = 32
SIGMA = 0.05
NU_T = 1e-3
PRIOR = SobolevPrior(s=2.0, weight=2e-3, lengths=(1.0,), alpha=25.0)
METHODS = ("lowrank", "dense", "cg")


def _smooth(u: torch.Tensor) -> torch.Tensor:
    k = 2 * math.pi * torch.arange(u.shape[-1] // 2 + 1, dtype=u.dtype)
    return torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-NU_T * k**2), n=u.shape[-1])


def _dense(op, n: int) -> np.ndarray:
    """The matrix of a linear map on ``(1, n)`` rows, column by column, in float64."""
    return np.stack([op(torch.eye(n, dtype=DT)[j][None])[0].numpy() for j in range(n)], 1)


def _problem(forward=_smooth, fraction: float = 0.25):
    g = torch.Generator().manual_seed(0)
    obs = random_points((N,), fraction, noise_std=SIGMA, generator=g)
    truth = PRIOR.sample(1, (N,), generator=g)
    data = obs.add_noise(obs(_smooth(truth)), generator=g)
    return InverseProblem(forward, obs, data, prior=PRIOR)


def _reference(problem: InverseProblem) -> tuple[torch.Tensor, np.ndarray]:
    """The MAP point and the posterior covariance by dense float64 linear algebra."""
    A = _dense(lambda v: problem.observation(_smooth(v)), N)  # (m, N)
    Q = _dense(lambda v: PRIOR.hessian_vector(v, v), N)
    H = A.T @ A / SIGMA**2 + Q
    d = problem.data.numpy()[0]
    x_map = torch.from_numpy(np.linalg.solve(H, A.T @ d / SIGMA**2))[None]
    return x_map, np.linalg.inv(H)


@pytest.mark.parametrize("method", METHODS)
def test_converged_and_equal_to_the_dense_float64_covariance(method) -> None:
    problem = _problem()
    x_map, cov = _reference(problem)
    post = laplace(problem, x_map, method=method, throw=True)
    assert post.status is InverseStatus.CONVERGED and post.converged
    assert post.stats["codes"] == ["CONVERGED"]
    assert isinstance(post.stats["iterations"], int)
    np.testing.assert_allclose(post.covariance().numpy()[0], cov, rtol=0,
                               atol=1e-8 * np.abs(cov).max())
    np.testing.assert_allclose(post.std.numpy()[0], np.sqrt(np.diag(cov)), rtol=1e-8)
    if method == "lowrank":
        r = post.stats["rank"]
        assert post.stats["ritz_residual"].shape == (1, r)
        assert float(post.stats["ritz_residual"].max()) <= post.stats["tol"]
    if method == "cg":
        assert 0 < post.stats["iterations"] <= 10 * N


def test_the_ritz_residuals_are_those_of_the_pairs() -> None:
    """Against the definition: recover the kept pairs from the posterior covariance
    (``S^-1 C S^-1 = I - V diag(lambda / (1 + lambda)) V^T``), apply the whitened data
    Hessian ``K = S A^T A S / sigma^2`` to them densely, and compare the residuals."""
    problem = _problem(fraction=0.5)
    x_map, _ = _reference(problem)
    r = 6
    post = laplace(problem, x_map, method="lowrank", rank=r, steps=8)
    A = _dense(lambda v: problem.observation(_smooth(v)), N)
    w, U = np.linalg.eigh(np.linalg.inv(_dense(lambda v: PRIOR.hessian_vector(v, v), N)))
    S, Si = (U * np.sqrt(w)) @ U.T, (U / np.sqrt(w)) @ U.T
    K = S @ A.T @ A @ S / SIGMA**2
    M = np.eye(N) - Si @ post.covariance().numpy()[0] @ Si
    d, W = np.linalg.eigh(0.5 * (M + M.T))
    V = W[:, ::-1][:, :r]
    theta = post.stats["eigenvalues"].numpy()[0]
    np.testing.assert_allclose(d[::-1][:r], theta / (1 + theta), rtol=1e-9)
    want = np.linalg.norm(K @ V - V * theta, axis=0) / (1 + theta[0])
    got = post.stats["ritz_residual"].numpy()[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-10)  # recovery: ~1e-11
    assert got.max() > post.stats["tol"]  # 8 steps are not enough for 6 pairs here
    assert post.status is InverseStatus.MAX_ITER


@pytest.mark.parametrize("method", ["lowrank", "cg"])
def test_max_iter_when_the_budget_is_too_small(method) -> None:
    problem = _problem()
    x_map, _ = _reference(problem)
    budget = {"lowrank": {"rank": 5, "steps": 5}, "cg": {"max_iter": 2}}[method]
    post = laplace(problem, x_map, method=method, **budget)
    assert post.status is InverseStatus.MAX_ITER and not post.converged
    assert post.stats["codes"] == ["MAX_ITER"]
    assert torch.isfinite(post.std).all()  # an approximation, not garbage
    if method == "cg":
        assert post.stats["iterations"] == 2
    else:
        assert float(post.stats["ritz_residual"].max()) > post.stats["tol"]
    with pytest.raises(InverseError, match="MAX_ITER") as err:
        laplace(problem, x_map, method=method, throw=True, **budget)
    assert ("raise steps" if method == "lowrank" else "raise max_iter") in str(err.value)
    # enough budget: converged again
    more = {"lowrank": {"rank": 5, "steps": N}, "cg": {"max_iter": 10 * N}}[method]
    assert laplace(problem, x_map, method=method, **more).converged


def test_a_loose_tol_accepts_the_short_lanczos_run() -> None:
    problem = _problem()
    x_map, _ = _reference(problem)
    post = laplace(problem, x_map, method="lowrank", rank=5, steps=5)
    worst = float(post.stats["ritz_residual"].max())
    assert Laplace(method="lowrank", rank=5, steps=5, tol=2 * worst)(
        problem, x_map).converged


def _nan_forward(x: torch.Tensor) -> torch.Tensor:
    return _smooth(x.sqrt())  # NaN where x < 0


@pytest.mark.parametrize("method", METHODS)
def test_breakdown_on_non_finite_products(method) -> None:
    problem = _problem(forward=_nan_forward)
    good = torch.full((1, N), 0.5, dtype=DT)
    bad = good.clone()
    bad[0, 3] = -1.0
    x = torch.cat([good, bad])  # problem 0 is finite, problem 1 is not
    post = laplace(problem, x, method=method)
    assert post.status is InverseStatus.BREAKDOWN and not post.converged
    assert post.stats["codes"] == ["CONVERGED", "BREAKDOWN"]
    assert torch.isfinite(post.std[0]).all() and torch.isnan(post.std[1]).all()
    cov = post.covariance()
    assert torch.isfinite(cov[0]).all() and torch.isnan(cov[1]).all()
    draws = post.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(draws[:, 0]).all() and torch.isnan(draws[:, 1]).all()
    # the finite problem is unaffected by its broken neighbour
    alone = laplace(problem, good, method=method)
    assert alone.converged
    torch.testing.assert_close(post.std[0], alone.std[0], rtol=1e-10, atol=0)
    with pytest.raises(InverseError, match="BREAKDOWN"):
        laplace(problem, x, method=method, throw=True)


def test_map_throw_covers_the_posterior() -> None:
    problem = _problem()
    x0 = torch.zeros(1, N, dtype=DT)
    short = Laplace(method="lowrank", rank=5, steps=5)
    res = solve_map(problem, x0, gtol=1e-10, uncertainty=short)
    assert res.converged and res.posterior.status is InverseStatus.MAX_ITER
    with pytest.raises(InverseError, match="Lanczos"):
        solve_map(problem, x0, gtol=1e-10, uncertainty=short, throw=True)
    assert solve_map(problem, x0, gtol=1e-10, uncertainty=Laplace(), throw=True).converged


def test_bad_settings_and_input_are_refused() -> None:
    problem = _problem()
    with pytest.raises(ValueError, match="tol"):
        Laplace(tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        Laplace(max_iter=0)
    with pytest.raises(TypeError, match="max_iter"):
        Laplace(max_iter=2.5)
    with pytest.raises(TypeError, match="throw"):
        laplace(problem, torch.zeros(1, N, dtype=DT), throw="yes")
    x = torch.zeros(1, N, dtype=DT)
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x_map contains 1 non-finite"):
        laplace(problem, x)
