"""Issue 21, item 3: the solvers stop at the rounding floor (STALLED) instead of running
to max_iter, and take numpy inputs at their public entries."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from sciml.solvers.linear import LinearSolveError, LinearStatus, cg, flexible_cg
from sciml.solvers.ot import sinkhorn, sns
from sciml.solvers.ot._common import OTError, OTStatus


def _variable_laplacian(N: int = 100, sigma: float = 1.0, seed: int = 0):
    """-div(k grad u) on N x N cells, Dirichlet walls, log-normal k (harmonic face means)."""
    rng = np.random.default_rng(seed)
    k = np.exp(rng.normal(0.0, sigma, (N, N))).ravel()
    idx = np.arange(N * N).reshape(N, N)
    rows, cols, vals = [], [], []
    diag = np.zeros(N * N)
    for di, dj in ((1, 0), (0, 1)):
        p, q = idx[:N - di, :N - dj].ravel(), idx[di:, dj:].ravel()
        c = 2 * k[p] * k[q] / (k[p] + k[q])
        rows += [p, q]
        cols += [q, p]
        vals += [-c, -c]
        np.add.at(diag, p, c)
        np.add.at(diag, q, c)
    for side in (idx[0], idx[-1], idx[:, 0], idx[:, -1]):
        np.add.at(diag, side, 2 * k[side])
    ar = np.arange(N * N)
    A = sp.csr_matrix((np.concatenate([*vals, diag]),
                       (np.concatenate([*rows, ar]), np.concatenate([*cols, ar]))),
                      shape=(N * N, N * N))
    return A, rng.normal(size=N * N)


@pytest.fixture(scope="module")
def system():
    A, b = _variable_laplacian()
    return A, b, sla.spsolve(A.tocsc(), b)


def _rel(x: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x.double().numpy() - ref) / np.linalg.norm(ref))


def test_float32_cg_stagnates_at_the_rounding_floor(system):
    A, b, xr = system
    # float64 reaches rtol=1e-7; float32 cannot (its true residual floor is ~1e-6) and used
    # to cycle "recursively converged, true check failed, restart" up to 10 n = 100000
    s64 = cg(A, torch.tensor(b), rtol=1e-7)
    assert s64.converged and _rel(s64.x, xr) < 1e-5
    s32 = cg(A, torch.tensor(b, dtype=torch.float32), rtol=1e-7)
    assert s32.status is LinearStatus.STALLED and not s32.converged
    assert s32.stats["iterations"] < 2 * s64.stats["iterations"] + 1000
    assert _rel(s32.x, xr) < 1e-5  # the best float32 gets: as close as float64's answer
    with pytest.raises(LinearSolveError, match="STALLED"):
        cg(A, torch.tensor(b, dtype=torch.float32), rtol=1e-7, throw=True)
    f32 = flexible_cg(A, torch.tensor(b, dtype=torch.float32), M=None, rtol=1e-7)
    assert f32.status in (LinearStatus.STALLED, LinearStatus.CONVERGED)
    assert f32.stats["iterations"] < 5000


def _ot_problem(n: int = 200):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(n, 2, generator=g, dtype=torch.float64)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return a, a.clone(), torch.cdist(x, y) ** 2


@pytest.mark.parametrize("solver", [sinkhorn, sns])
def test_float32_ot_stagnates_at_the_rounding_floor(solver):
    a, b, M = _ot_problem()
    ref = sinkhorn(a, b, M, 0.05)
    assert ref.converged and ref.stats["marginal_error"] <= 1e-9
    r = solver(a.float(), b.float(), M.float(), 0.05, tol=1e-9)
    # before: sinkhorn ran all 10000 iterations, sns all 100 Newton steps (MAX_ITER)
    assert r.status is OTStatus.STALLED and not r.converged
    assert r.stats["iterations"] < 1000
    assert r.stats["marginal_error"] < 1e-5
    assert float((r.plan.double() - ref.plan).abs().sum()) < 1e-5
    with pytest.raises(OTError, match="STALLED"):
        solver(a.float(), b.float(), M.float(), 0.05, tol=1e-9, throw=True)


def test_numpy_inputs_match_tensors(system):
    A, b, _ = system
    A, b = A[:400, :400], b[:400]
    t = cg(A, torch.tensor(b), rtol=1e-10)
    n = cg(A, b, rtol=1e-10, x0=np.zeros(400))
    assert n.x.dtype == torch.float64 and torch.equal(n.x, t.x)
    assert cg(A, b.astype(np.float32)).x.dtype == torch.float32
    dense = torch.tensor(A.toarray(), dtype=torch.float32)
    assert cg(dense, b).x.dtype == torch.float32  # follows the tensor argument
    a, bb, M = _ot_problem(50)
    rt = sinkhorn(a, bb, M, 0.1)
    rn = sinkhorn(a.numpy(), bb.numpy(), M.numpy(), 0.1)
    assert rn.plan.dtype == torch.float64 and torch.equal(rn.plan, rt.plan)
    rm = sinkhorn(a.numpy(), bb.numpy(), M.float(), 0.1)
    assert rm.plan.dtype == torch.float32
    rs = sns(a.numpy(), bb, M.numpy(), 0.1)
    assert torch.allclose(rs.plan, rt.plan, atol=1e-9)


def test_errors_name_the_first_bad_argument():
    _, _, M = _ot_problem(5)
    with pytest.raises(TypeError, match=r"^a must be"):
        sinkhorn("a", "b", "M", 0.1)
    with pytest.raises(TypeError, match=r"^a must be"):
        sinkhorn([0.2] * 5, [0.2] * 5, M, 0.1)
    with pytest.raises(ValueError, match=r"^a must have"):
        sinkhorn(0.2, np.full(5, 0.2), M.numpy(), 0.1)
