"""sciml.inverse on 2D Navier-Stokes: forward maps, the GRF prior, the three experiments.

References: the pseudo-spectral solver itself (the parameter forward map must equal it),
the closed-form mode variances of :func:`sciml.pdes.gaussian_random_field`, finite
differences (gradcheck through the solver in the viscosity and the forcing), the dense
Laplace posterior (the low-rank one must match it when its rank covers the data), and
the statistics of repeated noisy experiments (bias within a few standard errors, spread
of the estimates equal to the Laplace standard deviation).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciml.inverse import InverseProblem, Laplace
from sciml.inverse.navier_stokes import (
    ParameterForward,
    SolverForward,
    SurrogateForward,
    calibration,
    grf_prior,
)
from sciml.pdes import NavierStokes2D, fno_forcing, gaussian_random_field
from sciml_recipes.ns_inverse.experiment import (
    NSInverseSetup,
    recover_initial_condition,
    recover_parameters,
    run_ns_inverse,
)

D = torch.float64


def test_grf_prior_has_the_random_field_mode_variances():
    alpha, tau, n = 2.5, 7.0, 16
    prior = grf_prior(alpha, tau)
    # Gamma^{1/2} of white noise (variance 1 per point, E|fft_k|^2 = 1/N): E|c_k|^2 =
    # sigma_k^2 / N; the field's: 2 sigma^2 (4 pi^2 |k|^2 + tau^2)^(-alpha)
    x = torch.zeros(1, n, n, dtype=D)
    var = prior._std_symbol(x) ** 2 / n**2  # (n, n // 2 + 1) rfft layout
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=D)
    kr = torch.fft.rfftfreq(n, 1.0 / n, dtype=D)
    lam = (4 * math.pi**2 * (k[:, None] ** 2 + kr[None, :] ** 2) + tau**2) ** (-alpha)
    expected = 2 * tau ** (2 * (alpha - 1)) * lam
    ratio = var / expected
    assert torch.allclose(ratio, torch.ones_like(ratio), rtol=1e-12)
    # and the sample statistics of the prior agree with the field's (mean mode aside)
    g = torch.Generator().manual_seed(0)
    a = prior.sample(4000, (n, n), generator=g)
    b = gaussian_random_field(4000, n, generator=torch.Generator().manual_seed(1))
    va = torch.fft.fft2(a, norm="forward").abs().square().mean(0)
    vb = torch.fft.fft2(b, norm="forward").abs().square().mean(0)
    r = (va / vb)[1:4, 1:4]
    assert (r - 1).abs().max() < 0.15


def test_parameter_forward_equals_the_solver_and_gradchecks():
    n = 16
    w0 = gaussian_random_field(1, n, generator=torch.Generator().manual_seed(3))[0]
    f0 = fno_forcing(n, amplitude=1.0)
    fwd = ParameterForward(w0, f0, time=0.4, dt=0.03)
    for nu, amp in ((1e-3, 0.1), (5e-3, -0.2)):
        ns = NavierStokes2D(viscosity=nu, forcing=amp * f0, method="ifrk4")
        ref = ns.solve(w0, [0.4], dt=0.03)[-1]
        got = fwd(torch.tensor([[math.log(nu), amp]], dtype=D))[0]
        assert float((got - ref).abs().max() / ref.abs().max()) < 1e-13
    theta = torch.tensor([[math.log(2e-3), 0.1], [math.log(1e-2), 0.3]], dtype=D,
                         requires_grad=True)
    short = ParameterForward(w0, f0, time=0.1, dt=0.05)
    assert torch.autograd.gradcheck(lambda t: short(t)[:, :2, :3], (theta,))


def test_solver_forward_is_differentiable_in_the_initial_field():
    n = 16
    ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(n), method="ifrk4")
    fwd = SolverForward(ns, time=0.1, dt=0.05)
    w0 = gaussian_random_field(1, n, generator=torch.Generator().manual_seed(4))
    w0.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: fwd(w)[:, :2, :2], (w0,))


def test_surrogate_forward_standardises_and_checks_dtype():
    class Shift(nn.Module):  # the standardised increment is a constant 0.5
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Parameter(torch.tensor(0.5, dtype=D))

        def forward(self, x):
            return x + self.c

    fwd = SurrogateForward(Shift(), mean=1.0, std=2.0)
    w0 = torch.randn(2, 8, 8, dtype=D)
    assert torch.allclose(fwd(w0), w0 + 0.5 * 2.0)
    with pytest.raises(TypeError, match="float32"):
        fwd(w0.float())
    with pytest.raises(ValueError, match="std"):
        SurrogateForward(Shift(), std=0.0)


def test_lowrank_laplace_matches_dense_on_the_solver():
    setup = NSInverseSetup(n=8, time=0.2, fraction=0.3, seed=2)
    data = setup.build()
    problem = InverseProblem(data.forward, data.observation, data.data, prior=grf_prior())
    x = gaussian_random_field(1, 8, generator=torch.Generator().manual_seed(5))
    dense = Laplace(method="dense")(problem, x)
    low = Laplace(method="lowrank")(problem, x)  # rank = number of observations: exact
    assert torch.allclose(low.std, dense.std, rtol=1e-6)


def test_initial_condition_recovery_is_accurate_and_calibrated():
    setup = NSInverseSetup(n=16, time=0.25, fraction=0.15, seed=0)
    data = setup.build()
    r = recover_initial_condition(data, max_iter=300)
    assert r["status"] == "CONVERGED"
    # far better than the prior mean (error 1), and the data are fitted to the noise
    assert r["rel_l2"] < 0.5
    assert r["data_misfit_rms"] < 1.5
    # the posterior std is calibrated against the actual error (0.95 if exact)
    assert 0.85 <= r["calibration_2sd"] <= 1.0
    assert calibration(r["error"], r["std"]) == r["calibration_2sd"]


def test_viscosity_and_forcing_amplitude_recovered_with_laplace_std():
    data = NSInverseSetup(n=16, time=1.0, fraction=0.3, seed=1).build(draws=16)
    r = recover_parameters(data)
    assert r["status"] == "CONVERGED"
    for name in ("viscosity", "amplitude"):
        p = r[name]
        # unbiased within 4 standard errors, and the Laplace std is the observed spread
        assert abs(p["z"]) < 4.0
        assert 0.5 < p["spread"] / p["laplace_std"] < 2.0
        assert p["laplace_std"] < 0.2 * abs(p["truth"])


def test_run_ns_inverse_writes_rows_and_a_figure(tmp_path):
    setup = NSInverseSetup(n=16, time=0.25, fraction=0.15)
    kw = {"surrogate_samples": 40, "surrogate_steps": 20, "draws": 2, "max_iter": 20,
          "rank": 8, "progress": False}
    out = run_ns_inverse(tmp_path, setup, **kw)
    cases = {(r["case"], r["metric"]) for r in out["rows"]}
    for case in ("ns-ic-solver", "ns-ic-sfno"):
        for metric in ("rel_l2", "time_s", "calibration_2sd"):
            assert (case, metric) in cases
    assert ("ns-viscosity", "bias") in cases and ("ns-viscosity", "laplace_std") in cases
    assert all(math.isfinite(r["value"]) for r in out["rows"])
    assert out["figure"].exists() and out["figure"].stat().st_size > 10_000
    # a second call reuses the trained surrogate and its data
    again = run_ns_inverse(tmp_path, setup, **kw)
    assert again["surrogate"]["train_steps"] == out["surrogate"]["train_steps"]


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="fraction"):
        NSInverseSetup(fraction=0.0)
    with pytest.raises(ValueError, match="time"):
        NSInverseSetup(time=-1.0)
    n = 8
    fwd = ParameterForward(torch.zeros(n, n, dtype=D), fno_forcing(n), time=0.1, dt=0.05)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        fwd(torch.zeros(1, 3, dtype=D))
    with pytest.raises(ValueError, match="same square"):
        ParameterForward(torch.zeros(n, n, dtype=D), fno_forcing(2 * n), time=0.1, dt=0.05)
    with pytest.raises(TypeError, match="NavierStokes2D"):
        SolverForward("ns", time=1.0, dt=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std"):
        calibration(torch.zeros(3), torch.zeros(4))
