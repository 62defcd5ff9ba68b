"""The hang class: every iterative routine, given extreme inputs, returns within seconds.

A call that never returns is a defect whatever its input. Each case below runs in a
forked child process that the test kills after a deadline; the child must either
return (with whatever status it reports) or raise a clear ``ValueError`` /
``TypeError`` (a refusal), and never hang or die. Extreme means: tiny and huge steps,
times and tolerances, fields near overflow, non-finite values past the boundary checks,
and data that make an iteration stall. The optimal-transport solvers have their own
watchdog in ``test_watchdog_ot.py``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import tempfile
import traceback

import pytest
import torch

import sciml
from sciml.constraints import HardConstraint, probconserv
from sciml.inverse import InverseProblem, PointObservation, SobolevPrior, laplace, solve_map
from sciml.inverse.navier_stokes import ParameterForward
from sciml.pdes import (
    NavierStokes2D,
    initial_condition,
    sample_parameters,
    solve_combined,
)
from sciml.solvers.linear import cg, flexible_cg, solve

DEADLINE = 30.0  # seconds; each case finishes in well under one on an idle machine
D = torch.float64


def _lap(n: int) -> torch.Tensor:
    return (2 * torch.eye(n, dtype=D) - torch.eye(n, k=1, dtype=D)
            - torch.eye(n, k=-1, dtype=D))


def _w0(n: int = 16, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, n, dtype=D, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------- cases
def _cg_zero_rhs():
    return cg(_lap(50), torch.zeros(50, dtype=D), x0=torch.ones(50, dtype=D)).status


def _cg_tiny_and_huge_scales():
    b = torch.ones(3, 50, dtype=D)
    b[0] *= 1e-300
    b[1] *= 1e300
    return cg(_lap(50), b, rtol=1e-14).status


def _cg_tolerance_beyond_precision():
    A = _lap(200).float()
    return cg(A, torch.ones(200), rtol=1e-30, max_iter=20_000).status


def _cg_nan_operator():
    return cg(lambda x: x * float("nan"), torch.ones(8, dtype=D)).status


def _fcg_huge_entries():
    A = _lap(40) * 1e300
    return flexible_cg(A, torch.ones(40, dtype=D), M=lambda r: r, max_iter=400).status


def _solve_backward_at_huge_scale():
    b = (torch.ones(20, dtype=D) * 1e300).requires_grad_()
    x = solve(_lap(20), b, max_iter=200).x
    try:
        x.sum().backward()
    except sciml.solvers.linear.LinearSolveError:
        return "adjoint refused"
    return "ok"


def _ns_tiny_dt():
    return NavierStokes2D(viscosity=1e-3).solve(_w0(), [1.0], dt=1e-300)


def _ns_huge_time():
    return NavierStokes2D(viscosity=1e-3).solve(_w0(), [1e300])


def _ns_huge_field():
    return NavierStokes2D(viscosity=1e-3).solve(_w0(scale=1e8), [1.0])


def _ns_huge_field_fixed_dt():
    return NavierStokes2D(viscosity=1e-3).solve(_w0(scale=1e150), [1.0], dt=1e-2)


def _ns_tiny_viscosity_long_run():
    return NavierStokes2D(viscosity=1e-300, max_steps=2000).solve(_w0(), [1e3])


def _parameter_forward_tiny_dt():
    forward = ParameterForward(_w0(), torch.ones(16, 16, dtype=D), time=1.0, dt=1e-300)
    return forward(torch.tensor([[math.log(1e-3), 0.1]], dtype=D))


def _cli_generate_tiny_dt():
    from sciml_recipes.cli import main

    with tempfile.TemporaryDirectory() as d:
        code = main(["generate", "ns2d", "--preset", "fno", "--samples", "2", "--dt", "1e-12",
                     "--out", f"{d}/x.h5", "--no-progress"])
        assert not os.listdir(d), os.listdir(d)  # refused before any file was made
    return code


def _burgers(scale: float, t_end: float = 1.0):
    params = sample_parameters("E1", 1, generator=torch.Generator().manual_seed(0))
    u0 = initial_condition(params, 40) * scale
    return solve_combined(u0, params, [0.0, t_end])


def _burgers_huge_field():
    return _burgers(1e300)


def _burgers_infinite_field():
    return _burgers(math.inf)


def _burgers_huge_time():
    return _burgers(1.0, 1e300)


def _hard_constraint_inf_data():
    Phi = torch.randn(2, 6, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    y = torch.full((2, 6), 1e308, dtype=D)
    y[0, 0] = math.inf
    with sciml.checks(finite=False):
        return HardConstraint(lambda c, P, yy: (P @ c[..., None])[..., 0] - yy,
                              max_iter=1000)(Phi, y, c0=torch.zeros(2, 3)).status


def _hard_constraint_nan_residual():
    return HardConstraint(lambda c, yy: torch.sqrt(c - 1e300).expand(-1, 4) * yy,
                          max_iter=1000)(torch.ones(2, 4, dtype=D),
                                         c0=torch.zeros(2, 1)).status


def _inverse_problem(forward, n: int = 16):
    obs = PointObservation(tuple(range(0, n, 2)), (n,), noise_std=1e-300)
    return InverseProblem(forward, obs, torch.ones(1, n // 2, dtype=D),
                          prior=SobolevPrior(s=1.0, weight=1e-300, lengths=(1.0,)))


def _map_overflowing_forward():
    return solve_map(_inverse_problem(lambda x: torch.exp(1e3 * x)),
                     torch.ones(1, 16, dtype=D), max_iter=10_000).status


def _map_flat_forward():
    return solve_map(_inverse_problem(lambda x: 0 * x + 1), torch.zeros(1, 16, dtype=D),
                     max_iter=10_000).status


def _map_adam_huge_lr():
    return solve_map(_inverse_problem(lambda x: x ** 3), torch.ones(1, 16, dtype=D),
                     method="adam", lr=1e300, max_iter=10_000).status


def _laplace_tiny_noise():
    return laplace(_inverse_problem(lambda x: x ** 2), torch.ones(1, 16, dtype=D),
                   method="cg", cg_rtol=1e-30).std


def _probconserv_extreme():
    mean = torch.full((2, 8), 1e300, dtype=D)
    var = torch.full((2, 8), 1e-300, dtype=D)
    return probconserv(mean, var, torch.ones(8, dtype=D), 1.0).mean


CASES = {f.__name__.lstrip("_"): f for f in (
    _cg_zero_rhs, _cg_tiny_and_huge_scales, _cg_tolerance_beyond_precision, _cg_nan_operator,
    _fcg_huge_entries, _solve_backward_at_huge_scale,
    _ns_tiny_dt, _ns_huge_time, _ns_huge_field, _ns_huge_field_fixed_dt,
    _ns_tiny_viscosity_long_run, _parameter_forward_tiny_dt, _cli_generate_tiny_dt,
    _burgers_huge_field, _burgers_infinite_field, _burgers_huge_time,
    _hard_constraint_inf_data, _hard_constraint_nan_residual,
    _map_overflowing_forward, _map_flat_forward, _map_adam_huge_lr, _laplace_tiny_noise,
    _probconserv_extreme,
)}

# errors that are a clear refusal or report (anything else, e.g. an OverflowError from
# int(inf) or a ZeroDivisionError, is a crash the user should never see)
REFUSALS = (ValueError, TypeError, sciml.pdes.NavierStokesBlowUp,
            sciml.solvers.linear.LinearSolveError, sciml.inverse.InverseError)


def _child(name: str, out) -> None:
    torch.set_num_threads(1)
    try:
        result = CASES[name]()
        out.put(("returned", type(result).__name__, repr(result)[:200]))
    except REFUSALS as e:
        out.put(("refused", type(e).__name__, str(e)[:300]))
    except BaseException as e:  # reported to the parent as a failure
        out.put(("crashed", type(e).__name__, traceback.format_exc()[-1500:]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_returns_or_refuses_within_the_deadline(name):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, out))
    proc.start()
    proc.join(DEADLINE)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"{name} did not return within {DEADLINE:.0f} s (a hang)")
    assert not out.empty(), f"{name}: the child died with exit code {proc.exitcode}"
    kind, what, detail = out.get(timeout=5)
    assert kind != "crashed", f"{name} raised {what} (not a clear refusal):\n{detail}"
    if kind == "refused":  # a refusal says what to do, not just that something failed
        assert len(detail) > 40, detail
