"""Priors: negative log-densities ``R(x) -> (B,)`` of the unknown, up to a constant.

Gaussian priors (:class:`SobolevPrior`, :class:`ScalarPrior`) also expose their
covariance ``Gamma`` through the symmetric square root ``Gamma^{1/2}`` (``apply_sqrt``)
and its inverse, and the pointwise prior variance: the MAP solver optimises in the
whitened variable ``z = Gamma^{-1/2} (x - m)`` and the Laplace approximation is built
on ``Gamma^{1/2}`` (Bui-Thanh, Ghattas, Martin & Stadler, SIAM J. Sci. Comput. 35, 2013).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .._validation import as_tensor, check_real, check_tensor
from ._spectral import (
    check_field,
    check_lengths,
    gram,
    halved_weights,
    multiply,
    sobolev_sq,
    symbol,
)

__all__ = ["GaussianPrior", "Prior", "ScalarPrior", "SobolevPrior", "TotalVariation"]


@runtime_checkable
class Prior(Protocol):
    """``energy(x) -> (B,)`` and its Hessian applied to ``v`` at ``x``."""

    def energy(self, x: torch.Tensor) -> torch.Tensor: ...

    def hessian_vector(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GaussianPrior(Protocol):
    """A Gaussian ``N(m, Gamma)``: ``energy(x) = 1/2 (x - m)^T Gamma^{-1} (x - m)``."""

    def energy(self, x: torch.Tensor) -> torch.Tensor: ...

    def hessian_vector(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    def apply_sqrt(self, z: torch.Tensor) -> torch.Tensor: ...

    def apply_inverse_sqrt(self, x: torch.Tensor) -> torch.Tensor: ...

    def variance(self, x: torch.Tensor) -> torch.Tensor: ...

    def mean_like(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SobolevPrior:
    """A stationary Gaussian prior on periodic fields with precision ``w (alpha - Lap)^s``.

    .. math:: R(x) = \\frac{w}{2} \\|x - m\\|_{H^s}^2
              = \\frac{w}{2} |\\Omega| \\sum_k (\\alpha + |2\\pi k / L|^2)^s |c_k|^2

    (the norm of :func:`sciml.spectral.sobolev_norm`, on the last ``len(lengths)`` axes).
    On the grid of ``N`` points the precision matrix is ``Q = w (|Omega| / N) F^{-1}
    diag(lambda_k) F``, diagonal in Fourier space, so the covariance has eigenvalues
    ``sigma_k^2 = N / (w |Omega| lambda_k)``; ``Gamma^{1/2}`` multiplies mode ``k`` by
    ``sigma_k`` and every point has the same prior variance ``(1/N) sum_k sigma_k^2``.
    Samples are continuous in the grid limit for ``s > d/2`` (a Matern field).

    Attributes:
        s: smoothness order (> 0 for a proper prior).
        weight: ``w`` > 0; larger is a tighter prior.
        lengths: box side lengths, one per grid axis.
        alpha: the shift ``alpha`` > 0 (the inverse squared correlation length).
        mean: the constant prior mean ``m``.
    """

    s: float = 2.0
    weight: float = 1.0
    lengths: tuple[float, ...] = (1.0,)
    alpha: float = 1.0
    mean: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "s", check_real("s", self.s, positive=True))
        object.__setattr__(self, "weight", check_real("weight", self.weight, positive=True))
        object.__setattr__(self, "lengths", check_lengths(self.lengths))
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, positive=True))
        object.__setattr__(self, "mean", check_real("mean", self.mean))

    def _std_symbol(self, x: torch.Tensor) -> torch.Tensor:
        d = len(self.lengths)
        shape = tuple(x.shape[-d:])
        lam = symbol(shape, self.lengths, self.s, self.alpha, x.dtype, x.device)
        return torch.sqrt(math.prod(shape) / (self.weight * math.prod(self.lengths) * lam))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        x = check_field("x", x, self.lengths)
        return 0.5 * self.weight * sobolev_sq(x - self.mean, self.s, self.alpha, self.lengths)

    def hessian_vector(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The precision ``Q v`` (independent of ``x``)."""
        return self.weight * gram(v, self.s, self.alpha, self.lengths)

    def apply_sqrt(self, z: torch.Tensor) -> torch.Tensor:
        """``Gamma^{1/2} z``: multiply Fourier mode ``k`` by ``sigma_k``."""
        z = check_field("z", z, self.lengths)
        return multiply(z, self._std_symbol(z), len(self.lengths))

    def apply_inverse_sqrt(self, x: torch.Tensor) -> torch.Tensor:
        """``Gamma^{-1/2} x``: divide Fourier mode ``k`` by ``sigma_k``."""
        x = check_field("x", x, self.lengths)
        return multiply(x, 1.0 / self._std_symbol(x), len(self.lengths))

    def variance(self, x: torch.Tensor) -> torch.Tensor:
        """The pointwise prior variance ``(1/N) sum_k sigma_k^2`` (exact), shaped like ``x``."""
        x = check_field("x", x, self.lengths)
        d = len(self.lengths)
        shape = tuple(x.shape[-d:])
        var = self._std_symbol(x) ** 2
        h = halved_weights(shape[-1], x.dtype, x.device)
        # the constant stays on the device (no read back to the host)
        return torch.zeros_like(x) + (var * h).sum() / math.prod(shape)

    def mean_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.mean)

    def sample(self, num: int, shape: Sequence[int], *, dtype: torch.dtype = torch.float64,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` prior draws ``m + Gamma^{1/2} xi`` on a grid of ``shape``."""
        xi = torch.randn((num, *shape), generator=generator, dtype=dtype)
        return self.mean + self.apply_sqrt(xi)


@dataclass(frozen=True)
class TotalVariation:
    """Smoothed total variation of a periodic field (edge-preserving, not Gaussian):

    .. math:: R(x) = w \\sum_{\\text{cells}} h^d \\sqrt{|D_h x|^2 + \\varepsilon^2}

    with periodic forward differences ``(D_h x)_i = (x_{j + e_i} - x_j) / h_i`` and cell
    volume ``h^d = prod h_i``. ``eps`` rounds the corner of ``|.|`` so the energy is
    twice differentiable; the Hessian is applied by automatic differentiation.
    """

    weight: float = 1.0
    eps: float = 1e-3
    lengths: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_real("weight", self.weight, positive=True))
        object.__setattr__(self, "eps", check_real("eps", self.eps, positive=True))
        object.__setattr__(self, "lengths", check_lengths(self.lengths))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        x = check_field("x", x, self.lengths)
        d = len(self.lengths)
        shape = x.shape[-d:]
        h = [L / n for L, n in zip(self.lengths, shape)]
        sq = sum(((torch.roll(x, -1, dims=ax - d) - x) / h[ax]) ** 2 for ax in range(d))
        tv = torch.sqrt(sq + self.eps**2) * math.prod(h)
        return self.weight * tv.reshape(x.shape[0], -1).sum(-1)

    def hessian_vector(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.energy(xr).sum(), xr, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), xr)
        return hv


@dataclass(frozen=True)
class ScalarPrior:
    """Independent Gaussians on a few scalars (e.g. a viscosity and an amplitude):

    .. math:: R(x) = \\frac12 \\sum_i \\Big(\\frac{x_i - \\mu_i}{\\sigma_i}\\Big)^2

    for unknowns ``x`` of shape ``(B, p)``; ``mean`` and ``std`` are length-``p``
    sequences (a bare number is one scalar).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean = (self.mean,) if isinstance(self.mean, (int, float)) else tuple(self.mean)
        std = (self.std,) if isinstance(self.std, (int, float)) else tuple(self.std)
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std must have one entry per scalar, got "
                             f"{len(mean)} and {len(std)}")
        object.__setattr__(self, "mean", tuple(check_real(f"mean[{i}]", v)
                                               for i, v in enumerate(mean)))
        object.__setattr__(self, "std", tuple(check_real(f"std[{i}]", v, positive=True)
                                              for i, v in enumerate(std)))

    def _vec(self, values: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, min_ndim=2, real=True)
        if x.shape[-1] != len(values):
            raise ValueError(f"x has {x.shape[-1]} scalars on its last axis but the prior "
                             f"has {len(values)}: shape {tuple(x.shape)}")
        return torch.tensor(values, dtype=x.dtype, device=x.device)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        x = as_tensor(x)
        r = (x - self._vec(self.mean, x)) / self._vec(self.std, x)
        return 0.5 * (r * r).reshape(x.shape[0], -1).sum(-1)

    def hessian_vector(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v / self._vec(self.std, v) ** 2

    def apply_sqrt(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._vec(self.std, z)

    def apply_inverse_sqrt(self, x: torch.Tensor) -> torch.Tensor:
        return x / self._vec(self.std, x)

    def variance(self, x: torch.Tensor) -> torch.Tensor:
        return (self._vec(self.std, x) ** 2).expand(x.shape).clone()

    def mean_like(self, x: torch.Tensor) -> torch.Tensor:
        return self._vec(self.mean, x).expand(x.shape).clone()
