"""The inverse problem: a forward map, what is observed, the data, a misfit and a prior.

.. math:: J(x) = \\phi\\big(O(F(x)), d\\big) + R(x)
          \\quad \\text{subject to} \\quad G x = b \\text{ (optional)}

``F`` is any differentiable map from the unknown ``x`` (a batch ``(B, ...)``: a field,
an initial condition, a few scalars) to a field, ``O`` an observation operator, ``phi``
a misfit and ``R`` a prior energy (the negative log-prior). Minimising ``J`` gives the
maximum a posteriori (MAP) estimate; the problem holds the data, the solvers
(:class:`~sciml.inverse.MAP`, :class:`~sciml.inverse.Laplace`) hold only settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._validation import as_tensor, check_tensor
from ..constraints import project_mean
from .misfit import L2Misfit, Misfit
from .observe import Observation
from .prior import Prior

__all__ = ["InverseProblem", "LinearConstraint"]


@dataclass(frozen=True, eq=False)
class LinearConstraint:
    """A hard linear equality constraint ``G x = b`` on the flattened unknown.

    Attributes:
        G: ``(k, n)`` (or ``(n,)`` for one constraint), ``n`` the unknowns per problem.
        b: ``(k,)`` right-hand sides, or ``(B, k)`` one set per problem of the batch.

    :meth:`project` is the Euclidean projection
    ``x - G^T (G G^T)^{-1} (G x - b)`` (:func:`sciml.constraints.project_mean`, float64).
    """

    G: torch.Tensor
    b: torch.Tensor

    def __post_init__(self) -> None:
        G = check_tensor("G", as_tensor(self.G), real=True)
        if G.ndim == 1:
            G = G[None]
        if G.ndim != 2:
            raise ValueError(f"G must be (k, n) (or (n,) for one constraint), got shape "
                             f"{tuple(G.shape)}")
        b = torch.as_tensor(self.b, dtype=G.dtype, device=G.device)
        if b.ndim == 0:
            b = b.reshape(1)
        if b.shape[-1] != G.shape[0] or b.ndim > 2:
            raise ValueError(f"b has shape {tuple(b.shape)} but G has k = {G.shape[0]} rows; "
                             f"pass b as ({G.shape[0]},) or (B, {G.shape[0]})")
        if G.shape[0] > G.shape[1]:
            raise ValueError(f"G has {G.shape[0]} constraints on {G.shape[1]} unknowns; "
                             "use at most as many constraints as unknowns")
        object.__setattr__(self, "G", G)
        object.__setattr__(self, "b", b)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, min_ndim=2, real=True)
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.G.shape[1]:
            raise ValueError(f"the unknown has {flat.shape[1]} entries per problem (shape "
                             f"{tuple(x.shape)}) but G has {self.G.shape[1]} columns")
        return flat

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``G x - b`` per problem, ``(B, k)``."""
        flat = self._flat(x)
        return flat @ self.G.to(flat).T - self.b.to(flat)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest ``x`` (Euclidean) with ``G x = b``, in ``x``'s dtype."""
        flat = self._flat(x)
        out = project_mean(flat, self.G.to(flat.device), self.b.to(flat.device))
        return out.to(x.dtype).reshape(x.shape)


@dataclass(frozen=True, eq=False)
class InverseProblem:
    """The data and the model of an inverse problem; see the module docstring.

    Attributes:
        forward: ``F``, a differentiable callable mapping the unknown ``(B, ...)`` to a
            field (batched over the leading axis: problem ``i`` only sees row ``i``).
        observation: ``O``, e.g. a :class:`~sciml.inverse.PointObservation`.
        data: the observed values, shaped like ``O(F(x))`` (or broadcastable to it).
        misfit: ``phi``; ``None`` is ``L2Misfit(observation.noise_std)``.
        prior: ``R`` (a :class:`~sciml.inverse.SobolevPrior`, ...), or ``None``.
        constraint: a :class:`LinearConstraint`, or ``None``.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    observation: Observation
    data: torch.Tensor
    misfit: Misfit | None = None
    prior: Prior | None = None
    constraint: LinearConstraint | None = None

    def __post_init__(self) -> None:
        if not callable(self.forward):
            raise TypeError(f"forward must be callable (x -> field), got "
                            f"{type(self.forward).__name__}")
        if not callable(self.observation):
            raise TypeError(f"observation must be callable (field -> values), got "
                            f"{type(self.observation).__name__}")
        object.__setattr__(self, "data", check_tensor("data", as_tensor(self.data), real=True))
        if self.misfit is None:
            sigma = getattr(self.observation, "noise_std", 0.0)
            if not sigma > 0:
                raise ValueError("misfit is None and the observation has noise_std = "
                                 f"{sigma!r}; give the observation a noise_std > 0 or pass "
                                 "a misfit (e.g. L2Misfit(noise_std=...))")
            object.__setattr__(self, "misfit", L2Misfit(sigma))
        elif not callable(self.misfit):
            raise TypeError(f"misfit must be callable (pred, data) -> (B,), got "
                            f"{type(self.misfit).__name__}")
        if self.prior is not None and not isinstance(self.prior, Prior):
            raise TypeError(f"prior must have energy(x) and hessian_vector(x, v), got "
                            f"{type(self.prior).__name__}")
        if self.constraint is not None and not isinstance(self.constraint, LinearConstraint):
            raise TypeError(f"constraint must be a LinearConstraint(G, b), got "
                            f"{type(self.constraint).__name__}")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted observations ``O(F(x))``."""
        return self.observation(self.forward(x))

    def misfit_value(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(O(F(x)), d)`` per problem, ``(B,)``."""
        return self.misfit(self.predict(x), self.data)  # type: ignore[misc]

    def prior_energy(self, x: torch.Tensor) -> torch.Tensor:
        """``R(x)`` per problem (zeros without a prior)."""
        if self.prior is None:
            return x.new_zeros(x.shape[0])
        return self.prior.energy(x)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """``J(x) = phi(O(F(x)), d) + R(x)`` per problem, ``(B,)``; differentiable."""
        return self.misfit_value(x) + self.prior_energy(x)

    def check_differentiable(self, x: torch.Tensor) -> None:
        """Raise unless the misfit at ``x`` reaches ``x`` through autograd.

        A forward map that detaches its output (``.detach()``, ``.item()``, a round trip
        through numpy, ``torch.no_grad`` inside) gives the misfit a zero gradient: a
        MAP solve would stop at its start and call that converged, and a Laplace
        posterior would be the prior. One evaluation with a graph finds it.
        """
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            m = self.misfit_value(xr)
            if m.requires_grad:
                (g,) = torch.autograd.grad(m.sum(), xr, allow_unused=True)
            else:
                g = None
        if g is None:
            raise ValueError(
                "the misfit phi(O(F(x)), d) does not depend on x through autograd: the "
                "forward map (or the observation) detaches its output (.detach(), .item(), "
                "numpy, torch.no_grad inside); make forward differentiable in x, e.g. "
                "write it in torch operations (or wrap a solver with "
                "sciml.solvers.linear.solve)")

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """Validate an unknown ``x`` against the problem (shapes of data and constraint)."""
        # a numpy x0 takes the data's dtype and device
        x = check_tensor("x0", as_tensor(x, like=self.data), min_ndim=1, real=True)
        if x.ndim < 2:
            raise ValueError(f"x0 has shape {tuple(x.shape)}; the unknown needs a leading "
                             "batch axis: pass x0[None]")
        with torch.no_grad():
            pred = self.predict(x)
        try:
            ok = torch.broadcast_shapes(pred.shape, self.data.shape) == pred.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"data has shape {tuple(self.data.shape)} but O(F(x0)) has "
                             f"shape {tuple(pred.shape)}; they must match (data may "
                             f"broadcast over the batch)")
        if self.constraint is not None:
            self.constraint.residual(x)
        return x
