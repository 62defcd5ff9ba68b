"""Exact solutions of the generalized porous medium equation (GPME) family.

.. math::

    u_t = \\partial_x\\big(k(u)\\, u_x\\big), \\qquad x \\in [a, b], \\; t \\ge 0,

in the three settings of ProbConserv (Hansen et al., "Learning Physical Models that Can
Respect Conservation Laws", ICML 2023), from easy to hard:

* :class:`Diffusion` (``k`` constant): periodic on ``[0, 2 pi]``, ``u0 = sin x``,
  ``u = exp(-k t) sin x``; smooth.
* :class:`PorousMedium` (``k(u) = u^m``): ``[0, 1]``, ``u(t, 0) = (m t)^(1/m)``,
  ``u = (m (t - x)_+)^(1/m)``; a front ``x = t`` where ``u_x`` blows up for ``m > 1``.
* :class:`Stefan` (``k(u) = 1`` if ``u >= p`` else ``0``): ``[0, 1]``, ``u(t, 0) = 1``,
  an erf profile up to a front ``x*(t) = alpha sqrt(t)`` where ``u`` jumps from ``p`` to 0.

Each problem gives the conservation data ProbConserv's constraint needs: the exact mass
``M(t) = int_a^b u dx`` and the boundary fluxes ``F = -k(u) u_x``, with

.. math::

    \\frac{dM}{dt} = F(t, a) - F(t, b) = \\text{flux\\_in}(t) - \\text{flux\\_out}(t).

The closed forms of the mass and fluxes hold while the front is inside the domain
(``t <= exit_time``); asking past it raises. Everything is float64; results follow the
device of ``x`` (solution) or of ``t`` (mass, fluxes).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import brentq

from .._validation import as_tensor, check_int, check_real, check_tensor

__all__ = [
    "T_FINAL",
    "Diffusion",
    "GPMEProblem",
    "PorousMedium",
    "Stefan",
    "make_problem",
    "sample_points",
]

#: The evaluation time t* of the metrics (conservation error, MSE, shock position).
T_FINAL = 0.5

_F64 = torch.float64
Time = float | torch.Tensor


def _times(t: object, device: torch.device | None = None) -> torch.Tensor:
    """``t`` as a float64 tensor, checked finite and >= 0 (the problems start at t = 0)."""
    if isinstance(t, (np.ndarray, np.generic)):
        t = as_tensor(t)
    if isinstance(t, torch.Tensor):
        tt = t.to(dtype=_F64, device=device if device is not None else t.device)
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        tt = torch.tensor(float(t), dtype=_F64, device=device)
    else:
        raise TypeError(f"t must be a float or a torch.Tensor, got {type(t).__name__}")
    ok = torch.isfinite(tt) & (tt >= 0)
    if not bool(ok.all()):
        bad = tt[~ok].flatten()[0].item()
        raise ValueError(f"t must be finite and >= 0 (the problems start at t = 0), got {bad}")
    return tt


@dataclass(frozen=True)
class GPMEProblem(ABC):
    """One member of the GPME family ``u_t = (k(u) u_x)_x`` with its exact solution.

    Subclasses hold one scalar parameter (:attr:`param`) and give the exact solution,
    its mass and its boundary fluxes in closed form.
    """

    name: ClassVar[str]
    domain: ClassVar[tuple[float, float]]
    periodic: ClassVar[bool] = False

    # ------------------------------------------------------------------ to implement

    @property
    @abstractmethod
    def param(self) -> float:
        """The scalar parameter (``k``, ``m`` or ``p``)."""

    @abstractmethod
    def _u(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _mass(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _flux_in(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _flux_out(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def diffusivity(self, u: torch.Tensor) -> torch.Tensor:
        """The diffusivity ``k(u)`` (same dtype and device as ``u``)."""

    @property
    def exit_time(self) -> float:
        """The time at which the front reaches ``x = b`` (inf when there is no front).

        The closed-form :meth:`mass`, :meth:`flux_in` and :meth:`flux_out` hold up to it.
        """
        return math.inf

    # ------------------------------------------------------------------ public API

    def solution(self, t: Time, x: torch.Tensor) -> torch.Tensor:
        """The exact ``u(t, x)``, with ``t`` (float or tensor) broadcast against ``x``.

        Args:
            t: times ``>= 0``.
            x: positions (meant to lie in :attr:`domain`); any real or integer dtype.

        Returns:
            float64 tensor of the broadcast shape, on the device of ``x``.
        """
        x = check_tensor("x", as_tensor(x, integers=True)).to(_F64)
        tt = _times(t, x.device)
        try:
            torch.broadcast_shapes(tt.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"t of shape {tuple(tt.shape)} does not broadcast against x of shape "
                f"{tuple(x.shape)}; add singleton dimensions, e.g. t[:, None] with x[None, :]"
            ) from None
        return self._u(tt, x)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """``u(0, x)`` (the ``t -> 0`` limit for the problems singular at ``t = 0``)."""
        return self.solution(0.0, x)

    def mass(self, t: Time) -> Time:
        """The exact mass ``M(t) = int_a^b u(t, x) dx`` (a float for a float ``t``).

        Raises:
            ValueError: ``t < 0`` or ``t > exit_time`` (the front has left the domain).
        """
        return self._eval(self._mass, t, "mass")

    def flux_in(self, t: Time) -> Time:
        """The flux entering at ``x = a``: ``-k(u) u_x`` at ``x = a``."""
        return self._eval(self._flux_in, t, "flux_in")

    def flux_out(self, t: Time) -> Time:
        """The flux leaving at ``x = b``: ``-k(u) u_x`` at ``x = b``.

        ``dM/dt = flux_in(t) - flux_out(t)``.
        """
        return self._eval(self._flux_out, t, "flux_out")

    def diffusivity_smooth(self, u: torch.Tensor, width: float) -> torch.Tensor:
        """A differentiable stand-in for :meth:`diffusivity` (for PDE-residual penalties).

        Equals :meth:`diffusivity` except for :class:`Stefan`, whose step is smoothed.
        """
        check_real("width", width, positive=True)
        return self.diffusivity(u)

    def grid(self, n: int = 201, *, device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` equispaced float64 points of :attr:`domain`, both endpoints included."""
        n = check_int("n", n, minimum=2)
        a, b = self.domain
        return torch.linspace(a, b, n, dtype=_F64, device=device)

    # ------------------------------------------------------------------ plumbing

    def _eval(self, fn, t: Time, what: str) -> Time:
        scalar = not isinstance(t, torch.Tensor)
        tt = _times(t)
        if math.isfinite(self.exit_time) and bool((tt > self.exit_time).any()):
            bad = tt[tt > self.exit_time].flatten()[0].item()
            raise ValueError(
                f"{self!r}.{what}: t = {bad} is past t = {self.exit_time!r}, when the front "
                f"leaves the domain {list(self.domain)}; the closed form holds only for "
                f"0 <= t <= {self.exit_time!r} (T_FINAL = {T_FINAL} is inside for the "
                "ProbConserv parameters)"
            )
        out = fn(tt)
        return out.item() if scalar else out


def _as_u(u: object) -> torch.Tensor:
    if isinstance(u, torch.Tensor) and u.is_floating_point():
        return u
    return torch.as_tensor(u, dtype=_F64)


@dataclass(frozen=True)
class Diffusion(GPMEProblem):
    """Linear diffusion ``u_t = k u_xx`` on the periodic ``[0, 2 pi]`` with ``u0 = sin x``.

    .. math:: u(t, x) = e^{-k t} \\sin x, \\qquad M(t) = 0, \\qquad
        F(t, 0) = F(t, 2\\pi) = -k e^{-k t}.

    Args:
        k: the constant diffusivity (> 0; ProbConserv trains on ``k ~ U[1, 5]``).
    """

    name: ClassVar[str] = "diffusion"
    domain: ClassVar[tuple[float, float]] = (0.0, 2.0 * math.pi)
    periodic: ClassVar[bool] = True

    k: float

    def __post_init__(self) -> None:
        k = check_real("Diffusion: k", self.k, positive=True, fix="e.g. in [1, 5]")
        object.__setattr__(self, "k", k)

    @property
    def param(self) -> float:
        return self.k

    def _u(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.k * t) * torch.sin(x)

    def _mass(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def _flux_in(self, t: torch.Tensor) -> torch.Tensor:
        # periodic: what leaves at 2 pi enters at 0, so in == out
        return -self.k * torch.exp(-self.k * t)

    _flux_out = _flux_in

    def diffusivity(self, u: torch.Tensor) -> torch.Tensor:
        return torch.full_like(_as_u(u), self.k)


@dataclass(frozen=True)
class PorousMedium(GPMEProblem):
    """The porous medium equation ``u_t = (u^m u_x)_x`` on ``[0, 1]`` filling from the left.

    With ``u(0, x) = 0`` and ``u(t, 0) = (m t)^{1/m}`` the exact solution is a travelling
    wave with a front at ``x = t``:

    .. math::

        u(t, x) = \\big(m (t - x)_+\\big)^{1/m}, \\qquad
        M(t) = \\frac{m^{1 + 1/m}\\, t^{1 + 1/m}}{m + 1}, \\qquad
        F(t, 0) = (m t)^{1/m}, \\quad F(t, 1) = 0,

    for ``t <= 1`` (then ``-k u_x = u`` behind the front). ``u_x`` is singular at the
    front for ``m > 1``.

    Args:
        m: the exponent of ``k(u) = u^m`` (> 0; ProbConserv trains on ``m ~ U[1, 6]``).
    """

    name: ClassVar[str] = "pme"
    domain: ClassVar[tuple[float, float]] = (0.0, 1.0)

    m: float

    def __post_init__(self) -> None:
        m = check_real("PorousMedium: m", self.m, positive=True, fix="e.g. in [1, 6]")
        object.__setattr__(self, "m", m)

    @property
    def param(self) -> float:
        return self.m

    @property
    def exit_time(self) -> float:
        return 1.0

    def front(self, t: Time) -> Time:
        """The front position ``x = t`` (the edge of the support of ``u``)."""
        tt = _times(t)
        return tt.item() if not isinstance(t, torch.Tensor) else tt

    def _u(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (self.m * (t - x).clamp_min(0)).pow(1.0 / self.m)

    def _mass(self, t: torch.Tensor) -> torch.Tensor:
        m = self.m
        return m ** (1 + 1 / m) * t.pow(1 + 1 / m) / (m + 1)

    def _flux_in(self, t: torch.Tensor) -> torch.Tensor:
        return (self.m * t).pow(1.0 / self.m)

    def _flux_out(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def diffusivity(self, u: torch.Tensor) -> torch.Tensor:
        # u >= 0 physically; clamping keeps a noisy or learned u from giving NaN for
        # non-integer m (a negative u has no diffusivity, as at the dry front)
        return _as_u(u).clamp_min(0).pow(self.m)


def _stefan_z(p: float) -> float:
    """The root ``z > 0`` of ``p erf(z) z exp(z^2) = (1 - p) / sqrt(pi)``.

    Solved in log form (monotone increasing, no overflow of ``exp(z^2)`` for small ``p``)
    by Brent's method to scipy's tightest tolerance (4 eps relative).
    """
    target = math.log1p(-p) - 0.5 * math.log(math.pi)

    def g(z: float) -> float:
        return math.log(p) + math.log(math.erf(z)) + math.log(z) + z * z - target

    lo, hi = 1e-20, 1.0  # g(1e-20) < -90 + 38 < 0 for every double 0 < p < 1
    while g(hi) <= 0:
        hi *= 2.0
    return float(brentq(g, lo, hi, xtol=1e-300, rtol=4 * 2.0**-52, maxiter=500))


@dataclass(frozen=True)
class Stefan(GPMEProblem):
    """A one-phase Stefan problem: ``k(u) = 1`` for ``u >= p``, else 0, on ``[0, 1]``.

    With ``u(0, x) = 0`` and ``u(t, 0) = 1``, heat diffuses behind a front
    ``x*(t) = alpha sqrt(t)`` where ``u`` drops from ``p`` to 0. The Neumann-type
    similarity solution is

    .. math::

        u(t, x) = \\begin{cases} 1 - c\\, \\mathrm{erf}\\big(x / (2\\sqrt t)\\big),
        & x \\le x^*(t) \\\\ 0, & x > x^*(t) \\end{cases}, \\qquad
        \\alpha = 2 z, \\quad c = \\frac{1 - p}{\\mathrm{erf}(z)},

    where ``z`` solves the Stefan condition ``p\\, dx^*/dt = -u_x(x^{*-})``, i.e.
    ``p erf(z) z exp(z^2) = (1 - p) / sqrt(pi)``. While the front is inside
    (``t <= 1 / alpha^2``):

    .. math:: M(t) = 2 c \\sqrt{t / \\pi}, \\qquad F(t, 0) = \\frac{c}{\\sqrt{\\pi t}},
        \\qquad F(t, 1) = 0.

    Args:
        p: the melting value ``p*`` in (0, 1) (ProbConserv trains on ``U[0.55, 0.7]``
            and tests on 0.5 and 0.6).
    """

    name: ClassVar[str] = "stefan"
    domain: ClassVar[tuple[float, float]] = (0.0, 1.0)

    p: float
    z: float = field(init=False, repr=False, compare=False)
    alpha: float = field(init=False, repr=False, compare=False)
    c: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p = check_real("Stefan: p", self.p, fix="it must be in (0, 1), e.g. in [0.55, 0.7]")
        if not 0 < p < 1:
            raise ValueError(
                f"Stefan: p must be a finite number in (0, 1) (e.g. in [0.55, 0.7]), got {p}"
            )
        z = _stefan_z(p)
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "z", z)
        object.__setattr__(self, "alpha", 2.0 * z)
        object.__setattr__(self, "c", (1.0 - p) / math.erf(z))

    @property
    def param(self) -> float:
        return self.p

    @property
    def exit_time(self) -> float:
        return 1.0 / self.alpha**2

    def front(self, t: Time) -> Time:
        """The front position ``x*(t) = alpha sqrt(t)``."""
        tt = self.alpha * torch.sqrt(_times(t))
        return tt.item() if not isinstance(t, torch.Tensor) else tt

    def _u(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s = 2.0 * torch.sqrt(t)
        # at t = 0 the front is at 0: u(0, 0) = 1 (the boundary value), 0 elsewhere
        arg = torch.where(s > 0, x / torch.where(s > 0, s, 1.0), 0.0)
        inside = x <= self.alpha * torch.sqrt(t)
        return torch.where(inside, 1.0 - self.c * torch.erf(arg), 0.0)

    def _mass(self, t: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.c * torch.sqrt(t / math.pi)

    def _flux_in(self, t: torch.Tensor) -> torch.Tensor:
        return self.c / torch.sqrt(math.pi * t)  # inf at t = 0, integrable

    def _flux_out(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def diffusivity(self, u: torch.Tensor) -> torch.Tensor:
        u = _as_u(u)
        return (u >= self.p).to(u.dtype)

    def diffusivity_smooth(self, u: torch.Tensor, width: float) -> torch.Tensor:
        """``sigmoid((u - p) / width)``: the step ``k(u)`` smoothed over ``~width``."""
        super().diffusivity_smooth(u, width)  # validates width
        return torch.sigmoid((_as_u(u) - self.p) / width)


_PROBLEMS: dict[str, type[GPMEProblem]] = {
    cls.name: cls for cls in (Diffusion, PorousMedium, Stefan)
}


def make_problem(name: str, param: float) -> GPMEProblem:
    """The problem called ``name`` (``"diffusion"``, ``"pme"``, ``"stefan"``) at ``param``.

    Example::

        problems = [make_problem("stefan", p) for p in (0.5, 0.6)]
    """
    cls = _PROBLEMS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown GPME problem {name!r}; known: {sorted(_PROBLEMS)}")
    return cls(param)  # type: ignore[call-arg]


def sample_points(
    problem: GPMEProblem,
    n: int,
    *,
    t_range: tuple[float, float] = (0.0, T_FINAL),
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random observations ``(t, x, u(t, x) + noise * N(0, 1))``.

    ``t`` is uniform in ``(t0, t1]`` (never ``t0``: PME and Stefan are singular at
    ``t = 0``) and ``x`` uniform in :attr:`~GPMEProblem.domain`. ``t`` and ``x`` are
    drawn first, so the same seed gives the same points whatever ``noise`` is.

    Args:
        problem: the GPME problem.
        n: number of points (>= 1).
        t_range: ``(t0, t1)`` with ``0 <= t0 < t1``.
        noise: standard deviation of the additive Gaussian noise (>= 0).
        generator: source of all the randomness; the samples live on its device.

    Returns:
        ``(t, x, u)``, float64 tensors of shape ``(n,)``.
    """
    if not isinstance(problem, GPMEProblem):
        raise TypeError(f"problem must be a GPMEProblem, got {type(problem).__name__}")
    n = check_int("n", n, minimum=1)
    if not isinstance(t_range, (tuple, list)) or len(t_range) != 2:
        raise ValueError(f"t_range must be a pair (t0, t1), got {t_range!r}")
    t0 = check_real("t_range[0]", t_range[0], minimum=0)
    t1 = check_real("t_range[1]", t_range[1])
    if not 0 <= t0 < t1:
        raise ValueError(f"t_range must satisfy 0 <= t0 < t1, got {tuple(t_range)}")
    noise = check_real("noise", noise, minimum=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = generator.device if generator is not None else None
    a, b = problem.domain
    # rand is in [0, 1), so t1 - (t1 - t0) * r lies in (t0, t1]
    t = t1 - (t1 - t0) * torch.rand(n, dtype=_F64, device=device, generator=generator)
    x = a + (b - a) * torch.rand(n, dtype=_F64, device=device, generator=generator)
    u = problem.solution(t, x)
    if noise > 0:
        u = u + noise * torch.randn(n, dtype=_F64, device=device, generator=generator)
    return t, x, u
