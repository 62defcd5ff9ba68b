"""ConvexHardConstraint: constrained ridge least squares through cvxpylayers.

References: HardConstraint (Levenberg-Marquardt with an implicit-function backward) on
the 1D heat equation, ``scipy.optimize.lsq_linear`` (bounded least squares), a null-space
solve (equality constraints), NNLS on the dual, finite differences (gradcheck), and the KKT
conditions as the defining criterion.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.optimize import lsq_linear, nnls

from sciml.constraints import ConvexError, ConvexStatus
from sciml.constraints.convex_hard import ConvexHardConstraint
from sciml.constraints.hard import HardConstraint, LMStatus

KAPPA = 0.1
N_BASIS = 10
RIDGE = 1e-5
# polished answers are exact to rounding (times the conditioning); the interior-point
# answer and diffcp's derivative alone are only as accurate as Clarabel stops: 2.4e-6 with
# the versions of 2026-11-23, 1.9e-5 with clarabel 0.11.1 / cvxpy 1.9.3 / diffcp 1.1.9
RTOL = {True: 1e-8, False: 1e-4}


def _linear(c, A, b):
    return (A @ c.unsqueeze(-1)).squeeze(-1) - b


def _rel(a: torch.Tensor, e: torch.Tensor) -> float:
    """Max-norm error relative to the size of the reference."""
    a, e = a.detach(), e.detach()
    return float((a - e).abs().max() / e.abs().max())


def _features(x: torch.Tensor, t: torch.Tensor, seed: int):
    """Random tanh features ``phi_k = tanh(a_k x + w_k t + d_k)`` and ``phi_t``, ``phi_xx``."""
    g = torch.Generator().manual_seed(seed)
    a = 3.0 * torch.randn(N_BASIS, generator=g, dtype=torch.float64)
    w = 1.5 * torch.randn(N_BASIS, generator=g, dtype=torch.float64)
    d = torch.rand(N_BASIS, generator=g, dtype=torch.float64) * 2 - 1
    z = x[:, None] * a + t[:, None] * w + d
    th = torch.tanh(z)
    sech2 = 1 - th**2
    return th, w * sech2, a**2 * (-2 * th * sech2)


def _heat_system(seed: int, amplitude: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of u_t - kappa u_xx = 0 on [0,1]^2, u(x,0) = amplitude sin(pi x), u(0,t) =
    u(1,t) = 0, for one random tanh basis: ``A (R, N)``, ``b (R,)``."""
    g = torch.Generator().manual_seed(100 + seed)
    xc, tc = torch.rand(2, 48, generator=g, dtype=torch.float64)
    _, phi_t, phi_xx = _features(xc, tc, seed)
    s = torch.linspace(0, 1, 12, dtype=torch.float64)
    ic, _, _ = _features(s, torch.zeros_like(s), seed)
    bc0, _, _ = _features(torch.zeros_like(s), s, seed)
    bc1, _, _ = _features(torch.ones_like(s), s, seed)
    A = torch.cat([phi_t - KAPPA * phi_xx, ic, bc0, bc1])
    b = torch.cat([torch.zeros(48, dtype=torch.float64), amplitude * torch.sin(math.pi * s),
                   torch.zeros(24, dtype=torch.float64)])
    return A, b


def _heat_batch() -> tuple[torch.Tensor, torch.Tensor]:
    sys = [_heat_system(0, 1.0), _heat_system(1, 0.5)]
    return torch.stack([s[0] for s in sys]), torch.stack([s[1] for s in sys])


@pytest.mark.parametrize("polish", [True, False])
def test_heat_equation_agrees_with_levenberg_marquardt(polish: bool) -> None:
    A, b = _heat_batch()
    B, R, N = A.shape
    # the comparison is meaningful: a well-posed ridge problem with a nonzero residual
    H = A.transpose(-1, -2) @ A + RIDGE * torch.eye(N, dtype=torch.float64)
    assert torch.linalg.cond(H).max() < 1e9
    w = torch.randn(B, N, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    A1, b1 = A.clone().requires_grad_(), b.clone().requires_grad_()
    lm = HardConstraint(_linear, ridge=RIDGE, tol=1e-12)(A1, b1, c0=torch.zeros(B, N))
    assert lm.status is LMStatus.CONVERGED
    assert lm.residual_norm.min() > 1e-3  # the basis cannot fit exactly
    (lm.coeffs * w).sum().backward()

    A2, b2 = A.clone().requires_grad_(), b.clone().requires_grad_()
    res = ConvexHardConstraint(R, N, ridge=RIDGE, polish=polish)(A2, b2)
    c = res.solution
    (c * w).sum().backward()

    assert c.shape == (B, N) and c.dtype == torch.float64
    assert res.converged and bool(res.stats["polished"].all()) is polish
    assert _rel(c, lm.coeffs) < RTOL[polish]
    assert _rel(A2.grad, A1.grad) < 10 * RTOL[polish]
    assert _rel(b2.grad, b1.grad) < 10 * RTOL[polish]
    # the defining criterion: the normal equations H c = A^T b
    Atb = (A.transpose(-1, -2) @ b[..., None])[..., 0]
    assert _rel((H @ c[..., None])[..., 0], Atb) < RTOL[polish]


def _tiny(seed: int = 0, m: int = 2):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(1, 6, 3, generator=g, dtype=torch.float64)
    b = torch.randn(1, 6, generator=g, dtype=torch.float64)
    G = torch.randn(1, m, 3, generator=g, dtype=torch.float64)
    h = torch.zeros(1, m, dtype=torch.float64)
    return A, b, G, h


@pytest.mark.parametrize("polish", [True, False])
def test_gradcheck_with_an_active_inequality(polish: bool) -> None:
    A, b, G, h = _tiny()
    layer = ConvexHardConstraint(6, 3, ridge=1e-3, n_ineq=2, polish=polish)
    c = layer(A, b, G, h).solution
    slack = h - (G @ c[..., None])[..., 0]
    assert slack.min() < 1e-8 < slack.max()  # one constraint active, one not
    free = ConvexHardConstraint(6, 3, ridge=1e-3)(A, b).solution
    assert not torch.allclose(c, free, atol=1e-3)  # the constraint changes the answer
    inputs = tuple(t.clone().requires_grad_() for t in (A, b, G, h))
    atol, rtol = (1e-7, 1e-5) if polish else (1e-4, 1e-3)
    assert torch.autograd.gradcheck(lambda *x: layer(*x).solution, inputs, eps=1e-6,
                                    atol=atol, rtol=rtol)


def test_gradcheck_unconstrained_and_with_equalities() -> None:
    A, b, E, _ = _tiny(seed=3, m=1)
    f = torch.tensor([[0.5]], dtype=torch.float64)
    layer = ConvexHardConstraint(6, 3, ridge=1e-3, n_eq=1)
    inputs = tuple(t.clone().requires_grad_() for t in (A, b, E, f))
    assert torch.autograd.gradcheck(lambda A, b, E, f: layer(A, b, E=E, f=f).solution, inputs,
                                    eps=1e-6, atol=1e-8)
    free = ConvexHardConstraint(6, 3, ridge=1e-3)
    assert torch.autograd.gradcheck(lambda A, b: free(A, b).solution, inputs[:2], eps=1e-6,
                                    atol=1e-8)


@pytest.mark.parametrize("polish", [True, False])
def test_bounds_on_coefficients_match_lsq_linear(polish: bool) -> None:
    A, b = _heat_batch()
    B, R, N = A.shape
    free = ConvexHardConstraint(R, N, ridge=RIDGE)(A, b).solution
    bound = 0.5 * free.abs().amax(-1)  # cuts off the largest coefficients
    G = torch.cat([torch.eye(N), -torch.eye(N)]).double()  # shared by the batch
    h = bound[:, None].expand(B, 2 * N)
    c = ConvexHardConstraint(R, N, ridge=RIDGE, n_ineq=2 * N, polish=polish)(A, b, G, h
                                                                              ).solution
    assert (c.abs() <= bound[:, None] * (1 + 1e-9)).all()
    for i in range(B):
        bound_i = float(bound[i])
        M = np.vstack([A[i].numpy(), math.sqrt(RIDGE) * np.eye(N)])
        y = np.concatenate([b[i].numpy(), np.zeros(N)])
        ref = lsq_linear(M, y, bounds=(-bound_i, bound_i), method="bvls", tol=1e-14)
        assert ref.success
        assert (np.abs(ref.x) >= bound_i * (1 - 1e-9)).any()  # some bound is active
        assert _rel(c[i], torch.from_numpy(ref.x)) < RTOL[polish]


def test_positive_solution_at_points_satisfies_kkt_and_matches_dual_nnls() -> None:
    """u = Phi c >= 0 on the initial line while fitting u(x, 0) = sin(2 pi x)."""
    A, b = _heat_system(0, 1.0)
    R, N = A.shape
    s = torch.linspace(0, 1, 12, dtype=torch.float64)
    Phi, _, _ = _features(s, torch.zeros_like(s), 0)
    b = b.clone()
    b[48:60] = torch.sin(2 * math.pi * s)  # negative on x > 1/2
    free = ConvexHardConstraint(R, N, ridge=RIDGE)(A, b).solution
    assert (Phi @ free).min() < -1e-2  # the unconstrained fit goes negative
    layer = ConvexHardConstraint(R, N, ridge=RIDGE, n_ineq=12)
    c = layer(A, b, -Phi, torch.zeros(12, dtype=torch.float64)).solution
    assert c.shape == (N,)  # unbatched in, unbatched out
    u = Phi @ c
    assert u.min() >= -1e-12
    # KKT: H c - A^T b = Phi_a^T lambda with lambda >= 0 on the active points
    H = A.T @ A + RIDGE * torch.eye(N, dtype=torch.float64)
    grad = H @ c - A.T @ b
    act = u < 1e-9
    assert act.any()
    lam = torch.linalg.lstsq(Phi[act].T, grad).solution
    assert (lam >= -1e-8 * lam.abs().max()).all()
    assert _rel(Phi[act].T @ lam, grad) < 1e-8
    # an independent exact reference: the dual, min_{lam >= 0} |L^-1 (q + Phi^T lam)|
    # with H = L L^T, is a nonnegative least-squares problem; c = H^-1 (q + Phi^T lam)
    L = np.linalg.cholesky(H.numpy())
    q, P = (A.T @ b).numpy(), Phi.numpy()
    M = scipy.linalg.solve_triangular(L, P.T, lower=True)
    y = -scipy.linalg.solve_triangular(L, q, lower=True)
    lam_ref, _ = nnls(M, y, maxiter=1000)
    ref = np.linalg.solve(H.numpy(), q + P.T @ lam_ref)
    assert _rel(c, torch.from_numpy(ref)) < 1e-8


def test_equality_constraints_match_a_null_space_solve() -> None:
    A, b = _heat_batch()
    B, R, N = A.shape
    E = A[:, 48:51]  # reproduce three initial values exactly
    f = b[:, 48:51]
    c = ConvexHardConstraint(R, N, ridge=RIDGE, n_eq=3)(A, b, E=E, f=f).solution
    for i in range(B):
        An, bn, En, fn = (t[i].numpy() for t in (A, b, E, f))
        c0 = np.linalg.lstsq(En, fn, rcond=None)[0]
        Z = scipy.linalg.null_space(En)
        M = np.vstack([An @ Z, math.sqrt(RIDGE) * Z])
        y = np.concatenate([bn - An @ c0, -math.sqrt(RIDGE) * c0])
        ref = c0 + Z @ np.linalg.lstsq(M, y, rcond=None)[0]
        assert _rel(c[i], torch.from_numpy(ref)) < 1e-8
        assert np.abs(En @ c[i].numpy() - fn).max() < 1e-10


def test_dependent_equalities_fall_back_to_the_interior_point_answer() -> None:
    """A repeated row of E makes the KKT matrix singular: no certificate, so the
    cvxpylayers answer is returned, equal (to its accuracy) to the one-row problem."""
    A, b, _, _ = _tiny(seed=4)
    E = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    f = torch.ones(2, dtype=torch.float64)
    res = ConvexHardConstraint(6, 3, n_eq=2)(A[0], b[0], E=E, f=f)
    c = res.solution
    assert res.converged
    one = ConvexHardConstraint(6, 3, n_eq=1)(A[0], b[0], E=E[:1], f=f[:1]).solution
    assert _rel(c, one) < 1e-5
    assert (E @ c - f).abs().max() < 1e-7


def test_batch_rows_alone_shared_arguments_and_pickle() -> None:
    A, b, G, h = _tiny(m=2)
    A2 = torch.cat([A, 2 * A])
    b2 = torch.cat([b, -b])
    layer = ConvexHardConstraint(6, 3, ridge=1e-3, n_ineq=2)
    both = layer(A2, b2, G[0], h[0]).solution  # G, h shared by the batch
    for i in range(2):
        torch.testing.assert_close(both[i], layer(A2[i], b2[i], G[0], h[0]).solution,
                                   rtol=1e-12, atol=1e-14)
    again = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(again(A2, b2, G[0], h[0]).solution, both, rtol=1e-12, atol=1e-14)
    empty = layer(A2[:0], b2[:0], G[0], h[0])
    assert empty.solution.shape == (0, 3) and empty.converged
    # float32 data are solved in float64
    c32 = layer(A2.float(), b2.float(), G[0].float(), h[0].float()).solution
    assert c32.dtype == torch.float64


def test_infeasible_constraints_report_infeasible_or_raise() -> None:
    A, b, _, _ = _tiny()
    G = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]], dtype=torch.float64)
    h = torch.tensor([-1.0, -1.0], dtype=torch.float64)  # c_0 <= -1 and c_0 >= 1
    res = ConvexHardConstraint(6, 3, n_ineq=2)(A, b, G, h)
    assert res.status is ConvexStatus.INFEASIBLE and not res.converged
    assert float(res.stats["violation"][0]) > 1e-3
    with pytest.raises(ConvexError, match="INFEASIBLE"):
        ConvexHardConstraint(6, 3, n_ineq=2)(A, b, G, h, throw=True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"ridge": -1.0}, ValueError, "ridge must be"),
        ({"ridge": float("nan")}, ValueError, "ridge must be"),
        ({"n_eq": 4}, ValueError, "n_eq=4"),
        ({"n_ineq": -1}, ValueError, "n_ineq"),
        ({"polish": 1}, TypeError, "polish"),
        ({"solver_args": 3}, TypeError, "solver_args"),
    ],
)
def test_bad_settings_raise(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        ConvexHardConstraint(6, 3, **kwargs)


def test_bad_inputs_raise() -> None:
    A, b, G, h = _tiny()
    free = ConvexHardConstraint(6, 3)
    with pytest.raises(ValueError, match=r"A has shape \(1, 7, 3\).*n_rows=7, n_coeffs=3"):
        free(torch.randn(1, 7, 3, dtype=torch.float64), b)
    with pytest.raises(ValueError, match=r"b has shape \(1, 5\).*n_rows=5"):
        free(A, b[:, :5])
    with pytest.raises(ValueError, match="batch size 2 but A has 1"):
        free(A, torch.cat([b, b]))
    bad = b.clone()
    bad[0, 2] = float("nan")
    with pytest.raises(ValueError, match="b contains 1 non-finite"):
        free(A, bad)
    with pytest.raises(TypeError, match="A must be a real floating-point"):
        free(A.long(), b)
    with pytest.raises(ValueError, match="G was given but the layer was built with n_ineq=0"):
        free(A, b, G, h)
    with pytest.raises(ValueError, match="G is missing"):
        ConvexHardConstraint(6, 3, n_ineq=2)(A, b)
    with pytest.raises(ValueError, match=r"G has shape \(1, 2, 4\).*n_ineq=2, n_coeffs=4"):
        ConvexHardConstraint(6, 3, n_ineq=2)(A, b, torch.zeros(1, 2, 4), h)


@pytest.mark.gpu
def test_cuda_inputs_come_back_on_cuda() -> None:
    A, b, G, h = (t.cuda() for t in _tiny())
    c = ConvexHardConstraint(6, 3, ridge=1e-3, n_ineq=2)(A, b, G, h).solution
    assert c.device.type == "cuda"
    torch.testing.assert_close(c.cpu(), ConvexHardConstraint(6, 3, ridge=1e-3, n_ineq=2)(
        *(t.cpu() for t in (A, b, G, h))).solution, rtol=1e-12, atol=1e-14)
