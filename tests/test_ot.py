"""Entropic OT: Sinkhorn and SNS against independent references and their criteria."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import torch

from sciml.solvers.ot import OTError, OTStatus, sinkhorn, sns

SOLVERS = {
    "sinkhorn": lambda a, b, M, reg, tol=1e-12, **k: sinkhorn(a, b, M, reg, tol=tol,
                                                              max_iter=100000, **k),
    "sns": lambda a, b, M, reg, tol=1e-12, **k: sns(a, b, M, reg, tol=tol, **k),
}


def _points(n: int, m: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(m, 2, generator=g, dtype=torch.float64)
    M = torch.cdist(x, y) ** 2
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.5
    return (a / a.sum()).to(dtype), (b / b.sum()).to(dtype), (M / M.max()).to(dtype)


def _reference_plan(a, b, M, reg, iters=200000, tol=1e-15):
    """Plain float64 log-domain Sinkhorn in numpy/scipy, run to convergence."""
    a, b, M = (np.asarray(t, dtype=np.float64) for t in (a, b, M))
    f, g = np.zeros_like(a), np.zeros_like(b)
    for _ in range(iters):
        f = reg * np.log(a) - reg * scipy.special.logsumexp((g[None, :] - M) / reg, axis=1)
        g = reg * np.log(b) - reg * scipy.special.logsumexp((f[:, None] - M) / reg, axis=0)
        P = np.exp((f[:, None] + g[None, :] - M) / reg)
        if np.abs(P.sum(1) - a).sum() < tol:
            break
    return P


def _exact_cost(a, b, M) -> float:
    """Unregularised OT by linear programming (scipy HiGHS)."""
    n, m = M.shape
    A = np.zeros((n + m, n * m))
    for i in range(n):
        A[i, i * m:(i + 1) * m] = 1
    for j in range(m):
        A[n + j, j::m] = 1
    res = scipy.optimize.linprog(np.asarray(M).ravel(), A_eq=A,
                                 b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    assert res.status == 0
    return float(res.fun)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize(("n", "m", "reg"), [(40, 30, 0.05), (60, 60, 0.02)])
def test_plan_matches_float64_reference(name, n, m, reg):
    a, b, M = _points(n, m, seed=n + m)
    res = SOLVERS[name](a, b, M, reg)
    ref = _reference_plan(a.numpy(), b.numpy(), M.numpy(), reg)
    assert res.status is OTStatus.CONVERGED
    assert np.abs(res.plan.numpy() - ref).max() < 1e-10
    # the defining criterion: marginals
    assert (res.plan.sum(1) - a).abs().sum() + (res.plan.sum(0) - b).abs().sum() < 1e-11
    # the reported transport cost and the regularised value are the plan's
    P = res.plan
    assert float(res.stats["transport_cost"]) == pytest.approx(float((P * M).sum()), rel=1e-12)
    value = (P * M).sum() + reg * (P * (P.log() - 1)).sum()
    assert float(res.cost) == pytest.approx(float(value), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", SOLVERS)
def test_matches_pot(name):
    ot = pytest.importorskip("ot")
    a, b, M = _points(80, 70, seed=3)
    reg = 0.01
    res = SOLVERS[name](a, b, M, reg)
    G = ot.sinkhorn(a.numpy(), b.numpy(), M.numpy(), reg, method="sinkhorn_log",
                    stopThr=1e-15, numItermax=200000)
    assert np.abs(res.plan.numpy() - G).max() < 1e-10
    assert float(res.stats["transport_cost"]) == pytest.approx(float((G * M.numpy()).sum()),
                                                               rel=1e-10)


@pytest.mark.parametrize("name", SOLVERS)
def test_cost_tends_to_exact_transport(name):
    a, b, M = _points(25, 25, seed=5)
    exact = _exact_cost(a.numpy(), b.numpy(), M.numpy())
    gaps = []
    for reg in (1e-2, 1e-3, 1e-4):
        res = SOLVERS[name](a, b, M, reg, tol=1e-11)
        assert res.converged, (reg, res.status, res.stats["marginal_error"])
        gaps.append(float(res.stats["transport_cost"]) - exact)
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-9, gaps
    assert gaps[2] < 1e-3


def test_sns_needs_far_fewer_iterations_and_survives_large_eta():
    a, b, M = _points(300, 300, seed=7)
    a = torch.full_like(a, 1 / 300)
    b = a.clone()
    s = sinkhorn(a, b, M, 1e-3, tol=1e-9, max_iter=100000)
    n = sns(a, b, M, 1e-3, tol=1e-9)
    assert s.converged and n.converged
    assert n.stats["iterations"] * 20 <= s.stats["iterations"], (n.stats, s.stats["iterations"])
    assert torch.allclose(n.plan, s.plan, atol=1e-9)
    # random assignment at eta = 1200 (the paper's): a near-permutation plan, to round-off
    g = torch.Generator().manual_seed(1)
    C = torch.rand(100, 100, generator=g, dtype=torch.float64)
    u = torch.full((100,), 0.01, dtype=torch.float64)
    r = sns(u, u, C, 1 / 1200, tol=1e-12)
    assert r.converged and r.stats["iterations"] < 100
    rows, cols = scipy.optimize.linear_sum_assignment(C.numpy())
    assert float(r.stats["transport_cost"]) == pytest.approx(
        float(C.numpy()[rows, cols].sum() / 100), abs=5e-3)
    # eta = 1e4: exp(-eta) underflows, yet nothing overflows and the error keeps falling
    r = sns(u, u, C, 1e-4, tol=1e-12, max_iter=10)
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.f).all() and torch.isfinite(r.cost)
    errs = [h[2] for h in r.stats["history"]]
    assert errs[-1] < 0.1 * errs[0]


def test_exact_newton_and_zero_masses():
    a, b, M = _points(50, 40, seed=9)
    a[::7] = 0.0
    a /= a.sum()
    for res in (sns(a, b, M, 0.01, tol=1e-12, sparsity=0.0),
                sinkhorn(a, b, M, 0.01, tol=1e-12, max_iter=100000)):
        assert res.converged
        assert (res.plan[::7] == 0).all()
        assert (res.plan.sum(1) - a).abs().sum() < 1e-11
        assert torch.isfinite(res.cost)


def test_batched_equals_one_by_one():
    probs = [_points(30, 20, seed=s) for s in range(3)]
    a = torch.stack([p[0] for p in probs])
    b = torch.stack([p[1] for p in probs])
    M = torch.stack([p[2] for p in probs])
    for name in SOLVERS:
        together = SOLVERS[name](a, b, M, 0.02)
        assert together.plan.shape == (3, 30, 20) and together.cost.shape == (3,)
        for k in range(3):
            alone = SOLVERS[name](a[k], b[k], M[k], 0.02)
            assert torch.allclose(together.plan[k], alone.plan, atol=1e-12)


def test_float32_stays_finite_at_small_reg():
    a, b, M = _points(200, 200, seed=11, dtype=torch.float32)
    for res in (sinkhorn(a, b, M, 1e-3, tol=1e-4, max_iter=5000), sns(a, b, M, 1e-3, tol=1e-4)):
        assert torch.isfinite(res.plan).all() and torch.isfinite(res.cost)
        assert res.stats["marginal_error"] < 1e-3


def test_iteration_limit_status_and_throw():
    a, b, M = _points(50, 50, seed=2)
    res = sinkhorn(a, b, M, 1e-3, max_iter=5)
    assert res.status is OTStatus.MAX_ITER and not res.converged
    assert "max_iter" in res.status.value
    with pytest.raises(OTError, match="MAX_ITER"):
        sinkhorn(a, b, M, 1e-3, max_iter=5, throw=True)
    with pytest.raises(OTError, match="MAX_ITER"):
        sns(a, b, M, 1e-3, max_iter=1, warm_start_iters=2, throw=True)


def test_envelope_gradients():
    a, b, M = _points(8, 7, seed=4)
    reg = 0.05

    def value_of_M(M_):
        return sns(a, b, M_, reg, tol=1e-14).cost

    assert torch.autograd.gradcheck(value_of_M, (M.clone().requires_grad_(True),),
                                    atol=1e-7, rtol=1e-5)

    def value_of_masses(xa, xb):
        return sinkhorn(torch.softmax(xa, 0), torch.softmax(xb, 0), M, reg, tol=1e-14,
                        max_iter=100000).cost

    xa = a.log().requires_grad_(True)
    xb = b.log().requires_grad_(True)
    assert torch.autograd.gradcheck(value_of_masses, (xa, xb), atol=1e-7, rtol=1e-5)
    # the gradient in M is the plan
    Mr = M.clone().requires_grad_(True)
    res = sinkhorn(a, b, Mr, reg, tol=1e-14, max_iter=100000)
    res.cost.backward()
    assert torch.allclose(Mr.grad, res.plan, atol=1e-14)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.tensor([0.5, -0.5, 1.0]), torch.full((2,), 0.5), torch.ones(3, 2)), "negative"),
        ((torch.tensor([0.5, 0.5, float("nan")]), torch.full((2,), 0.5), torch.ones(3, 2)),
         "non-finite"),
        ((torch.full((3,), 1 / 3), torch.full((2,), 0.6), torch.ones(3, 2)), "totals"),
        ((torch.full((3,), 1 / 3), torch.full((2,), 0.5), torch.ones(2, 3)), "rows of M"),
    ],
)
def test_bad_input(args, match):
    for solve in (sinkhorn, sns):
        with pytest.raises(ValueError, match=match):
            solve(*(t.double() for t in args), 0.1)


def test_bad_settings():
    a, b, M = _points(5, 5, seed=0)
    with pytest.raises(ValueError, match="reg"):
        sinkhorn(a, b, M, 0.0)
    with pytest.raises(ValueError, match="reg"):
        sns(a, b, M, -1.0)
    with pytest.raises(ValueError, match="max_iter"):
        sinkhorn(a, b, M, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="sparsity"):
        sns(a, b, M, 0.1, sparsity=1.5)
    with pytest.raises(TypeError, match="dtype"):
        sinkhorn(a.float(), b, M, 0.1)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    a, b, M = _points(100, 90, seed=12)
    for name in SOLVERS:
        cpu = SOLVERS[name](a, b, M, 0.01)
        gpu = SOLVERS[name](a.cuda(), b.cuda(), M.cuda(), 0.01)
        assert torch.allclose(gpu.plan.cpu(), cpu.plan, atol=1e-10)


# ------------------------------------------------------------------ issue 17: nothing silently
def _l1(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """The L1 marginal error of each member of ``P``, recomputed in numpy float64."""
    P, a, b = (t.detach().cpu().double().numpy() for t in (P, a, b))
    return np.abs(P.sum(-1) - a).sum(-1) + np.abs(P.sum(-2) - b).sum(-1)


def _stack(probs):
    return tuple(torch.stack([p[i] for p in probs]) for i in range(3))


def test_sns_gives_each_batch_member_its_own_newton_budget():
    # four 200 x 200 point clouds at reg 1e-3: alone each converges in 8 to 11 Newton steps,
    # 37 together; one shared budget of 15 left the last members unsolved (MAX_ITER with
    # marginal errors 0.05, 0.11 and 0.18)
    a, b, M = _stack([_points(200, 200, seed=s) for s in range(4)])
    alone = [sns(a[k], b[k], M[k], 1e-3, max_iter=15) for k in range(4)]
    assert all(r.converged for r in alone)
    counts = [r.stats["newton_iterations"] for r in alone]
    assert sum(counts) > 15  # so a shared budget could not have solved them all
    together = sns(a, b, M, 1e-3, max_iter=15)
    assert together.converged, together.stats["member_status"]
    assert together.stats["member_newton_iterations"] == counts
    assert together.stats["newton_iterations"] == sum(counts)
    assert together.stats["member_status"] == [OTStatus.CONVERGED] * 4
    err = _l1(together.plan, a, b)
    assert (err <= 1e-9).all(), err
    for k in range(4):
        assert torch.allclose(together.plan[k], alone[k].plan, atol=1e-12)
    # and a member that cannot converge in its budget does not hide behind the others
    a2, b2, M2 = _stack([_points(40, 40, seed=1), _points(40, 40, seed=2)])
    M2[1] *= 30.0  # the second member at an effective reg of 1e-3 / 30
    mixed = sns(a2, b2, M2, 1e-3, max_iter=2, max_sinkhorn_iter=40)
    err = _l1(mixed.plan, a2, b2)
    assert mixed.stats["member_status"] == [
        OTStatus.CONVERGED if e <= 1e-9 else OTStatus.MAX_ITER for e in err]
    assert mixed.stats["member_status"][1] is OTStatus.MAX_ITER
    assert mixed.status is OTStatus.MAX_ITER and not mixed.converged
    assert all(c <= 2 for c in mixed.stats["member_newton_iterations"])


@pytest.mark.parametrize(
    ("name", "dtype", "reg", "kwargs"),
    [
        # the plan converged on the last Newton step; the error before it was reported
        ("sns", torch.float64, 1e-2, {"tol": 1e-5, "max_iter": 3}),
        ("sns", torch.float64, 1e-2, {"tol": 1e-6, "max_iter": 2}),
        # Sinkhorn sweeps after a Newton step without ascent: the row error was reported
        ("sns", torch.float64, 1e-5, {"max_iter": 20}),
        # float32: the error summed in float32, and of the scaled iterate, not of the plan
        ("sinkhorn", torch.float32, 1e-3, {"tol": 1e-5, "max_iter": 3000}),
        ("sinkhorn", torch.float32, 1e-2, {"tol": 1e-9, "max_iter": 300}),
        ("sns", torch.float32, 1e-2, {"tol": 1e-6, "max_iter": 3}),
    ],
)
def test_reported_error_and_status_are_those_of_the_returned_plan(name, dtype, reg, kwargs):
    a, b, M = _points(50, 50, seed=50, dtype=dtype)
    res = {"sinkhorn": sinkhorn, "sns": sns}[name](a, b, M, reg, **kwargs)
    err = float(_l1(res.plan, a, b))
    assert res.plan.dtype == dtype
    assert res.stats["marginal_error"] == pytest.approx(err, rel=1e-9, abs=1e-15)
    tol = kwargs.get("tol", 1e-9)  # both solvers' default
    assert res.status is (OTStatus.CONVERGED if err <= tol else OTStatus.MAX_ITER), (
        res.status, err, tol)
    P = res.plan.double()
    assert float(res.stats["transport_cost"]) == pytest.approx(
        float((P * M.double()).sum()), rel=2 * torch.finfo(dtype).eps)


def test_costs_too_large_for_reg_are_refused_and_forbidden_pairs_are_not():
    a, b, M = _points(30, 30, seed=1)
    for solve in (sinkhorn, sns):
        # the potentials would be ~1e300: (f + g - M) / reg rounds by ~1e282 (this returned
        # CONVERGED with an L1 marginal error of 1798)
        with pytest.raises(ValueError, match=r"M is too large for reg=0.01.*raise reg"):
            solve(a, b, M + 1e300, 0.01)
        with pytest.raises(ValueError, match="use float64"):
            solve(a.float(), b.float(), (M + 1e30).float(), 1.0)
        with pytest.raises(ValueError, match="overflows"):
            solve(a, b, M * 1e300, 1e-10)
    # a forbidden pair (one huge cost per row) only zeroes its plan entry
    F = M.clone()
    F[torch.arange(30), torch.arange(30)] = 1e300
    for res in (sinkhorn(a, b, F, 1e-2, tol=1e-11), sns(a, b, F, 1e-2, tol=1e-11)):
        assert res.converged and float(_l1(res.plan, a, b)) <= 1e-11
        assert (res.plan.diagonal() == 0).all()


def test_plans_hold_no_subnormal_numbers():
    # subnormal arithmetic is tens of times slower on CPUs: at reg 1e-4 in float32 a Newton
    # solve took 26 s instead of 1.5 s; entries below the smallest normal number are zero
    for dtype, reg in ((torch.float64, 1e-3), (torch.float32, 1e-2)):
        a, b, M = _points(50, 50, seed=3, dtype=dtype)
        for res in (sinkhorn(a, b, M, reg, max_iter=50), sns(a, b, M, reg, max_iter=2)):
            P = res.plan
            assert ((P == 0) | (P >= torch.finfo(dtype).tiny)).all()
            assert (P == 0).any()  # the case does reach the underflow range


def test_settings_and_batch_shape_are_checked():
    a, b, M = _points(5, 5, seed=0)
    with pytest.raises(ValueError, match="max_sinkhorn_iter must be an int >= warm_start_iters"):
        sns(a, b, M, 0.1, warm_start_iters=30, max_sinkhorn_iter=20)
    with pytest.raises(ValueError, match="batch shape"):
        sinkhorn(a.expand(0, 5), b, M, 0.1)
