"""One result skeleton for every constraint solve: solution, status, stats, converged, throw=.

levenberg_marquardt returns a HardConstraintResult; ConvexProjection, project_convex and
ConvexHardConstraint return a ConvexResult whose status is measured on the answer (KKT
certificate, or constraint violation and KKT residual of the interior-point answer; an LP
tells infeasible data from a solve cut short). References: scipy.optimize (least_squares,
lsq_linear), a float64 dense solve, finite differences (gradcheck).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares, lsq_linear

from sciml.constraints import (
    ConvexError,
    ConvexHardConstraint,
    ConvexProjection,
    ConvexResult,
    ConvexStatus,
    HardConstraintError,
    HardConstraintResult,
    LMStatus,
    levenberg_marquardt,
    project_convex,
)

D = torch.float64
CONVEX_KEYS = {"violation", "kkt_residual", "polished", "member_status"}


def _exp_residual(c, t, y):
    """r = c0 exp(c1 t) - y: a small nonlinear least-squares problem per sample."""
    return c[:, :1] * torch.exp(c[:, 1:2] * t) - y


def _exp_data():
    t = torch.linspace(0, 1, 9, dtype=D).expand(2, 9)
    truth = torch.tensor([[1.5, -0.7], [0.5, 0.9]], dtype=D)
    noise = 0.01 * torch.sin(7 * t)
    return t, truth[:, :1] * torch.exp(truth[:, 1:] * t) + noise


# ------------------------------------------------------------------ levenberg_marquardt
def test_levenberg_marquardt_result_matches_scipy() -> None:
    t, y = _exp_data()
    res = levenberg_marquardt(_exp_residual, torch.ones(2, 2, dtype=D), [t, y], ridge=0.0,
                              tol=1e-12)
    assert isinstance(res, HardConstraintResult)
    assert res.status is LMStatus.CONVERGED and res.converged
    assert {"iterations", "grad_norm", "residual_norm", "member_status"} <= set(res.stats)
    assert res.iterations.shape == res.grad_norm.shape == res.residual_norm.shape == (2,)
    for i in range(2):
        ref = least_squares(lambda c, i=i: c[0] * np.exp(c[1] * t[i].numpy()) - y[i].numpy(),
                            np.ones(2), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        np.testing.assert_allclose(res.coeffs[i].numpy(), ref.x, rtol=1e-8, atol=1e-10)
        assert float(res.residual_norm[i]) == pytest.approx(np.linalg.norm(ref.fun), rel=1e-8)


def test_levenberg_marquardt_cut_short_and_non_finite_report_and_raise() -> None:
    t, y = _exp_data()
    c0 = torch.ones(2, 2, dtype=D)
    short = levenberg_marquardt(_exp_residual, c0, [t, y], max_iter=1, tol=1e-14)
    assert short.status is LMStatus.MAX_ITER and not short.converged
    with pytest.raises(HardConstraintError, match="MAX_ITER"):
        levenberg_marquardt(_exp_residual, c0, [t, y], max_iter=1, tol=1e-14, throw=True)
    big = torch.tensor([[1.0, 1e3], [1.0, 1e3]], dtype=D)  # exp(1e3 t) overflows
    broke = levenberg_marquardt(_exp_residual, big, [t, y])
    assert broke.status is LMStatus.BREAKDOWN
    with pytest.raises(HardConstraintError, match="BREAKDOWN"):
        levenberg_marquardt(_exp_residual, big, [t, y], throw=True)
    with pytest.raises(TypeError, match="throw must be True or False"):
        levenberg_marquardt(_exp_residual, c0, [t, y], throw="yes")


# ---------------------------------------------------------------- ConvexHardConstraint
def _bounded():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(2, 8, 3, generator=g, dtype=D)
    b = 3 * torch.randn(2, 8, generator=g, dtype=D)
    G = torch.cat([torch.eye(3, dtype=D), -torch.eye(3, dtype=D)])  # |c_j| <= 0.2
    h = torch.full((6,), 0.2, dtype=D)
    return A, b, G, h


@pytest.mark.parametrize("polish", [True, False])
def test_convex_hard_constraint_converges_to_lsq_linear(polish: bool) -> None:
    A, b, G, h = _bounded()
    ridge = 1e-3
    res = ConvexHardConstraint(8, 3, ridge=ridge, n_ineq=6, polish=polish)(A, b, G, h)
    assert isinstance(res, ConvexResult) and res.converged
    assert res.status is ConvexStatus.CONVERGED
    assert set(res.stats) == CONVEX_KEYS
    assert bool(res.stats["polished"].all()) is polish
    assert float(res.stats["violation"].max()) <= 1e-6
    if not polish:
        assert float(res.stats["kkt_residual"].max()) <= 1e-5
    assert res.coeffs is res.solution
    for i in range(2):
        M = np.vstack([A[i].numpy(), math.sqrt(ridge) * np.eye(3)])
        rhs = np.concatenate([b[i].numpy(), np.zeros(3)])
        ref = lsq_linear(M, rhs, bounds=(-0.2, 0.2), method="bvls", tol=1e-14)
        assert (np.abs(ref.x) >= 0.2 * (1 - 1e-9)).any()  # a bound is active
        tol = 1e-9 if polish else 1e-5
        np.testing.assert_allclose(res.solution[i].numpy(), ref.x, rtol=0, atol=tol)


def test_convex_hard_constraint_cut_short_infeasible_and_throw() -> None:
    A, b, G, h = _bounded()
    short = ConvexHardConstraint(8, 3, ridge=1e-3, n_ineq=6, polish=False,
                                 solver_args={"max_iter": 2})
    res = short(A, b, G, h)
    assert res.status is ConvexStatus.MAX_ITER and not res.converged
    assert ConvexStatus.MAX_ITER in res.stats["member_status"]
    with pytest.raises(ConvexError, match="MAX_ITER"):
        short(A, b, G, h, throw=True)
    # c_0 <= -1 and c_0 >= 1: an LP confirms no c exists
    Gi = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]], dtype=D)
    hi = torch.tensor([-1.0, -1.0], dtype=D)
    layer = ConvexHardConstraint(8, 3, n_ineq=2)
    res = layer(A[0], b[0], Gi, hi)
    assert res.status is ConvexStatus.INFEASIBLE
    assert float(res.stats["violation"][0]) > 1e-3
    with pytest.raises(HardConstraintError, match="INFEASIBLE"):  # ConvexError is one
        layer(A[0], b[0], Gi, hi, throw=True)
    with pytest.raises(ValueError, match="non-finite"):  # non-finite data: at the boundary
        layer(A[0], torch.full_like(b[0], math.nan), Gi, hi)


def test_convex_hard_constraint_gradients_flow_through_solution() -> None:
    A, b, G, h = _bounded()
    A, b = A[:1], b[:1]
    layer = ConvexHardConstraint(8, 3, ridge=1e-3, n_ineq=6)
    inputs = tuple(t.clone().requires_grad_() for t in (A, b))
    assert torch.autograd.gradcheck(lambda A, b: layer(A, b, G, h).solution, inputs,
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------- ConvexProjection / project_convex
def _profiles():
    g = torch.Generator().manual_seed(2)
    n = 20
    y = torch.randn(3, n, generator=g, dtype=D).cumsum(-1) * 0.3
    w = torch.rand(3, n, generator=g, dtype=D) + 0.5
    G = torch.ones(1, n, dtype=D) / n
    b = torch.tensor([[0.5], [1.0], [0.2]], dtype=D)
    return y, w, G, b


def _dense_projection(y, w, G, b):
    """Reference for nonneg + G u = b by an active-set loop on a float64 dense KKT solve."""
    n = y.shape[0]
    free = np.ones(n, dtype=bool)
    for _ in range(4 * n):
        W = np.diag(w[free])
        K = np.block([[2 * W, G[:, free].T], [G[:, free], np.zeros((1, 1))]])
        sol = np.linalg.solve(K, np.concatenate([2 * w[free] * y[free], b]))
        u = np.zeros(n)
        u[free] = sol[:-1]
        nu = sol[-1]
        mult = 2 * w * (u - y) + G[0] * nu  # multiplier of u >= 0 on the fixed entries
        if (u[free] < -1e-14).any():
            free[np.flatnonzero(free)[np.argmin(u[free])]] = False
        elif (~free).any() and mult[~free].min() < -1e-12:
            free[np.flatnonzero(~free)[np.argmin(mult[~free])]] = True
        else:
            return u
    raise AssertionError("reference active-set loop did not finish")


@pytest.mark.parametrize("polish", [True, False])
def test_convex_projection_converges_to_a_dense_kkt_reference(polish: bool) -> None:
    y, w, G, b = _profiles()
    res = ConvexProjection(20, n_eq=1, polish=polish)(y, w, G, b)
    assert res.converged and set(res.stats) == CONVEX_KEYS
    assert bool(res.stats["polished"].all()) is polish
    for i in range(3):
        ref = _dense_projection(y[i].numpy(), w[i].numpy(), G.numpy(), b[i].numpy())
        assert (ref == 0).any()  # the bound is active
        tol = 1e-10 if polish else 1e-5
        np.testing.assert_allclose(res.solution[i].numpy(), ref, rtol=0, atol=tol)
    fn = project_convex(y, weight=w, G=G, b=b)
    assert fn.converged and fn.stats["member_status"] == [ConvexStatus.CONVERGED] * 3


def test_convex_projection_cut_short_infeasible_and_throw() -> None:
    y, w, G, b = _profiles()
    short = ConvexProjection(20, monotone="increasing", n_eq=1, polish=False,
                             solver_args={"max_iter": 3})
    res = short(y, w, G, b)
    assert res.status is ConvexStatus.MAX_ITER
    with pytest.raises(ConvexError, match="MAX_ITER"):
        short(y, w, G, b, throw=True)
    fn = project_convex(y, weight=w, monotone="increasing", G=G, b=b,
                        solver_args={"max_iter": 3})
    assert fn.converged  # the polish certifies an exact answer even from a short solve
    # u >= 0 and G >= 0 cannot give G u = -1
    res = project_convex(y, weight=w, G=G, b=-b)
    assert res.status is ConvexStatus.INFEASIBLE and not res.converged
    with pytest.raises(ConvexError, match="INFEASIBLE"):
        project_convex(y, weight=w, G=G, b=-b, throw=True)
    with pytest.raises(TypeError, match="throw must be True or False"):
        project_convex(y, throw=1)
    with pytest.raises(TypeError, match="solver_args must be a dict"):
        project_convex(y, solver_args=3)


def test_convex_projection_gradients_flow_through_solution() -> None:
    y, w, G, b = _profiles()
    proj = ConvexProjection(20, n_eq=1)
    c = torch.linspace(-1, 1, 20, dtype=D)
    inputs = tuple(t[:1].clone().requires_grad_() for t in (y, w))
    assert torch.autograd.gradcheck(lambda y, w: proj(y, w, G, b[:1]).solution @ c, inputs,
                                    eps=1e-6, atol=1e-7, rtol=1e-6)
