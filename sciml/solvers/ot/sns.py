"""Sinkhorn-Newton-Sparse: Sinkhorn warm start, then sparse Newton steps on the dual.

The dual objective (concave in ``x = (f, g)``)

.. math:: F(f, g) = \\langle f, a\\rangle + \\langle g, b\\rangle
          - \\varepsilon \\sum_{ij} e^{(f_i + g_j - M_{ij})/\\varepsilon}

has gradient ``(a - P1, b - P^T 1)`` and Hessian
``-(1/eps) [[diag(P1), P], [P^T, diag(P^T 1)]]``. Each Newton step keeps the entries
``P_ij >= sparsity * (P1)_i`` of the off-diagonal blocks, and at least the
``min_per_row`` largest of each row (an adaptive rule: a fixed count alone does not
converge on point-cloud plans, whose rows spread their mass over tens to hundreds of
entries, and the threshold alone leaves near-permutation plans at large ``1/reg`` with a
singular Schur complement), keeps the diagonals exact,
eliminates ``df`` and solves the Schur complement
``(diag(P^T 1) - P_s^T diag(1/P1) P_s) dg = eps (b - P^T 1) - P_s^T (eps (a - P1) / P1)``
by Jacobi-preconditioned conjugate gradients to a loose forcing tolerance, then
backtracks on ``F`` (Armijo). Where a step finds no ascent (far from the solution),
more Sinkhorn sweeps run before Newton resumes (from ``warm_start_iters`` doubling up to
2000 a time, within ``max_sinkhorn_iter``). The null direction ``(1, -1)`` of the
Hessian (a constant moved from ``f`` to ``g``) is removed from the right-hand side.

Reference: X. Tang, M. Shavlovsky, H. Rahmanian, E. Tardini, K. K. Thekumparampil, T. Xiao,
L. Ying, "Accelerating Sinkhorn algorithm with sparse Newton iterations", ICLR 2024.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..._frozen import frozen_settings
from ..._tolerances import resolve_tol
from ._common import (
    OTResult,
    check_problem,
    finish,
    kernel,
    marginal_errors,
    quiet_sparse,
)
from .sinkhorn import _check_settings, _Stall, sinkhorn_potentials

# Sinkhorn iterations between checks in the warm start and the fallback sweeps: often enough
# to absorb the scalings before they overflow (float32 at small reg) and to stop at tol
_CHECK = 10
# inner CG iterations between host looks at its stopping test on a GPU (see _pcg)
_PCG_CHECK = 8
# Newton steps without a 1% drop of the best marginal error after which a member stops
# (STALLED): near the solution Newton converges quadratically, so 10 steps without
# progress is the rounding floor, not slow convergence
_NEWTON_WINDOW = 10


def _pcg(matvec, rhs, diag, rtol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Jacobi-preconditioned CG from zero; returns the solution and the iteration count.

    Not :func:`sciml.solvers.linear.cg` on purpose. This is the inner solve of an inexact
    Newton step: one unbatched Schur complement per member (each member has its own
    sparsity pattern, so there is nothing to batch), solved to a loose forcing tolerance
    within a fixed budget, and whatever iterate it returns is only a search direction that
    the Armijo line search in :func:`_newton` accepts or shrinks. The library CG's
    guarantees would be paid for and then discarded here: the finiteness scan of the
    right-hand side, the range scaling, the confirming true-residual product, the status
    and stats bookkeeping and the batch working set, once per Newton step. The system is
    only semidefinite (the ``(1, -1)`` direction and dead columns, removed from ``rhs``),
    on which plain CG from zero stays in the range of the matrix.

    The stopping test ``||r||^2 <= (rtol ||rhs||)^2`` lives on the device: once it holds,
    the step lengths are masked to zero (the iterate is frozen where it converged) and the
    iterations stop being counted, so the host only looks every ``_PCG_CHECK`` iterations
    on a GPU (every iteration on the CPU, where a look costs nothing) and at ``max_iter``.
    The result and the returned count are those of a test after every iteration; at most
    ``_PCG_CHECK - 1`` masked iterations are computed past convergence and not counted.
    """
    check = 1 if rhs.device.type == "cpu" else _PCG_CHECK
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r / diag
    p = z.clone()
    rz = torch.dot(r, z)
    stop = (rtol * rhs.norm()) ** 2
    going = torch.dot(r, r) > stop  # 0-dim bool on the device: this system still runs
    its = torch.zeros((), dtype=torch.int64, device=rhs.device)
    it = 0
    while True:
        if (it > 0 and it % check == 0) or it >= max_iter:
            # one read for the test and the count (none before the first iteration: a
            # right-hand side already below the tolerance only costs masked iterations)
            running, count = torch.stack([going.to(torch.int64), its]).tolist()
            if not running or it >= max_iter:
                return x, count
        q = matvec(p)
        alpha = torch.where(going, rz / torch.dot(p, q), 0.0)
        x.add_(alpha * p)
        r.sub_(alpha * q)
        z = r / diag
        rz_new = torch.dot(r, z)
        p = torch.where(going, z.add_(p * (rz_new / rz)), p)
        rz = torch.where(going, rz_new, rz)
        its += going
        going = going & (torch.dot(r, r) > stop)
        it += 1


def _csr_pair(P: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR matrices of the kept entries of ``P`` and of ``P^T``, from one index pass.

    ``nonzero`` is the one host synchronisation (the number of kept entries sizes the
    matrices); the transpose reuses its indices, reordered by column on the device (a
    stable sort keeps the rows ascending within each column), instead of a second pass.
    """
    n, m = P.shape
    idx = keep.nonzero()
    rows, cols = idx[:, 0], idx[:, 1]
    vals = P[rows, cols]
    crow = torch.zeros(n + 1, dtype=torch.int64, device=P.device)
    torch.cumsum(keep.sum(1), 0, out=crow[1:])
    ccol = torch.zeros(m + 1, dtype=torch.int64, device=P.device)
    torch.cumsum(keep.sum(0), 0, out=ccol[1:])
    order = torch.sort(cols, stable=True).indices
    with quiet_sparse():
        Ps = torch.sparse_csr_tensor(crow, cols, vals, (n, m))
        PsT = torch.sparse_csr_tensor(ccol, rows[order], vals[order], (m, n))
    return Ps, PsT


def _dual(f, g, a, b, P, reg) -> torch.Tensor:
    """The dual objective ``F(f, g)`` (0-dim, on the device)."""
    fa = torch.where(a > 0, f * a, 0.0).sum()
    gb = torch.where(b > 0, g * b, 0.0).sum()
    return fa + gb - reg * P.sum()


def _newton(a, b, M, reg, f, g, *, max_iter, tol, sparsity, min_per_row, history, t0, stats,
            stall, offset=0):
    """Newton iterations for one problem (2-D ``M``); returns ``f, g, error, stalled``.

    ``stall`` (a :class:`~sciml.solvers.ot.sinkhorn._Stall` counting Newton steps, shared
    by the member's calls) ends the loop when the error has not dropped by 1% over its
    window of steps (the rounding floor); ``stall.stagnated`` then says so.

    ``stats`` holds this problem's counts: the loop runs while its ``newton_iterations`` is
    below ``max_iter``. ``error`` is the L1 marginal error of the plan of the returned
    ``f, g`` (after the last step, not before it). ``stalled`` is True when a step found no
    ascent (the Newton model is not yet good enough far from the solution, e.g. a
    near-permutation plan at large eta): the caller then runs more Sinkhorn iterations and
    comes back.

    Host synchronisations per Newton step: the sparsity pattern (``nonzero``), the inner
    CG's looks (see :func:`_pcg`) and one per line-search trial, which reads the trial's
    acceptance and its plan's marginal error together (the accepted trial's error is the
    next step's, and its dual value the next step's ``F0``: nothing is recomputed).
    """
    P = kernel(f, g, M, reg)
    F0 = _dual(f, g, a, b, P, reg)
    err = float(marginal_errors(P, a, b))
    tiny = max(1e-300, torch.finfo(M.dtype).tiny)  # 1e-300 is 0 in float32
    while True:
        history.append((offset + stats["sinkhorn_iterations"] + stats["newton_iterations"],
                        time.perf_counter() - t0, err))
        if not math.isfinite(err) or err <= tol or stats["newton_iterations"] >= max_iter:
            break
        if stall.stuck(stats["newton_iterations"], err):
            break
        r, c = P.sum(1), P.sum(0)
        ga, gb = a - r, b - c
        live_r, live_c = r > 0, c > 0
        rs = torch.where(live_r, r, 1.0)
        cs = torch.where(live_c, c, 1.0)
        keep = P >= (sparsity * r)[:, None]
        if min_per_row:
            # near-permutation plans put almost all of a row on one entry: the next largest
            # entries, however small, are what keeps the Schur complement invertible
            top = torch.topk(P, min(min_per_row, P.shape[1]), dim=1).indices
            keep.scatter_(1, top, True)
        Ps, PsT = _csr_pair(P, keep)
        stats["nnz_per_row"].append(Ps.values().shape[0] / M.shape[0])
        del keep

        def schur(x, Ps=Ps, PsT=PsT, rs=rs, cs=cs):
            return cs * x - torch.mv(PsT, torch.mv(Ps, x) / rs)

        rhs = reg * gb - torch.mv(PsT, reg * ga / rs)
        # drop the (1, -1) direction: the mean over the live columns, without a boolean
        # index (which would wait for the device to size its result)
        mean = torch.where(live_c, rhs, 0.0).sum() / live_c.sum()
        rhs = torch.where(live_c, rhs - mean, 0.0)
        sq = torch.sparse_csr_tensor(PsT.crow_indices(), PsT.col_indices(),
                                     PsT.values() ** 2, PsT.shape)
        diag = (cs - torch.mv(sq, 1.0 / rs)).clamp_min(tiny)
        rtol = min(0.1, 0.1 * math.sqrt(err))
        dg, its = _pcg(schur, rhs, diag, rtol, max_iter=max(50, 2 * M.shape[1]))
        stats["cg_iterations"] += its
        df = (reg * ga - torch.mv(Ps, dg)) / rs
        df = torch.where(live_r, df, 0.0)
        dg = torch.where(live_c, dg, 0.0)
        # Armijo backtracking on the concave dual; near the solution the increase of F is
        # below its rounding, so a step that halves the marginal error is accepted too.
        # The tests run on the device in float64 (as the host's Python floats did), and
        # each trial is read back once, with its plan's marginal error
        slope = (torch.dot(ga, df) + torch.dot(gb, dg)).double()
        F0d = F0.double()
        t = 1.0
        while True:
            fn, gn = f + t * df, g + t * dg
            Pn = kernel(fn, gn, M, reg)
            Fn = _dual(fn, gn, a, b, Pn, reg)
            en = ((Pn.sum(1) - a).abs().sum() + (Pn.sum(0) - b).abs().sum()).double()
            Fnd = Fn.double()
            accept = (torch.isfinite(Fnd) & (Fnd >= F0d + 1e-4 * t * slope)) | (
                en <= 0.5 * err)
            err_n = marginal_errors(Pn, a, b)
            ok, err_n = torch.stack([accept.to(torch.float64), err_n]).tolist()
            if ok:
                break
            t *= 0.5
            if t < 1e-6:
                Pn = None
                break
        stats["newton_iterations"] += 1
        if Pn is None:
            return f, g, err, True
        f, g, P, F0, err = fn, gn, Pn, Fn, err_n
        stats["line_search_steps"].append(t)
    return f, g, err, False


@frozen_settings()
@dataclass(frozen=True)
class SNS:
    """Settings of Sinkhorn-Newton-Sparse (see :func:`sns`; ``tol=None``: by dtype, see
    :func:`sciml.solvers.default_tol`)."""

    warm_start_iters: int = 20
    max_iter: int = 100
    tol: float | None = None
    sparsity: float = 1e-5
    min_per_row: int = 4
    max_sinkhorn_iter: int = 50000

    def __post_init__(self) -> None:
        _check_settings(self.max_iter, self.tol, 1)
        if isinstance(self.warm_start_iters, bool) or not isinstance(
                self.warm_start_iters, int) or self.warm_start_iters < 1:
            raise ValueError(
                f"warm_start_iters must be a positive int, got {self.warm_start_iters!r}")
        w = self.max_sinkhorn_iter
        if isinstance(w, bool) or not isinstance(w, int) or w < self.warm_start_iters:
            raise ValueError(
                f"max_sinkhorn_iter must be an int >= warm_start_iters "
                f"({self.warm_start_iters}), got {w!r}")
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {s!r} (1e-5 is the default)")
        k = self.min_per_row
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"min_per_row must be an int >= 0, got {k!r}")

    def __call__(self, a, b, M, reg, *, throw: bool = False) -> OTResult:
        a, b, M, reg = check_problem(a, b, M, reg)
        tol = resolve_tol(self.tol, "ot", a.dtype)
        t0 = time.perf_counter()
        history: list = []
        stats: dict = {"nnz_per_row": [], "line_search_steps": [], "tol": tol}
        counts = ("sinkhorn_iterations", "newton_iterations", "cg_iterations")
        member: dict = {k: [] for k in counts}
        batch = a.shape[:-1]
        n, m = M.shape[-2:]
        a2, b2, M2 = a.detach().reshape(-1, n), b.detach().reshape(-1, m), \
            M.detach().reshape(-1, n, m)
        fs, gs, stuck = [], [], []
        done = 0  # iterations of the members before this one (the history's x axis)
        with torch.no_grad():
            for k in range(a2.shape[0]):
                # each member has budgets of its own: max_iter Newton steps and
                # max_sinkhorn_iter Sinkhorn iterations, however many the others needed
                ms = {"sinkhorn_iterations": 0, "newton_iterations": 0, "cg_iterations": 0,
                      "nnz_per_row": stats["nnz_per_row"],
                      "line_search_steps": stats["line_search_steps"]}
                stall = _Stall(_NEWTON_WINDOW, a2[k])
                f, g, it, err, swept = sinkhorn_potentials(
                    a2[k], b2[k], M2[k], reg, max_iter=self.warm_start_iters, tol=tol,
                    check_every=min(self.warm_start_iters, _CHECK), history=history, t0=t0,
                    offset=done)
                ms["sinkhorn_iterations"] += it
                extra = self.warm_start_iters
                while err > tol and ms["newton_iterations"] < self.max_iter:
                    f, g, err, stalled = _newton(
                        a2[k], b2[k], M2[k], reg, f, g, max_iter=self.max_iter, tol=tol,
                        sparsity=self.sparsity, min_per_row=self.min_per_row,
                        history=history, t0=t0, stats=ms, stall=stall, offset=done)
                    left = self.max_sinkhorn_iter - ms["sinkhorn_iterations"]
                    if not stalled or left <= 0 or stall.stagnated:
                        break
                    # far from the solution: more Sinkhorn sweeps, then Newton again
                    f, g, it, err, swept = sinkhorn_potentials(
                        a2[k], b2[k], M2[k], reg, max_iter=min(extra, left), tol=tol,
                        check_every=min(extra, _CHECK), history=history, t0=t0, f=f, g=g,
                        offset=done + ms["sinkhorn_iterations"] + ms["newton_iterations"])
                    ms["sinkhorn_iterations"] += it
                    extra = min(2 * extra, 2000)
                    if swept:
                        break
                fs.append(f)
                gs.append(g)
                stuck.append(stall.stagnated or swept)
                for key in counts:
                    member[key].append(ms[key])
                done += ms["sinkhorn_iterations"] + ms["newton_iterations"]
        f = torch.stack(fs).reshape(*batch, n)
        g = torch.stack(gs).reshape(*batch, m)
        for key in counts:
            stats[key] = sum(member[key])
            stats[f"member_{key}"] = member[key]
        stats["iterations"] = stats["sinkhorn_iterations"] + stats["newton_iterations"]
        stats["history"] = history
        stats["seconds"] = time.perf_counter() - t0
        return finish(a, b, M, reg, f, g, tol, stats, throw, stagnated=stuck)


def sns(
    a: torch.Tensor,
    b: torch.Tensor,
    M: torch.Tensor,
    reg: float,
    *,
    warm_start_iters: int = 20,
    max_iter: int = 100,
    tol: float | None = None,
    sparsity: float = 1e-5,
    min_per_row: int = 4,
    max_sinkhorn_iter: int = 50000,
    throw: bool = False,
) -> OTResult:
    """Entropic OT by Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024).

    Same problem and result as :func:`sinkhorn` (the same plan to the tolerance), in a few
    Newton steps where Sinkhorn needs thousands at small ``reg``. The signature follows
    POT's ``ot.sinkhorn(a, b, M, reg, ...)`` with its names mapped as for :func:`sinkhorn`:
    ``numItermax`` -> ``max_iter`` (here the Newton steps; the Sinkhorn iterations have
    their own limit, ``max_sinkhorn_iter``) and ``stopThr`` -> ``tol``. Batched problems are
    solved one after another (each Newton step is a sparse solve of its own), each with its
    own budget: a member stops when its own plan reaches ``tol``, after its own ``max_iter``
    Newton steps, or when a Newton step finds no ascent and its own ``max_sinkhorn_iter``
    Sinkhorn iterations are spent, whatever the other members needed.

    Args:
        a, b, M, reg: as in :func:`sinkhorn`.
        warm_start_iters: Sinkhorn iterations before Newton.
        max_iter: Newton iteration limit of each batch member.
        tol: L1 marginal error ``||P1 - a||_1 + ||P^T 1 - b||_1`` to stop at (each member's).
            None: by dtype, see :func:`sciml.solvers.default_tol` (1e-9 in float64, 1e-5 in
            float32); ``stats["tol"]`` is the value used.
        sparsity: keep ``P_ij >= sparsity * (P 1)_i`` in the Hessian (0 keeps all: exact
            Newton).
        min_per_row: and at least this many of the largest entries of each row (what
            keeps near-permutation plans at large ``1/reg`` solvable).
        max_sinkhorn_iter: Sinkhorn iteration limit of each batch member: the warm start
            and the sweeps run where a Newton step finds no ascent (at a tiny ``reg`` that
            can be every step), which double from ``warm_start_iters`` up to 2000 a time.
        throw: raise :class:`OTError` on failure instead of returning the status.

    Returns:
        :class:`OTResult`; ``stats`` splits the iterations by stage and counts CG steps:
        ``sinkhorn_iterations``, ``newton_iterations`` and ``cg_iterations`` are totals
        over the batch, ``member_sinkhorn_iterations``, ``member_newton_iterations`` and
        ``member_cg_iterations`` list each member's (row-major batch order), next to its
        ``member_status`` and ``member_marginal_error``; ``tol`` is the tolerance used.

    Raises:
        TypeError, ValueError: bad input (named in the message), e.g. a negative, NaN or
            non-numeric ``tol``.
        OTError: with ``throw=True``, when the solve does not converge.
    """
    return SNS(warm_start_iters=warm_start_iters, max_iter=max_iter, tol=tol,
               sparsity=sparsity, min_per_row=min_per_row,
               max_sinkhorn_iter=max_sinkhorn_iter)(a, b, M, reg, throw=throw)
