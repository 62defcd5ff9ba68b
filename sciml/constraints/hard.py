"""Hard constraints as a layer: nonlinear least squares for basis coefficients.

Physics-informed hard constraints (Chalapathi, Du, Krishnapriyan, ICLR 2024): a network
outputs ``N`` basis functions on collocation points; the solution is ``u = sum_i c_i
phi_i`` with coefficients chosen so that the PDE (and initial/boundary) residuals vanish
in the least-squares sense::

    c*(theta) = argmin_c  f(c) = 1/2 |r(c; theta)|^2 + lambda/2 |c|^2

``theta`` stands for whatever the residual depends on (the basis values and their
derivatives, PDE parameters). The forward pass solves this by batched
Levenberg-Marquardt in float64; the backward pass differentiates the optimality condition
``grad_c f(c*, theta) = 0`` by the implicit function theorem::

    dc*/dtheta = -H^-1 d(grad_c f)/dtheta,    H = grad_c^2 f(c*, theta)

with the exact Hessian (not Gauss-Newton, which is exact only at zero residual), so the
gradient is that of the true solution map and no LM iteration is unrolled.
"""

from __future__ import annotations

import contextlib
import enum
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.func import jvp, vmap

from .._frozen import frozen_settings
from .._validation import (
    as_tensor,
    as_tensors,
    check_bool,
    check_finite,
    check_int,
    check_tensor,
    reference_tensor,
)

__all__ = ["HardConstraint", "HardConstraintError", "HardConstraintResult", "LMStatus",
           "levenberg_marquardt"]

Residual = Callable[..., Tensor]


class LMStatus(enum.Enum):
    """How the Levenberg-Marquardt solve ended (worst over the batch)."""

    CONVERGED = "converged: the gradient of the objective is below tol"
    MAX_ITER = ("not converged within max_iter: raise max_iter, loosen tol, or improve the "
                "starting coefficients")
    STALLED = ("stalled: no step lowered the objective (damping at its cap); the residual "
               "may be non-smooth or badly scaled")
    BREAKDOWN = ("the residual, its Jacobian or the gradient became non-finite (NaN or Inf): "
                 "check the residual function and its data for NaN/Inf, rescale the problem, "
                 "or start from other coefficients c0")


# statuses from best to worst: a batch's status is the worst of its members'
_WORST = [LMStatus.CONVERGED, LMStatus.MAX_ITER, LMStatus.STALLED, LMStatus.BREAKDOWN]


class HardConstraintError(RuntimeError):
    """Raised by ``throw=True`` when a hard-constraint solve ends with a status other than
    CONVERGED."""


def _fill_stats(stats: dict[str, Any], iterations: Tensor, grad_norm: Tensor,
                residual_norm: Tensor) -> None:
    stats.setdefault("iterations", iterations)
    stats.setdefault("grad_norm", grad_norm)
    stats.setdefault("residual_norm", residual_norm)


def _raise(status: LMStatus, member_status: Sequence[LMStatus], iterations: Tensor,
           grad_norm: Tensor, what: str) -> None:
    """The ``throw=True`` error: the status, how many members failed, the worst state."""
    bad = sum(s is not LMStatus.CONVERGED for s in member_status)
    raise HardConstraintError(
        f"{status.name}: {status.value} ({bad} of {len(member_status)} {what} did not "
        f"converge; at most {int(iterations.max())} iterations, largest gradient norm "
        f"{float(grad_norm.max()):.3g})")


@dataclass(frozen=True)
class HardConstraintResult:
    """Coefficients ``(B, N)`` (differentiable), per-sample iterations and final state.

    Attributes:
        coeffs: ``(B, N)`` float64, differentiable by the implicit function theorem.
        status: an :class:`LMStatus`, the worst over the batch (``CONVERGED`` when every
            sample is).
        iterations, grad_norm, residual_norm: per sample ``(B,)``: LM iterations, the
            final gradient inf-norm and residual 2-norm.
        stats: ``iterations``, ``grad_norm``, ``residual_norm`` (the same tensors as the
            attributes) and ``member_status`` (each sample's :class:`LMStatus`, a list in
            batch order).
    """

    coeffs: Tensor
    status: LMStatus
    iterations: Tensor
    grad_norm: Tensor
    residual_norm: Tensor
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _fill_stats(self.stats, self.iterations, self.grad_norm, self.residual_norm)

    @property
    def converged(self) -> bool:
        return self.status is LMStatus.CONVERGED


def _objective(residual: Residual, c: Tensor, data: Sequence[Tensor], ridge: float) -> Tensor:
    r = residual(c, *data)
    return 0.5 * (r**2).sum(-1) + 0.5 * ridge * (c**2).sum(-1)


def _jacobian_loop(residual: Residual, c: Tensor, data: Sequence[Tensor]
                   ) -> tuple[Tensor, Tensor]:
    """``(r (B, R), J (B, R, N))`` by N forward-mode products, one call each."""
    n = c.shape[-1]
    eye = torch.eye(n, dtype=c.dtype, device=c.device)
    cols = []
    r = None
    for i in range(n):
        # forward-mode AD (dual numbers): one residual evaluation per basis direction
        with fwAD.dual_level():
            out = residual(fwAD.make_dual(c, eye[i].expand_as(c)), *data)
            r, col = fwAD.unpack_dual(out)
        cols.append(col if col is not None else torch.zeros_like(r))
    return r, torch.stack(cols, -1)


def _jacobian_vmap(residual: Residual, c: Tensor, data: Sequence[Tensor]
                   ) -> tuple[Tensor, Tensor]:
    """The same N forward-mode products as one vectorised call (``vmap`` over them)."""
    n = c.shape[-1]
    tangents = torch.eye(n, dtype=c.dtype, device=c.device)[:, None, :].expand(n, *c.shape)

    def push(v):
        return jvp(lambda cc: residual(cc, *data), (c,), (v,))

    r, cols = vmap(push, out_dims=(None, 0), randomness="error")(tangents)
    return r, cols.movedim(0, -1)


# residuals found not to support vmap (held weakly: an id() could be reused by a new one)
_VMAP_FAILED: weakref.WeakSet = weakref.WeakSet()


def _jacobian(residual: Residual, c: Tensor, data: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """``(r (B, R), J (B, R, N))``: vectorised forward mode, or a loop where the residual
    does not support ``vmap`` (data-dependent control flow, ``.item()``)."""
    try:
        known_bad = residual in _VMAP_FAILED
    except TypeError:  # not weakly referenceable: always try vmap first
        known_bad = False
    if not known_bad:
        try:
            return _jacobian_vmap(residual, c, data)
        except RuntimeError:
            with contextlib.suppress(TypeError):
                _VMAP_FAILED.add(residual)
    return _jacobian_loop(residual, c, data)


def levenberg_marquardt(
    residual: Residual,
    c0: Tensor,
    data: Sequence[Tensor],
    *,
    ridge: float = 1e-8,
    max_iter: int = 50,
    tol: float = 1e-10,
    jacobian: Callable[..., tuple[Tensor, Tensor]] | None = None,
    throw: bool = False,
) -> HardConstraintResult:
    """Batched LM for ``min_c 1/2 |r(c)|^2 + ridge/2 |c|^2``, each sample independent.

    Step: ``(J^T J + ridge I + mu s I) d = -(J^T r + ridge c)`` with ``s`` the mean
    diagonal of ``J^T J`` (damping relative to the problem's scale); accepted when the
    objective does not rise, with Nielsen's update of ``mu`` from the gain ratio (actual
    over predicted decrease), else ``mu`` grows (x2, x4, ...) and the step is retried. Stops per
    sample when ``|J^T r + ridge c|_inf <= tol * max(1, |J|_max |r| + ridge |c|_max)``.

    ``jacobian(c, *data) -> (r, J)``, where given, replaces the forward-mode Jacobian
    (``N`` vectorised forward-mode products of ``residual``).

    Similar to ``scipy.optimize.least_squares(fun, x0, method="lm")`` per sample (with the
    ridge as extra residual rows ``sqrt(ridge) c``), batched and on the device. Names:
    scipy's ``gtol`` (a gradient test) is ``tol`` here (scaled as above, not scipy's
    scaling), and ``max_iter`` counts iterations, each one Jacobian, where scipy's
    ``max_nfev`` counts function evaluations; scipy's ``ftol``/``xtol`` tests have no
    counterpart.

    Returns:
        A :class:`HardConstraintResult`: ``coeffs`` (``c0``'s dtype, no gradient: this is
        the bare solver; :class:`HardConstraint` is the differentiable layer), ``status``
        (worst over the batch), ``iterations``, ``grad_norm``, ``residual_norm`` per
        sample, ``stats`` (the same plus ``member_status``) and ``converged``.

    Raises:
        HardConstraintError: ``throw=True`` and a status other than ``CONVERGED``.
        ValueError, TypeError: bad settings or data.
    """
    # the settings are checked as the layer checks them
    HardConstraint(residual, ridge=ridge, max_iter=max_iter, tol=tol, jacobian=jacobian)
    if isinstance(data, (list, tuple)):
        # numpy inputs follow the first tensor among c0 and data; integer data (indices)
        # stays integer for the residual to use
        ref = reference_tensor(c0, *data)
        c0 = as_tensor(c0, like=ref)
        data = as_tensors(*data, like=ref, integers=True)
    else:
        c0 = as_tensor(c0)
    c0 = check_tensor("c0", c0, ndim=2, real=True)
    if isinstance(data, torch.Tensor) or not isinstance(data, (list, tuple)):
        raise TypeError(f"data must be a list or tuple of tensors, got {type(data).__name__}")
    for i, d in enumerate(data):
        d = check_tensor(f"data[{i}]", d, min_ndim=1)
        if d.shape[0] != c0.shape[0]:
            raise ValueError(f"data[{i}] has batch size {d.shape[0]} but c0 has {c0.shape[0]}")
    throw = check_bool("throw", throw)
    c, status, iters, gnorm, members = _lm(residual, c0, data, ridge=ridge,
                                           max_iter=max_iter, tol=tol, jacobian=jacobian)
    if throw and status is not LMStatus.CONVERGED:
        _raise(status, members, iters, gnorm, "sample(s)")
    with torch.no_grad():
        rnorm = residual(c, *data).norm(dim=-1)
    return HardConstraintResult(c, status, iters, gnorm, rnorm, {"member_status": members})


# passes of the LM loop between host looks at which samples still run, on a GPU (on the
# CPU a look costs nothing: every pass); see _lm
_LM_CHECK = 4
# rejected trial steps (each with a larger damping) before an LM iteration counts as taken
_TRIES = 30


@torch.no_grad()
def _lm(residual: Residual, c0: Tensor, data: Sequence[Tensor], *, ridge: float,
        max_iter: int, tol: float, jacobian: Callable[..., tuple[Tensor, Tensor]] | None
        ) -> tuple[Tensor, LMStatus, Tensor, Tensor, list[LMStatus]]:
    """:func:`levenberg_marquardt`, also returning each sample's status (a list).

    Each sample's state (coefficients, damping, iteration and rejected-try counts, flags)
    lives on the device, and every decision about one sample is a ``torch.where``: a
    sample that has stopped is frozen. A pass evaluates the residual and Jacobian of the
    working set, the stopping test, and one trial step per running sample. A rejected
    trial is retried with a larger damping at the next pass (on the GPU; on the CPU
    within the pass, reusing the Jacobian) and an iteration counts once its step is
    accepted or ``_TRIES`` trials failed: per sample, the iterates and counts of a loop
    that retries on the spot. The host looks every ``_LM_CHECK`` passes on a GPU (one
    ``nonzero``, which also shrinks the working set to the samples still running, so the
    work follows them and not the slowest one), every pass on the CPU, and reads the
    statuses once at the end. A finished solve may run up to ``_LM_CHECK - 1`` frozen
    passes before the host sees it; they change nothing.
    """
    c = c0.clone()
    B, n = c.shape
    dev, dt = c.device, c.dtype
    inline = dev.type == "cpu"
    check = 1 if inline else _LM_CHECK
    mu = torch.full((B,), 1e-3, dtype=dt, device=dev)  # relative to mean diag
    nu = torch.full((B,), 2.0, dtype=dt, device=dev)
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    tries = torch.zeros(B, dtype=torch.long, device=dev)  # rejected trials this iteration
    eye = torch.eye(n, dtype=dt, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)  # stopping test held (any cause)
    stalled = torch.zeros_like(done)
    broke = torch.zeros_like(done)
    pending = torch.ones_like(done)  # something left to do: a test, a step or a retry
    gnorm = torch.full((B,), float("inf"), dtype=dt, device=dev)
    # the working set: rows idx of the batch (None: all of them), and their data
    idx: Tensor | None = None
    sub = list(data)
    # every sample is finished after max_iter iterations of _TRIES passes and a last test
    limit = max_iter * _TRIES + 1
    passes = 0
    while True:
        state = (c, mu, nu, iters, tries, stalled)
        if idx is not None:
            state = tuple(t.index_select(0, idx) for t in state)
        cs, mus, nus, its, trs, stl = state
        r, J = jacobian(cs, *sub) if jacobian is not None else _jacobian(residual, cs, sub)
        f = 0.5 * (r**2).sum(-1) + 0.5 * ridge * (cs**2).sum(-1)
        g = (J.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1) + ridge * cs
        gn = g.abs().amax(-1)
        # a non-finite residual or Jacobian ends that sample: its threshold (scaled by
        # |r|) would be Inf or NaN and could call anything converged
        bad = ~(torch.isfinite(f) & torch.isfinite(J).flatten(1).all(-1)
                & torch.isfinite(g).all(-1))
        scale = J.abs().amax((-1, -2)) * r.norm(dim=-1) + ridge * cs.abs().amax(-1)
        dones = (gn <= tol * torch.clamp(scale, min=1.0)) | stl | bad
        active = ~dones & (its < max_iter)
        JtJ = J.transpose(-1, -2) @ J + ridge * eye
        diag = JtJ.diagonal(dim1=-2, dim2=-1).mean(-1)
        trying = active
        for _try in range(_TRIES):
            A = JtJ + (mus * diag)[:, None, None] * eye
            # solve_ex: torch.linalg.solve would read its error flag on the host (a sync on
            # a GPU); a failed factorisation (a damped matrix singular to rounding) is a
            # rejected trial instead, retried with more damping
            d, info = torch.linalg.solve_ex(A, g.unsqueeze(-1))
            d = -d.squeeze(-1)
            cn = cs + d
            rn = residual(cn, *sub)
            fn = 0.5 * (rn**2).sum(-1) + 0.5 * ridge * (cn**2).sum(-1)
            # gain ratio: actual over predicted decrease of the local quadratic model
            pred = -(g * d).sum(-1) - 0.5 * (d * (JtJ @ d.unsqueeze(-1)).squeeze(-1)).sum(-1)
            rho = (f - fn) / pred.clamp_min(1e-300)
            ok = (fn <= f) & trying & (info == 0)
            cs = torch.where(ok[:, None], cn, cs)
            # Nielsen's damping update (Madsen, Nielsen, Tingleff 2004, sec. 3.2)
            shrink = torch.clamp(1 - (2 * rho - 1) ** 3, min=1 / 3)
            mus = torch.where(ok, (mus * shrink).clamp_min(1e-15),
                              torch.where(trying, mus * nus, mus))
            nus = torch.where(ok, torch.full_like(nus, 2.0),
                              torch.where(trying, nus * 2, nus))
            rejected = trying & ~ok
            trs = torch.where(rejected, trs + 1, trs)
            given_up = rejected & (trs >= _TRIES)
            ended = ok | given_up  # this sample's iteration is over
            its = its + ended
            stl = stl | (given_up & (mus > 1e15))
            trs = torch.where(ended, 0, trs)
            trying = rejected & ~given_up
            if not inline or not bool(trying.any()):
                break
        if idx is None:
            c, mu, nu, iters, tries, stalled = cs, mus, nus, its, trs, stl
            gnorm, broke, done, pending = gn, bad, dones, active
        else:
            for full, part in ((c, cs), (mu, mus), (nu, nus), (iters, its), (tries, trs),
                               (stalled, stl), (gnorm, gn), (broke, bad), (done, dones),
                               (pending, active)):
                full.index_copy_(0, idx, part)
        passes += 1
        if passes % check == 0 or passes >= limit:
            keep = pending.nonzero().squeeze(-1)  # the one host synchronisation
            if keep.numel() == 0 or passes >= limit:
                break
            if keep.numel() != (B if idx is None else idx.numel()):
                idx = keep
                sub = [d.index_select(0, keep) for d in data]
    # each sample's status (index in _WORST); the batch's is the worst of them
    codes = torch.where(done, 0, 1)
    codes = torch.where(stalled, 2, codes)
    codes = torch.where(broke, 3, codes)
    members = [_WORST[i] for i in codes.tolist()]
    return c, max(members, key=_WORST.index), iters, gnorm, members


@torch.no_grad()
def _check_batched(residual: Residual, c: Tensor, data: Sequence[Tensor]) -> None:
    """Refuse a residual that is not ``(B, R)`` with samples independent.

    The solve treats each sample's Jacobian block alone; a residual that mixes samples
    (a mean over the batch, ``c[0]`` used for all) would be "solved" to a wrong answer
    with a converged status. One forward-mode product with a tangent on sample 0 only
    must leave every other sample's residual untouched, exactly.
    """
    B = c.shape[0]
    r = residual(c, *data)
    if not isinstance(r, Tensor) or r.ndim != 2 or r.shape[0] != B:
        got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
        raise ValueError(f"residual(c, *data) returned {got} for c of shape {tuple(c.shape)}; "
                         f"it must return (B, R) = ({B}, R): one row of residuals per sample")
    if B == 1:
        return
    try:
        if residual in _BATCH_CHECKED:
            return
    except TypeError:  # not weakly referenceable: check every call
        pass
    tangent = torch.zeros_like(c)
    tangent[0] = 1.0
    with fwAD.dual_level():
        dr = fwAD.unpack_dual(residual(fwAD.make_dual(c, tangent), *data)).tangent
    if dr is None:  # the residual does not depend on c at all
        return
    # only finite tangents tell: 0 * Inf is NaN where the residual itself overflows (the
    # solve reports that as BREAKDOWN)
    leak = torch.where(torch.isfinite(dr[1:]), dr[1:].abs(), 0.0).amax()
    if bool(leak != 0):
        raise ValueError(
            "residual(c, *data) mixes the samples of the batch: changing c[0] changed the "
            f"residuals of other samples (by up to {float(leak):.3g}); row b must depend on "
            "c[b] and data[k][b] only (index with [..., :], not [0]; no sums or means over "
            "dim 0)")
    with contextlib.suppress(TypeError):
        _BATCH_CHECKED.add(residual)


# residuals that passed the batch-independence check (a property of the function)
_BATCH_CHECKED: weakref.WeakSet = weakref.WeakSet()


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, residual, ridge, c_star, *data):  # type: ignore[override]
        ctx.residual, ctx.ridge = residual, ridge
        ctx.save_for_backward(c_star, *data)
        return c_star.clone()

    @staticmethod
    def backward(ctx, grad_c):  # type: ignore[override]
        c_star, *data = ctx.saved_tensors
        with torch.enable_grad():
            c = c_star.detach().requires_grad_(True)
            dd = [d.detach().requires_grad_(d.requires_grad or d.is_floating_point())
                  for d in data]
            f = _objective(ctx.residual, c, dd, ctx.ridge).sum()
            g = torch.autograd.grad(f, c, create_graph=True)[0]  # (B, N)
            n = c.shape[-1]
            rows = [torch.autograd.grad(g[:, i].sum(), c, retain_graph=True)[0]
                    for i in range(n)]
            H = torch.stack(rows, -2)  # samples are independent: row i of each Hessian
            # solve_ex, not solve: no error flag read on the host (a sync on a GPU) at every
            # backward; a sample whose Hessian is singular at the solution (the implicit
            # gradient does not exist there) gets NaN gradients, not a silent wrong value
            w, info = torch.linalg.solve_ex(H, grad_c.unsqueeze(-1))
            w = torch.where((info == 0)[:, None], w.squeeze(-1), float("nan"))
            need = [i for i, d in enumerate(data) if ctx.needs_input_grad[3 + i]]
            grads = torch.autograd.grad(g, [dd[i] for i in need], grad_outputs=-w,
                                        allow_unused=True) if need else ()
        out: list[Tensor | None] = [None] * len(data)
        for i, gr in zip(need, grads):
            out[i] = gr
        return (None, None, None, *out)


@frozen_settings(("residual", "ridge", "max_iter", "tol", "jacobian"), per_call=("max_iter",))
class HardConstraint:
    """Coefficients that make a residual vanish in least squares, as a differentiable layer.

    Args:
        residual: ``residual(c, *data) -> (B, R)`` for coefficients ``c`` ``(B, N)``;
            pure torch, batched over the first dimension with samples independent (the
            residual of sample ``b`` depends only on ``c[b]`` and ``data[k][b]``).
        ridge: ``lambda``, a small ridge on the coefficients (keeps the problem
            well posed when basis functions are nearly dependent).
        max_iter: Levenberg-Marquardt iterations at most.
        tol: stop when ``|grad f|_inf <= tol * max(1, |J|_max |r| + ridge |c|_max)``.
        jacobian: optional ``jacobian(c, *data) -> (r (B, R), J (B, R, N))``, the residual
            and its Jacobian in closed form (faster than the default: ``N`` forward-mode
            products of ``residual``, vectorised with ``vmap`` where the residual allows).
            Only the forward solve uses it; the backward differentiates ``residual``.

    Call ``layer(*data, c0=c0)`` (``c0`` ``(B, N)``, the starting coefficients, is required;
    zeros suit a linear residual; ``max_iter=`` overrides the layer's setting for this
    call, e.g. fewer iterations in training than in inference): ``data`` tensors batched
    on dim 0 (any dtype; the solve runs in float64 and the coefficients come back in
    float64). Returns a
    :class:`HardConstraintResult`; gradients reach every floating ``data`` tensor by the
    implicit function theorem. Raises ``ValueError`` for inconsistent batch sizes;
    ``throw=True`` raises :class:`HardConstraintError` instead of returning a status other
    than ``CONVERGED``. The settings are read-only attributes: assigning one
    (``layer.max_iter = 5``) raises ``AttributeError``; pass ``max_iter=`` to the call, or
    build a new layer.

    Example (a linear residual: least squares ``Phi c ~ y``)::

        layer = HardConstraint(lambda c, Phi, y: (Phi @ c[..., None])[..., 0] - y)
        res = layer(Phi, y, c0=torch.zeros(B, N))
    """

    def __init__(self, residual: Residual, *, ridge: float = 1e-8, max_iter: int = 50,
                 tol: float = 1e-10,
                 jacobian: Callable[..., tuple[Tensor, Tensor]] | None = None) -> None:
        if not callable(residual):
            raise TypeError(f"residual must be callable as residual(c, *data), got {residual!r}")
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not (
                math.isfinite(ridge) and ridge >= 0):
            raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}; a typical "
                             "value is 1e-8")
        if isinstance(max_iter, bool) or not (isinstance(max_iter, int) and max_iter >= 1):
            raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (
                math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a finite number > 0, got {tol!r}; a typical value "
                             "is 1e-10")
        if jacobian is not None and not callable(jacobian):
            raise TypeError(f"jacobian must be callable as jacobian(c, *data) -> (r, J), got "
                            f"{jacobian!r}")
        # read-only settings (see frozen_settings): set once, here
        for name, value in (("residual", residual), ("ridge", float(ridge)),
                            ("max_iter", max_iter), ("tol", tol), ("jacobian", jacobian)):
            object.__setattr__(self, name, value)

    def __call__(self, *data: Tensor, c0: Tensor, max_iter: int | None = None,
                 throw: bool = False) -> HardConstraintResult:
        max_iter = self.max_iter if max_iter is None else check_int("max_iter", max_iter,
                                                                      minimum=1)
        # numpy inputs keep their precision (the solve is float64) and go to the device
        # of the first tensor among c0 and data
        ref = reference_tensor(c0, *data)
        f64 = torch.empty(0, dtype=torch.float64, device=None if ref is None else ref.device)
        c0 = check_tensor("c0", as_tensor(c0, like=f64), ndim=2, real=True).to(torch.float64)
        B = c0.shape[0]
        data = as_tensors(*data, like=f64, integers=True)
        data64 = []
        for i, d in enumerate(data):
            d = check_tensor(f"data[{i}]", d, min_ndim=1)
            if d.shape[0] != B:
                raise ValueError(f"data[{i}] has batch size {d.shape[0]} but c0 has {B}; "
                                 f"every data tensor is batched on dim 0 like c0")
            if d.is_floating_point() or d.is_complex():
                check_finite(f"data[{i}]", d)
            data64.append(d.to(torch.float64) if d.is_floating_point() else d)
        check_finite("c0", c0)
        _check_batched(self.residual, c0, [d.detach() for d in data64])
        c, status, iters, gnorm, members = _lm(
            self.residual, c0, [d.detach() for d in data64], ridge=self.ridge,
            max_iter=max_iter, tol=self.tol, jacobian=self.jacobian)
        if throw and status is not LMStatus.CONVERGED:
            _raise(status, members, iters, gnorm, "sample(s)")
        coeffs = _Solve.apply(self.residual, self.ridge, c, *data64)
        with torch.no_grad():
            rnorm = self.residual(c, *[d.detach() for d in data64]).norm(dim=-1)
        return HardConstraintResult(coeffs, status, iters, gnorm, rnorm,
                                    {"member_status": members})
