"""1D diffusion-sorption (PDEBench), with its finite-volume reference solver.

.. math::

    R(u)\\, u_t = D\\, u_{xx}, \\quad x \\in (0, 1), \\qquad
    R(u) = 1 + \\frac{1 - \\phi}{\\phi}\\, \\rho_s k_f n_f\\, (u + \\epsilon)^{n_f - 1},

with PDEBench's constants ``D = 5e-4``, ``phi = 0.29``, ``rho_s = 2880``,
``k_f = 3.5e-4``, ``n_f = 0.874`` and ``epsilon = 1e-6`` (``R`` blows up as ``u -> 0``
since ``n_f < 1``; Takamoto et al., PDEBench, NeurIPS 2022; the hard-constraint
benchmark of Chalapathi et al., ICLR 2024).

Boundary conditions, as PDEBench's generator implements them (which is what its data,
and so the published errors, follow):

* ``u(t, 0) = 1``, imposed on a ghost cell one cell width left of the first centre;
* at ``x = 1`` a ghost value ``D (u_{n-2} - u_{n-1}) / h``, i.e. ``u = -D u_x``: an
  outflow (Robin) condition. The paper writes ``u(t, 1) = D u_x(t, 1)``; with that sign
  the continuous problem has a boundary mode ``sinh(k x) e^{D k^2 t}``,
  ``tanh k = D k`` (``k ~ 1/D``), growing at a rate of order ``1/D``, so we follow the
  generator, not the formula.

PDEBench draws one initial value ``u0 ~ U[0, 0.2]`` per sample, constant in ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.sparse import diags

from .._validation import check_int, check_positive, check_tolerances

__all__ = ["DiffusionSorption", "solve_diffusion_sorption"]


@dataclass(frozen=True)
class DiffusionSorption:
    """The equation's constants (PDEBench's by default)."""

    D: float = 5e-4
    phi: float = 0.29
    rho_s: float = 2880.0
    k_f: float = 3.5e-4
    n_f: float = 0.874
    eps: float = 1e-6

    def __post_init__(self) -> None:
        for name, fix in (("D", "the effective diffusion coefficient (PDEBench: 5e-4)"),
                          ("phi", "the porosity, in (0, 1) (PDEBench: 0.29)"),
                          ("rho_s", "the bulk density (PDEBench: 2880)"),
                          ("n_f", "the Freundlich exponent (PDEBench: 0.874)"),
                          ("eps", "the regularisation of u^(n_f - 1) at 0 (PDEBench: 1e-6)")):
            check_positive(f"DiffusionSorption.{name}", getattr(self, name), fix=fix)
        check_positive("DiffusionSorption.k_f", self.k_f, allow_zero=True,
                       fix="the Freundlich constant; 0 switches sorption off")
        if not self.phi < 1:
            raise ValueError(f"DiffusionSorption.phi is a porosity in (0, 1), got {self.phi}")

    @property
    def a(self) -> float:
        """``(1 - phi)/phi rho_s k_f``: the sorbed concentration is ``a u^n_f``."""
        return (1 - self.phi) / self.phi * self.rho_s * self.k_f

    def retardation(self, u):
        """``R(u) = 1 + a n_f (u + eps)^(n_f - 1)`` (numpy or torch, differentiable)."""
        return 1 + self.a * self.n_f * (u + self.eps) ** (self.n_f - 1)

    def total(self, u):
        """``C(u) = u + a (u + eps)^n_f``: ``C' = R``, so ``C(u)_t = D u_xx`` is conserved."""
        return u + self.a * (u + self.eps) ** self.n_f


def _laplacian(n: int, D: float) -> tuple[object, np.ndarray]:
    """``D u_xx`` as ``L u + s`` on ``n`` cells with the two ghost cells eliminated."""
    h = 1.0 / n
    main = np.full(n, -2.0)
    main[-1] = -2.0 - D / h  # ghost_{n} = D (u_{n-2} - u_{n-1}) / h
    lower = np.ones(n - 1)
    lower[-1] = 1.0 + D / h
    L = diags([lower, main, np.ones(n - 1)], [-1, 0, 1], format="csr") * (D / h**2)
    s = np.zeros(n)
    s[0] = D / h**2  # ghost_{-1} = 1
    return L, s


def _as_float64(name: str, v: object) -> np.ndarray:
    """``v`` (a number, a sequence or a tensor of real numbers) flattened to float64."""
    if isinstance(v, (str, bytes, bool)) or v is None:
        raise TypeError(f"{name} must be a number or a tensor of real numbers, got {v!r}")
    try:
        return np.asarray(torch.as_tensor(v, dtype=torch.float64)).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or a tensor of real numbers, got "
                        f"{type(v).__name__}") from None


def solve_diffusion_sorption(
    u0: torch.Tensor | float,
    times: torch.Tensor,
    *,
    n: int = 1024,
    eq: DiffusionSorption | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-10,
) -> torch.Tensor:
    """Reference solution on ``n`` cells (centres ``(i + 1/2)/n``) at ``times``.

    Finite volumes in space (PDEBench's stencil, see the module docstring) and scipy's
    implicit BDF in time with the exact banded Jacobian (the problem is stiff).

    Args:
        u0: the initial state: a number (PDEBench's constant state) or ``(n,)`` cell values.
        times: increasing output times ``(T,)``, ``times[0] >= 0`` (the solve starts at
            ``times[0]``).
        n: cells (ignored when ``u0`` is an array: its length).
        eq: the constants (PDEBench's by default).
        rtol, atol: BDF tolerances.

    Returns:
        float64 tensor ``(T, n)``.

    Raises:
        ValueError: fewer than 4 cells, negative initial values, times that are not
            increasing, or a failed solve (scipy's message is passed on).
    """
    eq = DiffusionSorption() if eq is None else eq
    if not isinstance(eq, DiffusionSorption):
        raise TypeError(f"eq must be a DiffusionSorption (the constants) or None for "
                        f"PDEBench's, got {type(eq).__name__}")
    rtol, atol = check_tolerances(rtol, atol, fix="BDF tolerances such as rtol=1e-7, "
                                  "atol=1e-10")
    u = _as_float64("u0", u0)
    if u.size == 1:
        u = np.full(check_int("n", n, minimum=4), float(u[0]))
    n = check_int("len(u0)", u.size, minimum=4)
    if not np.all(np.isfinite(u)) or u.min() < 0:
        raise ValueError(f"u0 must be finite and >= 0 (a concentration), got min {u.min()}")
    t = _as_float64("times", times)
    if t.size == 0 or not np.all(np.isfinite(t)) or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"times must be non-negative and strictly increasing, got {t}")
    L, s = _laplacian(n, eq.D)

    def rate(_t: float, v: np.ndarray) -> np.ndarray:
        return (L @ v + s) / eq.retardation(np.maximum(v, 0.0))

    def jac(_t: float, v: np.ndarray):
        vc = np.maximum(v, 0.0)
        r = eq.retardation(vc)
        dr = eq.a * eq.n_f * (eq.n_f - 1) * (vc + eq.eps) ** (eq.n_f - 2) * (v > 0)
        return diags(1 / r) @ L - diags((L @ v + s) * dr / r**2)

    if t.size == 1:
        return torch.from_numpy(u.copy())[None]
    sol = solve_ivp(rate, (float(t[0]), float(t[-1])), u, method="BDF", t_eval=t,
                    rtol=rtol, atol=atol, jac=jac)
    if not sol.success:
        raise ValueError(f"the diffusion-sorption solve failed: {sol.message}")
    return torch.from_numpy(sol.y.T.copy())
