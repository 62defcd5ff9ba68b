"""Chained mixture of experts: slabs in time, each starting where the previous one ends.

:class:`~sciml.constraints.MoEHardConstraint` solves its experts independently, so an
expert whose piece does not touch ``t = 0`` has no initial condition (a parabolic problem
needs one) and its piece meets its neighbours only as well as the training loss makes it.
:class:`ChainedHardConstraint` cuts the domain into ``K`` slabs in time and solves them
one after the other: slab ``k`` has initial rows at its own start time whose target is
slab ``k - 1``'s state there. The experts share the basis (as in
:func:`~sciml.constraints.assemble`), so that state is ``I_k c_{k-1}`` with ``I_k`` the
basis values at slab ``k``'s initial rows. The price is ``K`` sequential solves: the
experts no longer run in parallel (nor across ``torch.distributed`` ranks).

Gradients: each solve is a :class:`~sciml.constraints.HardConstraint` with its implicit
(exact-Hessian) backward, and slab ``k``'s target ``I_k c_{k-1}`` is an ordinary tensor
of the graph, so the gradient of a loss reaches every slab's data through every later
link of the chain; no Levenberg-Marquardt iteration is unrolled.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._frozen import frozen_settings
from .._validation import check_int, check_tensor
from .hard import _WORST, HardConstraint, Residual
from .moe import MoEResult, _check_call, _LMSettings

__all__ = ["ChainedHardConstraint"]


@frozen_settings(("residual", "ridge", "max_iter", "tol", "jacobian", "n_experts",
                  "start_basis", "start_target", "_n_experts", "_start_basis",
                  "_start_target", "_layer"), per_call=("max_iter",))
class ChainedHardConstraint(_LMSettings):
    """``K`` hard constraints on slabs in time, solved in sequence, each slab's initial
    rows asking for the previous slab's end state.

    Args:
        residual: as for :class:`HardConstraint`: ``residual(c, *data) -> (B, R)`` for
            ``c`` ``(B, N)``, samples independent, called once per slab with that slab's
            data ``data[i][:, k]``.
        n_experts: ``K``, the number of slabs (in time order on dim 1 of the data).
        start_basis: the index in ``data`` of the basis values at each slab's initial
            rows, ``(B, K, n, N)``.
        start_target: the index in ``data`` of those rows' target. Slab 0 receives
            ``data[start_target][:, 0]`` as given (the initial condition, in whatever shape
            the residual reads); slab ``k >= 1`` receives instead the previous slab's
            state at its initial rows, ``data[start_basis][:, k] @ c_{k-1}``, ``(B, n)``
            float64 (``data[start_target][:, k]`` is not read). The residual must accept
            both shapes.
        ridge, max_iter, tol, jacobian: the Levenberg-Marquardt settings (see
            :class:`HardConstraint`); read-only after construction (assigning one raises
            ``AttributeError``: pass ``max_iter=`` per call, or build a new layer).

    Call ``layer(*data, c0=c0)`` with each data tensor ``(B, K, ...)`` and ``c0``
    ``(B, K, N)`` (``max_iter=`` overrides the layer's setting for this call); returns
    :class:`MoEResult` with coefficients ``(B, K, N)`` (float64, differentiable through
    the chain), the worst status over slabs and samples, and per-slab iterations,
    gradient and residual norms ``(B, K)``. ``throw=True`` raises
    :class:`~sciml.constraints.HardConstraintError` instead of returning a status other
    than ``CONVERGED`` (after every slab is solved).

    Example (two slabs; ``I`` the basis at each slab's start, ``u0`` the initial value)::

        def residual(c, P, y, I, u0):
            u0 = u0[:, None] if u0.ndim == 1 else u0  # (B,) for slab 0, (B, n) after
            pde = (P @ c[..., None])[..., 0] - y
            start = (I @ c[..., None])[..., 0] - u0
            return torch.cat([pde, start], -1)

        layer = ChainedHardConstraint(residual, 2, start_basis=2, start_target=3)
        res = layer(P, y, I, u0, c0=torch.zeros(B, 2, N))
    """

    def __init__(self, residual: Residual, n_experts: int, *, start_basis: int,
                 start_target: int, ridge: float = 1e-8, max_iter: int = 50,
                 tol: float = 1e-10,
                 jacobian: Callable[..., tuple[Tensor, Tensor]] | None = None) -> None:
        # read-only settings (see frozen_settings): set once, here
        n_experts = check_int("n_experts", n_experts, minimum=1)
        start_basis = check_int("start_basis", start_basis, minimum=0)
        start_target = check_int("start_target", start_target, minimum=0)
        if start_basis == start_target:
            raise ValueError(f"start_basis and start_target must name different data "
                             f"tensors, both are {start_basis}")
        # validates residual, ridge, max_iter, tol and jacobian
        layer = HardConstraint(residual, ridge=ridge, max_iter=max_iter, tol=tol,
                               jacobian=jacobian)
        for name, value in (("_n_experts", n_experts), ("_start_basis", start_basis),
                            ("_start_target", start_target), ("_layer", layer)):
            object.__setattr__(self, name, value)

    @property
    def n_experts(self) -> int:
        return self._n_experts

    @property
    def start_basis(self) -> int:
        return self._start_basis

    @property
    def start_target(self) -> int:
        return self._start_target

    def __repr__(self) -> str:
        return (f"ChainedHardConstraint(n_experts={self.n_experts}, "
                f"start_basis={self.start_basis}, start_target={self.start_target}, "
                f"ridge={self.ridge}, max_iter={self.max_iter}, tol={self.tol})")

    def __call__(self, *data: Tensor, c0: Tensor, max_iter: int | None = None,
                 throw: bool = False) -> MoEResult:
        res = self._call(data, c0, max_iter)
        return res._throw("slab problem(s)") if throw else res

    def _call(self, data: tuple[Tensor, ...], c0: Tensor, max_iter: int | None) -> MoEResult:
        c0, data, max_iter = _check_call(data, c0, max_iter, self.n_experts, "slabs")
        B, K, N = c0.shape
        need = max(self.start_basis, self.start_target) + 1
        if len(data) < need:
            raise ValueError(f"the layer reads data[{self.start_basis}] (start_basis) and "
                             f"data[{self.start_target}] (start_target) but got "
                             f"{len(data)} data tensor(s)")
        basis = check_tensor(f"data[{self.start_basis}]", data[self.start_basis], ndim=4,
                             real=True)
        if basis.shape[-1] != N:
            raise ValueError(f"data[{self.start_basis}] (start_basis) must be (B, K, n, N) "
                             f"with N = {N} basis functions like c0, got "
                             f"{tuple(basis.shape)}")
        coeffs, its, gnorms, rnorms, members = [], [], [], [], []
        worst = 0
        prev: Tensor | None = None
        for k in range(K):
            dk = [d[:, k] for d in data]
            if prev is not None:
                # the previous slab's state at this slab's initial rows (shared basis)
                dk[self.start_target] = (dk[self.start_basis].to(prev.dtype)
                                         @ prev.unsqueeze(-1))[..., 0]
            res = self._layer(*dk, c0=c0[:, k], max_iter=max_iter)
            prev = res.coeffs
            coeffs.append(prev)
            its.append(res.iterations)
            gnorms.append(res.grad_norm)
            rnorms.append(res.residual_norm)
            members.append(res.stats["member_status"])
            worst = max(worst, _WORST.index(res.status))
        # member_status in row-major (B, K) order, like the tensors
        by_sample = [s for b in range(B) for s in (members[k][b] for k in range(K))]
        return MoEResult(torch.stack(coeffs, 1), _WORST[worst], torch.stack(its, 1),
                         torch.stack(gnorms, 1), torch.stack(rnorms, 1),
                         {"member_status": by_sample})
