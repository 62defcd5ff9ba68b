"""2D Navier-Stokes: exact solutions, convergence orders, budgets, precision, batching."""

from __future__ import annotations

import math

import pytest
import torch

from sciml.pdes import (
    NavierStokes2D,
    NavierStokesBlowUp,
    fno_forcing,
    gaussian_random_field,
    grid_coordinates,
    kolmogorov_forcing,
    mcwilliams_vorticity,
    solve_navier_stokes,
    taylor_green_vorticity,
    time_derivative,
)

METHODS = ["rk4cn", "imex2", "ifrk4", "ifdp5"]


def _grf(batch: int, n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return gaussian_random_field(batch, n, generator=torch.Generator().manual_seed(seed),
                                 dtype=dtype)


# ----------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize("method", METHODS)
def test_taylor_green_decays_exactly(method):
    nu, n, t_end = 1e-3, 64, 0.5
    ns = NavierStokes2D(viscosity=nu, method=method)
    w0 = taylor_green_vorticity(n, wavenumber=2)
    dt = 0.05 if method.startswith("if") else 2e-4
    w = ns.solve(w0, [0.25, t_end], dt=dt)
    exact = taylor_green_vorticity(n, t_end, viscosity=nu, wavenumber=2)
    assert w.shape == (2, n, n)
    assert (w[-1] - exact).abs().max().item() < 1e-10


def test_advection_and_velocity_match_closed_form():
    # w = cos(2 pi x) + cos(4 pi y): psi = cos(2 pi x)/(4 pi^2) + cos(4 pi y)/(16 pi^2),
    # u = psi_y = -sin(4 pi y)/(4 pi), v = -psi_x = sin(2 pi x)/(2 pi),
    # u.grad(w) = -1.5 sin(2 pi x) sin(4 pi y), so w_t = +1.5 sin sin without viscosity.
    x, y = grid_coordinates(32)
    w = torch.cos(2 * math.pi * x) + torch.cos(4 * math.pi * y)
    ns = NavierStokes2D(viscosity=0.0)
    u, v = ns.velocity(w)
    assert torch.allclose(u, -torch.sin(4 * math.pi * y) / (4 * math.pi), atol=1e-14)
    assert torch.allclose(v, torch.sin(2 * math.pi * x) / (2 * math.pi), atol=1e-14)
    exact = 1.5 * torch.sin(2 * math.pi * x) * torch.sin(4 * math.pi * y)
    assert (ns.rhs(w) - exact).abs().max().item() < 1e-12
    # viscosity and drag enter linearly: rhs = adv + nu lap w - mu w
    ns2 = NavierStokes2D(viscosity=0.01, drag=0.3)
    lap = -(4 * math.pi**2) * torch.cos(2 * math.pi * x) - (16 * math.pi**2) * torch.cos(
        4 * math.pi * y)
    assert (ns2.rhs(w) - (exact + 0.01 * lap - 0.3 * w)).abs().max().item() < 1e-11


@pytest.mark.parametrize("method", METHODS)
def test_kolmogorov_laminar_spin_up_is_exact(method):
    # A y-only vorticity has no advection, so from rest each forced mode obeys
    # w' = -(nu k^2 + mu) w + f: w(t) = f / (nu k^2 + mu) (1 - exp(-(nu k^2 + mu) t)).
    n, nu, mu, L = 32, 0.05, 0.1, 2 * math.pi
    f = kolmogorov_forcing(n, wavenumber=2, length=L)
    ns = NavierStokes2D(viscosity=nu, drag=mu, length=L, forcing=f, method=method)
    rate = nu * 4.0 + mu
    w = ns.solve(torch.zeros(n, n, dtype=torch.float64), [1.0], dt=1e-3)
    exact = f / rate * (1 - math.exp(-rate))
    tol = 1e-13 if method.startswith("if") else 1e-8
    assert (w[-1] - exact).abs().max().item() < tol * f.abs().max().item() / rate


# ----------------------------------------------------------------------- convergence


@pytest.mark.parametrize(("method", "nu", "order"),
                         [("rk4cn", 1e-2, 2), ("imex2", 1e-2, 2), ("ifrk4", 1e-2, 4),
                          ("ifdp5", 1e-2, 5), ("rk4cn", 0.0, 4)])
def test_temporal_convergence_order(method, nu, order):
    n, t_end = 32, 0.5
    w0 = _grf(1, n)
    ns = NavierStokes2D(viscosity=nu, method=method, forcing=fno_forcing(n))
    ref = NavierStokes2D(viscosity=nu, method="ifrk4", forcing=fno_forcing(n)).solve(
        w0, [t_end], dt=t_end / 2048)
    errs = [(ns.solve(w0, [t_end], dt=t_end / k) - ref).abs().max().item() for k in (8, 16, 32)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.3 for r in rates), (errs, rates)


def test_adaptive_step_matches_fixed_fine_step():
    n = 32
    w0 = _grf(2, n, seed=3)
    ns = NavierStokes2D(viscosity=1e-3, method="ifrk4", forcing=fno_forcing(n), cfl=0.5)
    auto = ns.solve(w0, [1.0, 2.0])
    fine = ns.solve(w0, [1.0, 2.0], dt=1e-3)
    assert (auto - fine).abs().max().item() < 1e-4 * fine.abs().max().item()
    # and the CFL step is what the docstring says
    u, v = ns.velocity(w0)
    assert ns.stable_dt(w0) == pytest.approx(0.5 * (1 / n) / (u**2 + v**2).sqrt().max().item())


# ----------------------------------------------------------------------- budgets


def _integrals(ns: NavierStokes2D, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean enstrophy <w^2> and mean palinstrophy <|grad w|^2> per frame."""
    n, L = w.shape[-1], ns.length
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64) * 2 * math.pi / L
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    c = torch.fft.fft2(w, norm="forward")
    return (c.abs() ** 2).sum((-2, -1)), (k2 * c.abs() ** 2).sum((-2, -1))


def test_enstrophy_decays_as_viscous_budget_says():
    # d/dt <w^2> = -2 nu <|grad w|^2> for an unforced run: the dealiased advection
    # neither creates nor destroys enstrophy.
    n, nu, t_end, frames = 64, 2e-3, 1.0, 41
    ns = NavierStokes2D(viscosity=nu, length=2 * math.pi, method="ifrk4")
    w0 = mcwilliams_vorticity(1, n, max_velocity=1.0, generator=torch.Generator().manual_seed(1))
    ts = torch.linspace(0, t_end, frames, dtype=torch.float64)
    w = ns.solve(w0, ts, dt=2.5e-3)[0]
    z, p = _integrals(ns, w)
    # Simpson over the frames
    h = t_end / (frames - 1)
    wts = torch.ones(frames, dtype=torch.float64)
    wts[1:-1:2], wts[2:-1:2] = 4.0, 2.0
    dissipated = 2 * nu * (wts * p).sum() * h / 3
    change = z[0] - z[-1]
    assert change > 0.01 * z[0]  # a real decay, not a trivial pass
    assert abs(change - dissipated) / change < 1e-4, (change.item(), dissipated.item())


def test_inviscid_run_conserves_energy_and_enstrophy():
    n = 32
    ns = NavierStokes2D(viscosity=0.0, method="ifrk4")
    w0 = _grf(1, n, seed=5)
    w = ns.solve(w0, [0.0, 1.0], dt=1e-3)[0]
    z, _ = _integrals(ns, w)
    u, v = ns.velocity(w)
    energy = (u**2 + v**2).mean((-2, -1))
    assert abs(z[1] / z[0] - 1) < 1e-9
    assert abs(energy[1] / energy[0] - 1) < 1e-9
    assert (w[1] - w[0]).abs().max() > 1e-2 * w[0].abs().max()  # the flow did move


# ----------------------------------------------------------------------- precision, batch


def test_float32_agrees_with_float64():
    n = 64
    w0 = _grf(2, n, seed=2)
    f = fno_forcing(n)
    for method in METHODS:
        ns64 = NavierStokes2D(viscosity=1e-3, forcing=f, method=method)
        ns32 = NavierStokes2D(viscosity=1e-3, forcing=f.float(), method=method)
        a = ns64.solve(w0, [0.5, 1.0], dt=0.01)
        b = ns32.solve(w0.float(), [0.5, 1.0], dt=0.01)
        assert b.dtype == torch.float32
        rel = ((b.double() - a).norm() / a.norm()).item()
        assert rel < 1e-5, (method, rel)


@pytest.mark.parametrize("method", METHODS)
def test_result_does_not_depend_on_batch(method):
    n = 32
    w0 = _grf(3, n, seed=4)
    ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(n), method=method)
    together = ns.solve(w0, [0.2, 0.4], dt=0.02)
    alone = ns.solve(w0[1:2], [0.2, 0.4], dt=0.02)
    pair = ns.solve(w0[1:], [0.2, 0.4], dt=0.02)
    assert torch.allclose(together[1], alone[0], rtol=0, atol=1e-14)
    assert torch.allclose(together[1:], pair, rtol=0, atol=1e-14)


def test_unbatched_and_functional_forms():
    n = 32
    w0 = _grf(1, n)[0]
    ns = NavierStokes2D(viscosity=1e-3, method="imex2")
    a = ns.solve(w0, [0.0, 0.1], dt=0.01)
    b = solve_navier_stokes(w0, [0.0, 0.1], viscosity=1e-3, method="imex2", dt=0.01)
    assert a.shape == (2, n, n)
    assert torch.equal(a, b)
    # t0 itself returns the 2/3-projected initial condition
    proj = torch.fft.ifft2(torch.fft.fft2(w0) * _mask(n)).real
    assert torch.allclose(a[0], proj, atol=1e-14)


def _mask(n: int) -> torch.Tensor:
    k = torch.fft.fftfreq(n, 1.0 / n)
    keep = 3 * k.abs() < n
    return (keep[:, None] & keep[None, :]).double()


# ----------------------------------------------------------------------- residual


def test_residual_of_exact_and_solved_trajectories():
    n, nu = 32, 1e-2
    f = fno_forcing(n)
    ns = NavierStokes2D(viscosity=nu, forcing=f, method="ifrk4")
    w0 = _grf(2, n, seed=6)
    rel = []
    for frames in (21, 41):
        w = ns.solve(w0, torch.linspace(0, 0.5, frames, dtype=torch.float64), dt=1e-3)
        h = 0.5 / (frames - 1)
        r = ns.residual(w, dt=h)
        assert r.shape == w.shape
        rel.append((r.norm() / time_derivative(w, h).norm()).item())
    # only the finite-difference w_t is inexact: it converges at (about) 4th order
    assert rel[1] < 5e-3 and rel[1] < rel[0] / 6, rel
    # the same trajectory judged with a wrong viscosity has a much larger residual
    wrong = NavierStokes2D(viscosity=3 * nu, forcing=f).residual(w, dt=h)
    assert (wrong.norm() / time_derivative(w, h).norm()).item() > 10 * rel[1]
    # the exact residual with w_t given: zero for the solver's own right-hand side
    rhs = torch.stack([ns.rhs(w[:, i]) for i in range(w.shape[1])], dim=1)
    assert ns.residual(w, w_t=rhs).abs().max().item() < 1e-11
    # Taylor-Green with analytic w_t
    ts = torch.linspace(0, 0.5, 21, dtype=torch.float64)
    tg = torch.stack([taylor_green_vorticity(n, float(t), viscosity=nu) for t in ts])[None]
    rate = -2 * nu * (2 * math.pi) ** 2
    r_tg = NavierStokes2D(viscosity=nu).residual(tg, w_t=rate * tg)
    assert r_tg.abs().max().item() < 1e-12


def test_residual_is_differentiable():
    n = 16
    ns = NavierStokes2D(viscosity=1e-2, forcing=fno_forcing(n))
    w = _grf(1, n).unsqueeze(1).repeat(1, 6, 1, 1).requires_grad_(True)
    loss = ns.residual(w, dt=0.1).pow(2).mean()
    loss.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_solve_is_differentiable(method):
    # the inverse problems differentiate through the solver: autograd against finite
    # differences on a tiny grid
    n = 8
    ns = NavierStokes2D(viscosity=5e-2, forcing=fno_forcing(n), method=method)
    w0 = _grf(1, n, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: ns.solve(w, [0.05, 0.1], dt=0.025), (w0,),
                                    atol=1e-7, rtol=1e-5)


def test_time_derivative_is_exact_for_quartics():
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    p = 1 + 2 * t - t**2 + 0.5 * t**3 - 0.25 * t**4
    dp = 2 - 2 * t + 1.5 * t**2 - t**3
    x = p[:, None, None] * torch.ones(1, 2, 3, dtype=torch.float64)
    d = time_derivative(x, 1 / 8, dim=0)
    assert torch.allclose(d[:, 0, 0], dp, atol=1e-12)
    with pytest.raises(ValueError, match=">= 5 frames"):
        time_derivative(x[:4], 0.1, dim=0)


# ----------------------------------------------------------------------- fields


def test_gaussian_random_field_spectrum():
    n, batch = 16, 4000
    w = _grf(batch, n, seed=7)
    c = torch.fft.fft2(w, norm="forward")
    power = (c.abs() ** 2).mean(0)
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    expected = 2 * (7.0 ** 1.5) ** 2 * (4 * math.pi**2 * k2 + 49.0) ** -2.5
    sel = (k2 > 0) & (k2 <= 8)
    ratio = power[sel] / expected[sel]
    assert power[0, 0] < 1e-20
    assert (ratio - 1).abs().max() < 0.15  # sampling error ~ 1/sqrt(4000) per mode x 3 sd
    assert abs(w.mean().item()) < 1e-12


def test_mcwilliams_field_properties():
    n, k0 = 64, 4.0
    w = mcwilliams_vorticity(64, n, peak_wavenumber=k0, max_velocity=2.5,
                             generator=torch.Generator().manual_seed(0))
    ns = NavierStokes2D(viscosity=0.0, length=2 * math.pi)
    u, v = ns.velocity(w)
    speed = (u**2 + v**2).sqrt().amax(dim=(-2, -1))
    assert torch.allclose(speed, torch.full_like(speed, 2.5), rtol=1e-2)
    # the shell-averaged energy spectrum peaks at k0
    c = torch.fft.fft2(w, norm="forward")
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
    kk = (k[:, None] ** 2 + k[None, :] ** 2).sqrt()
    e = (c.abs() ** 2 / torch.where(kk > 0, kk**2, 1.0)).mean(0)
    shells = torch.stack([e[(kk >= s - 0.5) & (kk < s + 0.5)].sum() for s in range(1, 12)])
    assert int(shells.argmax()) + 1 == int(k0)


def test_forcings_are_the_documented_fields():
    n, L = 32, 2 * math.pi
    _, y = grid_coordinates(n, L)
    f = kolmogorov_forcing(n, wavenumber=3, amplitude=2.0, length=L)
    # curl of (A sin(k y), 0) is -d/dy (A sin(k y)), checked spectrally
    fx = 2.0 * torch.sin(3 * y)
    ky = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)[None, :]
    dfdy = torch.fft.ifft2(1j * ky * torch.fft.fft2(fx)).real
    assert torch.allclose(f, -dfdy, atol=1e-12)
    x1, y1 = grid_coordinates(n)
    g = fno_forcing(n)
    assert torch.allclose(g, 0.1 * (torch.sin(2 * math.pi * (x1 + y1))
                                    + torch.cos(2 * math.pi * (x1 + y1))))


# ----------------------------------------------------------------------- failures


def test_blow_up_names_step_time_and_fix():
    n = 32
    ns = NavierStokes2D(viscosity=1e-3, method="rk4cn", forcing=fno_forcing(n), check_every=5)
    w0 = 50 * _grf(1, n)
    with pytest.raises(NavierStokesBlowUp, match=r"step \d+ \(t = .*dt"):
        ns.solve(w0, [5.0], dt=0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"viscosity": -1.0}, "viscosity"),
        ({"viscosity": float("nan")}, "viscosity"),
        ({"viscosity": 1e-3, "length": 0.0}, "length"),
        ({"viscosity": 1e-3, "drag": -0.1}, "drag"),
        ({"viscosity": 1e-3, "method": "euler"}, "method"),
        ({"viscosity": 1e-3, "cfl": 2.0}, "cfl"),
        ({"viscosity": 1e-3, "check_every": 0}, "check_every"),
        ({"viscosity": 1e-3, "forcing": torch.zeros(4, 5)}, "forcing"),
    ],
)
def test_invalid_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        NavierStokes2D(**kwargs)


def test_invalid_solve_arguments():
    ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(16))
    w0 = _grf(1, 16)
    with pytest.raises(ValueError, match="nondecreasing"):
        ns.solve(w0, [0.2, 0.1])
    with pytest.raises(ValueError, match="before t0"):
        ns.solve(w0, [0.5], t0=1.0)
    with pytest.raises(ValueError, match="empty"):
        ns.solve(w0, [])
    with pytest.raises(ValueError, match="dt"):
        ns.solve(w0, [0.1], dt=-1.0)
    with pytest.raises(ValueError, match="square"):
        ns.solve(torch.zeros(1, 16, 8, dtype=torch.float64), [0.1])
    with pytest.raises(ValueError, match=r"16.*32|32.*16"):
        ns.solve(_grf(1, 32), [0.1])
    with pytest.raises(ValueError, match="non-finite"):
        ns.solve(torch.full((1, 16, 16), float("nan"), dtype=torch.float64), [0.1])
    with pytest.raises(TypeError, match="dtype"):
        ns.solve(torch.zeros(1, 16, 16, dtype=torch.int64), [0.1])
    with pytest.raises(ValueError, match="residual needs dt"):
        ns.residual(_grf(1, 16).unsqueeze(1).repeat(1, 5, 1, 1))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    n = 64
    w0 = _grf(2, n)
    f = fno_forcing(n)
    for method in METHODS:
        cpu = NavierStokes2D(viscosity=1e-3, forcing=f, method=method).solve(w0, [0.5], dt=0.01)
        gpu = NavierStokes2D(viscosity=1e-3, forcing=f.cuda(), method=method).solve(
            w0.cuda(), [0.5], dt=0.01)
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-11)
