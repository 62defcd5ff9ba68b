"""The OT solvers held to their word: what ``stats`` and ``status`` say is what ``plan`` is.

For every OT solver exported from ``sciml.solvers.ot``, on easy and on hard inputs (small
``reg``, float32 and float64, batches that mix easy and hard members, iteration limits that
stop early), the L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` and the transport
cost ``<P, M>`` are recomputed here in numpy float64 from the returned ``plan`` and compared
with ``stats``; each member's status must agree with that error and ``tol``, and the
regularised ``cost`` with the primal objective of the plan up to the bound its docstring
gives. Any disagreement fails.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import sciml.solvers.ot as ot

# every solver function the package exports (a new one is held to the same word)
SOLVERS = sorted(n for n in ot.__all__ if inspect.isfunction(getattr(ot, n)))
# budgets small enough to stop the hard cases early, per solver (others run on defaults)
EARLY = {"sinkhorn": {"max_iter": 60}, "sns": {"max_iter": 2, "max_sinkhorn_iter": 60}}


def _points(n: int, seed: int, dtype: torch.dtype, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(n + 3, 2, generator=g, dtype=torch.float64)
    M = torch.cdist(x, y) ** 2
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(n + 3, generator=g, dtype=torch.float64) + 0.5
    return (a / a.sum()).to(dtype), (b / b.sum()).to(dtype), (scale * M / M.max()).to(dtype)


def _batch(dtype: torch.dtype, n: int = 30):
    """An easy member (costs 100x below reg's scale), a zero-cost one and two hard ones."""
    members = [_points(n, 1, dtype, scale=0.01), _points(n, 2, dtype, scale=0.0),
               _points(n, 3, dtype), _points(n, 4, dtype)]
    return tuple(torch.stack([p[i] for p in members]) for i in range(3))


# name: (problem, reg, tol, early); early = stop on the small budgets of EARLY
CASES = {
    "easy-f64": (lambda: _points(30, 0, torch.float64), 0.05, 1e-9, False),
    "reg1e-3-f64": (lambda: _points(40, 5, torch.float64), 1e-3, 1e-9, False),
    "reg1e-4-f64-early": (lambda: _points(40, 6, torch.float64), 1e-4, 1e-9, True),
    "reg1e-2-f64-early": (lambda: _points(30, 7, torch.float64), 1e-2, 1e-5, True),
    "reg1e-2-f32": (lambda: _points(30, 8, torch.float32), 1e-2, 1e-5, False),
    "reg1e-3-f32": (lambda: _points(30, 9, torch.float32), 1e-3, 1e-5, False),
    "reg1e-4-f32-early": (lambda: _points(40, 10, torch.float32), 1e-4, 1e-6, True),
    "tol-below-f32-rounding": (lambda: _points(20, 11, torch.float32), 1e-2, 1e-12, True),
    "batch-mixed-f64-early": (lambda: _batch(torch.float64), 1e-3, 1e-9, True),
    "batch-mixed-f32-early": (lambda: _batch(torch.float32), 1e-3, 1e-6, True),
    "batch-mixed-f64": (lambda: _batch(torch.float64), 1e-2, 1e-10, False),
}


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _assert_honest(res, a, b, M, reg: float, tol: float) -> None:
    P, a64, b64, M64 = _f64(res.plan), _f64(a), _f64(b), _f64(M)
    assert res.plan.dtype == M.dtype and res.plan.shape == M.shape
    # the defining criterion, recomputed from the returned plan
    err = (np.abs(P.sum(-1) - a64).sum(-1) + np.abs(P.sum(-2) - b64).sum(-1)).reshape(-1)
    member = np.asarray(res.stats["member_marginal_error"], dtype=np.float64).reshape(-1)
    np.testing.assert_allclose(member, err, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(res.stats["marginal_error"], err.max(), rtol=1e-9, atol=1e-13)
    # each member's status is its plan's, and the batch's status follows from them
    statuses = res.stats["member_status"]
    assert len(statuses) == err.size
    for k, (s, e) in enumerate(zip(statuses, err)):
        if not math.isfinite(e):
            assert s is ot.OTStatus.BREAKDOWN, (k, s, e)
        elif abs(e - tol) > 1e-12:  # no verdict inside the rounding of the sum itself
            assert (s is ot.OTStatus.CONVERGED) == (e <= tol), (k, s, e, tol)
            assert s is not ot.OTStatus.BREAKDOWN, (k, s, e)
    assert res.converged == all(s is ot.OTStatus.CONVERGED for s in statuses)
    worst = (ot.OTStatus.BREAKDOWN if ot.OTStatus.BREAKDOWN in statuses
             else ot.OTStatus.MAX_ITER if ot.OTStatus.MAX_ITER in statuses
             else ot.OTStatus.CONVERGED)
    assert res.status is worst
    # the transport cost is the plan's, to the rounding of the returned dtype (and of a
    # float64 sum in another order)
    eps = torch.finfo(M.dtype).eps
    cost = (P * M64).sum((-2, -1)).reshape(-1)
    np.testing.assert_allclose(_f64(res.stats["transport_cost"]).reshape(-1), cost,
                               rtol=2 * eps + 1e-13, atol=1e-300)
    # the regularised value against the primal objective of the plan: equal up to
    # (max|f| + max|g|) x the marginal error (the docstring's bound) plus rounding
    f, g = _f64(res.f).reshape(err.size, -1), _f64(res.g).reshape(err.size, -1)
    Pk, Mk = P.reshape(err.size, *P.shape[-2:]), M64.reshape(err.size, *M64.shape[-2:])
    value = _f64(res.cost).reshape(-1)
    for k in range(err.size):
        pos = Pk[k] > 0
        primal = (Pk[k] * Mk[k]).sum() + reg * (Pk[k][pos] * (np.log(Pk[k][pos]) - 1)).sum()
        size = np.abs(f[k]).max() + np.abs(g[k]).max()
        slack = 16 * eps * (size + np.abs(Mk[k]).max() + reg) * max(1.0, Pk[k].sum())
        assert abs(value[k] - primal) <= size * err[k] + slack * max(Pk[k].shape), (
            k, value[k], primal, err[k])


def _budgets_respected(res, name: str, kwargs: dict) -> None:
    stats = res.stats
    if name == "sns":
        limit = kwargs.get("max_iter", 100)
        assert all(0 <= c <= limit for c in stats["member_newton_iterations"])
        assert sum(stats["member_newton_iterations"]) == stats["newton_iterations"]
        assert sum(stats["member_sinkhorn_iterations"]) == stats["sinkhorn_iterations"]
        limit = kwargs.get("max_sinkhorn_iter", 50000)
        assert all(c <= limit for c in stats["member_sinkhorn_iterations"])
    elif name == "sinkhorn":
        assert stats["iterations"] <= kwargs.get("max_iter", 10000)


def test_every_exported_solver_is_held_to_its_word():
    assert {"sinkhorn", "sns"} <= set(SOLVERS), SOLVERS


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", SOLVERS)
def test_stats_and_status_are_those_of_the_returned_plan(name, case):
    build, reg, tol, early = CASES[case]
    a, b, M = build()
    kwargs = EARLY.get(name, {}) if early else {}
    res = getattr(ot, name)(a, b, M, reg, tol=tol, **kwargs)
    _assert_honest(res, a, b, M, reg, tol)
    _budgets_respected(res, name, kwargs)
