"""Data misfits ``phi(pred, data) -> (B,)``: how far predicted observations are from data.

Quadratic misfits (:class:`L2Misfit`, :class:`SobolevMisfit`) also give their Hessian
``hessian_vector(v)``, which the Laplace approximation uses as the noise precision
``Gamma_noise^{-1}`` of the Gauss-Newton Hessian. :class:`W2Misfit` compares 1D signals
as mass distributions by optimal transport, whose landscape stays convex in shifts where
the L2 misfit goes flat (the cycle-skipping problem of waveform inversion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .._validation import as_tensors, check_finite, check_int, check_real, check_tensor
from ..solvers.ot import sinkhorn
from ._spectral import check_field, check_lengths, gram, sobolev_sq

__all__ = ["L2Misfit", "Misfit", "QuadraticMisfit", "SobolevMisfit", "W2Misfit"]


@runtime_checkable
class Misfit(Protocol):
    """A callable ``misfit(pred, data) -> (B,)``, differentiable in ``pred``."""

    def __call__(self, pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class QuadraticMisfit(Protocol):
    """A misfit ``1/2 r^T W r`` of the residual ``r = pred - data``: ``hessian_vector``
    applies ``W`` (the noise precision of a Gaussian likelihood)."""

    def __call__(self, pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor: ...

    def hessian_vector(self, v: torch.Tensor) -> torch.Tensor: ...


def _pair(pred: object, data: object, *, min_ndim: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    pred, data = as_tensors(pred, data)  # numpy arrays follow the tensor among them
    pred = check_tensor("pred", pred, min_ndim=min_ndim, real=True)
    data = check_tensor("data", data, real=True)
    try:
        shape = torch.broadcast_shapes(pred.shape, data.shape)
    except RuntimeError:
        shape = None
    if shape != pred.shape:
        raise ValueError(f"data has shape {tuple(data.shape)} but the predicted observations "
                         f"are {tuple(pred.shape)}; data must match (or broadcast to) them")
    return pred, data


@dataclass(frozen=True)
class L2Misfit:
    """The Gaussian negative log-likelihood of independent noise of std ``sigma``:

    .. math:: \\phi(p, d) = \\frac{1}{2\\sigma^2} \\sum_j (p_j - d_j)^2

    summed over every axis but the first (the batch). ``hessian_vector(v) = v / sigma^2``.
    """

    noise_std: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_std", check_real("noise_std", self.noise_std,
                                                         positive=True))

    def __call__(self, pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        pred, data = _pair(pred, data)
        r = (pred - data).reshape(pred.shape[0], -1)
        return 0.5 * (r * r).sum(-1) / self.noise_std**2

    def hessian_vector(self, v: torch.Tensor) -> torch.Tensor:
        return v / self.noise_std**2


@dataclass(frozen=True)
class SobolevMisfit:
    """Half the squared H^s distance of full fields on a periodic box:

    .. math:: \\phi(p, d) = \\frac{w}{2} \\|p - d\\|_{H^s}^2, \\qquad
              \\|u\\|_{H^s}^2 = |\\Omega| \\sum_k (\\alpha + |2\\pi k/L|^2)^s |c_k|^2

    with the conventions of :func:`sciml.spectral.sobolev_norm` (``phi`` equals
    ``w / 2 * sobolev_norm(p - d, s, alpha=alpha, lengths=lengths) ** 2``, summed over any
    axes between the batch and the grid, e.g. frames). A negative ``s`` (H^-1 by default)
    weighs large scales and forgives small-scale noise. The squared norm is computed
    directly (no square root), so the gradient is finite at a perfect fit.
    """

    s: float = -1.0
    lengths: tuple[float, ...] = (1.0,)
    alpha: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "s", check_real("s", self.s))
        object.__setattr__(self, "lengths", check_lengths(self.lengths))
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, minimum=0.0))
        object.__setattr__(self, "weight", check_real("weight", self.weight, positive=True))

    def __call__(self, pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        pred, data = _pair(pred, data, min_ndim=len(self.lengths) + 1)
        r = check_field("pred", pred - data, self.lengths)
        return 0.5 * self.weight * sobolev_sq(r, self.s, self.alpha, self.lengths)

    def hessian_vector(self, v: torch.Tensor) -> torch.Tensor:
        return self.weight * gram(v, self.s, self.alpha, self.lengths)


@dataclass(frozen=True)
class W2Misfit:
    """Squared 2-Wasserstein distance of 1D signals read as mass densities on a grid.

    Signals are made positive and normalised to probability vectors

    .. math:: \\rho(u)_i = \\frac{\\mathrm{sp}_t(u_i + c)}{\\sum_j \\mathrm{sp}_t(u_j + c)},
              \\qquad \\mathrm{sp}_t(v) = t \\log(1 + e^{v/t})

    (the softplus with temperature ``t``; ``c`` = ``shift``). The softplus keeps every
    iterate a valid density without clipping; for nonnegative signals with values far
    above ``t`` it is nearly the identity, and with a shift ``c`` well above ``|min u|``
    it is nearly the linear normalisation ``(u + c) / sum(u + c)`` of Yang & Engquist
    (2018). The distance is the Sinkhorn divergence (Feydy et al. 2019) with the cost
    ``|x_i - x_j|^2`` and ``epsilon = reg``

    .. math:: \\phi = w\\,\\big[OT_\\varepsilon(\\rho_p, \\rho_d)
              - \\tfrac12 OT_\\varepsilon(\\rho_p, \\rho_p) - \\tfrac12 OT_\\varepsilon(\\rho_d,
              \\rho_d)\\big] \\to w\\, W_2^2(\\rho_p, \\rho_d) \\quad (\\varepsilon \\to 0)

    (``debias=False`` keeps only the first term, which is not zero at ``p = d``). Each
    ``OT_epsilon`` is :func:`sciml.solvers.ot.sinkhorn`'s value; its gradient in the
    marginal is the dual potential (envelope theorem), so nothing is unrolled.

    Attributes:
        grid: the ``n`` sample positions of the signals (a 1D tensor or a sequence).
        reg: the entropic regularisation epsilon (in units of squared grid length).
        temperature: ``t`` of the softplus, > 0.
        shift: ``c``, added before the softplus.
        weight: ``w``.
        debias: use the Sinkhorn divergence (default) or the raw entropic cost.
        max_iter, tol: Sinkhorn settings; ``tol=None`` takes the default for the inputs'
            dtype (see :func:`sciml.solvers.default_tol`). A solve that does not converge raises
            :class:`sciml.solvers.ot.OTError` (its gradient would be wrong).

    Call: ``phi(pred, data)`` with ``pred`` of shape ``(B, ..., n)``; returns ``(B,)``,
    summed over the middle axes.
    """

    grid: tuple[float, ...]
    reg: float = 1e-3
    temperature: float = 1e-3
    shift: float = 0.0
    weight: float = 1.0
    debias: bool = True
    max_iter: int = 20000
    tol: float | None = None

    def __post_init__(self) -> None:
        grid = self.grid
        if isinstance(grid, torch.Tensor):
            grid = grid.detach().double().flatten().tolist()
        if not isinstance(grid, Sequence) or len(grid) < 2:
            raise ValueError(f"grid must be a sequence of at least 2 positions, got {grid!r}")
        object.__setattr__(self, "grid", tuple(check_real(f"grid[{i}]", v)
                                               for i, v in enumerate(grid)))
        object.__setattr__(self, "reg", check_real("reg", self.reg, positive=True))
        object.__setattr__(self, "temperature", check_real("temperature", self.temperature,
                                                           positive=True))
        object.__setattr__(self, "shift", check_real("shift", self.shift))
        object.__setattr__(self, "weight", check_real("weight", self.weight, positive=True))
        object.__setattr__(self, "max_iter", check_int("max_iter", self.max_iter, minimum=1))
        if self.tol is not None:
            object.__setattr__(self, "tol", check_real("tol", self.tol, minimum=0.0))

    def density(self, u: torch.Tensor) -> torch.Tensor:
        """The probability vectors ``rho(u)`` over the last axis."""
        p = F.softplus(u + self.shift, beta=1.0 / self.temperature)
        return p / p.sum(-1, keepdim=True)

    def _ot(self, a: torch.Tensor, b: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        return sinkhorn(a, b, M, self.reg, max_iter=self.max_iter, tol=self.tol,
                        throw=True).cost

    def __call__(self, pred: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        pred, data = _pair(pred, data)
        n = len(self.grid)
        if pred.shape[-1] != n:
            raise ValueError(f"pred has {pred.shape[-1]} samples on its last axis but the "
                             f"grid has {n} positions")
        check_finite("pred", pred)
        if not pred.dtype.is_floating_point or pred.dtype not in (torch.float32,
                                                                  torch.float64):
            raise TypeError(f"pred has dtype {pred.dtype}; use float32 or float64")
        x = torch.tensor(self.grid, dtype=pred.dtype, device=pred.device)
        M = (x[:, None] - x[None, :]) ** 2
        B = pred.shape[0]
        a = self.density(pred).reshape(-1, n)
        b = self.density(data.expand(pred.shape)).reshape(-1, n)
        value = self._ot(a, b, M)
        if self.debias:
            value = value - 0.5 * self._ot(a, a, M) - 0.5 * self._ot(b, b, M).detach()
        return self.weight * value.reshape(B, -1).sum(-1)
