"""GPME exact solutions: PDE residual, boundary and Stefan conditions, mass and flux
against scipy quadrature, sampling, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import newton
from scipy.special import erf

from sciml.pdes.gpme import (
    T_FINAL,
    Diffusion,
    GPMEProblem,
    PorousMedium,
    Stefan,
    make_problem,
    sample_points,
)
from sciml_recipes.gpme import TEST_VALUES, TRAIN_RANGES

CASES = [(name, v) for name, values in TEST_VALUES.items() for v in values]
IDS = [f"{name}-{v}" for name, v in CASES]
H = 1e-4  # finite-difference step (float64)


def _u(problem: GPMEProblem, t, x) -> torch.Tensor:
    return problem.solution(t, torch.as_tensor(x, dtype=torch.float64))


def _quad_mass(problem: GPMEProblem, t: float) -> float:
    a, b = problem.domain
    f = lambda x: _u(problem, t, [x]).item()  # noqa: E731
    kw = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}
    if problem.periodic:  # the exact mass is 0: an absolute tolerance
        return quad(f, a, b, epsabs=1e-12, limit=200)[0]
    # the solution is 0 beyond the front and has a kink/jump there: split at it
    return quad(f, a, b, points=[problem.front(t)], **kw)[0]


# ----------------------------------------------------------------------- the PDE


@pytest.mark.parametrize("k", TEST_VALUES["diffusion"])
def test_diffusion_satisfies_heat_equation_and_periodicity(k):
    pb = Diffusion(k)
    t = torch.tensor([0.05, 0.2, 0.5], dtype=torch.float64)[:, None]
    x = torch.linspace(0.1, 6.2, 25, dtype=torch.float64)[None, :]
    u_t = (_u(pb, t + H, x) - _u(pb, t - H, x)) / (2 * H)
    h = 1e-3  # a larger step for the second derivative (round-off ~ eps / h^2)
    u_xx = (_u(pb, t, x + h) - 2 * _u(pb, t, x) + _u(pb, t, x - h)) / h**2
    res = u_t - pb.diffusivity(_u(pb, t, x)) * u_xx
    assert res.abs().max().item() < 1e-6 * k
    a, b = pb.domain
    assert torch.allclose(_u(pb, t, [a]), _u(pb, t, [b]), rtol=0, atol=1e-15)
    assert torch.equal(pb.initial(x), torch.sin(x))


@pytest.mark.parametrize("m", TEST_VALUES["pme"])
def test_pme_satisfies_flux_form_and_boundary_condition(m):
    pb = PorousMedium(m)
    t = torch.tensor([0.2, 0.35, 0.5], dtype=torch.float64)[:, None]
    # away from the front x = t, where u_x is singular for m > 1
    s = torch.linspace(0.02, 0.85, 20, dtype=torch.float64)[None, :]
    x = s * (t - 0.03)

    def flux(x):  # -k(u) u_x at x by central differences
        u_x = (_u(pb, t, x + H / 2) - _u(pb, t, x - H / 2)) / H
        return -pb.diffusivity(_u(pb, t, x)) * u_x

    u_t = (_u(pb, t + H, x) - _u(pb, t - H, x)) / (2 * H)
    div = -(flux(x + H / 2) - flux(x - H / 2)) / H
    res = (u_t - div) / u_t.abs().max()
    assert res.abs().max().item() < 1e-5
    t1 = torch.linspace(0.01, 1.0, 9, dtype=torch.float64)
    assert torch.allclose(_u(pb, t1, [0.0]), (m * t1) ** (1 / m), rtol=1e-15, atol=0)
    # compact support: zero ahead of the front, and zero initially
    assert torch.all(_u(pb, t, t + 1e-12) == 0)
    assert torch.all(pb.initial(pb.grid()) == 0)
    assert pb.front(0.3) == 0.3


@pytest.mark.parametrize("p", TEST_VALUES["stefan"] + (0.55, 0.7))
def test_stefan_heat_equation_boundary_and_front_values(p):
    pb = Stefan(p)
    t = torch.tensor([0.05, 0.2, 0.5], dtype=torch.float64)[:, None]
    front = pb.front(t)
    x = torch.linspace(0.0, 0.9, 20, dtype=torch.float64)[None, :] * front + 2e-3
    h = 1e-3
    u = _u(pb, t, x)
    assert torch.all(pb.diffusivity(u) == 1)  # behind the front it is the heat equation
    u_t = (_u(pb, t + H, x) - _u(pb, t - H, x)) / (2 * H)
    u_xx = (_u(pb, t, x + h) - 2 * u + _u(pb, t, x - h)) / h**2
    assert ((u_t - u_xx) / u_t.abs().max()).abs().max().item() < 1e-5
    # u(t, 0) = 1, u(t, x*) = p, 0 just beyond the front, 0 initially except at x = 0
    assert torch.all(_u(pb, t, [0.0]) == 1)
    assert torch.allclose(pb.solution(t, front), torch.full_like(front, p), rtol=1e-14)
    assert torch.all(pb.solution(t, front * (1 + 1e-12)) == 0)
    assert torch.equal(pb.initial(pb.grid(5)), torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64))
    # the cached root satisfies its equation, and agrees with Newton on the plain form
    z = pb.z
    assert p * erf(z) * z * math.exp(z * z) == pytest.approx(
        (1 - p) / math.sqrt(math.pi), rel=1e-14
    )
    z_ref = newton(
        lambda z: p * erf(z) * z * np.exp(z * z) - (1 - p) / math.sqrt(math.pi),
        0.5,
        tol=1e-15,
        maxiter=100,
    )
    assert z == pytest.approx(z_ref, rel=1e-14)
    assert pb.alpha == 2 * z


@pytest.mark.parametrize("p", TEST_VALUES["stefan"] + (0.55, 0.7))
def test_stefan_condition_at_the_front(p):
    # latent heat p times the front speed equals the heat flux arriving from behind
    pb = Stefan(p)
    h = 1e-5  # truncation ~h^2 / t dominates round-off down to here
    for t in (0.05, 0.2, T_FINAL):
        speed = (pb.front(t + h) - pb.front(t - h)) / (2 * h)
        xs = pb.front(t) - h * torch.arange(3, dtype=torch.float64)
        u = pb.solution(t, xs)
        assert u[0].item() == pytest.approx(p, rel=1e-14)
        u_x = (3 * u[0] - 4 * u[1] + u[2]).item() / (2 * h)  # one-sided, 2nd order
        assert p * speed == pytest.approx(-u_x, rel=1e-7)


# ----------------------------------------------------------------------- conservation


@pytest.mark.parametrize(("name", "param"), CASES, ids=IDS)
def test_mass_matches_quadrature(name, param):
    pb = make_problem(name, param)
    for t in (0.05, 0.25, T_FINAL, min(pb.exit_time, 0.9)):
        ref = _quad_mass(pb, t)
        if pb.periodic:
            assert pb.mass(t) == 0.0 and abs(ref) < 1e-13
        else:
            assert pb.mass(t) == pytest.approx(ref, rel=1e-10)
    ts = torch.tensor([0.1, 0.3, T_FINAL], dtype=torch.float64)
    masses = pb.mass(ts)
    assert isinstance(masses, torch.Tensor) and masses.dtype == torch.float64
    assert masses.tolist() == [pb.mass(float(t)) for t in ts]


@pytest.mark.parametrize(("name", "param"), CASES, ids=IDS)
def test_mass_change_is_the_integrated_boundary_flux(name, param):
    pb = make_problem(name, param)
    net = lambda s: pb.flux_in(s) - pb.flux_out(s)  # noqa: E731
    for t0, t1 in ((0.0, T_FINAL), (0.1, 0.3), (0.2, min(pb.exit_time, 0.95))):
        ref = quad(net, t0, t1, epsabs=0.0, epsrel=1e-13, limit=200)[0]
        change = pb.mass(t1) - pb.mass(t0)
        if pb.periodic:
            assert change == 0.0 and ref == 0.0
        else:
            assert change == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize(("name", "param"), CASES, ids=IDS)
def test_boundary_fluxes_match_finite_differences(name, param):
    pb = make_problem(name, param)
    a, b = pb.domain
    for t in (0.2, T_FINAL, min(0.95 * pb.exit_time, 0.9)):
        if pb.periodic:  # central difference across the periodic seam
            u = _u(pb, t, [a - H, a, a + H])
            u_x = (u[2] - u[0]).item() / (2 * H)
        else:  # one-sided, 2nd order, into the domain
            u = _u(pb, t, [a, a + H, a + 2 * H])
            u_x = (-3 * u[0] + 4 * u[1] - u[2]).item() / (2 * H)
        k = pb.diffusivity(u[:1]).item() if not pb.periodic else pb.diffusivity(u[1:2]).item()
        assert pb.flux_in(t) == pytest.approx(-k * u_x, rel=1e-6)
        if pb.periodic:
            assert pb.flux_out(t) == pb.flux_in(t)
        else:  # the right end is still dry
            assert torch.all(_u(pb, t, [b - 2 * H, b - H, b]) == 0) and pb.flux_out(t) == 0.0


def test_exit_times_leave_room_for_the_evaluation_time():
    assert set(TRAIN_RANGES) == set(TEST_VALUES) == {"diffusion", "pme", "stefan"}
    for name, v in CASES + [(n, r) for n, rr in TRAIN_RANGES.items() for r in rr]:
        pb = make_problem(name, v)
        assert (pb.name, pb.param) == (name, v)
        assert pb.exit_time > T_FINAL
    st = Stefan(0.6)
    assert st.front(st.exit_time) == pytest.approx(1.0, rel=1e-15)


# ----------------------------------------------------------------------- conventions


def test_broadcasting_dtype_and_grid():
    pb = PorousMedium(2.0)
    x = torch.linspace(0, 1, 7, dtype=torch.float32)
    u = pb.solution(torch.tensor([[0.1], [0.5]], dtype=torch.float32), x)
    assert u.shape == (2, 7) and u.dtype == torch.float64 and u.device == x.device
    assert torch.equal(u[1], pb.solution(0.5, x))
    g = Diffusion(1.0).grid(11)
    assert g.dtype == torch.float64 and g[0] == 0 and g[-1] == 2 * math.pi and len(g) == 11
    assert Stefan(0.6).grid().shape == (201,)
    # k(u): constant, u^m (clamped at 0), step and its smoothing
    u = torch.tensor([-0.1, 0.0, 0.5, 0.6, 1.0], dtype=torch.float64)
    assert torch.equal(Diffusion(3.0).diffusivity(u), torch.full_like(u, 3.0))
    assert torch.equal(pb.diffusivity(u), u.clamp_min(0) ** 2)
    assert torch.equal(pb.diffusivity_smooth(u, 0.1), pb.diffusivity(u))
    st = Stefan(0.6)
    assert st.diffusivity(u).tolist() == [0, 0, 0, 1, 1]
    smooth = st.diffusivity_smooth(u, 1e-3)
    assert smooth[3] == 0.5 and smooth[-1] > 1 - 1e-12 and smooth[0] < 1e-12
    assert st.diffusivity(u.float()).dtype == torch.float32


def test_sample_points_reproducible_in_range_and_noisy():
    pb = Stefan(0.6)
    n = 20_000
    t, x, u = sample_points(pb, n, generator=torch.Generator().manual_seed(3))
    t2, x2, u2 = sample_points(pb, n, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, t2) and torch.equal(x, x2) and torch.equal(u, u2)
    assert t.shape == x.shape == u.shape == (n,)
    assert all(v.dtype == torch.float64 for v in (t, x, u))
    assert 0 < t.min().item() and t.max().item() <= T_FINAL
    assert 0 <= x.min().item() and x.max().item() <= 1
    assert torch.equal(u, pb.solution(t, x))
    tn, xn, un = sample_points(
        pb, n, t_range=(0.1, 0.3), noise=0.05, generator=torch.Generator().manual_seed(4)
    )
    assert 0.1 < tn.min().item() and tn.max().item() <= 0.3
    eps = un - pb.solution(tn, xn)
    assert eps.std().item() == pytest.approx(0.05, rel=0.03)
    assert abs(eps.mean().item()) < 4 * 0.05 / math.sqrt(n)
    # the points do not depend on the noise level
    t3, x3, _ = sample_points(pb, n, t_range=(0.1, 0.3), generator=torch.Generator().manual_seed(4))
    assert torch.equal(t3, tn) and torch.equal(x3, xn)
    _, xd, _ = sample_points(Diffusion(1.0), 100, generator=torch.Generator().manual_seed(0))
    assert xd.max().item() <= 2 * math.pi


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "param", "match"),
    [
        ("diffusion", 0.0, "k must be"),
        ("diffusion", -1.0, "k must be"),
        ("diffusion", math.inf, "k must be"),
        ("pme", 0.0, "m must be"),
        ("pme", math.nan, "m must be"),
        ("stefan", 0.0, r"p must be .* \(0, 1\)"),
        ("stefan", 1.0, r"p must be .* \(0, 1\)"),
        ("stefan", True, "p must be"),
        ("burgers", 1.0, r"known: \['diffusion', 'pme', 'stefan'\]"),
    ],
)
def test_bad_parameters_raise(name, param, match):
    with pytest.raises(ValueError, match=match):
        make_problem(name, param)


def test_bad_times_and_arguments_raise():
    pme, st = PorousMedium(3.0), Stefan(0.5)
    for call in (pme.mass, pme.flux_in, pme.flux_out):
        with pytest.raises(ValueError, match=r"past t = 1\.0"):
            call(1.5)
    with pytest.raises(ValueError, match="front leaves"):
        st.mass(torch.tensor([0.1, st.exit_time * 1.01]))
    with pytest.raises(ValueError, match=">= 0"):
        st.solution(-0.1, st.grid())
    with pytest.raises(ValueError, match=">= 0"):
        pme.mass(math.nan)
    with pytest.raises(ValueError, match="broadcast"):
        pme.solution(torch.ones(3), torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="n must be"):
        pme.grid(1)
    with pytest.raises(ValueError, match="width"):
        st.diffusivity_smooth(torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="t0 < t1"):
        sample_points(pme, 10, t_range=(0.5, 0.5))
    with pytest.raises(ValueError, match="noise"):
        sample_points(pme, 10, noise=-1.0)
    with pytest.raises(ValueError, match="n must be"):
        sample_points(pme, 0)
