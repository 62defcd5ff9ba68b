"""Inverse problems on 2D Navier-Stokes: the initial vorticity, the viscosity, the forcing.

The setting is the FNO data of Li et al. (ICLR 2021) on the unit torus: ``nu = 1e-3``,
forcing ``f = A (sin + cos)(2 pi (x + y))`` with ``A = 0.1``, initial vorticity drawn from
the Gaussian random field ``N(0, sigma^2 (-Lap + tau^2)^{-alpha})`` (``alpha = 2.5``,
``tau = 7``, ``sigma = tau^{alpha - 1}``). The vorticity is observed at a later time
``T`` at a random fraction of the grid points with Gaussian noise.

Three forward maps, all differentiable and batched:

* :class:`SolverForward`: ``w0 -> w(T)`` through the pseudo-spectral solver
  (:class:`~sciml.pdes.NavierStokes2D`, fixed step, so the map is smooth in ``w0``);
* :class:`SurrogateForward`: ``w0 -> w(T)`` through a trained :class:`~sciml.operators.SFNO`
  (one frame in, one out), in its normalised units;
* :class:`ParameterForward`: ``(log nu, A) -> w(T)`` from a known ``w0``: the solver's
  integrating-factor RK4 with the viscous factor ``exp(-nu |k|^2 dt)`` and the forcing
  built from tensors, so gradients flow to ``nu`` and ``A`` (the solver object itself
  holds them as plain numbers).

:func:`grf_prior` is the :class:`~sciml.inverse.SobolevPrior` whose covariance is the
data's random field, so the MAP estimate is the posterior mode of the true generative
model and the Laplace standard deviations can be checked against the actual error
(:func:`calibration`: the fraction of points whose error lies within two standard
deviations; 0.95 for a calibrated Gaussian posterior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .._validation import as_tensors, check_finite, check_real, check_tensor
from ..pdes._ns_ops import NSOperators
from ..pdes._steppers import STEPPERS
from ..pdes.navier_stokes import NavierStokes2D, check_step_count
from .prior import SobolevPrior

__all__ = ["ParameterForward", "SolverForward", "SurrogateForward", "calibration",
           "grf_prior"]


def grf_prior(alpha: float = 2.5, tau: float = 7.0, sigma: float | None = None,
              length: float = 1.0) -> SobolevPrior:
    """The Gaussian prior of :func:`sciml.pdes.gaussian_random_field`'s fields.

    That field has independent Fourier coefficients with ``E|c_k|^2 = 2 sigma^2
    (|2 pi k / L|^2 + tau^2)^{-alpha}``; :class:`~sciml.inverse.SobolevPrior` ``(s,
    weight, alpha')`` gives ``E|c_k|^2 = 1 / (weight L^2 (alpha' + |2 pi k / L|^2)^s)``.
    They agree for ``s = alpha``, ``alpha' = tau^2`` and ``weight = 1 / (2 sigma^2 L^2)``,
    on every mode but the mean, which the field sets to zero and the prior leaves free
    with the small variance ``2 sigma^2 tau^{-2 alpha}``.

    Args:
        alpha, tau, sigma, length: as in :func:`~sciml.pdes.gaussian_random_field`
            (``sigma`` defaults to ``tau^(alpha - 1)``).
    """
    alpha = check_real("alpha", alpha, positive=True)
    tau = check_real("tau", tau, positive=True)
    length = check_real("length", length, positive=True)
    sigma = tau ** (alpha - 1.0) if sigma is None else check_real("sigma", sigma,
                                                                   positive=True)
    return SobolevPrior(s=alpha, weight=1.0 / (2.0 * sigma**2 * length**2),
                        lengths=(length, length), alpha=tau**2)


def calibration(error: torch.Tensor, std: torch.Tensor, k: float = 2.0) -> float:
    """The fraction of points with ``|error| <= k std`` (0.954 for k = 2 if calibrated)."""
    error, std = as_tensors(error, std)
    error = check_tensor("error", error, real=True)
    std = check_tensor("std", std, real=True)
    if error.shape != std.shape:
        raise ValueError(f"error has shape {tuple(error.shape)} but std has "
                         f"{tuple(std.shape)}; pass one standard deviation per point")
    if error.numel() == 0:
        raise ValueError("error is empty: the calibration of no points is undefined")
    check_finite("error", error)
    check_finite("std", std)
    if bool((std < 0).any()):
        raise ValueError("std holds negative values; pass standard deviations >= 0")
    k = check_real("k", k, positive=True, fix="2 gives the fraction within two sd")
    return float((error.abs() <= k * std).double().mean())


@dataclass(frozen=True, eq=False)
class SolverForward:
    """``w0 (B, n, n) -> w(T) (B, n, n)`` through :class:`~sciml.pdes.NavierStokes2D`.

    A fixed step (``ceil(T / dt)`` equal steps) keeps the map the same for every iterate:
    a CFL step chosen from the iterate would make it piecewise smooth.

    Attributes:
        ns: the solver (its viscosity, forcing and scheme).
        time: the observation time ``T > 0``.
        dt: the largest step.
    """

    ns: NavierStokes2D
    time: float
    dt: float

    def __post_init__(self) -> None:
        if not isinstance(self.ns, NavierStokes2D):
            raise TypeError(f"ns must be a NavierStokes2D, got {type(self.ns).__name__}")
        object.__setattr__(self, "time", check_real("time", self.time, positive=True))
        object.__setattr__(self, "dt", check_real("dt", self.dt, positive=True))

    def __call__(self, w0: torch.Tensor) -> torch.Tensor:
        return self.ns.solve(w0, [self.time], dt=self.dt)[:, -1]


@dataclass(frozen=True, eq=False)
class SurrogateForward:
    """``w0 (B, n, n) -> w(T)`` through a trained SFNO with one frame in and one out.

    The model works on standardised fields ``(w - mean) / std`` (the statistics of its
    training file); the call standardises ``w0``, runs the model in ``w0``'s dtype and
    returns the last output frame in physical units.

    Attributes:
        model: an :class:`~sciml.operators.SFNO` (any module mapping ``(B, 1, n, n)`` to
            ``(B, T_out, n, n)``).
        mean, std: the normalisation of the training data.
    """

    model: nn.Module
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(self.model).__name__}")
        object.__setattr__(self, "mean", check_real("mean", self.mean))
        object.__setattr__(self, "std", check_real("std", self.std, positive=True))

    def __call__(self, w0: torch.Tensor) -> torch.Tensor:
        w0 = check_tensor("w0", w0, ndim=3, real=True)
        p = next(self.model.parameters(), None)
        if p is not None and p.dtype != w0.dtype:
            raise TypeError(f"the model's parameters are {p.dtype} but w0 is {w0.dtype}; "
                            f"convert one (model.to({w0.dtype}) or w0.to({p.dtype}))")
        x = ((w0 - self.mean) / self.std)[:, None]
        return self.model(x)[:, -1] * self.std + self.mean


@dataclass(frozen=True, eq=False)
class ParameterForward:
    """``theta = (log nu, A) (B, 2) -> w(T) (B, n, n)`` from a known initial vorticity.

    .. math:: w_t + u \\cdot \\nabla w = \\nu \\Delta w + A f_0, \\qquad w(0) = w_0

    integrated with the integrating-factor RK4 of :class:`~sciml.pdes.NavierStokes2D`
    (``method="ifrk4"``; the same 2/3-rule spectral operators and stepper), fixed step.
    The viscosity enters through ``log nu`` so every iterate is a positive viscosity.
    At ``theta = (log nu, A)`` it equals ``NavierStokes2D(nu, forcing=A f0,
    method="ifrk4").solve(w0, [T], dt=dt)`` to rounding.

    Attributes:
        w0: the initial vorticity ``(n, n)``.
        forcing_shape: ``f0``, ``(n, n)``.
        time, dt: the observation time and the largest step.
        length: the box side.
    """

    w0: torch.Tensor
    forcing_shape: torch.Tensor
    time: float
    dt: float
    length: float = 1.0
    _ops: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        w0 = check_tensor("w0", self.w0, ndim=2, real=True, fft_dtype=True)
        f0 = check_tensor("forcing_shape", self.forcing_shape, ndim=2, real=True)
        if w0.shape[0] != w0.shape[1] or f0.shape != w0.shape:
            raise ValueError(f"w0 {tuple(w0.shape)} and forcing_shape {tuple(f0.shape)} "
                             "must be the same square (n, n) grid")
        object.__setattr__(self, "time", check_real("time", self.time, positive=True))
        object.__setattr__(self, "dt", check_real("dt", self.dt, positive=True))
        check_step_count(self.time, self.dt)  # a tiny dt would run for ever
        object.__setattr__(self, "length", check_real("length", self.length, positive=True))

    def _operators(self, dtype: torch.dtype, device: torch.device):
        key = (dtype, str(device))
        if key not in self._ops:
            n = self.w0.shape[-1]
            # unit viscosity, no drag, no forcing: linear = -|k|^2, nonlinear = -P(u.grad w)
            ops = NSOperators.build(n, self.length, 1.0, 0.0, None, dtype, device)
            fc = ops.to_compact(self.forcing_shape.to(device=device, dtype=dtype))
            s0 = ops.to_compact(self.w0.to(device=device, dtype=dtype))
            self._ops[key] = (ops, fc, s0)
        return self._ops[key]

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        theta = check_tensor("theta", theta, ndim=2, real=True, fft_dtype=True)
        if theta.shape[1] != 2:
            raise ValueError(f"theta must be (B, 2) = (log viscosity, forcing amplitude), "
                             f"got shape {tuple(theta.shape)}")
        ops, fc, s0 = self._operators(theta.dtype, theta.device)
        B = theta.shape[0]
        nu = theta[:, 0].exp()[:, None, None]
        amp = theta[:, 1][:, None, None]
        forcing = amp * fc  # (B, M, M) complex
        linear = nu * ops.linear  # ops.linear = -|k|^2 (unit viscosity)
        # the fewest equal steps no longer than dt, as NavierStokes2D.solve splits them
        k = max(1, math.ceil(self.time / self.dt - 1e-9))
        h = self.time / k
        stepper = STEPPERS["ifrk4"]
        fac = stepper.factors(linear, h)

        def nonlinear(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            adv, z = ops.nonlinear(s)
            return adv + forcing, z

        s = s0.expand(B, *s0.shape).clone()
        for _ in range(k):
            s, _ = stepper.step(s, nonlinear, fac, h)
        return ops.from_compact(s)
