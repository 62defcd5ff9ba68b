"""Shared pieces of the OT solvers: the result type, input checks, kernels, the value."""

from __future__ import annotations

import contextlib
import enum
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..._validation import as_tensors, check_positive, check_tensor

# rows per chunk of the n x m work, so no full-size temporary beyond the plan itself
_CHUNK_ELEMENTS = 1 << 22


class OTStatus(enum.Enum):
    """How a solve ended; the value says what to do about it."""

    CONVERGED = "converged: the marginal error is at or below tol"
    MAX_ITER = (
        "stopped at max_iter (sns: or max_sinkhorn_iter) before the marginal error reached "
        "tol: raise max_iter, loosen tol (float32 plans rarely get below about 1e-6), or use "
        "sns (Newton) which needs far fewer iterations at small reg"
    )
    STALLED = (
        "stopped early at the rounding floor: the marginal error, already within 1000 eps "
        "of the total mass, had not dropped by 1% over the last max(500, 20 check_every) "
        "iterations (sns: 10 Newton steps); float32 plans rarely get below about 1e-6. The "
        "plan is as good as this dtype gets: loosen tol to the level reached "
        "(stats['marginal_error']) or use float64"
    )
    BREAKDOWN = (
        "the iteration produced non-finite values: use float64, a larger reg, or sns "
        "(which works on the log-domain potentials)"
    )


class OTError(RuntimeError):
    """Raised by ``throw=True`` when a solve does not converge."""


@dataclass
class OTResult:
    """Result of an entropic OT solve.

    Attributes:
        plan: the transport plan ``P_ij = exp((f_i + g_j - M_ij) / reg)``, ``(..., n, m)``.
        cost: the regularised objective ``<P, M> + reg sum P (log P - 1)`` at the solution,
            ``(...)``; differentiable in ``a``, ``b`` and ``M`` by the envelope theorem
            (gradients ``f``, ``g``, ``P``), with no unrolled graph.
            Away from convergence it is the dual value, which differs from the primal
            objective of ``plan`` by at most ``(max|f| + max|g|)`` times the marginal error.
        f, g: dual potentials ``(..., n)`` and ``(..., m)``.
        status: an :class:`OTStatus` for the whole batch: ``CONVERGED`` when every member
            is, ``BREAKDOWN`` when any member's plan is non-finite, else ``STALLED`` when
            any member stopped for lack of progress, else ``MAX_ITER``.
        stats: ``iterations``, ``sinkhorn_iterations``, ``newton_iterations``,
            ``cg_iterations`` (totals over the batch), ``marginal_error`` (the L1 error
            ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of the returned ``plan``, summed in float64,
            the largest over the batch: the number ``status`` is decided on),
            ``member_marginal_error`` (that error per member, a float64 tensor of the batch
            shape), ``member_status`` (each member's :class:`OTStatus`, a list in row-major
            batch order), ``transport_cost`` (``<P, M>`` of ``plan``, summed in float64),
            ``history`` (``(iteration, seconds, marginal_error)`` at each check, the
            solver's running estimate), ``tol`` (the tolerance used: the one passed, or
            the default for the inputs' dtype from :func:`sciml.solvers.default_tol`).
    """

    plan: torch.Tensor
    cost: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    status: OTStatus
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is OTStatus.CONVERGED


def check_problem(a: object, b: object, M: object, reg: object):
    """Validate ``(a, b, M, reg)``; return tensors broadcast to a common batch shape.

    numpy arrays (and Python numbers) are converted here: to the dtype and device of the
    first tensor among ``a, b, M`` when there is one, else float32 arrays stay float32 and
    the rest become float64, on the CPU. Errors name the first bad argument.
    """
    a, b, M = as_tensors(a, b, M)
    a = check_tensor("a", a, min_ndim=1, real=True, fft_dtype=True)
    b = check_tensor("b", b, min_ndim=1, real=True, fft_dtype=True)
    M = check_tensor("M", M, min_ndim=2, real=True, fft_dtype=True)
    check_positive("reg", reg, fix="the entropic regularisation is a positive number such as "
                   "0.05 times the typical cost")
    n, m = M.shape[-2:]
    if a.shape[-1] != n or b.shape[-1] != m:
        raise ValueError(
            f"a has {a.shape[-1]} entries and b {b.shape[-1]}, but M is {n} x {m}: a must "
            "match the rows of M and b its columns"
        )
    if not (a.dtype == b.dtype == M.dtype):
        raise TypeError(f"a, b and M must share a dtype, got {a.dtype}, {b.dtype}, {M.dtype}")
    if not (a.device == b.device == M.device):
        raise ValueError(f"a, b and M must be on one device, got {a.device}, {b.device}, "
                         f"{M.device}")
    for name, x in (("a", a), ("b", b), ("M", M)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains non-finite values; OT needs finite data")
    for name, x in (("a", a), ("b", b)):
        if bool((x < 0).any()):
            raise ValueError(f"{name} has negative masses (min {x.min().item():.3g}); masses "
                             "must be >= 0")
        if bool((x.sum(-1) <= 0).any()):
            raise ValueError(f"{name} has zero total mass; give each marginal positive mass")
    sa, sb = a.sum(-1), b.sum(-1)
    tol = 1e-10 if a.dtype == torch.float64 else 1e-5
    if bool(((sa - sb).abs() > tol * torch.maximum(sa, sb)).any()):
        raise ValueError(
            f"a and b have different totals ({sa.flatten()[0].item():.12g} vs "
            f"{sb.flatten()[0].item():.12g}); balanced OT needs equal masses: normalise both"
        )
    batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], M.shape[:-2])
    if 0 in batch:
        raise ValueError(f"the batch shape {tuple(batch)} is empty: give at least one problem")
    _check_scale(M, reg)
    a = a.expand(*batch, n)
    b = b.expand(*batch, m)
    M = M.expand(*batch, n, m)
    return a, b, M, float(reg)


def _check_scale(M: torch.Tensor, reg: float) -> None:
    """Refuse costs too large for ``reg`` in ``M``'s dtype (no plan could be computed).

    The potentials follow the costs the plan cannot avoid, its row and column minima, so the
    exponents ``(f_i + g_j - M_ij) / reg`` are differences of numbers of that size: rounded
    in the dtype, each carries an error of about ``eps * size / reg``. Beyond 1 the plan is
    wrong by factors of ``e`` and more (or overflows: ``M / reg`` past the dtype's range).
    Huge entries elsewhere (a forbidden pair) only give zero plan entries and are fine.
    """
    Md = M.detach()
    size = max(float(Md.amin(-1).abs().max()), float(Md.amin(-2).abs().max()))
    finfo = torch.finfo(M.dtype)
    spread = size / reg  # a Python float: inf past float64's range, no exception
    if finfo.eps * spread <= 1.0:
        return
    why = (f"M / reg overflows {M.dtype}" if spread > finfo.max
           else f"{M.dtype} rounds the exponents (f + g - M) / reg by about "
                f"{finfo.eps * spread:.2g}, so no plan can be computed")
    fixes = "raise reg, " + ("use float64, " if M.dtype == torch.float32 else "")
    raise ValueError(
        f"M is too large for reg={reg:g}: its row or column minima reach {size:.3g} "
        f"(/ reg = {spread:.3g}) and {why}; {fixes}or subtract a constant or each row's "
        "minimum from M (the plan is unchanged)"
    )


def _largest_subnormal(dtype: torch.dtype) -> float:
    tiny = torch.tensor(torch.finfo(dtype).tiny, dtype=dtype)
    return float(torch.nextafter(tiny, torch.zeros((), dtype=dtype)))


_SUBNORMAL = {dt: _largest_subnormal(dt) for dt in (torch.float32, torch.float64)}


def kernel(f: torch.Tensor, g: torch.Tensor, M: torch.Tensor, reg: float) -> torch.Tensor:
    """``exp((f_i + g_j - M_ij) / reg)``, computed in row chunks (bounded temporaries).

    Entries that underflow to subnormal numbers are set to zero (an absolute change below
    the dtype's smallest normal number): arithmetic on subnormals is tens of times slower
    on CPUs, and at a small ``reg`` most of a plan can be subnormal.
    """
    n, m = M.shape[-2:]
    out = torch.empty(M.shape, dtype=M.dtype, device=M.device)
    rows = max(1, _CHUNK_ELEMENTS // max(1, m * max(1, M[..., 0, 0].numel())))
    inv = 1.0 / reg
    sub = _SUBNORMAL[M.dtype]
    for i in range(0, n, rows):
        blk = out[..., i:i + rows, :]
        torch.sub(f[..., i:i + rows, None] + g[..., None, :], M[..., i:i + rows, :], out=blk)
        torch.threshold_(blk.mul_(inv).exp_(), sub, 0.0)
    return out


def lse_sweep(
    a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, reg: float, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One log-domain Sinkhorn sweep: exact row then column marginals (chunked)."""
    n, m = M.shape[-2:]
    loga = torch.where(a > 0, a.log(), -math.inf)
    logb = torch.where(b > 0, b.log(), -math.inf)
    rows = max(1, _CHUNK_ELEMENTS // max(1, m * max(1, M[..., 0, 0].numel())))
    f = torch.empty_like(a)
    for i in range(0, n, rows):
        f[..., i:i + rows] = reg * loga[..., i:i + rows] - reg * torch.logsumexp(
            (g[..., None, :] - M[..., i:i + rows, :]) / reg, dim=-1)
    # the column sweep as a running log-sum-exp over row chunks
    acc = None
    for i in range(0, n, rows):
        part = torch.logsumexp((f[..., i:i + rows, None] - M[..., i:i + rows, :]) / reg, dim=-2)
        acc = part if acc is None else torch.logaddexp(acc, part)
    g = reg * logb - reg * acc
    return _finite_potential(f, a), _finite_potential(g, b)


def _finite_potential(f: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    # a zero-mass point has optimal potential -inf; keep -inf (its plan row is exactly zero)
    return torch.where(mass > 0, f, -math.inf)


def marginal_errors(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||P 1 - a||_1 + ||P^T 1 - b||_1`` per batch element, summed in float64.

    The error of ``P`` as it is (float32 entries included): a float32 sum of the same
    entries rounds by about ``1e-7`` of the mass, as much as the error itself. Chunked over
    rows, so a float32 plan is never copied whole into float64.
    """
    n, m = P.shape[-2:]
    rows = max(1, _CHUNK_ELEMENTS // max(1, m * max(1, P[..., 0, 0].numel())))
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    err = torch.zeros(P.shape[:-2], dtype=torch.float64, device=P.device)
    cols = torch.zeros(b64.shape, dtype=torch.float64, device=P.device)
    for i in range(0, n, rows):
        blk = P[..., i:i + rows, :].to(torch.float64)
        err += (blk.sum(-1) - a64[..., i:i + rows]).abs().sum(-1)
        cols += blk.sum(-2)
    return err + (cols - b64).abs().sum(-1)


def transport_costs(P: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """``<P, M>`` per batch element, summed in float64 (chunked), in ``P``'s dtype."""
    n, m = P.shape[-2:]
    rows = max(1, _CHUNK_ELEMENTS // max(1, m * max(1, P[..., 0, 0].numel())))
    out = torch.zeros(P.shape[:-2], dtype=torch.float64, device=P.device)
    for i in range(0, n, rows):
        out += (P[..., i:i + rows, :].to(torch.float64)
                * M[..., i:i + rows, :].to(torch.float64)).sum((-2, -1))
    return out.to(P.dtype)


def member_status(err: float, tol: float, stagnated: bool = False) -> OTStatus:
    """The status of one problem whose plan has L1 marginal error ``err`` (``stagnated``:
    its solver stopped for lack of progress rather than at its iteration limit)."""
    if not math.isfinite(err):
        return OTStatus.BREAKDOWN
    if err <= tol:
        return OTStatus.CONVERGED
    return OTStatus.STALLED if stagnated else OTStatus.MAX_ITER


def _safe_dot(p: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    return torch.where(mass > 0, p * mass, 0.0).sum(-1)


class _Value(torch.autograd.Function):
    """The regularised OT value with envelope-theorem gradients (no unrolled graph)."""

    @staticmethod
    def forward(ctx, a, b, M, f, g, P, reg):  # type: ignore[override]
        ctx.save_for_backward(f, g, P, a, b)
        value = _safe_dot(f, a) + _safe_dot(g, b) - reg * P.sum((-2, -1))
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        f, g, P, a, b = ctx.saved_tensors
        ga = gb = gM = None
        if ctx.needs_input_grad[0]:
            ga = grad[..., None] * torch.where(a > 0, f, 0.0)
        if ctx.needs_input_grad[1]:
            gb = grad[..., None] * torch.where(b > 0, g, 0.0)
        if ctx.needs_input_grad[2]:
            gM = grad[..., None, None] * P
        return ga, gb, gM, None, None, None, None


def finish(a, b, M, reg, f, g, tol: float, stats, throw: bool,
           stagnated: bool | list[bool] = False) -> OTResult:
    """Build the plan, judge it, build the differentiable value and the result.

    The marginal error and the status come from the returned plan itself (whatever the
    solver's running estimate said), one status per batch member; ``stagnated`` (one
    flag, or one per member in row-major order) turns a member's MAX_ITER into STALLED.
    """
    with torch.no_grad():
        P = kernel(f, g, M.detach(), reg)
        stats["transport_cost"] = transport_costs(P, M.detach())
        errs = marginal_errors(P, a.detach(), b.detach()).cpu()
    flat = errs.flatten()
    stag = [stagnated] * flat.numel() if isinstance(stagnated, bool) else list(stagnated)
    members = [member_status(float(e), tol, s) for e, s in zip(flat, stag)]
    stats["member_marginal_error"] = errs
    stats["member_status"] = members
    stats["marginal_error"] = float(errs.max())  # NaN if any member's is
    status = next((s for s in (OTStatus.BREAKDOWN, OTStatus.STALLED, OTStatus.MAX_ITER)
                   if s in members),
                  OTStatus.CONVERGED)
    cost = _Value.apply(a, b, M, f, g, P, reg)
    if throw and status is not OTStatus.CONVERGED:
        raise OTError(f"{status.name}: {status.value} (marginal error "
                      f"{stats.get('marginal_error', float('nan')):.3g})")
    return OTResult(plan=P, cost=cost, f=f, g=g, status=status, stats=stats)


@contextlib.contextmanager
def quiet_sparse() -> Iterator[None]:
    """Silence torch's 'sparse CSR is beta' warnings inside a block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        yield
