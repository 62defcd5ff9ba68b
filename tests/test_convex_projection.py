"""ConvexProjection: a differentiable weighted projection onto convex sets of profiles.

References: a float64 cvxpy solve of the same problem (Clarabel, tight tolerances),
``np.maximum`` and ``scipy.optimize.nnls`` (nonnegativity), a pool-adjacent-violators
isotonic regression written here, multipliers found by scipy's bounded least squares
(the KKT conditions), central finite differences, and row-by-row solves.
"""

from __future__ import annotations

import copy
import pickle

import cvxpy as cp
import numpy as np
import pytest
import torch
from conftest import GRADCHECK
from scipy import optimize

from sciml.constraints import ConvexError, ConvexStatus
from sciml.constraints.convex import ConvexProjection, project_convex

# tolerances, in units of the data's size
REF_TOL = 1e-6  # against an interior-point reference (accurate to ~1e-7 at n <= 50)
EXACT_TOL = 1e-11  # against an exact reference (max, PAV)
CONSTRAINT_TOL = 1e-7  # the defining constraints


# --------------------------------------------------------------------------- references
def _cvxpy_ref(y, w, *, nonneg=True, monotone=None, G=None, b=None, lower=None, upper=None):
    """Solve one row directly with cvxpy (float64, Clarabel, tight tolerances)."""
    v = cp.Variable(y.shape[0])
    cons = []
    if nonneg:
        cons.append(v >= 0)
    if lower is not None:
        cons.append(v >= lower)
    if upper is not None:
        cons.append(v <= upper)
    if monotone == "increasing":
        cons.append(cp.diff(v) >= 0)
    elif monotone == "decreasing":
        cons.append(cp.diff(v) <= 0)
    if G is not None:
        cons.append(G @ v == b)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(cp.multiply(np.sqrt(w), v - y))), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    assert prob.status == cp.OPTIMAL, prob.status
    return v.value


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (nondecreasing) regression by pool-adjacent-violators."""
    vals: list[float] = []
    wts: list[float] = []
    lens: list[int] = []
    for yi, wi in zip(y, w):
        vals.append(float(yi))
        wts.append(float(wi))
        lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, l2 = vals.pop(), wts.pop(), lens.pop()
            v1, w1, l1 = vals.pop(), wts.pop(), lens.pop()
            vals.append((w1 * v1 + w2 * v2) / (w1 + w2))
            wts.append(w1 + w2)
            lens.append(l1 + l2)
    return np.repeat(vals, lens)


def _kkt_residual(u, y, w, *, nonneg, monotone, G=None, upper=None):
    """Smallest ``|W(u - y) - A^T lam - G^T nu|`` over ``lam >= 0`` on the active set.

    ``A`` holds the gradients of the inequalities ``a^T u >= c`` active at ``u``; a
    residual at rounding level certifies optimality (the KKT conditions).
    """
    n = u.shape[0]
    act = 1e-9 * max(1.0, np.abs(u).max())
    rows = []
    for i in range(n):
        if nonneg and u[i] <= act:
            rows.append(np.eye(n)[i])
        if upper is not None and u[i] >= upper - act:
            rows.append(-np.eye(n)[i])
    if monotone is not None:
        sign = 1.0 if monotone == "increasing" else -1.0
        for i in range(n - 1):
            if abs(u[i + 1] - u[i]) <= act:
                rows.append(sign * (np.eye(n)[i + 1] - np.eye(n)[i]))
    A = np.array(rows).reshape(-1, n)
    k = 0 if G is None else G.shape[0]
    M = np.vstack([A, G]).T if k else A.T
    lo = np.concatenate([np.zeros(A.shape[0]), np.full(k, -np.inf)])
    r = w * (u - y)
    if M.shape[1] == 0:
        return float(np.abs(r).max()), float(np.abs(r).max())
    sol = optimize.lsq_linear(M, r, bounds=(lo, np.inf), method="bvls", tol=1e-14)
    return float(np.abs(M @ sol.x - r).max()), float(np.abs(w * y).max())


def _data(batch: int, n: int, k: int, *, seed: int, monotone=None, upper=None):
    """Random profiles, weights and a reachable ``b = G v`` (``v`` feasible)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((batch, n)) + 0.3
    w = rng.uniform(0.2, 5.0, (batch, n))
    G = rng.uniform(0.0, 1.0, (k, n)) / n
    v = np.abs(rng.standard_normal((batch, n)))
    if upper is not None:
        v = np.minimum(v, upper)
    if monotone is not None:
        v = np.sort(v, axis=1)
        v = v[:, ::-1] if monotone == "decreasing" else v
    b = v @ G.T
    return (torch.tensor(y), torch.tensor(w), torch.tensor(G), torch.tensor(b), v)


CASES = [  # (monotone, n_eq, upper)
    (None, 0, None),
    ("increasing", 0, None),
    ("decreasing", 0, None),
    (None, 1, None),
    (None, 2, None),
    ("increasing", 1, None),
    ("decreasing", 2, None),
    ("increasing", 2, 1.5),
    (None, 1, 1.0),
]


# ---------------------------------------------------------------------- against cvxpy
@pytest.mark.parametrize(("monotone", "k", "upper"), CASES)
def test_matches_cvxpy_and_satisfies_the_constraints(monotone, k, upper) -> None:
    n = 24 + 6 * k + (10 if monotone else 0)  # 24 ... 46
    y, w, G, b, _ = _data(4, n, k, seed=n + k, monotone=monotone, upper=upper)
    proj = ConvexProjection(n, monotone=monotone, n_eq=k, upper=upper)
    res = proj(y, w, *((G, b) if k else ()))
    assert res.converged and res.stats["violation"].max() < 1e-9
    u = res.solution.numpy()
    for i in range(4):
        Gi, bi = (G.numpy(), b[i].numpy()) if k else (None, None)
        ref = _cvxpy_ref(y[i].numpy(), w[i].numpy(), monotone=monotone, G=Gi, b=bi,
                         upper=upper)
        scale = 1.0 + np.abs(ref).max()
        np.testing.assert_allclose(u[i], ref, rtol=0, atol=REF_TOL * scale)
        # defining criteria: feasible, and no worse than the (feasible) reference
        assert u[i].min() >= -CONSTRAINT_TOL
        if upper is not None:
            assert u[i].max() <= upper + CONSTRAINT_TOL
        if monotone is not None:
            d = np.diff(u[i]) if monotone == "increasing" else -np.diff(u[i])
            assert d.min() >= -CONSTRAINT_TOL
        if k:
            np.testing.assert_allclose(Gi @ u[i], bi, rtol=0, atol=CONSTRAINT_TOL)
        f_u = np.sum(w[i].numpy() * (u[i] - y[i].numpy()) ** 2)
        f_ref = np.sum(w[i].numpy() * (ref - y[i].numpy()) ** 2)
        assert f_u <= f_ref + 1e-9 * (1.0 + f_ref)


@pytest.mark.parametrize(("monotone", "k", "upper"), CASES[3:])
def test_kkt_conditions_and_optimality_over_feasible_points(monotone, k, upper) -> None:
    """Nonnegative multipliers exist (KKT) and every feasible point is no closer to y."""
    n = 30
    y, w, G, b, v = _data(3, n, k, seed=7 + k, monotone=monotone, upper=upper)
    u = ConvexProjection(n, monotone=monotone, n_eq=k, upper=upper)(y, w, G, b).solution.numpy()
    for i in range(3):
        yi, wi = y[i].numpy(), w[i].numpy()
        res, scale = _kkt_residual(u[i], yi, wi, nonneg=True, monotone=monotone,
                                   G=G.numpy(), upper=upper)
        assert res <= 1e-9 * scale
        f_u = np.sum(wi * (u[i] - yi) ** 2)
        for t in (0.0, 0.3, 0.9):  # points on the segment from v (feasible) to u
            p = t * u[i] + (1 - t) * v[i]
            assert f_u <= np.sum(wi * (p - yi) ** 2) + 1e-12 * (1.0 + f_u)


# ------------------------------------------------------------------ exact references
def test_nonneg_with_unit_weights_is_max_and_nnls() -> None:
    """NNLS post-processing (the ProbConserv authors' choice) is max(y, 0)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 40, generator=g, dtype=torch.float64)
    y[0, :5] = 0.0  # exactly on the bound
    u = ConvexProjection(40)(y).solution
    np.testing.assert_allclose(u.numpy(), np.maximum(y.numpy(), 0.0), rtol=0, atol=EXACT_TOL)
    for i in range(5):
        x, _ = optimize.nnls(np.eye(40), y[i].numpy())
        np.testing.assert_allclose(u[i].numpy(), x, rtol=0, atol=EXACT_TOL)
    # the functional form and float32: same answer, y's dtype
    u32 = project_convex(y.float()).solution
    assert u32.dtype == torch.float32
    np.testing.assert_allclose(u32.numpy(), np.maximum(y.float().numpy(), 0), atol=1e-6)


@pytest.mark.parametrize("monotone", ["increasing", "decreasing"])
@pytest.mark.parametrize("nonneg", [False, True])
def test_monotone_is_isotonic_regression(monotone: str, nonneg: bool) -> None:
    """Weighted PAV; with nonneg (or bounds) the projection is PAV clipped to the box."""
    rng = np.random.default_rng(3)
    n = 45
    y = np.cumsum(rng.standard_normal((3, n)), axis=1) * 0.3
    y[1] = np.round(y[1])  # ties and exact zeros
    w = np.ones((3, n))
    w[2] = rng.uniform(0.1, 10.0, n)
    u = ConvexProjection(n, nonneg=nonneg, monotone=monotone)(
        torch.tensor(y), torch.tensor(w)
    ).solution.numpy()
    for i in range(3):
        if monotone == "increasing":
            ref = _pav(y[i], w[i])
        else:
            ref = _pav(y[i, ::-1], w[i, ::-1])[::-1]
        if nonneg:
            ref = np.maximum(ref, 0.0)
        np.testing.assert_allclose(u[i], ref, rtol=0, atol=EXACT_TOL * (1 + np.abs(y).max()))


def test_only_equality_with_unit_weights_is_the_orthogonal_projection() -> None:
    """HardC: u = y - G^T (G G^T)^-1 (G y - b)."""
    y, _, G, b, _ = _data(3, 25, 2, seed=11)
    u = ConvexProjection(25, nonneg=False, n_eq=2)(y, None, G, b).solution.numpy()
    Gn = G.numpy()
    for i in range(3):
        ref = y[i].numpy() - Gn.T @ np.linalg.solve(Gn @ Gn.T, Gn @ y[i].numpy() - b[i].numpy())
        np.testing.assert_allclose(u[i], ref, rtol=0, atol=EXACT_TOL * 10)


def test_no_constraint_is_the_identity() -> None:
    y = torch.randn(2, 9, dtype=torch.float64)
    res = ConvexProjection(9, nonneg=False)(y)
    assert torch.equal(res.solution, y) and res.converged


# ------------------------------------------------------------------------ gradients
def _fixture_small():
    # n = 8, an active set that small perturbations keep: two entries at 0, ties
    y = torch.tensor([-0.5, -0.2, 0.3, 0.1, 0.6, 0.5, 0.9, 1.2], dtype=torch.float64)
    w = torch.tensor([1.0, 0.7, 1.3, 0.9, 1.1, 1.6, 0.8, 1.2], dtype=torch.float64)
    G = torch.linspace(0.5, 1.5, 8, dtype=torch.float64).reshape(1, 8) / 8
    b = torch.tensor([0.4], dtype=torch.float64)
    c = torch.linspace(-1.0, 2.0, 8, dtype=torch.float64)
    return y, w, G, b, c


def test_gradcheck_against_finite_differences() -> None:
    y, w, G, b, c = _fixture_small()
    proj = ConvexProjection(8, monotone="increasing", n_eq=1)

    def f(y, w, G, b):
        return proj(y, w, G, b).solution @ c

    args = tuple(t.clone().requires_grad_(True) for t in (y, w, G, b))
    assert torch.autograd.gradcheck(f, args, eps=GRADCHECK["eps"], atol=1e-7, rtol=1e-6)
    u = proj(*args).solution
    assert (u[:2].detach() == 0).all() and u[2].item() == pytest.approx(u[3].item())
    u.sum().backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args)


# diffcp's backward calls np.array on tensors (NumPy 2 deprecation notice, harmless)
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_cvxpylayers_derivative_matches_finite_differences() -> None:
    """polish=False: the implicit (diffcp) derivative, accurate to the solver's tolerance."""
    y, w, G, b, c = _fixture_small()
    exact = ConvexProjection(8, monotone="increasing", n_eq=1)
    raw = ConvexProjection(8, monotone="increasing", n_eq=1, polish=False)
    args = [t.clone().requires_grad_(True) for t in (y, w, G, b)]
    grads = torch.autograd.grad(raw(*args).solution @ c, args)
    h = 1e-6
    for j, (a, gr) in enumerate(zip(args, grads)):
        fd = torch.zeros_like(a)
        for i in range(a.numel()):
            plus = [t.detach().clone() for t in args]
            minus = [t.detach().clone() for t in args]
            plus[j].view(-1)[i] += h
            minus[j].view(-1)[i] -= h
            with torch.no_grad():
                fd.view(-1)[i] = (exact(*plus).solution @ c
                                  - exact(*minus).solution @ c) / (2 * h)
        np.testing.assert_allclose(gr.numpy(), fd.numpy(), rtol=0,
                                   atol=1e-5 * (1 + fd.abs().max().item()))


# ------------------------------------------------------------------ batching, dtype
def test_batch_equals_rows_alone_and_shared_G_equals_batched_G() -> None:
    y, w, G, b, _ = _data(4, 30, 2, seed=5, monotone="decreasing")
    proj = ConvexProjection(30, monotone="decreasing", n_eq=2)
    u = proj(y, w, G, b).solution
    for i in range(4):
        torch.testing.assert_close(proj(y[i], w[i], G, b[i]).solution, u[i], rtol=0,
                                   atol=1e-12)
    torch.testing.assert_close(proj(y, w, G.expand(4, 2, 30), b).solution, u, rtol=0,
                               atol=1e-12)
    # weight of shape (n,) is shared by every row
    torch.testing.assert_close(proj(y, w[0], G, b).solution,
                               proj(y, w[0].expand(4, 30), G, b).solution)


def test_float32_is_computed_in_float64() -> None:
    y, w, G, b, _ = _data(2, 20, 1, seed=2, monotone="increasing")
    proj = ConvexProjection(20, monotone="increasing", n_eq=1)
    u64 = proj(y, w, G, b).solution
    u32 = proj(y.float(), w.float(), G.float(), b.float()).solution
    assert u32.dtype == torch.float32 and u32.shape == y.shape
    np.testing.assert_allclose(u32.numpy(), u64.numpy(), rtol=0, atol=1e-5)


def test_polish_false_agrees_to_solver_accuracy() -> None:
    y, w, G, b, _ = _data(3, 30, 1, seed=9, monotone="increasing")
    exact = ConvexProjection(30, monotone="increasing", n_eq=1)(y, w, G, b).solution
    res = ConvexProjection(30, monotone="increasing", n_eq=1, polish=False)(y, w, G, b)
    assert res.converged and not bool(res.stats["polished"].any())
    assert res.stats["kkt_residual"].max() < 1e-5
    raw = res.solution
    np.testing.assert_allclose(raw.numpy(), exact.numpy(), rtol=0, atol=1e-4)


def test_project_convex_one_row_G_and_module_state() -> None:
    y, w, G, b, _ = _data(3, 16, 1, seed=4)
    u = project_convex(y, weight=w, G=G[0], b=b[:, 0]).solution  # G one row, b per profile
    proj = ConvexProjection(16, n_eq=1)
    torch.testing.assert_close(u, proj(y, w, G, b).solution, rtol=0, atol=1e-12)
    # the cvxpy problem is no module state: empty state_dict, copies and pickles work
    assert proj.state_dict() == {}
    for clone in (copy.deepcopy(proj), pickle.loads(pickle.dumps(proj))):
        torch.testing.assert_close(clone(y, w, G, b).solution, u, rtol=0, atol=1e-12)
    assert "monotone=None" in repr(proj)


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"monotone": "up"}, ValueError, "monotone must be one of"),
        ({"lower": 1.0, "upper": 0.5}, ValueError, "lower=1.0 > upper=0.5"),
        ({"upper": -1.0}, ValueError, "upper=-1.0 < 0 with nonneg"),
        ({"n_eq": -1}, ValueError, "n_eq must be >= 0"),
        ({"n_eq": 9}, ValueError, "n_eq=9"),
        ({"lower": float("nan")}, ValueError, "lower must be a finite number"),
        ({"nonneg": 1}, TypeError, "nonneg must be True or False"),
    ],
)
def test_bad_settings_raise(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        ConvexProjection(8, **kwargs)


def test_bad_inputs_raise() -> None:
    proj = ConvexProjection(8, monotone="increasing")
    eq = ConvexProjection(8, n_eq=1)
    y = torch.randn(3, 8, dtype=torch.float64)
    G, b = torch.rand(1, 8, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y has shape \(3, 7\); expected \(8,\) or"):
        proj(y[:, :7])
    with pytest.raises(ValueError, match=r"y has shape \(2, 3, 8\)"):
        proj(y.reshape(1, 3, 8).expand(2, 3, 8))
    with pytest.raises(TypeError, match=r"y must be a torch\.Tensor"):
        proj(y.tolist())  # a numpy y is converted (tests/test_own_inputs_library.py)
    with pytest.raises(TypeError, match="real floating-point"):
        proj(torch.ones(8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"weight has shape \(3, 7\)"):
        proj(y, torch.ones(3, 7))
    with pytest.raises(ValueError, match="weight must be > 0 everywhere, got min 0"):
        proj(y, torch.zeros(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        proj(torch.where(torch.arange(8) == 2, float("nan"), 0.0))
    with pytest.raises(ValueError, match="built with n_eq=0"):
        proj(y, None, G, b)
    with pytest.raises(ValueError, match=r"n_eq=1: pass G of shape \(1, 8\)"):
        eq(y)
    with pytest.raises(ValueError, match=r"G has shape \(2, 8\); expected \(1, 8\) or"):
        eq(y, None, torch.rand(2, 8), b)
    with pytest.raises(ValueError, match=r"b has shape \(3,\); expected \(1,\) or \(3, 1\)"):
        eq(y, None, G, b[:, 0])
    with pytest.raises(ValueError, match=r"G has shape \(3, 1, 8\); expected \(1, 8\) for"):
        eq(y[0], None, G.expand(3, 1, 8), b[0])
    # b unreachable: u >= 0 and G >= 0 cannot give G u = -1
    res = eq(y, None, G, -b)
    assert res.status is ConvexStatus.INFEASIBLE and not res.converged
    with pytest.raises(ConvexError, match=r"INFEASIBLE.*first batch row 0"):
        eq(y, None, G, -b, throw=True)
