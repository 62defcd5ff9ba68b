"""Conservation constraints ``G u = b`` built from the grid and the problem.

``G`` holds the quadrature weights of the domain integral (so ``G u`` is the mass of a
profile ``u`` sampled on the grid) and ``b`` is the mass the conservation law dictates:
the initial mass plus the net inflow through the boundary up to time ``t``::

    b(t) = M(0) + int_0^t (F_in(s) - F_out(s)) ds

These are the constraints of ProbConserv (Hansen et al. 2023, section 3) and HardC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from .._validation import as_tensor, as_tensors, check_finite, check_tensor

__all__ = ["box_weights", "mass_from_fluxes", "trapezoid_weights"]


def trapezoid_weights(x: Tensor) -> Tensor:
    """Trapezoid-rule weights ``w`` on a 1D grid (any spacing): ``w @ u ~ int u dx``.

    ``w_0 = (x_1 - x_0)/2``, ``w_i = (x_{i+1} - x_{i-1})/2``, ``w_{n-1} = (x_{n-1} -
    x_{n-2})/2``. Equivalent to ``scipy.integrate.trapezoid(u, x)``. For a periodic
    function on a grid that includes both ends of the period it is spectrally accurate.

    Args:
        x: strictly increasing grid points, shape ``(n,)``, ``n >= 2``.

    Returns:
        The weights, shape ``(n,)``, float64 on ``x``'s device.

    Raises:
        ValueError: fewer than 2 points, or points that are not strictly increasing.
    """
    x = check_tensor("x", as_tensor(x), ndim=1, real=True).to(torch.float64)
    check_finite("x", x)
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least 2 points for the trapezoid rule, got {x.shape[0]}")
    dx = torch.diff(x)
    if bool((dx <= 0).any()):
        i = int(torch.nonzero(dx <= 0)[0])
        raise ValueError(f"x must be strictly increasing; x[{i}] = {float(x[i])} >= "
                         f"x[{i + 1}] = {float(x[i + 1])}; sort the grid first")
    w = torch.zeros_like(x)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def box_weights(x: Tensor, y: Tensor) -> Tensor:
    """Trapezoid weights of a 2D box ``[x_0, x_-1] x [y_0, y_-1]``, flattened row-major.

    ``w[i * len(y) + j] = wx[i] * wy[j]``: ``w @ u.reshape(-1)`` integrates a field
    ``u`` of shape ``(len(x), len(y))`` (indexing ``"ij"``). Equivalent to
    ``trapezoid(trapezoid(u, y), x)``.
    """
    x, y = as_tensors(x, y)  # a numpy axis goes to the other's device
    return torch.outer(trapezoid_weights(x), trapezoid_weights(y)).reshape(-1)


def mass_from_fluxes(
    initial_mass: float,
    flux_in: Callable[[float], float],
    flux_out: Callable[[float], float],
    t: float | Sequence[float] | Tensor,
) -> Tensor:
    """The mass at times ``t`` from the initial mass and the boundary fluxes.

    ``b(t) = initial_mass + int_0^t (flux_in(s) - flux_out(s)) ds`` by adaptive
    Gauss-Kronrod quadrature (``scipy.integrate.quad``, which also copes with the
    integrable ``1/sqrt(s)`` singularity of a flux switched on at ``s = 0``), to a
    relative accuracy of about 1e-12.

    Args:
        initial_mass: ``M(0)``.
        flux_in: the flux entering at the left end, a function of time.
        flux_out: the flux leaving at the right end, a function of time.
        t: one time or several (>= 0).

    Returns:
        float64 tensor of the masses, shape of ``t`` (``()`` for a scalar).

    Raises:
        ValueError: a negative or non-finite time, or a quadrature that does not
            converge (the message gives scipy's estimate).
    """
    if not callable(flux_in) or not callable(flux_out):
        raise TypeError("flux_in and flux_out must be callables of time s -> float")
    ts = torch.as_tensor(t, dtype=torch.float64)
    flat = ts.reshape(-1).tolist()
    if any(not np.isfinite(s) or s < 0 for s in flat):
        raise ValueError(f"t must be finite and >= 0, got {t}")
    out = []
    for s in flat:
        if s == 0:
            out.append(float(initial_mass))
            continue
        val, err = integrate.quad(lambda r: float(flux_in(r)) - float(flux_out(r)), 0.0, s,
                                  epsabs=1e-14, epsrel=1e-12, limit=200)
        if not err <= 1e-9 * max(1.0, abs(val)):
            raise ValueError(f"the flux integral up to t = {s} did not converge "
                             f"(value {val}, error estimate {err}); check the fluxes")
        out.append(float(initial_mass) + val)
    return torch.tensor(out, dtype=torch.float64).reshape(ts.shape)
