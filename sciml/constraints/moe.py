"""Mixture-of-experts hard constraint: K independent least-squares problems, one batched solve.

A single hard constraint (:class:`~sciml.constraints.HardConstraint`) makes one set of
``N`` coefficients satisfy the PDE on the whole domain. The mixture of experts
(Chalapathi, Du, Krishnapriyan, ICLR 2024) splits the domain into ``K`` non-overlapping
pieces; expert ``k`` has its own coefficients ``c_k``, fitted only to the collocation
points (and initial/boundary points) in piece ``k``; the prediction at a point is the
basis expansion with the coefficients of the piece that holds it. The experts are
independent, so their ``K`` problems are stacked on the batch dimension and solved by
*one* batched Levenberg-Marquardt call (each sample stops on its own), or, where
``torch.distributed`` is initialised, spread over the ranks.

* :class:`Partition`: axis-aligned boxes on a rectangular domain (``splits`` per axis),
  with the piece of each point, uniform samples per piece and the pieces' bounds.
* :class:`MoEHardConstraint`: the layer. ``data`` tensors are batched ``(B, K, ...)``.
* :func:`assemble`: the prediction from the basis values and the pieces' coefficients.

Cost: with ``m`` points in all, a single constraint costs ``O(m N^2)`` per LM iteration
(``N`` forward-mode products of the residual, ``J^T J``); the experts together cost the
same, so the mixture gains where its smaller problems need fewer iterations, are better
conditioned, or run in parallel (ranks, or a GPU's batched kernels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .._frozen import frozen_settings
from .._validation import as_tensor, as_tensors, check_int, check_tensor, reference_tensor
from .hard import (
    _WORST,
    HardConstraint,
    HardConstraintResult,
    LMStatus,
    Residual,
    _raise,
)

__all__ = ["MoEHardConstraint", "MoEResult", "Partition", "assemble"]


class Partition:
    """Axis-aligned pieces of the box ``[lower, upper]``: ``splits[a]`` equal cells on axis a.

    Pieces are numbered in C order over the axes (the last axis fastest). A point on an
    interior face belongs to the upper piece; points on the box's upper face to the last.

    Example: ``Partition([0, 0], [1, 1], splits=(4, 1))`` cuts ``(x, t)`` into four
    slabs in ``x``.
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float],
                 splits: Sequence[int]) -> None:
        lo = [float(v) for v in lower]
        hi = [float(v) for v in upper]
        if not (len(lo) == len(hi) == len(splits) >= 1):
            raise ValueError(f"lower, upper and splits must have one entry per axis, got "
                             f"{len(lo)}, {len(hi)} and {len(splits)}")
        for a, (l_, h_) in enumerate(zip(lo, hi)):
            if not (math.isfinite(l_) and math.isfinite(h_) and h_ > l_):
                raise ValueError(f"axis {a}: need finite lower < upper, got {l_} and {h_}")
        self.splits = tuple(check_int(f"splits[{a}]", s, minimum=1)
                            for a, s in enumerate(splits))
        self.lower, self.upper = tuple(lo), tuple(hi)

    @property
    def n_pieces(self) -> int:
        return math.prod(self.splits)

    @property
    def dim(self) -> int:
        return len(self.splits)

    def _cells(self, k: int) -> list[int]:
        if not 0 <= k < self.n_pieces:
            raise ValueError(f"piece must be in [0, {self.n_pieces}), got {k}")
        cells = []
        for s in reversed(self.splits):
            cells.append(k % s)
            k //= s
        return cells[::-1]

    def bounds(self, k: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(lower, upper)`` corners of piece ``k``."""
        cells = self._cells(k)
        lo, hi = [], []
        for a, c in enumerate(cells):
            w = (self.upper[a] - self.lower[a]) / self.splits[a]
            lo.append(self.lower[a] + c * w)
            hi.append(self.lower[a] + (c + 1) * w)
        return tuple(lo), tuple(hi)

    def index(self, points: Tensor) -> Tensor:
        """The piece ``(M,)`` (long) of each point ``(M, dim)``; points outside raise."""
        points = check_tensor("points", as_tensor(points), ndim=2, real=True)
        if points.shape[1] != self.dim:
            raise ValueError(f"points must be (M, {self.dim}), got {tuple(points.shape)}")
        lo = torch.tensor(self.lower, dtype=points.dtype, device=points.device)
        hi = torch.tensor(self.upper, dtype=points.dtype, device=points.device)
        if bool(((points < lo) | (points > hi)).any()):
            raise ValueError(f"points lie outside the domain [{self.lower}, {self.upper}]")
        s = torch.tensor(self.splits, device=points.device)
        cell = ((points - lo) / (hi - lo) * s).floor().long()
        cell = torch.minimum(cell, s - 1)
        k = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        for a in range(self.dim):
            k = k * self.splits[a] + cell[:, a]
        return k

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` uniform points in each piece: ``(K, n, dim)``."""
        n = check_int("n", n, minimum=1)
        u = torch.rand(self.n_pieces, n, self.dim, generator=generator, dtype=dtype)
        lo = torch.tensor([self.bounds(k)[0] for k in range(self.n_pieces)], dtype=dtype)
        hi = torch.tensor([self.bounds(k)[1] for k in range(self.n_pieces)], dtype=dtype)
        return lo[:, None] + u * (hi - lo)[:, None]


@dataclass(frozen=True)
class MoEResult(HardConstraintResult):
    """Coefficients ``(B, K, N)`` and the per-expert solve records ``(B, K)``.

    Attributes:
        coeffs: ``(B, K, N)`` float64, differentiable.
        status: an :class:`~sciml.constraints.LMStatus`, the worst over samples and
            experts (``CONVERGED`` when every one is).
        iterations, grad_norm, residual_norm: per sample and expert ``(B, K)``.
        stats: ``iterations``, ``grad_norm``, ``residual_norm`` (the same tensors as the
            attributes) and ``member_status`` (each sample's and expert's status, a list
            in row-major ``(B, K)`` order).
    """

    def _throw(self, what: str) -> MoEResult:
        if self.status is not LMStatus.CONVERGED:
            _raise(self.status, self.stats["member_status"], self.iterations,
                   self.grad_norm, what)
        return self


class _AllGather(torch.autograd.Function):
    """Differentiable all-gather along dim 1: every rank's ``(B, share, N)`` block, in rank
    order. Backward sums the incoming gradients over ranks (each rank may have its own
    loss) and hands each rank the slice of its own block."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.share = dist.get_rank(), x.shape[1]
        return torch.cat(parts, 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[:, ctx.rank * ctx.share:(ctx.rank + 1) * ctx.share]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _LMSettings:
    """The Levenberg-Marquardt settings of a layer built on one inner
    :class:`HardConstraint` (``self._layer``), read-only."""

    _layer: HardConstraint

    @property
    def residual(self) -> Residual:
        return self._layer.residual

    @property
    def ridge(self) -> float:
        return self._layer.ridge

    @property
    def max_iter(self) -> int:
        """Levenberg-Marquardt iterations at most (a call's ``max_iter=`` overrides it)."""
        return self._layer.max_iter

    @property
    def tol(self) -> float:
        return self._layer.tol

    @property
    def jacobian(self):
        return self._layer.jacobian


def _check_call(data: Sequence[Tensor], c0: object, max_iter: object, n_experts: int,
                what: str) -> tuple[Tensor, list[Tensor], int | None]:
    """The checks every K-piece layer makes of a call: ``c0`` ``(B, K, N)`` with ``K`` the
    layer's pieces (``what``: experts, slabs), each data tensor ``(B, K, ...)``.

    Returns ``c0``, the data and ``max_iter``; numpy inputs become float64 tensors (the
    solve's precision; integer data stays integer) on the first tensor's device.
    """
    if max_iter is not None:
        max_iter = check_int("max_iter", max_iter, minimum=1)
    ref = reference_tensor(c0, *data)
    f64 = torch.empty(0, dtype=torch.float64, device=None if ref is None else ref.device)
    c0 = as_tensor(c0, like=f64)
    data = as_tensors(*data, like=f64, integers=True)
    c0 = check_tensor("c0", c0, ndim=3, real=True)
    B, K, _ = c0.shape
    if K != n_experts:
        raise ValueError(f"c0 has {K} {what} on dim 1 but the layer has n_experts={n_experts}")
    for i, d in enumerate(data):
        d = check_tensor(f"data[{i}]", d, min_ndim=2)
        if tuple(d.shape[:2]) != (B, K):
            raise ValueError(f"data[{i}] has leading shape {tuple(d.shape[:2])} but c0 "
                             f"has (B, K) = {(B, K)}; stack the {what} on dim 1")
    return c0, data, max_iter  # type: ignore[return-value]


@frozen_settings(("residual", "ridge", "max_iter", "tol", "jacobian", "n_experts",
                  "distributed", "_layer"), per_call=("max_iter",))
class MoEHardConstraint(_LMSettings):
    """``K`` hard constraints on the pieces of a domain, solved together.

    Args:
        residual: as for :class:`HardConstraint`: ``residual(c, *data) -> (B', R)`` for
            ``c`` ``(B', N)``, samples independent. It is called with the experts
            folded into the batch (``B' = B K``, or this rank's share), so one residual
            function serves every expert; rows an expert should ignore (a boundary it
            does not touch) are best passed as zero weights in ``data``.
        n_experts: ``K``.
        ridge, max_iter, tol, jacobian: the Levenberg-Marquardt settings (see
            :class:`HardConstraint`).
        distributed: where ``torch.distributed`` is initialised with several ranks,
            rank ``r`` solves experts ``r*ceil(K/W) ...`` and the coefficients are
            gathered with a differentiable all-gather (every rank must call the layer
            with the same data, as in data-parallel training of the basis network).
            ``False`` solves every expert on every rank.

    Call ``layer(*data, c0=c0)`` with each data tensor ``(B, K, ...)`` and ``c0``
    ``(B, K, N)`` (``max_iter=`` overrides the layer's setting for this call, e.g. fewer
    iterations in training than in inference; the settings themselves are read-only
    attributes: assigning one raises ``AttributeError``); returns :class:`MoEResult` with
    coefficients ``(B, K, N)`` (float64, differentiable by the implicit function
    theorem), the worst status over experts, and per-expert iterations, gradient and
    residual norms ``(B, K)``. ``throw=True`` raises
    :class:`~sciml.constraints.HardConstraintError` instead of returning a status other
    than ``CONVERGED`` (after the solve, on every rank alike).
    """

    def __init__(self, residual: Residual, n_experts: int, *, ridge: float = 1e-8,
                 max_iter: int = 50, tol: float = 1e-10, distributed: bool = True,
                 jacobian=None) -> None:
        # read-only settings (see frozen_settings): set once, here
        object.__setattr__(self, "n_experts", check_int("n_experts", n_experts, minimum=1))
        object.__setattr__(self, "_layer", HardConstraint(
            residual, ridge=ridge, max_iter=max_iter, tol=tol, jacobian=jacobian))
        object.__setattr__(self, "distributed", bool(distributed))

    def _solve(self, data: Sequence[Tensor], c0: Tensor,
               max_iter: int | None) -> HardConstraintResult:
        B, K = c0.shape[:2]
        flat = [d.reshape(B * K, *d.shape[2:]) for d in data]
        return self._layer(*flat, c0=c0.reshape(B * K, -1), max_iter=max_iter)

    def __call__(self, *data: Tensor, c0: Tensor, max_iter: int | None = None,
                 throw: bool = False) -> MoEResult:
        res = self._call(data, c0, max_iter)
        return res._throw("expert problem(s)") if throw else res

    def _call(self, data: Sequence[Tensor], c0: Tensor, max_iter: int | None) -> MoEResult:
        c0, data, max_iter = _check_call(data, c0, max_iter, self.n_experts, "experts")
        B, K, N = c0.shape
        rank, world = _world()
        if not self.distributed or world == 1:
            res = self._solve(data, c0, max_iter)
            return MoEResult(res.coeffs.reshape(B, K, N), res.status,
                             res.iterations.reshape(B, K), res.grad_norm.reshape(B, K),
                             res.residual_norm.reshape(B, K),
                             {"member_status": res.stats["member_status"]})
        return self._distributed(data, c0, rank, world, max_iter)

    def _distributed(self, data, c0, rank, world, max_iter) -> MoEResult:
        B, K, N = c0.shape
        share = -(-K // world)
        idx = torch.arange(rank * share, (rank + 1) * share).clamp_max(K - 1)  # pad: repeat
        res = self._solve([d[:, idx.to(d.device)] for d in data], c0[:, idx.to(c0.device)],
                          max_iter)
        coeffs = _AllGather.apply(res.coeffs.reshape(B, share, N))[:, :K]
        codes = torch.tensor([float(_WORST.index(s)) for s in res.stats["member_status"]],
                             dtype=res.grad_norm.dtype, device=res.grad_norm.device)
        stats = torch.stack([res.iterations.to(torch.float64), res.grad_norm,
                             res.residual_norm, codes], -1)
        gathered = [torch.empty_like(stats) for _ in range(world)]
        dist.all_gather(gathered, stats.detach())
        st = torch.cat([g.reshape(B, share, 4) for g in gathered], 1)[:, :K]
        members = [_WORST[int(i)] for i in st[..., 3].flatten().tolist()]
        status = _WORST[int(st[..., 3].max())]
        return MoEResult(coeffs, status, st[..., 0].long(), st[..., 1], st[..., 2],
                         {"member_status": members})


def assemble(values: Tensor, coeffs: Tensor, piece: Tensor) -> Tensor:
    """The mixture's prediction ``u[b, m] = sum_n values[b, m, n] coeffs[b, piece[m], n]``.

    Args:
        values: basis values ``(B, M, N)`` (or ``(M, N)``, shared by the batch).
        coeffs: ``(B, K, N)``.
        piece: ``(M,)`` the piece of each point (see :meth:`Partition.index`).
    """
    values, coeffs = as_tensors(values, coeffs)
    piece = as_tensor(piece, like=reference_tensor(values, coeffs), integers=True)
    values = check_tensor("values", values, real=True)
    coeffs = check_tensor("coeffs", coeffs, ndim=3, real=True)
    piece = check_tensor("piece", piece, ndim=1)
    if values.ndim == 2:
        values = values.unsqueeze(0)
    if values.ndim != 3 or values.shape[-1] != coeffs.shape[-1] or \
            values.shape[-2] != piece.shape[0]:
        raise ValueError(f"values must be (B, M, N) with N = {coeffs.shape[-1]} and "
                         f"M = {piece.shape[0]}, got {tuple(values.shape)}")
    if piece.dtype != torch.long or bool((piece < 0).any()) or \
            bool((piece >= coeffs.shape[1]).any()):
        raise ValueError(f"piece must be long indices in [0, {coeffs.shape[1]})")
    c = coeffs[:, piece]  # (B, M, N)
    return (values.to(c.dtype) * c).sum(-1)
