"""Entropic optimal transport by Sinkhorn's iteration, stabilised in the log domain.

.. math:: \\min_{P 1 = a,\\ P^T 1 = b} \\langle P, M\\rangle + \\varepsilon \\sum_{ij} P_{ij}
          (\\log P_{ij} - 1), \\qquad P_{ij} = e^{(f_i + g_j - M_{ij})/\\varepsilon}

(``reg`` = epsilon, POT's convention). One log-sum-exp sweep sets the potentials; then
the iteration runs as plain scalings ``u = a / K v``, ``v = b / K^T u`` of the *absorbed*
kernel ``K = exp((f + g - M) / reg)`` (two matrix-vector products per iteration, no
exponentials), and the scalings are folded back into ``f, g`` whenever they leave a safe
range (Schmitzer 2019, "Stabilized sparse scaling algorithms for entropy regularized
transport problems"). The iterates are those of log-domain Sinkhorn. Should the scalings
still over- or underflow between two checks (float32 at a small ``reg``), the iteration
goes back to the last finite state and on by log-domain sweeps, each counted against
``max_iter``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..._frozen import frozen_settings
from ..._tolerances import check_tol, resolve_tol
from ._common import OTResult, check_problem, finish, kernel, lse_sweep, marginal_errors


def _mv(K: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.matmul(K, v.unsqueeze(-1)).squeeze(-1)


def _mvt(K: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.matmul(u.unsqueeze(-2), K).squeeze(-2)


def sinkhorn_potentials(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float, *,
    max_iter: int, tol: float, check_every: int, history: list, t0: float,
    f: torch.Tensor | None = None, g: torch.Tensor | None = None, offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, int, float, bool]:
    """The stabilised loop on validated inputs; returns ``f, g, iterations, error,
    stagnated``.

    Every pass advances the iteration count, the log-domain sweeps after a non-finite check
    included, so the loop ends at ``max_iter`` at the latest. It stops early only when the
    plan ``kernel(f, g)`` of the potentials it returns has an L1 marginal error of at most
    ``tol`` (the error is then that plan's); otherwise ``error`` is the last running
    estimate. A non-finite check goes back to the last finite state and on by log-domain
    sweeps; a sweep that is itself not finite stops the loop at the state before it (error
    ``nan``). ``offset`` is added to the iteration numbers written to ``history``. It
    also stops (``stagnated`` True) when the error at the checks has not dropped below
    0.99 times its best for :func:`stagnation_window` iterations (the rounding floor).
    """
    # the largest |log u| before the scalings are absorbed (exp range: 709 in float64)
    tau = 50.0 if M.dtype == torch.float64 else 10.0
    if f is None or g is None:
        f, g = lse_sweep(a, b, M, reg, torch.zeros_like(b))
    it, err = 1, math.inf
    K = kernel(f, g, M, reg)
    u = torch.ones_like(a)
    v = torch.ones_like(b)
    good = (f, g, math.inf)  # the last state with finite scalings
    stall = _Stall(stagnation_window(check_every), a)
    while True:
        Kv = _mv(K, v)
        if it % check_every == 0 or it >= max_iter:
            # the columns are exact after every v update (and an absorption leaves the plan
            # unchanged), so the L1 error is the row error; it needs K v, which the next u
            # update uses anyway: no extra product. Only a pass below tol is checked on the
            # plan itself (rounding, worst in float32, can leave it above tol)
            err = float((u * Kv - a).abs().sum(-1).max())
            if err <= tol:
                f, g = _absorb(f, g, u, v, reg)
                K = kernel(f, g, M, reg)
                u, v = torch.ones_like(a), torch.ones_like(b)
                Kv = K.sum(-1)
                err = float(marginal_errors(K, a, b).max())
            history.append((offset + it, time.perf_counter() - t0, err))
            if not math.isfinite(err):
                # a scaling under- or overflowed (float32 at small reg): back to the last
                # finite state, and on from there by log-domain sweeps, which cannot overflow
                f, g, err = good
                u, v = torch.ones_like(a), torch.ones_like(b)
                if it < max_iter:
                    f, g, it, err, _ = _log_domain(
                        a, b, M, reg, f, g, it, max_iter=max_iter, tol=tol,
                        check_every=check_every, history=history, t0=t0, offset=offset,
                        stall=stall)
                return f, g, it, err, stall.stagnated
            if err <= tol or it >= max_iter or stall.stuck(it, err):
                break
            good = (*_absorb(f, g, u, v, reg), err)
            lu = torch.where(u > 0, u.log().abs(), 0.0).amax()
            lv = torch.where(v > 0, v.log().abs(), 0.0).amax()
            if float(torch.maximum(lu, lv)) > tau:
                f, g = good[:2]
                K = kernel(f, g, M, reg)
                u, v = torch.ones_like(a), torch.ones_like(b)
                Kv = _mv(K, v)
        u = torch.where(a > 0, a / Kv, 0.0)
        v = torch.where(b > 0, b / _mvt(K, u), 0.0)
        it += 1
    f, g = _absorb(f, g, u, v, reg)
    return f, g, it, err, stall.stagnated


def stagnation_window(check_every: int) -> int:
    """Sinkhorn iterations without a 1% drop of the best error after which a run stops."""
    return max(500, 20 * check_every)


class _Stall:
    """Watches the error at the checks: ``stuck`` once its best is within ``1000 eps`` of the
    total mass (the region of the dtype's rounding floor) and has not dropped by 1% over
    ``window`` iterations. Far above the floor nothing is flagged: Sinkhorn at a small
    ``reg`` sits on plateaus of thousands of iterations before it converges."""

    def __init__(self, window: int, a: torch.Tensor) -> None:
        self.window, self.best, self.since, self.stagnated = window, math.inf, 0, False
        self.floor = 1e3 * torch.finfo(a.dtype).eps * float(a.sum(-1).max())

    def stuck(self, it: int, err: float) -> bool:
        if err < 0.99 * self.best:
            self.best, self.since = err, it
        elif self.best <= self.floor and it - self.since >= self.window:
            self.stagnated = True
        return self.stagnated


def _log_domain(a, b, M, reg, f, g, it, *, max_iter, tol, check_every, history, t0, offset,
                stall):
    """Log-domain Sinkhorn sweeps from iteration ``it`` on (each one counted), checking the
    plan itself every ``check_every``; stops at ``tol``, ``max_iter``, or a sweep that is not
    finite where the mass is positive (returning the state before it, error ``nan``)."""
    err = math.inf
    while it < max_iter:
        fs, gs = lse_sweep(a, b, M, reg, g)
        it += 1
        if not (bool(torch.isfinite(fs[a > 0]).all()) and bool(torch.isfinite(gs[b > 0]).all())):
            err = math.nan
            history.append((offset + it, time.perf_counter() - t0, err))
            break
        f, g = fs, gs
        if it % check_every == 0 or it >= max_iter:
            err = float(marginal_errors(kernel(f, g, M, reg), a, b).max())
            history.append((offset + it, time.perf_counter() - t0, err))
            if err <= tol or stall.stuck(it, err):
                break
    return f, g, it, err, stall.stagnated


def _absorb(f, g, u, v, reg):
    return (f + reg * torch.where(u > 0, u.log(), -math.inf),
            g + reg * torch.where(v > 0, v.log(), -math.inf))


@frozen_settings()
@dataclass(frozen=True)
class Sinkhorn:
    """Settings of the stabilised log-domain Sinkhorn solver (see :func:`sinkhorn`;
    ``tol=None``: by dtype, see :func:`sciml.solvers.default_tol`)."""

    max_iter: int = 10000
    tol: float | None = None
    check_every: int = 10

    def __post_init__(self) -> None:
        _check_settings(self.max_iter, self.tol, self.check_every)

    def __call__(self, a, b, M, reg, *, throw: bool = False) -> OTResult:
        a, b, M, reg = check_problem(a, b, M, reg)
        tol = resolve_tol(self.tol, "ot", a.dtype)
        t0 = time.perf_counter()
        history: list = []
        with torch.no_grad():
            f, g, it, _, stuck = sinkhorn_potentials(
                a.detach(), b.detach(), M.detach(), reg, max_iter=self.max_iter, tol=tol,
                check_every=self.check_every, history=history, t0=t0)
        stats = {"iterations": it, "sinkhorn_iterations": it, "newton_iterations": 0,
                 "cg_iterations": 0, "history": history, "seconds": time.perf_counter() - t0,
                 "tol": tol}
        return finish(a, b, M, reg, f, g, tol, stats, throw, stagnated=stuck)


def _check_settings(max_iter, tol, check_every) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    check_tol("tol", tol)
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be a positive int, got {check_every!r}")


def sinkhorn(
    a: torch.Tensor,
    b: torch.Tensor,
    M: torch.Tensor,
    reg: float,
    *,
    max_iter: int = 10000,
    tol: float | None = None,
    check_every: int = 10,
    throw: bool = False,
) -> OTResult:
    """Entropic OT between ``a`` and ``b`` with cost ``M`` by log-domain Sinkhorn.

    Equivalent to POT's ``ot.sinkhorn(a, b, M, reg, method="sinkhorn_log")`` (same plan),
    batched over leading dimensions, on CPU or CUDA, float32 or float64. Names: POT's
    ``numItermax`` is ``max_iter`` (the limit every sciml solver names so; default 10000
    here, 1000 in POT), ``stopThr`` is ``tol`` (but POT compares the 2-norm of the column
    marginal's error every 10 iterations; here the L1 error of both marginals of the
    returned plan, every ``check_every``), ``log=True`` is ``stats`` (always returned, with
    the potentials as ``f``, ``g``), and ``warn=True`` is ``status`` (``throw=True`` to
    raise instead).

    Args:
        a: source masses ``(..., n)``, >= 0. ``a``, ``b`` and ``M`` may be numpy arrays:
            they take the dtype and device of the first tensor among them, else float32
            arrays stay float32 and the rest become float64.
        b: target masses ``(..., m)``, >= 0, same total as ``a``.
        M: cost ``(..., n, m)``.
        reg: entropic regularisation epsilon > 0.
        max_iter: iteration limit (log-domain sweeps after an overflow included).
        tol: stop when the L1 marginal error ``||P1 - a||_1 + ||P^T 1 - b||_1`` of the plan
            is at most this for every batch member (the members iterate together). None:
            by dtype, see :func:`sciml.solvers.default_tol` (1e-9 in float64, POT's ``stopThr``;
            1e-5 in float32); ``stats["tol"]`` is the value used.
        check_every: iterations between error checks (each synchronises with the device).
        throw: raise :class:`OTError` instead of returning a non-converged status.

    Returns:
        :class:`OTResult`; ``stats["marginal_error"]`` and the status are those of the
        returned ``plan`` (in float32 it rarely gets below about ``1e-6``: a smaller
        explicit ``tol`` stops as STALLED once the error, near that floor, stops dropping by 1%
        over ``max(500, 20 check_every)`` iterations).

    Raises:
        TypeError, ValueError: bad input (named in the message), e.g. a negative, NaN or
            non-numeric ``tol``.
        OTError: with ``throw=True``, when the solve does not converge.
    """
    return Sinkhorn(max_iter=max_iter, tol=tol, check_every=check_every)(a, b, M, reg,
                                                                          throw=throw)
