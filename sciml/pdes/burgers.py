r"""The 1D combined Burgers/KdV family of MP-PDE (E1, E2, E3), with its WENO5 solver.

.. math::

    u_t = -\alpha\, (u^2/2)_x + \beta\, u_{xx} - \gamma\, u_{xxx} + \delta(t, x),
    \qquad \delta(t, x) = \sum_{j=1}^{5} A_j \sin(\omega_j t + 2\pi l_j x / L + \phi_j),

on the periodic interval ``[0, L)``, ``L = 16``, from ``u(0, x) = delta(0, x)``, with
``A_j ~ U[-1/2, 1/2]``, ``omega_j ~ U[-0.4, 0.4]``, ``phi_j ~ U[0, 2 pi]`` and
``l_j`` uniform in ``{1, 2}``: the original generator draws
``torch.randint(lmin, lmax)`` with ``lmin = 1``, ``lmax = 3`` and an exclusive upper
bound (``generate/generate_data.py`` and ``equations/PDEs.py`` of
brandstetter-johannes/MP-Neural-PDE-Solvers). The families (:data:`FAMILIES`):

* E1: ``alpha = 1``, ``beta = gamma = 0`` (Burgers, shocks), ``t in [0, 4]``;
* E2: ``alpha = 1``, ``beta ~ U[0, 0.2]``, ``gamma = 0``, ``t in [0, 4]``;
* E3: ``alpha ~ U[0, 6]``, ``beta ~ U[0.1, 0.4]``, ``gamma ~ U[0, 1]``, ``t in [0, 2]``.

Trajectories are stored at ``nt = 250`` times ``linspace(0, T, nt)``, solved at
``nx = 200`` and coarsened to 100, 50 and 40 points.

Two grid conventions (``convention=``):

* ``"conservative"`` (default): ``u_i`` is the average of ``u`` over the cell
  ``[i dx, (i+1) dx)``, ``dx = L / nx`` (centres ``(i + 1/2) dx``). The initial
  condition and the forcing are exact cell averages (each sine's average is its centre
  value times ``sin(k dx/2) / (k dx/2)``), and coarse data are exact block averages of
  the fine solution. A coarse solve is then a consistent discretisation of the same
  trajectory.
* ``"paper"``: the original pipeline. The initial condition and the forcing are sampled
  at ``linspace(0, L, nx)``, which includes the endpoint (spacing ``L / (nx - 1)``),
  while the solver differentiates with spacing ``L / nx``; coarse labels come from the
  fine solution by the original data loader's filter (``common/utils.py``,
  ``HDF5Dataset.__getitem__``): pad with ``u[-3:-1]`` on the left and ``u[1:3]`` on the
  right, average 5 neighbours, keep every ``r``-th (``r = 200 / n``: 2, 4, 5 for
  100, 50, 40), so coarse point ``j`` is the mean of fine points ``j r - 2 ... j r + 2``
  (the padding skips ``u[-1]`` and ``u[0]``, treating the last point as a copy of the
  first). Differences from the original that we keep: our stencils wrap with period
  ``nx`` (the original pads its stencils as if the last point duplicated the first but
  rolls its WENO fluxes with period ``nx``, so cell 0 sees a garbled face), SSP-RK3 in
  place of adaptive Dopri45, and ``eps = 1e-6`` in place of ``1e-16`` in the WENO
  weights. The paper's WENO5 baseline solves each coarse grid from ``t = 0`` (its own
  initial condition) and is scored against the labels from step ``2K = 50`` on.

References: J. Brandstetter, D. Worrall, M. Welling, "Message Passing Neural PDE
Solvers", ICLR 2022 (Section 4.1 and Appendix); the solver: see :mod:`sciml.pdes._weno`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._validation import (
    as_tensor,
    check_choice,
    check_int,
    check_positive,
    check_real,
    check_tensor,
)
from ._weno import rates, second_derivative, third_derivative, weno5_flux_difference
from .navier_stokes import check_step_count

__all__ = [
    "CONVENTIONS",
    "FAMILIES",
    "LENGTH",
    "CombinedFamily",
    "CombinedParameters",
    "coarsen",
    "forcing",
    "forcing_cell_average",
    "generate_trajectories",
    "grid",
    "initial_condition",
    "sample_parameters",
    "solve_combined",
]

#: Length of the periodic domain.
LENGTH = 16.0
#: The grid conventions (see the module docstring).
CONVENTIONS = ("conservative", "paper")
#: Number of sines in the forcing.
MODES = 5
#: Largest wavenumber index ``l``.
L_MAX = 2


@dataclass(frozen=True)
class CombinedFamily:
    """One experiment of the family: end time and the ranges of ``alpha, beta, gamma``.

    A range ``(lo, hi)`` is sampled uniformly; ``lo == hi`` fixes the value.
    """

    name: str
    T: float
    alpha: tuple[float, float]
    beta: tuple[float, float]
    gamma: tuple[float, float]

    def __post_init__(self) -> None:
        if not (isinstance(self.T, (int, float)) and math.isfinite(self.T) and self.T > 0):
            raise ValueError(f"{self.name}: T must be a finite number > 0, got {self.T!r}")
        for k in ("alpha", "beta", "gamma"):
            lo, hi = getattr(self, k)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                raise ValueError(f"{self.name}: {k} range must satisfy 0 <= lo <= hi, "
                                 f"got {(lo, hi)}")


#: E1, E2, E3 of Brandstetter et al. (ICLR 2022), as in their generator.
FAMILIES: dict[str, CombinedFamily] = {
    "E1": CombinedFamily("E1", 4.0, (1.0, 1.0), (0.0, 0.0), (0.0, 0.0)),
    "E2": CombinedFamily("E2", 4.0, (1.0, 1.0), (0.0, 0.2), (0.0, 0.0)),
    "E3": CombinedFamily("E3", 2.0, (0.0, 6.0), (0.1, 0.4), (0.0, 1.0)),
}


def get_family(family: str | CombinedFamily) -> CombinedFamily:
    """``family`` as a :class:`CombinedFamily` (a name in :data:`FAMILIES` or one itself)."""
    if isinstance(family, CombinedFamily):
        return family
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    return FAMILIES[family]


@dataclass(frozen=True, eq=False)  # tensors: no elementwise __eq__
class CombinedParameters:
    """Parameters of ``n`` samples: ``alpha, beta, gamma`` ``(n,)``; the forcing ``(n, 5)``.

    ``amplitude``, ``omega``, ``phase`` are float64 (like the coefficients); ``l`` is
    int64 (the wavenumber index, in ``{1, 2}``; the wavenumber is ``2 pi l / L``).
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    gamma: torch.Tensor
    amplitude: torch.Tensor
    omega: torch.Tensor
    phase: torch.Tensor
    l: torch.Tensor

    def __post_init__(self) -> None:
        n = None
        for k in ("alpha", "beta", "gamma", "amplitude", "omega", "phase", "l"):
            # numpy arrays become tensors (l, the integer wavenumbers, stays integer)
            v = check_tensor(k, as_tensor(getattr(self, k), integers=k == "l"),
                             ndim=1 if k in ("alpha", "beta", "gamma") else 2)
            object.__setattr__(self, k, v)
            n = v.shape[0] if n is None else n
            if v.shape[0] != n or (v.ndim == 2 and v.shape[1] != MODES):
                raise ValueError(f"{k} has shape {tuple(v.shape)}, expected "
                                 f"{(n,) if v.ndim == 1 else (n, MODES)}")
        if self.l.is_floating_point():
            raise TypeError(f"l must be an integer tensor, got {self.l.dtype}")

    def __len__(self) -> int:
        return self.alpha.shape[0]

    def theta(self) -> torch.Tensor:
        """The PDE coefficients ``[alpha, beta, gamma]`` as an ``(n, 3)`` tensor."""
        return torch.stack([self.alpha, self.beta, self.gamma], dim=-1)

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> CombinedParameters:
        """Moved to ``device``; the real fields cast to ``dtype`` (``l`` stays integer)."""
        kw = {k: getattr(self, k).to(device=device, dtype=dtype)
              for k in ("alpha", "beta", "gamma", "amplitude", "omega", "phase")}
        return CombinedParameters(**kw, l=self.l.to(device=device))

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor
                    ) -> CombinedParameters:
        """The samples ``index`` (a slice, a list or a tensor of indices; an int keeps a
        length-1 batch)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return CombinedParameters(**{k: getattr(self, k)[index] for k in _FIELDS})

    @staticmethod
    def cat(parts: Sequence[CombinedParameters]) -> CombinedParameters:
        """The samples of ``parts`` in order, as one batch."""
        if not parts:
            raise ValueError("cat needs at least one CombinedParameters")
        return CombinedParameters(**{k: torch.cat([getattr(p, k) for p in parts])
                                     for k in _FIELDS})


_FIELDS = ("alpha", "beta", "gamma", "amplitude", "omega", "phase", "l")


def sample_parameters(family: str | CombinedFamily, n: int, *,
                      generator: torch.Generator | None = None) -> CombinedParameters:
    """Draw the parameters of ``n`` samples of ``family`` (float64 on the CPU).

    Draw order (so that a generator seeded per sample reproduces each sample):
    amplitude, omega, phase, l (each ``(n, 5)``), then alpha, beta, gamma (each ``(n,)``,
    drawn even where the range is one value).
    """
    fam = get_family(family)
    n = check_int("n", n, minimum=0)
    f64 = torch.float64

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=f64)

    amplitude = uniform((n, MODES), -0.5, 0.5)
    omega = uniform((n, MODES), -0.4, 0.4)
    phase = uniform((n, MODES), 0.0, 2 * math.pi)
    l = torch.randint(1, L_MAX + 1, (n, MODES), generator=generator)
    return CombinedParameters(
        alpha=uniform((n,), *fam.alpha), beta=uniform((n,), *fam.beta),
        gamma=uniform((n,), *fam.gamma), amplitude=amplitude, omega=omega, phase=phase, l=l,
    )


def _check_convention(convention: str) -> str:
    return check_choice("convention", convention, CONVENTIONS)


def _check_length(length: object) -> float:
    return check_positive("length", length, fix=f"the period of the domain (default {LENGTH})")


def grid(nx: int, *, convention: str = "conservative", length: float = LENGTH,
         dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
         ) -> torch.Tensor:
    """The ``nx`` coordinates of the data: cell centres ``(i + 1/2) L / nx``
    (conservative) or ``linspace(0, L, nx)``, endpoint included (paper)."""
    nx = check_int("nx", nx, minimum=2)
    length = _check_length(length)
    if _check_convention(convention) == "paper":
        return torch.linspace(0.0, length, nx, dtype=dtype, device=device)
    return (torch.arange(nx, dtype=dtype, device=device) + 0.5) * (length / nx)


def _angles(params: CombinedParameters, t: float | torch.Tensor) -> torch.Tensor:
    """``omega_j t + phi_j``, ``(n, 5)``; ``t`` a number or ``(n,)`` / ``(n, 1)`` tensor."""
    _check_params(params)
    if not isinstance(t, (int, float)):  # numpy times as tensors on the parameters' device
        t = as_tensor(t, like=params.omega)
    if isinstance(t, torch.Tensor):
        if t.numel() not in (1, len(params)):
            raise ValueError(f"t has {t.numel()} entries but params hold {len(params)} "
                             "samples: pass one time, or one per sample")
        t = t.reshape(-1, 1)
    elif isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise TypeError(f"t must be a finite number or a tensor of times, got {t!r}")
    return params.omega * t + params.phase


def _check_params(params: object) -> None:
    if not isinstance(params, CombinedParameters):
        raise TypeError(f"params must be CombinedParameters (see sample_parameters), got "
                        f"{type(params).__name__}")


def forcing(params: CombinedParameters, t: float | torch.Tensor, x: torch.Tensor, *,
            length: float = LENGTH) -> torch.Tensor:
    """Point values ``delta(t, x)``, ``(n, len(x))``, in the dtype of ``params``.

    ``t`` is a number or one time per sample (``(n,)``).
    """
    _check_params(params)
    x = check_tensor("x", as_tensor(x, like=params.amplitude), ndim=1, real=True
                     ).to(params.amplitude)
    k = (2 * math.pi / _check_length(length)) * params.l.to(params.amplitude)  # (n, 5)
    arg = _angles(params, t)[..., None] + k[..., None] * x  # (n, 5, nx)
    return (params.amplitude[..., None] * torch.sin(arg)).sum(1)


def forcing_cell_average(params: CombinedParameters, t: float | torch.Tensor, nx: int, *,
                         length: float = LENGTH) -> torch.Tensor:
    """Exact averages of ``delta(t, .)`` over the cells ``[i dx, (i+1) dx)``, ``(n, nx)``.

    The average of ``sin(a + k x)`` over a cell is ``sinc(k dx / 2) sin(a + k x_c)``,
    ``sinc(z) = sin(z)/z``, ``x_c`` the cell centre.
    """
    _check_params(params)
    nx = check_int("nx", nx, minimum=1)
    return _Forcing(params, nx, "conservative", length)(t)


def initial_condition(params: CombinedParameters, nx: int, *,
                      convention: str = "conservative", length: float = LENGTH
                      ) -> torch.Tensor:
    """``u(0) = delta(0, .)`` on the grid of ``convention``, ``(n, nx)``: cell averages
    (conservative) or point values at ``linspace(0, L, nx)`` (paper)."""
    return _Forcing(params, check_int("nx", nx, minimum=2), _check_convention(convention),
                    length)(0.0)


class _Forcing:
    """``delta(t)`` on one grid, with the spatial sines tabulated once.

    ``sin(a + k x) = sin(a) cos(k x) + cos(a) sin(k x)``: the tables of ``sin(k x)``,
    ``cos(k x)`` depend only on ``l`` (tabulated for ``l = 1, 2`` and gathered), so a
    sample's forcing never depends on the other samples of its batch, and each
    evaluation needs trigonometry of the ``(n, 5)`` angles only.
    """

    def __init__(self, params: CombinedParameters, nx: int, convention: str,
                 length: float) -> None:
        dtype, device = params.amplitude.dtype, params.amplitude.device
        x = grid(nx, convention=convention, length=length, dtype=torch.float64, device=device)
        k = (2 * math.pi / length) * torch.arange(1, L_MAX + 1, dtype=torch.float64,
                                                  device=device)
        kx = k[:, None] * x  # (L_MAX, nx)
        s, c = torch.sin(kx), torch.cos(kx)
        if convention == "conservative":
            half = k * (length / nx) / 2
            w = (torch.sin(half) / half)[:, None]
            s, c = s * w, c * w
        idx = params.l - 1  # (n, 5)
        self.sin_kx = s.to(dtype)[idx]  # (n, 5, nx)
        self.cos_kx = c.to(dtype)[idx]
        self.params = params

    def __call__(self, t: float | torch.Tensor) -> torch.Tensor:
        a = _angles(self.params, t)
        amp = self.params.amplitude
        return ((amp * torch.sin(a))[..., None] * self.cos_kx
                + (amp * torch.cos(a))[..., None] * self.sin_kx).sum(1)


def coarsen(u: torch.Tensor, nx: int, *, convention: str = "conservative") -> torch.Tensor:
    """Coarse data of ``nx`` points from a fine solution ``u`` ``(..., N)``, ``N % nx == 0``.

    Conservative: block averages of ``N / nx`` cells (exact cell averages of the coarse
    cells). Paper: the original 5-point filter with stride ``r = N / nx`` (see the module
    docstring): coarse ``j`` is the mean of ``ũ[j r - 2 ... j r + 2]``, where ``ũ`` pads
    ``u`` with ``u[-3:-1]`` on the left and ``u[1:3]`` on the right.
    """
    u = check_tensor("u", as_tensor(u), min_ndim=1, real=True)
    nx = check_int("nx", nx, minimum=1)
    big = u.shape[-1]
    if big % nx:
        raise ValueError(f"nx = {nx} does not divide the fine resolution {big}; pick a "
                         f"divisor of {big}")
    r = big // nx
    if _check_convention(convention) == "conservative":
        return u.reshape(*u.shape[:-1], nx, r).mean(-1)
    if big < 4:
        raise ValueError(f"the paper filter needs at least 4 fine points, got {big}")
    padded = torch.cat([u[..., -3:-1], u, u[..., 1:3]], dim=-1)
    return padded.unfold(-1, 5, r).mean(-1)


def solve_combined(
    u0: torch.Tensor,
    params: CombinedParameters,
    times: Sequence[float] | torch.Tensor,
    *,
    length: float = LENGTH,
    cfl: float = 0.4,
    convention: str = "conservative",
    t0: float = 0.0,
) -> torch.Tensor:
    """Integrate the combined equation from ``u(t0) = u0``; return ``u`` at ``times``.

    Finite volumes on ``nx`` periodic cells of width ``dx = length / nx``:
    ``-alpha (u^2/2)_x`` by WENO5-JS reconstruction and the Godunov flux
    (:func:`sciml.pdes._weno.weno5_flux_difference`); ``beta u_xx`` and ``gamma u_xxx``
    by central 5-point stencils applied to the cell values; the forcing as exact cell
    averages (conservative) or point values at ``linspace(0, length, nx)`` (paper).
    SSP-RK3 in time (Shu & Osher, 1988). Each sample has its own step: on every interval
    between output times it takes ``ceil(interval * rate / cfl)`` equal steps, with
    ``rate = alpha max|u| / dx + 2.5 beta / dx^2 + 2 gamma / dx^3`` taken at the
    interval's start (see :func:`sciml.pdes._weno.rates`), so it lands exactly on each
    output time and its trajectory does not depend on the other samples of the batch.

    Fully batched (no loop over samples); float32 or float64; on the device of ``u0``.
    As a coarse baseline from data: ``solve_combined(label[:, k], params, t[k:], t0=t[k])``
    on the coarse grid, with the data's convention.

    Args:
        u0: ``(n, nx)`` initial values (``nx >= 5``), e.g. :func:`initial_condition`.
        params: the ``n`` samples' :class:`CombinedParameters` (moved to ``u0``'s device
            and dtype); requires ``alpha, beta, gamma >= 0``.
        times: non-decreasing output times, all ``>= t0``.
        length: the period ``L``.
        cfl: the step factor (``0 < cfl <= 1``; 1 is the linear stability limit of the
            diffusive/dispersive part).
        convention: ``"conservative"`` or ``"paper"`` (the grid of the forcing).
        t0: the time of ``u0``.

    Returns:
        ``(n, len(times), nx)`` in the dtype of ``u0``.

    Raises:
        ValueError: bad shapes, negative coefficients, unsorted times, a bad convention.
    """
    u0 = check_tensor("u0", as_tensor(u0), ndim=2, real=True)
    n, nx = u0.shape
    if nx < 5:
        raise ValueError(f"u0 has {nx} points; WENO5 needs nx >= 5")
    if not isinstance(params, CombinedParameters):
        raise TypeError(f"params must be CombinedParameters, got {type(params).__name__}")
    if len(params) != n:
        raise ValueError(f"params hold {len(params)} samples but u0 has {n} (shape "
                         f"{tuple(u0.shape)})")
    convention = _check_convention(convention)
    if not (isinstance(cfl, (int, float)) and 0 < cfl <= 1):
        raise ValueError(f"cfl must be in (0, 1], got {cfl!r}")
    _check_length(length)
    t0 = check_real("t0", t0, fix="the time of u0, such as 0.0")
    ts = [float(t) for t in (times.tolist() if isinstance(times, torch.Tensor) else times)]
    if any(not math.isfinite(t) for t in ts) or any(b < a for a, b in itertools.pairwise(ts)):
        raise ValueError(f"times must be finite and non-decreasing, got {ts[:6]}...")
    if ts and ts[0] < t0:
        raise ValueError(f"times[0] = {ts[0]} is before t0 = {t0}")
    p = params.to(device=u0.device, dtype=u0.dtype)
    for k in ("alpha", "beta", "gamma"):
        if bool((getattr(p, k) < 0).any()):
            raise ValueError(f"{k} must be >= 0, got min {float(getattr(p, k).min())}")
    rhs = _RightHandSide(p, nx, convention, length)
    out = u0.new_empty(n, len(ts), nx)
    u, t = u0, float(t0)
    for k, t_next in enumerate(ts):
        if t_next > t:
            u = _advance(rhs, u, t, t_next, cfl)
            t = t_next
        out[:, k] = u
    return out


class _RightHandSide:
    """``L(u, t) = -alpha (u^2/2)_x + beta u_xx - gamma u_xxx + delta(t)`` on one grid."""

    def __init__(self, p: CombinedParameters, nx: int, convention: str,
                 length: float) -> None:
        self.dx = length / nx
        self.alpha, self.beta, self.gamma = (v[:, None] for v in (p.alpha, p.beta, p.gamma))
        # skip the stencils whose coefficients all vanish (one host sync per solve)
        self.advect = bool((p.alpha != 0).any())
        self.diffuse = bool((p.beta != 0).any())
        self.disperse = bool((p.gamma != 0).any())
        self.forcing = _Forcing(p, nx, convention, length)

    def __call__(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.forcing(t)
        if self.advect:
            out = out - self.alpha * weno5_flux_difference(u, self.dx)
        if self.diffuse:
            out = out + self.beta * second_derivative(u, self.dx)
        if self.disperse:
            out = out - self.gamma * third_derivative(u, self.dx)
        return out

    def rate(self, u: torch.Tensor) -> torch.Tensor:
        umax = u.abs().amax(-1, keepdim=True)
        return rates(umax, self.alpha, self.beta, self.gamma, self.dx)


def _advance(rhs: _RightHandSide, u: torch.Tensor, t0: float, t1: float, cfl: float
             ) -> torch.Tensor:
    """SSP-RK3 from ``t0`` to ``t1``: ``m_i`` equal steps for sample ``i``."""
    span = t1 - t0
    steps = torch.ceil(span * rhs.rate(u) / cfl).clamp(min=1)  # (n, 1)
    h = span / steps
    most = float(steps.max())  # the one host sync per output interval
    # a huge or non-finite field would ask for ever more steps: refuse, giving the count
    check_step_count(span, span / most if most > 0 else 0.0, intervals=0,
                     why=f"the CFL step at max|u| = {float(u.abs().max()):.3g}")
    total = int(most)
    uniform = bool((steps == total).all()) if total > 1 else True
    for j in range(total):
        t = t0 + j * h
        u1 = u + h * rhs(u, t)
        u2 = 0.75 * u + 0.25 * (u1 + h * rhs(u1, t + h))
        new = u / 3 + (2.0 / 3.0) * (u2 + h * rhs(u2, t + 0.5 * h))
        # a sample that has taken its steps waits (exactly) at t1
        u = new if uniform else torch.where(j < steps, new, u)
    return u


def generate_trajectories(
    params: CombinedParameters,
    *,
    family: str | CombinedFamily,
    convention: str = "conservative",
    resolutions: Sequence[int] = (200, 100, 50, 40),
    nt: int = 250,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> dict[int, torch.Tensor]:
    """Trajectories of ``params`` at every resolution: ``{nx: (n, nt, nx)}``.

    One solve at ``max(resolutions)`` (which every resolution must divide) from
    :func:`initial_condition`, at ``nt`` times ``linspace(0, family.T, nt)``; the coarse
    data are :func:`coarsen` of it (block averages or the paper's filter).
    """
    fam = get_family(family)
    convention = _check_convention(convention)
    res = _check_resolutions(resolutions)
    nt = check_int("nt", nt, minimum=1)
    fine = max(res)
    p = params.to(device=device, dtype=dtype)
    u0 = initial_condition(p, fine, convention=convention)
    times = torch.linspace(0.0, fam.T, nt, dtype=torch.float64)
    u = solve_combined(u0, p, times, convention=convention)
    return {n: (u if n == fine else coarsen(u, n, convention=convention)) for n in res}


def _check_resolutions(resolutions: Sequence[int]) -> tuple[int, ...]:
    if isinstance(resolutions, int) or not isinstance(resolutions, Sequence):
        raise TypeError(f"resolutions must be a sequence of ints, got {resolutions!r}")
    res = tuple(check_int(f"resolutions[{i}]", r, minimum=5) for i, r in enumerate(resolutions))
    if not res:
        raise ValueError("resolutions is empty; pass e.g. (200, 100, 50, 40)")
    if len(set(res)) != len(res):
        raise ValueError(f"resolutions {res} repeat a value")
    fine = max(res)
    bad = [r for r in res if fine % r]
    if bad:
        raise ValueError(f"resolution(s) {bad} do not divide the solver resolution {fine} = "
                         f"max(resolutions); use divisors of {fine}")
    return res
