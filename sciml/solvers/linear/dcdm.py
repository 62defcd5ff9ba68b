"""The Deep Conjugate Direction Method: flexible conjugate directions with a network.

Kaneda et al. (ICML 2023): the search direction from residual ``r`` is ``q = f(r)``, a
network trained to approximate ``A^-1 r`` up to scale, made A-orthogonal to the last ``k``
directions (:class:`~sciml.solvers.linear.FlexibleCG`); the step length minimises the
A-norm of the error, so the error falls monotonically whatever the network returns. The
authors keep ``k = 2``; a prototype here stalled at a relative residual of 0.03-0.05
with 2 and converged with 20, so the default is 16.

One network application costs far more than a product with a sparse ``A`` (on a CPU,
tens of CG iterations at 64^3); :meth:`DCDMNet.macs` states its multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..._frozen import frozen_settings
from ..._validation import check_bool
from ._common import Solution
from ._krylov import as_operator, check_rhs
from .flexible import FlexibleCG

__all__ = ["DCDM", "NetworkPreconditioner", "dcdm"]


class NetworkPreconditioner:
    """``M(r)`` from a network on the grid of ``system``.

    Flat ``(W, n)`` residuals are reshaped to the grid, run through the network in its own
    dtype (no gradients) and returned in the residual's dtype. With ``A`` given (the
    safeguard), the direction is the best combination ``a q + b r`` of the network's
    ``q`` and the residual ``r`` (the one that removes the most A-norm error: a 2 x 2
    solve, two extra products with ``A``), so a direction is never worse than a
    steepest-descent step; where the network fails on a residual unlike its training
    data, the iteration degrades towards truncated CG instead of stalling. Counts:
    ``applications`` (network calls) and ``matvecs`` (the safeguard's products).

    A network with a ``padded_shape(shape)`` method (:meth:`DCDMNet.padded_shape
    <sciml.operators.DCDMNet.padded_shape>`) sees the residual zero-padded to that grid,
    the added cells marked non-fluid, and its direction is cropped back; so a
    rectangular or odd-sized grid gets the network's full depth. The system's
    coefficients are not shown to the network (it was trained on ``k = 1``): on a
    variable-coefficient system the safeguard keeps the solve converging.
    """

    def __init__(self, net: nn.Module, system, A=None) -> None:
        _check_net_and_system(net, system)
        if A is not None and not hasattr(A, "matvec"):
            raise TypeError(f"A must be a LinearOperator (with matvec) or None, got "
                            f"{type(A).__name__}; adapt it with aslinearoperator(A)")
        self.net, self.system, self.A = net, system, A
        self.mask = system.fluid_mask
        self.grid = tuple(system.shape)
        pad = getattr(net, "padded_shape", None)
        self.padded = tuple(pad(self.grid)) if callable(pad) else self.grid
        if len(self.padded) != len(self.grid) or any(
                p < g for p, g in zip(self.padded, self.grid)):
            raise ValueError(f"net.padded_shape{self.grid} returned {self.padded}; a padded "
                             f"grid must have the same number of sides, none smaller")
        self._crop = (slice(None), *(slice(0, g) for g in self.grid))
        self._net_mask = self.mask
        if self.padded != self.grid:
            self._net_mask = torch.zeros(self.padded, dtype=torch.bool)
            self._net_mask[self._crop[1:]] = self.mask
        self._device_masks: dict[torch.device, Tensor] = {}  # the mask on each device used
        self.applications = 0
        self.matvecs = 0

    def _mask_on(self, device: torch.device) -> Tensor:
        """The network's fluid mask on ``device``: copied once, then reused by every call
        (a copy per call would be a blocking host-to-device transfer per iteration)."""
        m = self._device_masks.get(device)
        if m is None or m.device != device:
            m = self._device_masks[device] = self._net_mask.to(device=device)
        return m

    def __call__(self, r: Tensor) -> Tensor:
        self.applications += 1
        p = next(self.net.parameters())
        grid = r.reshape(-1, *self.grid).to(p.dtype)
        if self.padded != self.grid:
            big = grid.new_zeros(grid.shape[0], *self.padded)  # padding: not fluid
            big[self._crop] = grid
            grid = big
        with torch.no_grad():
            q = self.net(grid, self._mask_on(p.device))
        q = q[self._crop].reshape(r.shape).to(r.dtype)
        if self.A is None:
            return q
        self.matvecs += 2
        Aq, Ar = self.A.matvec(q), self.A.matvec(r)
        qAq, qAr, rAr = (q * Aq).sum(-1), (q * Ar).sum(-1), (r * Ar).sum(-1)
        qr, rr = (q * r).sum(-1), (r * r).sum(-1)
        det = qAq * rAr - qAr * qAr
        ok = det > 1e-12 * qAq.abs() * rAr.abs()
        safe = torch.where(ok, det, torch.ones_like(det))
        a = torch.where(ok, (rAr * qr - qAr * rr) / safe, torch.zeros_like(det))
        b = torch.where(ok, (qAq * rr - qAr * qr) / safe, torch.ones_like(det))
        return a.unsqueeze(-1) * q + b.unsqueeze(-1) * r


def _check_net_and_system(net: object, system: object) -> None:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module (a DCDMNet), got {net!r}")
    if tuple(getattr(system, "shape", ())) == () or not hasattr(system, "fluid_mask"):
        raise TypeError(f"system must be a PoissonSystem (grid shape and fluid mask), "
                        f"got {system!r}")


@frozen_settings()
@dataclass(frozen=True)
class DCDM:
    """DCDM settings; call ``DCDM(...)(A, b, net=..., system=...)`` (see :func:`dcdm`;
    ``rtol=None``: by dtype, see :func:`sciml.solvers.default_tol`)."""

    k: int = 16
    rtol: float | None = None
    atol: float = 0.0
    max_iter: int | None = None
    safeguard: bool = True

    def __post_init__(self) -> None:
        FlexibleCG(k=self.k, rtol=self.rtol, atol=self.atol, max_iter=self.max_iter)
        check_bool("safeguard", self.safeguard)

    def __call__(self, A, b: Tensor, *, net: nn.Module, system, x0: Tensor | None = None,
                 callback=None, throw: bool = False) -> Solution:
        _check_net_and_system(net, system)
        # adapt A once (scipy sparse, dense, CSR, callable): the safeguard applies it too
        A = as_operator("A", A, check_rhs(b), b, strict=True)
        M = NetworkPreconditioner(net, system, A if self.safeguard else None)
        sol = FlexibleCG(k=self.k, rtol=self.rtol, atol=self.atol, max_iter=self.max_iter)(
            A, b, M=M, x0=x0, callback=callback, throw=throw)
        sol.stats["network_applications"] = M.applications
        sol.stats["safeguard_matvecs"] = M.matvecs
        return sol


def dcdm(A, b: Tensor, *, net: nn.Module, system, k: int = 16, x0: Tensor | None = None,
         rtol: float | None = None, atol: float = 0.0, max_iter: int | None = None,
         safeguard: bool = True, callback=None, throw: bool = False) -> Solution:
    """Solve ``A x = b`` by DCDM with a trained :class:`~sciml.operators.DCDMNet`.

    ``A`` is the system's operator (or any LinearOperator on the full-grid vectors of
    ``system``), ``b`` ``(..., n)`` (``n`` the cells of ``system``'s grid, of any shape;
    see :class:`NetworkPreconditioner` for padding). Stopping rule as :func:`cg`:
    ``||b - A x|| <= max(rtol ||b||, atol)`` (``rtol`` None: by dtype, see
    :func:`sciml.solvers.default_tol`; ``stats["rtol"]`` is the value used). ``safeguard``: see
    :class:`NetworkPreconditioner` (the paper's method is ``safeguard=False``).
    """
    return DCDM(k=k, rtol=rtol, atol=atol, max_iter=max_iter, safeguard=safeguard)(
        A, b, net=net, system=system, x0=x0, callback=callback, throw=throw)
