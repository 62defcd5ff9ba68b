"""Periodic 1D spatial operators of the combined Burgers/KdV solver.

WENO5-JS reconstruction with the Godunov flux for ``u^2/2``, and the central
differences for ``u_xx`` and ``u_xxx``; every function acts on the last axis of a
batch ``(..., nx)`` of cell averages (or point values) on a periodic grid of spacing
``dx``. Kept apart from :mod:`sciml.pdes.burgers` so that each module reads in one
sitting.

References: G.-S. Jiang and C.-W. Shu, "Efficient implementation of weighted ENO
schemes", J. Comput. Phys. 126 (1996); C.-W. Shu, "Essentially non-oscillatory and
weighted essentially non-oscillatory schemes for hyperbolic conservation laws",
ICASE report 97-65 (1997).
"""

from __future__ import annotations

import torch

#: The Jiang-Shu regulariser of the smoothness indicators (as in Jiang & Shu, 1996).
WENO_EPS = 1e-6
#: Ghost cells on each side: the Godunov flux at x_{-1/2} needs u_{-3} ... u_{2}.
GHOSTS = 3
#: Linear stability constants of the central differences under SSP-RK3 (see ``rates``):
#: the step ``cfl / (K2 beta / dx^2 + K3 gamma / dx^3)`` with ``cfl = 1`` lies on the
#: boundary of SSP-RK3's stability region for every mixture of the two stencils
#: (their symbols peak at 16/3 and 3 sqrt(3)/2; SSP-RK3 reaches 2.51 on the negative
#: real axis and sqrt(3) on the imaginary one).
K2 = 2.5
K3 = 2.0


def periodic_pad(u: torch.Tensor, ghosts: int = GHOSTS) -> torch.Tensor:
    """``u`` with ``ghosts`` periodic ghost cells on each side of the last axis."""
    return torch.cat([u[..., -ghosts:], u, u[..., :ghosts]], dim=-1)


def weno5_left(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor,
               v4: torch.Tensor) -> torch.Tensor:
    """WENO5-JS value at the right face of the cell of ``v2`` from ``v0 ... v4``.

    ``v0 ... v4`` are the cell averages ``u_{i-2} ... u_{i+2}``; the result is the
    left-biased fifth-order reconstruction ``u^-_{i+1/2}``: a convex combination of the
    three third-order candidates with the Jiang-Shu nonlinear weights
    ``w_k ~ d_k / (eps + beta_k)^2``, ``d = (1/10, 6/10, 3/10)``, ``eps = 1e-6``.
    Feeding the same cells in mirror order (``u_{i+3} ... u_{i-1}``) gives the
    right-biased value ``u^+_{i+1/2}``.
    """
    c = 13.0 / 12.0
    b0 = c * (v0 - 2 * v1 + v2) ** 2 + 0.25 * (v0 - 4 * v1 + 3 * v2) ** 2
    b1 = c * (v1 - 2 * v2 + v3) ** 2 + 0.25 * (v1 - v3) ** 2
    b2 = c * (v2 - 2 * v3 + v4) ** 2 + 0.25 * (3 * v2 - 4 * v3 + v4) ** 2
    a0 = 0.1 / (WENO_EPS + b0) ** 2
    a1 = 0.6 / (WENO_EPS + b1) ** 2
    a2 = 0.3 / (WENO_EPS + b2) ** 2
    q0 = 2 * v0 - 7 * v1 + 11 * v2
    q1 = -v1 + 5 * v2 + 2 * v3
    q2 = 2 * v2 + 5 * v3 - v4
    return (a0 * q0 + a1 * q1 + a2 * q2) / (6 * (a0 + a1 + a2))


def godunov_burgers(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Godunov flux of ``f(u) = u^2/2`` between the face values ``left`` and ``right``.

    For a convex flux with its minimum at 0 the exact Riemann solution gives
    ``max(f(max(left, 0)), f(min(right, 0)))``: the upwind value, 0 in a transonic
    rarefaction, the larger flux across a shock.
    """
    return 0.5 * torch.maximum(left.clamp(min=0) ** 2, right.clamp(max=0) ** 2)


def weno5_flux(u: torch.Tensor) -> torch.Tensor:
    """Godunov fluxes of ``u^2/2`` at the ``nx + 1`` faces ``x_{-1/2} ... x_{nx-1/2}``.

    ``u`` is ``(..., nx)``; the face values come from WENO5-JS on the periodic
    extension. ``F[..., i + 1] - F[..., i]`` is the flux difference of cell ``i``.
    """
    nx = u.shape[-1]
    e = periodic_pad(u)  # e[k] = u_{k-3}
    m = nx + 1  # faces i + 1/2 for i = -1 ... nx-1

    def s(k: int) -> torch.Tensor:  # u_{i+k-2} at face i + 1/2, for i = -1 ... nx-1
        return e[..., k:k + m]

    left = weno5_left(s(0), s(1), s(2), s(3), s(4))
    right = weno5_left(s(5), s(4), s(3), s(2), s(1))
    return godunov_burgers(left, right)


def weno5_flux_difference(u: torch.Tensor, dx: float) -> torch.Tensor:
    """``(F_{i+1/2} - F_{i-1/2}) / dx``: the WENO5/Godunov approximation of ``(u^2/2)_x``.

    Fifth order for smooth ``u`` away from critical points (where the Jiang-Shu weights
    lose some accuracy); conservative: the flux differences telescope.
    """
    f = weno5_flux(u)
    return (f[..., 1:] - f[..., :-1]) / dx


def second_derivative(u: torch.Tensor, dx: float) -> torch.Tensor:
    """Fourth-order central ``u_xx``.

    ``(-u_{i-2} + 16 u_{i-1} - 30 u_i + 16 u_{i+1} - u_{i+2}) / (12 dx^2)``: the
    original MP-PDE solver's stencil. On cell averages it is the difference of the
    fourth-order face gradients ``(u_{i-1} - 15 u_i + 15 u_{i+1} - u_{i+2}) / (12 dx)``,
    hence conservative and fourth order for the finite-volume scheme too.
    """
    nx = u.shape[-1]
    e = periodic_pad(u, 2)
    um2, um1, up1, up2 = e[..., 0:nx], e[..., 1:nx + 1], e[..., 3:nx + 3], e[..., 4:nx + 4]
    return (16 * (um1 + up1) - (um2 + up2) - 30 * u) / (12 * dx * dx)


def third_derivative(u: torch.Tensor, dx: float) -> torch.Tensor:
    """Second-order central ``u_xxx``: ``(u_{i+2} - 2 u_{i+1} + 2 u_{i-1} - u_{i-2}) / (2 dx^3)``.

    The standard 5-point stencil (and the original solver's). It is the difference of
    the face values ``(u_{i+2} - u_{i+1} - u_i + u_{i-1}) / (2 dx^3)``, so conservative.
    """
    nx = u.shape[-1]
    e = periodic_pad(u, 2)
    um2, um1, up1, up2 = e[..., 0:nx], e[..., 1:nx + 1], e[..., 3:nx + 3], e[..., 4:nx + 4]
    return ((up2 - um2) - 2 * (up1 - um1)) / (2 * dx ** 3)


def rates(umax: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor,
          dx: float) -> torch.Tensor:
    """Per-sample inverse time scale: the step is ``cfl / rate``.

    ``alpha max|u| / dx + K2 beta / dx^2 + K3 gamma / dx^3``: the advective CFL number
    plus the diffusive and dispersive limits. Adding the rates (rather than taking the
    smallest step) keeps every mixture of the three inside the stability region.
    """
    return alpha * umax / dx + K2 * beta / dx ** 2 + K3 * gamma / dx ** 3
