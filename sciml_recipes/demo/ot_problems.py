"""Test problems for entropic optimal transport, shared by the demo, example and benchmark.

Three families, each seeded and returned as ``(a, b, M)`` torch tensors (uniform or
density masses summing to one, cost ``M`` scaled to a maximum of one unless stated):

- :func:`random_points`: two clouds of ``n`` uniform points in the unit square, squared
  Euclidean cost (the classic Sinkhorn benchmark);
- :func:`random_assignment`: i.i.d. uniform costs on ``[0, 1]`` (no geometry; hard for
  Sinkhorn at small ``reg``, Tang & Qiu 2024, "Safe and sparse Newton method for
  entropic-regularized optimal transport", NeurIPS);
- :func:`grid_densities`: two Gaussian-mixture densities on a ``size x size`` grid of
  ``[0, 1]^2`` with cost ``|x - y|^p`` (W1 for ``p = 1``, W2 for ``p = 2``).

Plus the helpers every caller needs to judge a plan: :func:`marginal_error` (the L1
error the solvers' ``tol`` is on, for torch tensors and numpy arrays alike) and
:func:`barycentric_map` (the displacement a plan implies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class OTProblem:
    """One balanced OT problem: masses ``a (n,)``, ``b (m,)``, cost ``M (n, m)``.

    ``scale`` is the factor the cost was divided by (``M = C / scale`` for the raw cost
    ``C``), so ``scale * <P, M>`` is the transport cost in the problem's own units.
    ``x`` and ``y`` are the support points where the problem has a geometry.
    """

    a: torch.Tensor
    b: torch.Tensor
    M: torch.Tensor
    scale: float = 1.0
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, M)`` as float64 numpy arrays (the peers' input format)."""
        return tuple(t.detach().cpu().double().numpy() for t in (self.a, self.b, self.M))


def _check_size(name: str, n: int, low: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < low:
        raise ValueError(f"{name} must be an int >= {low}, got {n!r}")


def random_points(
    n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> OTProblem:
    """``n`` uniform source and ``n`` uniform target points in ``[0, 1]^2``, uniform masses.

    The cost is ``|x_i - y_j|^2`` divided by its maximum (so ``reg`` is relative to the
    largest cost).
    """
    _check_size("n", n)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = torch.rand(n, 2, generator=g, dtype=torch.float64)
    C = torch.cdist(x, y).square_()
    scale = float(C.max())
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return _finish(w, w.clone(), C / scale, scale, x, y, dtype, device)


def random_assignment(
    n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> OTProblem:
    """An ``n x n`` cost of i.i.d. uniform entries on ``[0, 1]``, uniform masses."""
    _check_size("n", n)
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(n, n, generator=g, dtype=torch.float64)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return _finish(w, w.clone(), C, 1.0, None, None, dtype, device)


def grid_points(size: int) -> torch.Tensor:
    """Cell centres of a ``size x size`` grid of ``[0, 1]^2``, ``(size**2, 2)``, row-major
    (point ``i * size + j`` is at ``((i + 1/2) / size, (j + 1/2) / size)``)."""
    _check_size("size", size)
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    return torch.cartesian_prod(c, c)


def gaussian_mixture_density(
    size: int, *, components: int = 3, seed: int = 0, floor: float = 1e-6,
) -> torch.Tensor:
    """A random mixture of isotropic Gaussians on the ``size x size`` grid, summing to one.

    Centres are uniform in ``[0.2, 0.8]^2``, widths in ``[0.05, 0.15]``, weights in
    ``[0.5, 1]``. ``floor`` (relative to the peak) keeps every cell's mass positive, so
    the log-domain potentials stay finite everywhere; it moves a negligible mass.
    """
    _check_size("size", size, 2)
    _check_size("components", components)
    if not 0 <= floor < 1:
        raise ValueError(f"floor must be in [0, 1), got {floor!r}")
    g = torch.Generator().manual_seed(seed)
    centres = 0.2 + 0.6 * torch.rand(components, 2, generator=g, dtype=torch.float64)
    widths = 0.05 + 0.1 * torch.rand(components, generator=g, dtype=torch.float64)
    weights = 0.5 + 0.5 * torch.rand(components, generator=g, dtype=torch.float64)
    p = grid_points(size)
    d2 = torch.cdist(p, centres).square()                       # (size^2, components)
    rho = (weights * torch.exp(-d2 / (2 * widths**2)) / widths**2).sum(-1)
    rho = rho + floor * rho.max()
    return (rho / rho.sum()).reshape(size, size)


def grid_densities(
    size: int, *, power: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> OTProblem:
    """Two seeded Gaussian-mixture densities on a ``size x size`` grid and the cost
    ``|x - y|^power`` between cell centres, divided by its maximum.

    ``power = 1`` gives the (entropic) W1 problem, ``power = 2`` the W2 problem; the
    transport cost in grid units is ``scale * <P, M>`` (``W_p^p`` as ``reg -> 0``).
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 (W1) or 2 (W2), got {power!r}")
    a = gaussian_mixture_density(size, seed=seed).flatten()
    b = gaussian_mixture_density(size, seed=seed + 1).flatten()
    p = grid_points(size)
    C = torch.cdist(p, p)
    if power == 2:
        C = C.square()
    scale = float(C.max())
    return _finish(a, b, C / scale, scale, p, p.clone(), dtype, device)


def _finish(a, b, M, scale, x, y, dtype, device) -> OTProblem:
    def to(t):
        return None if t is None else t.to(dtype=dtype, device=device)

    return OTProblem(to(a), to(b), to(M), scale, to(x), to(y))


def marginal_error(P, a, b) -> float:
    """``||P 1 - a||_1 + ||P^T 1 - b||_1``, the error the solvers' ``tol`` bounds.

    Accepts torch tensors or numpy arrays (any mix); computed in float64 on the host so
    every implementation's plan is measured the same way.
    """
    P, a, b = (np.asarray(t.detach().cpu().double() if isinstance(t, torch.Tensor) else t,
                          dtype=np.float64) for t in (P, a, b))
    if P.shape != (a.shape[-1], b.shape[-1]):
        raise ValueError(f"P has shape {P.shape} but a has {a.shape[-1]} and b "
                         f"{b.shape[-1]} entries: expected P of shape (len(a), len(b))")
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def barycentric_map(plan: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Where a plan sends each source point on average: ``T(x_i) = sum_j P_ij y_j / sum_j
    P_ij``, ``(..., n, d)``; rows with no mass map to NaN.

    For the W2 plan this approximates the Monge map (Brenier), blurred by ``reg``.
    """
    if plan.shape[-1] != y.shape[-2]:
        raise ValueError(f"plan has {plan.shape[-1]} columns but y has {y.shape[-2]} points;"
                         " y must hold one point per target (column)")
    mass = plan.sum(-1, keepdim=True)
    return (plan @ y.to(plan.dtype)) / mass
