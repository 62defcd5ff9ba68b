"""Diffusion-sorption reference solver: exact steady state, conservation, bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid

from sciml.pdes.diffusion_sorption import DiffusionSorption, solve_diffusion_sorption


def test_without_sorption_it_reaches_the_exact_steady_state() -> None:
    """k_f = 0: u_t = D u_xx, u(0) = 1, u(1) = -D u_x(1) -> u = 1 - x / (1 + D)."""
    eq = DiffusionSorption(D=0.1, k_f=0.0)
    errs = []
    for n in (32, 64, 128):
        u = solve_diffusion_sorption(0.0, torch.tensor([0.0, 400.0]), n=n, eq=eq)[-1]
        x = (np.arange(n) + 0.5) / n
        errs.append(np.abs(u.numpy() - (1 - x / (1 + eq.D))).max())
    assert errs[-1] < 2e-2
    assert errs[0] / errs[-1] > 3.0  # first-order ghost cells: about 2x per halving


def test_total_concentration_changes_by_the_boundary_fluxes() -> None:
    eq = DiffusionSorption()
    n = 48
    h = 1.0 / n
    t = torch.linspace(0, 500, 2001, dtype=torch.float64)
    u = solve_diffusion_sorption(0.1, t, n=n, eq=eq, rtol=1e-9, atol=1e-12).numpy()
    mass = eq.total(u).sum(-1) * h
    flux_in = -eq.D * (u[:, 0] - 1.0) / h
    ghost = eq.D * (u[:, -2] - u[:, -1]) / h
    flux_out = -eq.D * (ghost - u[:, -1]) / h
    balance = trapezoid(flux_in - flux_out, t.numpy())
    assert mass[-1] - mass[0] == pytest.approx(balance, rel=2e-3)
    assert mass[-1] > mass[0]  # the solute enters from the left


def test_pdebench_setting_stays_between_the_bounds() -> None:
    u = solve_diffusion_sorption(0.15, torch.linspace(0, 500, 11), n=64)
    assert u.shape == (11, 64)
    assert float(u.min()) >= -1e-8 and float(u.max()) <= 1 + 1e-8
    assert float(u[-1, 0]) > 0.5 and float(u[-1, 0]) > float(u[-1, -1])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        solve_diffusion_sorption(0.1, torch.tensor([1.0, 0.5]), n=8)
    with pytest.raises(ValueError, match=">= 0"):
        solve_diffusion_sorption(torch.full((8,), -0.1), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="porosity"):
        DiffusionSorption(phi=1.5)
    with pytest.raises(ValueError, match="k_f"):
        DiffusionSorption(k_f=-1.0)
