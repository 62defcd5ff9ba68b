"""The loop shared by CG and flexible CG: batching, freezing, checks, statistics.

A method supplies the search direction; this module does the rest. Every system of a
batch carries its own state: after each iteration a system whose recursive residual
meets ``||r|| <= max(rtol ||b||, atol)`` is frozen on the device (its step length is
masked to zero, so ``x`` is never touched again), with no host synchronisation. Every
``check_every`` iterations (every iteration on CPU) the host looks: newly converged
systems are confirmed on the true residual ``b - A x`` (one product on those systems
only; a system that fails the check resumes from its true residual, as in residual
replacement, van der Vorst & Ye 2000), and finished systems leave the working set, so
later products run on the unfinished systems only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import scipy.sparse
import torch

from ..._validation import as_tensor, check_finite
from ._common import LinearStatus, Solution, raise_if_failed
from .operators import CallableOperator, LinearOperator, aslinearoperator, is_operator

# per-system codes kept on the device; the order is the precedence of the overall status
_RUNNING, _CONVERGED, _MAX_ITER, _STALLED, _INDEFINITE, _BREAKDOWN = 0, 1, 2, 3, 4, 5
_STATUS = {_CONVERGED: LinearStatus.CONVERGED, _MAX_ITER: LinearStatus.MAX_ITER,
           _STALLED: LinearStatus.STALLED, _INDEFINITE: LinearStatus.INDEFINITE,
           _BREAKDOWN: LinearStatus.BREAKDOWN}
# stagnation: a system whose recursive residual met the tolerance but whose true residual
# did not, and whose true residuals at such failed checks have not dropped below
# _STAGNATION_FACTOR times their best for _STAGNATION_WINDOW iterations, stops as STALLED
_STAGNATION_FACTOR = 0.99
_STAGNATION_WINDOW = 200


class Method(Protocol):
    """A Krylov method as seen by :func:`run`: it turns ``z = M r`` into a direction."""

    def direction(self, r: torch.Tensor, z: torch.Tensor, fresh: torch.Tensor,
                  active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor]:
        """Return ``p``, ``A p``, the step numerator (``alpha = num / p^T A p``) and a
        per-system flag raised when the method detects a non-SPD preconditioner."""
        ...

    def accept(self, p: torch.Tensor, Ap: torch.Tensor, den: torch.Tensor,
               ok: torch.Tensor) -> None:
        """Record the step just taken (``ok`` marks the systems that took it)."""
        ...

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the rows ``keep`` of the method's state (the working set shrinks)."""
        ...


class Counter:
    """Applies ``A`` and ``M`` to the working set, counting calls and checking outputs."""

    def __init__(self, A: LinearOperator, M: LinearOperator | None) -> None:
        self.A, self.M = A, M
        self.matvecs = 0
        self.psolves = 0

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        y = self.A.matvec(x)
        if self.matvecs == 0:
            _check_output("A.matvec", x, y)
        self.matvecs += 1
        return y

    def psolve(self, r: torch.Tensor) -> torch.Tensor:
        if self.M is None:
            return r
        z = self.M.matvec(r)
        if self.psolves == 0:
            _check_output("M.matvec", r, z)
        self.psolves += 1
        return z


def _check_output(name: str, x: torch.Tensor, y: object) -> None:
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != x.dtype:
        got = (f"shape {tuple(y.shape)} and dtype {y.dtype}" if isinstance(y, torch.Tensor)
               else type(y).__name__)
        raise TypeError(f"{name} returned {got} for an input of shape {tuple(x.shape)} and "
                        f"dtype {x.dtype}; it must return a tensor of the input's shape and "
                        "dtype (batched over leading dimensions)")


def as_operator(name: str, A: object, n: int, b: torch.Tensor, *,
                strict: bool) -> LinearOperator:
    """Adapt ``A`` (or ``M``) to an operator for right-hand sides like ``b``.

    Tensors must match ``b``'s dtype and device (no silent casts); scipy and numpy
    matrices are built in ``b``'s dtype on its device; a bare callable is taken to be
    ``(n, n)``. ``strict=False`` (preconditioners) skips the dtype and device checks:
    a preconditioner may work internally in another precision or on the host, and its
    output is checked at the first application instead.
    """
    if isinstance(A, torch.Tensor):
        if A.dtype != b.dtype and strict:
            raise TypeError(f"{name} has dtype {A.dtype} but b has {b.dtype}: convert one "
                            f"(e.g. b.to({A.dtype}) or {name}.to({b.dtype}))")
        if A.device != b.device:
            raise ValueError(f"{name} is on {A.device} but b is on {b.device}: move one "
                             f"(e.g. {name}.to(b.device))")
        op = aslinearoperator(A, dtype=b.dtype)
    elif scipy.sparse.issparse(A) or isinstance(A, np.ndarray):
        op = aslinearoperator(A, dtype=b.dtype, device=b.device)
    elif is_operator(A):
        op = A  # type: ignore[assignment]
        if strict and op.dtype != b.dtype:
            raise TypeError(f"{name} has dtype {op.dtype} but b has {b.dtype}: build the "
                            "operator in b's dtype or convert b")
        if strict and torch.device(op.device) != b.device:
            raise ValueError(f"{name} is on {op.device} but b is on {b.device}: build the "
                             "operator on b's device or move b")
    elif callable(A):
        op = CallableOperator(A, (n, n), b.dtype, b.device)
    else:
        raise TypeError(f"{name} must be a tensor, a scipy sparse matrix, a LinearOperator or "
                        f"a callable, got {type(A).__name__}")
    if tuple(op.shape) != (n, n):
        raise ValueError(f"b has shape {tuple(b.shape)} but {name} is {tuple(op.shape)}: "
                         f"{name} must be ({n}, {n}) for right-hand sides with {n} entries")
    return op


def check_rhs(b: object) -> int:
    """Validate the right-hand sides ``b`` of shape ``(..., n)``; return ``n``."""
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"b must be a torch.Tensor, got {type(b).__name__}; convert it with "
                        "torch.as_tensor(b, dtype=torch.float64)")
    if b.ndim < 1:
        raise ValueError(f"b must have shape (..., n), got a scalar of shape {tuple(b.shape)}")
    if b.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"b has dtype {b.dtype}; the linear solvers take float32 or float64: "
                        "use b.double() or b.float()")
    n = b.shape[-1]
    if n == 0:
        raise ValueError(f"b has shape {tuple(b.shape)}: the system needs n >= 1 unknowns")
    return n


def prepare(
    A: object, b: object, x0: object, M: object
) -> tuple[LinearOperator, LinearOperator | None, torch.Tensor, torch.Tensor | None]:
    """Validate a system; return ``A, M`` as operators and ``b, x0`` as ``(batch, n)``.

    A numpy ``b`` (or ``x0``) is converted at this boundary: to ``A``'s dtype and device
    when ``A`` is a floating tensor, else float32 stays float32 and anything else becomes
    float64, on the CPU; ``x0`` then follows ``b``.
    """
    if isinstance(b, np.ndarray):
        if b.dtype.kind not in "biuf":
            raise TypeError(f"b is a numpy array of dtype {b.dtype}; the linear solvers take "
                            "real numbers: pass a float32 or float64 array")
        ref = A if isinstance(A, torch.Tensor) and A.dtype in (torch.float32,
                                                              torch.float64) else None
        b = as_tensor(b, like=ref)
    if isinstance(x0, np.ndarray) and isinstance(b, torch.Tensor):
        x0 = as_tensor(x0, like=b)
    n = check_rhs(b)
    op = as_operator("A", A, n, b, strict=True)
    if M is not None and hasattr(M, "matvec") and not hasattr(M, "shape"):
        M = M.matvec  # a shape-free preconditioner (e.g. learned): take the system's shape
    mop = None if M is None else as_operator("M", M, n, b, strict=False)
    check_finite("b", b)
    b2 = b.detach().reshape(-1, n)
    x = None
    if x0 is not None:
        if not isinstance(x0, torch.Tensor):
            raise TypeError(f"x0 must be a torch.Tensor or None, got {type(x0).__name__}")
        if x0.dtype != b.dtype or x0.device != b.device:
            raise TypeError(f"x0 has dtype {x0.dtype} on {x0.device} but b has {b.dtype} on "
                            f"{b.device}: convert x0 with x0.to(b)")
        try:
            x = x0.detach().expand(b.shape).reshape(-1, n).clone()
        except RuntimeError:
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but b has shape "
                             f"{tuple(b.shape)}: give x0 the shape of b (or (n,))") from None
        check_finite("x0", x)
    return op, mop, b2, x


def _range_scale(m: torch.Tensor) -> torch.Tensor:
    """Per system, 1 for a moderate largest entry ``m``, else the power of two nearest it
    (0 and non-finite ``m`` keep 1)."""
    _, e = torch.frexp(m)
    wild = torch.isfinite(m) & (m > 0) & ((e < -20) | (e > 20))
    return torch.where(wild, torch.ldexp(torch.ones_like(m), e - 1), torch.ones_like(m))


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """``||v||`` per row without underflow or overflow of the squares (scaled by the
    largest entry): the norms that confirm convergence and that ``stats`` reports. A
    plain float32 norm of a residual below ~1e-19 reads 0 and would confirm anything."""
    m = v.abs().amax(-1, keepdim=True)
    return m[..., 0] * (v / torch.where(m > 0, m, 1.0)).norm(dim=-1)


def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(-1)`` for ``(B, n)`` rows without the temporary: a BLAS dot per row
    for a few rows (several times faster than a batched reduction on the CPU)."""
    if a.shape[0] <= 8:
        return torch.stack([torch.dot(u, v) for u, v in zip(a, b)]) if a.shape[0] else \
            a.new_zeros(0)
    return torch.einsum("ij,ij->i", a, b)


def _index(t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, i)


def run(
    method: Method,
    ops: Counter,
    b: torch.Tensor,
    x0: torch.Tensor | None,
    *,
    batch_shape: tuple[int, ...],
    rtol: float,
    atol: float,
    max_iter: int | None,
    check_every: int | None,
    callback: Callable[[torch.Tensor], Any] | None,
    throw: bool,
) -> Solution:
    """Run ``method`` on the ``(B, n)`` systems ``A x = b``; return the :class:`Solution`."""
    t0 = time.perf_counter()
    B, n = b.shape
    dev = b.device
    max_iter = 10 * n if max_iter is None else max_iter
    check_every = (1 if dev.type == "cpu" else 8) if check_every is None else check_every
    if x0 is None:
        x, r = torch.zeros_like(b), b.clone()
    else:
        # b = 0 has the exact solution x = 0 whatever x0 is (as in scipy); starting from
        # x0 instead would chase a zero tolerance max(rtol * 0, atol) until max_iter
        x = torch.where((b == 0).all(-1, keepdim=True), 0.0, x0)
        r = b - ops.matvec(x)
    # Systems of extreme magnitude are solved as A (x / s) = b / s with s a power of two
    # (exact): squares of entries below ~1e-19 (float32) underflow, so a norm of such a
    # residual reads 0 and a wrong x would pass as converged; above ~1e154 (float64) they
    # overflow. Moderate systems (s = 1) are untouched, bit for bit.
    scale = _range_scale(torch.maximum(b.abs().amax(-1), r.abs().amax(-1)))
    if bool((scale != 1).any()):
        b, x, r = b / scale[:, None], x / scale[:, None], r / scale[:, None]
    tol = torch.clamp_min(rtol * _safe_norm(b), atol / scale)
    rn = _safe_norm(r)
    # the true residual norm of each returned x: set where a system is confirmed
    # converged (the very value that confirmed it), the rest computed at the end
    true_out = torch.full_like(rn, math.nan)
    true_out = torch.where(rn <= tol, rn, true_out)  # r is b - A x exactly at the start
    # full-batch outputs; the working set (rows idx of the batch) shrinks at checks
    x_out = x.clone()
    iters_out = torch.zeros(B, dtype=torch.int64, device=dev)
    code_out = torch.zeros(B, dtype=torch.int8, device=dev)
    rn_full = rn.clone()
    history = [rn_full.clone()]
    idx = torch.arange(B, device=dev)
    finite = torch.isfinite(rn)
    active = finite & (rn > tol)
    code = torch.where(finite, torch.where(active, _RUNNING, _CONVERGED), _BREAKDOWN).to(
        torch.int8)
    iters = torch.zeros(B, dtype=torch.int64, device=dev)
    fresh = torch.ones(B, dtype=torch.bool, device=dev)
    bw, tolw = b, tol
    # the smallest true residual of each system at a failed confirmation (inf: none yet).
    # In float32 the recursive residual keeps falling below the rounding floor of the true
    # one, so "converge recursively, fail the true check, restart" would repeat until
    # max_iter; a failed check that does not beat the best earlier one by 1%, 200 or more
    # iterations after that best, ends it (STALLED). Normal convergence never fails a
    # check twice, and the test runs at the checks only (several restarts may still get a
    # float32 system just below rtol, so a stretch of iterations is given, not a count).
    tbest = torch.full_like(rn, math.inf)
    tsince = torch.zeros(B, dtype=torch.int64, device=dev)

    def check(k: int) -> bool:
        """Host-side look: confirm convergence, drop finished systems; False when done."""
        nonlocal x, r, rn, code, active, fresh, iters, idx, bw, tolw, tbest, tsince
        cand = torch.nonzero(code == _CONVERGED).flatten()
        if k > 0 and cand.numel():
            rt = _index(bw, cand) - ops.matvec(_index(x, cand))
            rtn = _safe_norm(rt)
            bad = ~(rtn <= _index(tolw, cand))
            true_out.index_copy_(0, idx[cand], torch.where(bad, math.nan, rtn))
            if bool(bad.any()):
                redo = cand[bad]
                r = r.index_copy(0, redo, rt[bad])
                rn = rn.index_copy(0, redo, rtn[bad])
                rb, tb = rtn[bad], tbest[redo]
                gain = rb < _STAGNATION_FACTOR * tb
                since = torch.where(gain, iters[redo], tsince[redo])
                stuck = ~gain & (iters[redo] - since >= _STAGNATION_WINDOW)
                again = torch.where(torch.isfinite(rb), torch.where(
                    stuck, _STALLED, _RUNNING), _BREAKDOWN).to(torch.int8)
                tbest = tbest.index_copy(0, redo, torch.where(gain, rb, tb))
                tsince = tsince.index_copy(0, redo, since)
                code = code.index_copy(0, redo, again)
                active = code == _RUNNING
                fresh = fresh.index_fill(0, redo, True)
        if bool(active.all()):
            return True
        done = torch.nonzero(~active).flatten()
        rows = idx[done]
        x_out.index_copy_(0, rows, _index(x, done))
        iters_out.index_copy_(0, rows, _index(iters, done))
        code_out.index_copy_(0, rows, _index(code, done))
        keep = torch.nonzero(active).flatten()
        if keep.numel() == 0:
            idx = keep
            return False
        idx, x, r, rn, bw, tolw = (_index(t, keep) for t in (idx, x, r, rn, bw, tolw))
        tbest, tsince = _index(tbest, keep), _index(tsince, keep)
        code, active, fresh, iters = (_index(t, keep) for t in (code, active, fresh, iters))
        method.select(keep)
        return True

    going = check(0)
    k = 0
    while going and k < max_iter:
        k += 1
        z = ops.psolve(r)
        p, Ap, num, bad_m = method.direction(r, z, fresh, active)
        den = rowdot(p, Ap)
        alpha = num / den
        good = torch.isfinite(alpha) & torch.isfinite(den) & torch.isfinite(num)
        broke = active & ~good
        indef = active & good & ((den <= 0) | bad_m)
        ok = active & ~broke & ~indef
        alpha = torch.where(ok, alpha, 0.0)
        a = alpha[:, None]
        if dev.type == "cpu" and bool(ok.all()):  # every system steps: one pass each
            x = torch.addcmul(x, a, p)
            r = torch.addcmul(r, a, Ap, value=-1)
        else:  # frozen systems keep their x and r (no host sync on a device)
            step = ok[:, None]
            x = torch.where(step, torch.addcmul(x, a, p), x)
            r = torch.where(step, torch.addcmul(r, a, Ap, value=-1), r)
        method.accept(p, Ap, den, ok)
        iters = iters + ok
        rn = torch.where(ok, r.norm(dim=-1), rn)
        broke = broke | (ok & ~torch.isfinite(rn))
        conv = ok & (rn <= tolw)
        code = torch.where(broke, _BREAKDOWN, torch.where(
            indef, _INDEFINITE, torch.where(conv, _CONVERGED, code))).to(torch.int8)
        active = code == _RUNNING
        fresh = fresh & ~ok
        rn_full.index_copy_(0, idx, rn)
        history.append(rn_full.clone())
        if callback is not None:
            callback((x_out.index_copy(0, idx, x) * scale[:, None]).reshape(*batch_shape, n))
        if k % check_every == 0 or k == max_iter:
            going = check(k)
    if idx.numel():  # the systems still running hit max_iter
        code = torch.where(code == _RUNNING, _MAX_ITER, code).to(torch.int8)
        x_out.index_copy_(0, idx, x)
        iters_out.index_copy_(0, idx, iters)
        code_out.index_copy_(0, idx, code)
    rest = torch.nonzero(torch.isnan(true_out)).flatten()
    if rest.numel():
        true_out.index_copy_(0, rest, _safe_norm(_index(b, rest)
                                                 - ops.matvec(_index(x_out, rest))))
    residual = true_out * scale
    x_out = x_out * scale[:, None]
    tol = tol * scale
    worst = int(code_out.max())
    status = _STATUS[max(worst, _CONVERGED)]
    n_iter = int(iters_out.max())
    hist = (torch.stack(history[: n_iter + 1]) * scale).reshape(-1, *batch_shape)
    stats: dict[str, Any] = {
        "iterations": n_iter,
        "iterations_per_system": iters_out.reshape(batch_shape),
        "converged": (code_out == _CONVERGED).reshape(batch_shape),
        "residual_norm": residual.reshape(batch_shape),
        "tolerance": tol.reshape(batch_shape),
        "rtol": rtol,
        "atol": atol,
        "history": hist,
        "matvecs": ops.matvecs,
        "preconditioner_applications": ops.psolves,
        "seconds": time.perf_counter() - t0,
    }
    if throw:
        raise_if_failed(status, stats)
    return Solution(x=x_out.reshape(*batch_shape, n), status=status, stats=stats)
