"""Issue 21, item 3: tolerance defaults by dtype, from one table (``sciml._tolerances``).

float32 solves at the default tolerance converge on ordinary problems (judged by the
defining criterion, computed independently in float64), the float32 default sits a few
times above the floor float32 actually reaches, float64 behaves exactly as with the old
explicit defaults, an explicit tolerance overrides the table, and a bad one is refused
with a message that names it. The docs show the table generated from the code.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sciml._tolerances as tolerances
from sciml._tolerances import DEFAULT_TOLERANCES, default_tol
from sciml.solvers.linear import (
    CG,
    DCDM,
    FlexibleCG,
    IncompleteCholesky,
    Jacobi,
    LinearStatus,
    cg,
    dcdm,
    flexible_cg,
    solve,
)
from sciml.solvers.ot import SNS, OTStatus, Sinkhorn, sinkhorn, sns

ROOT = Path(__file__).resolve().parent.parent
D, S = torch.float64, torch.float32


# ---------------------------------------------------------------- problems


def _ot_problem(dim: int, n: int, seed: int):
    """Masses summing to 1 on random point clouds, squared-distance costs, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=D)
    y = torch.rand(n + 5, dim, generator=g, dtype=D)
    a = torch.rand(n, generator=g, dtype=D) + 0.3
    b = torch.rand(n + 5, generator=g, dtype=D) + 0.3
    return a / a.sum(), b / b.sum(), torch.cdist(x, y) ** 2


def _marginal_error64(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """``||P 1 - a||_1 + ||P^T 1 - b||_1`` of the returned plan, summed in float64."""
    P = P.double()
    return float((P.sum(-1) - a.double()).abs().sum() + (P.sum(-2) - b.double()).abs().sum())


def _poisson(N: int, sigma: float, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """-div(k grad u) on an N x N cell grid, zero Dirichlet walls, log-normal k.

    Two cells sharing a face are coupled by the harmonic mean of their k; a wall face
    adds ``2 k`` (the wall value sits half a cell away) to its cell's diagonal.
    """
    rng = np.random.default_rng(seed)
    k = np.exp(sigma * rng.standard_normal((N, N)))
    cell = np.arange(N * N).reshape(N, N)
    p = np.concatenate([cell[:-1, :].ravel(), cell[:, :-1].ravel()])
    q = np.concatenate([cell[1:, :].ravel(), cell[:, 1:].ravel()])
    c = 2.0 / (1.0 / k.ravel()[p] + 1.0 / k.ravel()[q])
    wall = np.zeros((N, N))
    wall[0, :] += 2 * k[0, :]
    wall[-1, :] += 2 * k[-1, :]
    wall[:, 0] += 2 * k[:, 0]
    wall[:, -1] += 2 * k[:, -1]
    A = sp.coo_matrix((np.concatenate([c, c, -c, -c]),
                       (np.concatenate([p, q, p, q]), np.concatenate([p, q, q, p]))),
                      shape=(N * N, N * N)) + sp.diags(wall.ravel())
    return A.tocsr(), rng.standard_normal(N * N)


def _true_rel64(A: sp.csr_matrix, b: np.ndarray, x: torch.Tensor) -> float:
    return float(np.linalg.norm(b - A @ x.double().numpy()) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def poisson():
    return _poisson(48, 1.0, seed=3)


# ---------------------------------------------------------------- the table


def test_float64_defaults_are_the_scipy_and_pot_ones():
    # float64 keeps scipy.sparse.linalg.cg's rtol and the 1e-9 stopThr used so far
    assert default_tol("linear", D) == 1e-5
    assert default_tol("ot", D) == 1e-9


def test_float32_defaults_are_looser_than_float64_but_still_tight():
    for family in DEFAULT_TOLERANCES:
        t32, t64 = default_tol(family, S), default_tol(family, D)
        assert t64 < t32 <= 1e-3, (family, t32, t64)


def test_default_tol_refuses_what_it_has_no_row_for():
    with pytest.raises(TypeError, match="float16"):
        default_tol("linear", torch.float16)
    with pytest.raises(TypeError, match="bfloat16"):
        default_tol("ot", torch.bfloat16)
    with pytest.raises(KeyError, match="nonsense"):
        default_tol("nonsense", D)


def test_public_defaults_are_none_and_resolved_by_dtype():
    for fn, name in ((sinkhorn, "tol"), (sns, "tol"), (cg, "rtol"), (flexible_cg, "rtol"),
                     (dcdm, "rtol"), (solve, "rtol")):
        assert inspect.signature(fn).parameters[name].default is None, fn.__name__
    assert Sinkhorn().tol is None and SNS().tol is None
    assert CG().rtol is None and FlexibleCG().rtol is None and DCDM().rtol is None


def test_docs_show_the_generated_table():
    table = tolerances.table_rst()
    assert table in tolerances.__doc__
    for family, row in DEFAULT_TOLERANCES.items():
        assert f"``{family}``" in table and f"``{row.setting}``" in table
        for value in row.defaults.values():
            assert tolerances._short(value) in table
            assert float(tolerances._short(value)) == value
    for page in ("linear", "ot"):
        text = (ROOT / "docs" / "guide" / f"{page}.rst").read_text(encoding="utf-8")
        assert ".. automodule:: sciml._tolerances" in text, page
    assert "sciml/_tolerances.py" in (ROOT / "README.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- optimal transport


OT_CASES = [(1, 60, 0.1), (2, 60, 0.05), (2, 100, 0.01), (1, 100, 0.004)]


@pytest.mark.parametrize("solver", [sinkhorn, sns], ids=["sinkhorn", "sns"])
@pytest.mark.parametrize("dim,n,reg", OT_CASES)
def test_float32_ot_converges_at_its_default(solver, dim, n, reg):
    a, b, M = _ot_problem(dim, n, seed=n)
    res = solver(a.float(), b.float(), M.float(), reg)
    tol = default_tol("ot", S)
    assert res.stats["tol"] == tol
    assert res.status is OTStatus.CONVERGED, res.stats["marginal_error"]
    err = _marginal_error64(res.plan, a, b)
    assert err <= tol
    # the same plan as float64 reaches (by Newton: fast at small reg), to float32's accuracy
    ref = sns(a, b, M, reg)
    assert ref.converged and ref.stats["tol"] == default_tol("ot", D)
    assert float((res.plan.double() - ref.plan).abs().sum()) <= 10 * tol


@pytest.mark.parametrize("dim,n,reg", [(2, 80, 0.1), (2, 80, 0.01), (1, 80, 1e-3)])
def test_float32_ot_default_is_a_few_times_above_the_floor(dim, n, reg):
    # with no reachable tolerance float32 stops at its rounding floor (STALLED); the
    # default must leave room above that floor, or default solves would stall
    a, b, M = _ot_problem(dim, n, seed=7 * n)
    floor = sinkhorn(a.float(), b.float(), M.float(), reg, tol=0.0)
    assert floor.status is OTStatus.STALLED
    assert _marginal_error64(floor.plan, a, b) <= default_tol("ot", S) / 2


def test_float32_ot_batch_and_numpy_inputs_take_the_float32_default():
    a, b, M = _ot_problem(2, 40, seed=1)
    res = sns(a.float().numpy(), b.float().numpy(), M.float().numpy(), 0.05)
    assert res.plan.dtype == S and res.stats["tol"] == default_tol("ot", S) and res.converged
    ab = torch.stack([a, a]).float()
    res = sinkhorn(ab, b.float(), M.float(), 0.05)
    assert res.converged and res.stats["tol"] == default_tol("ot", S)
    assert max(_marginal_error64(res.plan[i], a, b) for i in range(2)) <= res.stats["tol"]


@pytest.mark.parametrize("solver", [sinkhorn, sns], ids=["sinkhorn", "sns"])
def test_float64_ot_default_is_unchanged(solver):
    a, b, M = _ot_problem(2, 70, seed=2)
    implicit = solver(a, b, M, 0.02)
    explicit = solver(a, b, M, 0.02, tol=1e-9)
    assert implicit.stats["tol"] == explicit.stats["tol"] == 1e-9
    assert implicit.converged and _marginal_error64(implicit.plan, a, b) <= 1e-9
    assert implicit.stats["iterations"] == explicit.stats["iterations"]
    assert torch.equal(implicit.plan, explicit.plan)


@pytest.mark.parametrize("solver", [sinkhorn, sns], ids=["sinkhorn", "sns"])
def test_explicit_ot_tol_overrides_the_table(solver):
    a, b, M = _ot_problem(2, 70, seed=4)
    loose = solver(a.float(), b.float(), M.float(), 0.02, tol=1e-3)
    assert loose.stats["tol"] == 1e-3 and loose.converged
    assert _marginal_error64(loose.plan, a, b) <= 1e-3
    tight = solver(a, b, M, 0.02, tol=1e-12)
    assert tight.stats["tol"] == 1e-12 and tight.converged
    assert _marginal_error64(tight.plan, a, b) <= 1e-12
    # the settings object too
    cls = Sinkhorn if solver is sinkhorn else SNS
    assert cls(tol=1e-3)(a.float(), b.float(), M.float(), 0.02).stats["tol"] == 1e-3


# ---------------------------------------------------------------- linear solvers


def _run_linear(kind: str, A: sp.csr_matrix, b: torch.Tensor, **kw):
    if kind == "cg":
        return cg(A, b, **kw)
    if kind == "jacobi":
        return cg(A, b, M=Jacobi(A), **kw)
    if kind == "ic0":
        return CG(**kw)(A, b, M=IncompleteCholesky(A))
    return flexible_cg(A, b, M=Jacobi(A), **kw)


@pytest.mark.parametrize("kind", ["cg", "jacobi", "ic0", "flexible"])
def test_float32_cg_converges_at_its_default(poisson, kind):
    A, b = poisson
    sol = _run_linear(kind, A, torch.tensor(b, dtype=S))
    rtol = default_tol("linear", S)
    assert sol.x.dtype == S and sol.stats["rtol"] == rtol and sol.stats["atol"] == 0.0
    assert sol.status is LinearStatus.CONVERGED, sol.stats["residual_norm"]
    # the true residual, in float64, of the float32 solution: within a small factor of
    # the tolerance (the solver confirmed it in float32, with float32 rounding)
    assert _true_rel64(A, b, sol.x) <= 1.5 * rtol


def test_float32_cg_default_is_a_few_times_above_the_floor(poisson):
    # rtol far below float32's reach: the solve stops STALLED at the rounding floor
    A, b = poisson
    floor = cg(A, torch.tensor(b, dtype=S), rtol=1e-10, M=Jacobi(A))
    assert floor.status is LinearStatus.STALLED
    assert _true_rel64(A, b, floor.x) <= default_tol("linear", S) / 3


def test_float32_cg_default_on_a_high_contrast_system():
    # log-normal k with sigma 2 (contrast ~1e5): float32 still reaches the default
    A, b = _poisson(40, 2.0, seed=5)
    sol = cg(A, torch.tensor(b, dtype=S), M=Jacobi(A))
    assert sol.converged and _true_rel64(A, b, sol.x) <= 1.5 * default_tol("linear", S)


@pytest.mark.parametrize("kind", ["cg", "ic0", "flexible"])
def test_float64_cg_default_is_unchanged(poisson, kind):
    A, b = poisson
    bt = torch.tensor(b)
    implicit = _run_linear(kind, A, bt)
    explicit = _run_linear(kind, A, bt, rtol=1e-5)
    assert implicit.stats["rtol"] == explicit.stats["rtol"] == 1e-5
    assert implicit.converged and _true_rel64(A, b, implicit.x) <= 1e-5 * (1 + 1e-9)
    assert implicit.stats["iterations"] == explicit.stats["iterations"]
    assert torch.equal(implicit.x, explicit.x)


def test_explicit_rtol_overrides_the_table(poisson):
    A, b = poisson
    b32 = torch.tensor(b, dtype=S)
    loose = cg(A, b32, rtol=1e-2)
    default = cg(A, b32)
    assert loose.stats["rtol"] == 1e-2 and loose.converged
    assert _true_rel64(A, b, loose.x) <= 1.5e-2
    assert loose.stats["iterations"] < default.stats["iterations"]
    assert FlexibleCG(rtol=1e-2)(A, b32, M=None).stats["rtol"] == 1e-2
    # atol alone (rtol=0) stops where ||r|| <= atol, whatever the table says
    sol = cg(A, torch.tensor(b), rtol=0.0, atol=1e-6 * float(np.linalg.norm(b)))
    assert sol.stats["rtol"] == 0.0 and _true_rel64(A, b, sol.x) <= 1e-6 * (1 + 1e-9)


def test_differentiable_solve_takes_the_default_by_dtype():
    A, b = _poisson(20, 1.0, seed=8)
    Ad = torch.tensor(A.toarray(), dtype=S)
    b32 = torch.tensor(b, dtype=S, requires_grad=True)
    sol = solve(Ad, b32)
    assert sol.stats["rtol"] == default_tol("linear", S) and sol.converged
    assert _true_rel64(A, b, sol.x.detach()) <= 1.5 * default_tol("linear", S)


# ---------------------------------------------------------------- bad tolerances


BAD = [(-1e-6, ValueError), (math.nan, ValueError), (math.inf, ValueError),
       ("1e-6", TypeError), (True, TypeError)]


@pytest.mark.parametrize("bad,err", BAD, ids=["negative", "nan", "inf", "string", "bool"])
def test_bad_tolerances_are_refused_by_name(bad, err):
    a, b, M = _ot_problem(1, 5, seed=0)
    calls = [
        ("tol", lambda: sinkhorn(a, b, M, 0.1, tol=bad)),
        ("tol", lambda: sns(a, b, M, 0.1, tol=bad)),
        ("tol", lambda: Sinkhorn(tol=bad)),
        ("tol", lambda: SNS(tol=bad)),
        ("rtol", lambda: cg(torch.eye(3, dtype=D), torch.ones(3, dtype=D), rtol=bad)),
        ("rtol", lambda: flexible_cg(torch.eye(3, dtype=D), torch.ones(3, dtype=D), M=None,
                                     rtol=bad)),
        ("rtol", lambda: CG(rtol=bad)),
        ("rtol", lambda: FlexibleCG(rtol=bad)),
        ("rtol", lambda: DCDM(rtol=bad)),
        ("rtol", lambda: solve(torch.eye(3, dtype=D), torch.ones(3, dtype=D), rtol=bad)),
    ]
    for name, call in calls:
        with pytest.raises(err) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(f"{name} must"), msg
        assert repr(bad) in msg and "None" in msg, msg  # the value, and the default's spelling
