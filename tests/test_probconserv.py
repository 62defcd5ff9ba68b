"""ProbConserv update, HardC projection and the conservation constraints.

References: the information (precision) form of Gaussian conditioning, a KKT solve of
the constrained least-squares problem (scipy), scipy's trapezoid rule and closed-form
flux integrals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, linalg

from sciml.constraints import (
    ProbConserv,
    box_weights,
    mass_from_fluxes,
    probconserv,
    project_mean,
    trapezoid_weights,
)


def _problem(batch: int, n: int, k: int, seed: int = 0, full: bool = False):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, n, generator=g, dtype=torch.float64)
    if full:
        L = torch.randn(batch, n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
        cov = L @ L.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=torch.float64)
    else:
        cov = torch.rand(batch, n, generator=g, dtype=torch.float64) + 0.05
    G = torch.rand(k, n, generator=g, dtype=torch.float64)
    b = torch.randn(batch, k, generator=g, dtype=torch.float64)
    return mean, cov, G, b


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_noisy_update_equals_information_form(full: bool, k: int) -> None:
    """sigma_G > 0: posterior precision Sigma^-1 + G^T G / s^2 (Woodbury's other side)."""
    mean, cov, G, b = _problem(4, 12, k, full=full)
    s = 0.3
    post = ProbConserv(noise=s)(mean, cov, G, b)
    for i in range(4):
        C = cov[i].numpy() if full else np.diag(cov[i].numpy())
        P = np.linalg.inv(C) + G.numpy().T @ G.numpy() / s**2
        C_post = np.linalg.inv(P)
        m_post = C_post @ (np.linalg.solve(C, mean[i].numpy()) + G.numpy().T @ b[i].numpy() / s**2)
        np.testing.assert_allclose(post.mean[i].numpy(), m_post, rtol=1e-10, atol=1e-10)
        got = post.cov[i].numpy()
        want = C_post if full else np.diag(C_post)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("k", [1, 2])
def test_exact_update_solves_the_constrained_problem(full: bool, k: int) -> None:
    """sigma_G = 0: mean = argmin (u - mu)^T Sigma^-1 (u - mu) s.t. G u = b (KKT, scipy)."""
    mean, cov, G, b = _problem(3, 15, k, seed=1, full=full)
    post = probconserv(mean, cov, G, b)
    for i in range(3):
        C = cov[i].numpy() if full else np.diag(cov[i].numpy())
        Ci = np.linalg.inv(C)
        n = C.shape[0]
        K = np.block([[Ci, G.numpy().T], [G.numpy(), np.zeros((k, k))]])
        rhs = np.concatenate([Ci @ mean[i].numpy(), b[i].numpy()])
        sol = linalg.solve(K, rhs)
        np.testing.assert_allclose(post.mean[i].numpy(), sol[:n], rtol=1e-9, atol=1e-10)
    # The defining criterion: the constraint holds to rounding, and the updated
    # covariance has no variance left along G (Sigma~ G^T = 0) and stays PSD.
    ce = (post.mean @ G.T - b).abs().max()
    assert ce < 1e-12
    full_cov = post.cov if full else ProbConserv().covariance(cov, G)
    assert (full_cov @ G.T).abs().max() < 1e-12
    assert torch.linalg.eigvalsh(full_cov).min() > -1e-12


def test_diagonal_path_equals_full_path() -> None:
    mean, var, G, b = _problem(5, 20, 2, seed=2)
    diag = ProbConserv(0.1)(mean, var, G, b)
    full = ProbConserv(0.1)(mean, torch.diag_embed(var), G, b)
    torch.testing.assert_close(diag.mean, full.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diag.cov, full.cov.diagonal(dim1=-2, dim2=-1),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ProbConserv(0.1).covariance(var, G), full.cov,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diag.std, full.std)


def test_correction_goes_where_the_model_is_uncertain() -> None:
    """A point with 1000x the variance of the others takes ~all of the correction."""
    n = 50
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    w = trapezoid_weights(x)
    var = torch.full((n,), 1e-4, dtype=torch.float64)
    var[25] = 1e-1
    mean = torch.zeros(n, dtype=torch.float64)
    post = probconserv(mean, var, w, torch.tensor(0.01, dtype=torch.float64))
    delta = post.mean - mean
    assert delta[25] > 0.8 * delta.abs().sum()
    assert (post.cov <= var + 1e-18).all() and post.cov[25] < var[25]


def test_hardc_is_the_euclidean_projection() -> None:
    mean, _, G, b = _problem(3, 10, 2, seed=3)
    u = project_mean(mean, G, b)
    for i in range(3):
        # minimum-norm correction: G d = b - G mu, d = lstsq solution (scipy)
        d, *_ = linalg.lstsq(G.numpy(), (b[i] - G @ mean[i]).numpy())
        np.testing.assert_allclose(u[i].numpy(), mean[i].numpy() + d, rtol=1e-10, atol=1e-12)
    assert (u @ G.T - b).abs().max() < 1e-12


def test_batched_constraints_broadcast() -> None:
    """G and b per profile (e.g. per time slice) equal the loop over profiles."""
    mean, var, _, _ = _problem(2, 9, 1, seed=4)
    mean = mean.expand(3, 2, 9)
    var = var.expand(3, 2, 9)
    G = torch.rand(3, 1, 1, 9, dtype=torch.float64)  # one G per time slice
    b = torch.rand(3, 2, 1, dtype=torch.float64)
    post = probconserv(mean, var, G, b)
    for t in range(3):
        for i in range(2):
            one = probconserv(mean[t, i], var[t, i], G[t, 0], b[t, i])
            torch.testing.assert_close(post.mean[t, i], one.mean, rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(post.cov[t, i], one.cov, rtol=1e-13, atol=1e-13)


def test_float32_input_is_conserved_in_float64() -> None:
    mean, var, G, b = _problem(8, 201, 1, seed=5)
    post = probconserv(mean.float(), var.float(), G.float(), b.float())
    assert post.mean.dtype == torch.float64
    assert (post.mean @ G.float().double().T - b.float().double()).abs().max() < 1e-12


def test_gradients_match_finite_differences() -> None:
    mean, var, G, b = _problem(2, 6, 2, seed=6)
    args = [t.clone().requires_grad_() for t in (mean, var, G, b)]

    def f(m, v, g, bb):
        post = ProbConserv(0.05)(m, v, g, bb)
        return post.mean, post.cov

    assert torch.autograd.gradcheck(f, args)

    def f0(m, v, bb):
        post = ProbConserv(0.0)(m, v, G, bb)
        return post.mean, post.cov

    assert torch.autograd.gradcheck(f0, args[:2] + args[3:])


def test_bad_input_names_the_problem() -> None:
    mean, var, G, b = _problem(2, 6, 2)
    with pytest.raises(ValueError, match="cov has shape"):
        probconserv(mean, var[:, :5], G, b)
    with pytest.raises(ValueError, match="G has shape"):
        probconserv(mean, var, G[:, :5], b)
    with pytest.raises(ValueError, match="b has shape"):
        probconserv(mean, var, G, b[:, :1].expand(2, 3))
    with pytest.raises(ValueError, match="negative variances"):
        probconserv(mean, -var, G, b)
    with pytest.raises(ValueError, match="singular"):
        probconserv(mean, torch.zeros_like(var), G, b)
    with pytest.raises(ValueError, match="sigma_G"):
        ProbConserv(noise=-1.0)
    with pytest.raises(TypeError, match=r"^mean must be"):
        probconserv(mean.tolist(), var, G, b)  # a numpy array is taken (see below), a list not
    torch.testing.assert_close(probconserv(mean.numpy(), var, G, b).mean,
                               probconserv(mean, var, G, b).mean, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"not finite|non-finite|NaN|nan"):
        probconserv(mean * float("nan"), var, G, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_asymmetric_covariance_is_refused(dtype) -> None:
    """An asymmetric cov used to be accepted without a word."""
    mean, cov, G, b = _problem(2, 6, 2, full=True)
    mean, cov = mean.to(dtype), cov.to(dtype)
    skew = torch.zeros_like(cov)
    skew[1, 0, 3] = 1e-2  # one entry off in the second profile
    with pytest.raises(ValueError, match="cov is not symmetric"):
        probconserv(mean, cov + skew, G, b)
    with pytest.raises(ValueError, match="negative variances on its diagonal"):
        probconserv(mean, cov - 10 * torch.eye(6, dtype=dtype), G, b)
    # rounding-level asymmetry (a covariance computed as A B with B = A^T) still passes
    L = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(3), dtype=dtype)
    out = probconserv(mean, L @ L.mT + 0.1 * torch.eye(6, dtype=dtype), G, b)
    torch.testing.assert_close(out.mean @ G.T, b, rtol=0, atol=1e-10)


def test_trapezoid_weights_match_scipy_on_a_nonuniform_grid() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.sort(torch.rand(40, generator=g, dtype=torch.float64)).values
    u = torch.sin(3 * x) + x**2
    w = trapezoid_weights(x)
    assert float(w @ u) == pytest.approx(integrate.trapezoid(u.numpy(), x.numpy()), rel=1e-14)
    y = torch.linspace(-1, 2, 17, dtype=torch.float64)
    field = torch.cos(x)[:, None] * torch.exp(y)[None, :]
    ref = integrate.trapezoid(integrate.trapezoid(field.numpy(), y.numpy(), axis=1), x.numpy())
    assert float(box_weights(x, y) @ field.reshape(-1)) == pytest.approx(ref, rel=1e-13)
    with pytest.raises(ValueError, match="strictly increasing"):
        trapezoid_weights(torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        trapezoid_weights(torch.tensor([0.0]))


def test_mass_from_fluxes_matches_closed_forms() -> None:
    # Stefan-like inflow c / sqrt(pi s) (singular at 0): mass 2 c sqrt(t / pi).
    c = 0.7
    t = torch.tensor([0.0, 0.01, 0.25, 0.5], dtype=torch.float64)
    got = mass_from_fluxes(0.3, lambda s: c / math.sqrt(math.pi * s), lambda s: 0.0, t)
    want = 0.3 + 2 * c * torch.sqrt(t / math.pi)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)
    # in and out: d M / dt = cos s - s -> M = sin t - t^2 / 2
    got = mass_from_fluxes(0.0, math.cos, lambda s: s, 0.4)
    assert got.shape == () and float(got) == pytest.approx(math.sin(0.4) - 0.08, rel=1e-13)
    with pytest.raises(ValueError, match=">= 0"):
        mass_from_fluxes(0.0, math.cos, math.sin, -1.0)


@pytest.mark.gpu
def test_update_on_cuda_matches_cpu() -> None:
    mean, var, G, b = _problem(1000, 201, 2, seed=7)
    cpu = probconserv(mean, var, G, b)
    gpu = probconserv(mean.cuda(), var.cuda(), G.cuda(), b.cuda())
    assert gpu.mean.is_cuda
    torch.testing.assert_close(gpu.mean.cpu(), cpu.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gpu.cov.cpu(), cpu.cov, rtol=1e-12, atol=1e-12)


def test_a_python_float_mass_is_kept_in_float64() -> None:
    """b = 0.1 (a Python float) used to be rounded through float32: G mu = b to 1.2e-8."""
    mean, var, G, _ = _problem(3, 20, 1)
    b = 0.1
    out = probconserv(mean, var, G[0], b)
    assert float((out.mean @ G[0] - b).abs().max()) <= 1e-14
