"""Pseudo-spectral solver for 2D incompressible Navier-Stokes in vorticity form.

.. math::

    w_t + u \\cdot \\nabla w = \\nu \\Delta w - \\mu w + f, \\qquad
    u = (\\psi_y, -\\psi_x), \\quad -\\Delta \\psi = w,

on the periodic box ``[0, L)^2`` (``mu`` is a linear drag). Space is Fourier-Galerkin with
the 2/3 rule (both factors and the product of the advection are truncated, so the state
stays on the resolved modes); time is one of

* ``"rk4cn"``: 5-stage low-storage RK4 with Crank-Nicolson on the viscous term, the
  scheme of jax-cfd and torch-cfd (2nd order once viscosity acts);
* ``"imex2"``: Heun + Crank-Nicolson, 2nd order, two evaluations per step;
* ``"ifrk4"``: integrating-factor RK4, viscosity and drag exact, 4th order;
* ``"ifdp5"``: integrating-factor Dormand-Prince, 5th order, 6 evaluations per step: the
  least work for a given accuracy at CFL-sized steps (see benchmarks/navier_stokes.py).

The step is either given or chosen from the CFL condition ``dt = cfl * dx / max|u|``,
re-evaluated as the flow evolves; output times are hit exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._malloc import tune_malloc
from .._validation import (
    as_tensor,
    check_choice,
    check_finite,
    check_int,
    check_real,
    check_tensor,
)
from ._ns_ops import NSOperators
from ._steppers import STEPPERS

__all__ = ["NavierStokes2D", "NavierStokesBlowUp", "solve_navier_stokes", "time_derivative"]

#: Above this CFL number the explicit advection of every scheme here is unstable
#: (RK4's stability interval on the imaginary axis, 2.83, over the largest dealiased
#: wavenumber pi/dx * 2/3, is 1.35; the margin covers the nonlinearity).
MAX_CFL = 1.0
NS_MAX_STEPS = 10_000_000  # the default refusal threshold of a solve's step count


class NavierStokesBlowUp(RuntimeError):
    """The solution became non-finite or the step broke the CFL condition."""


@dataclass(frozen=True, eq=False)
class NavierStokes2D:
    """Settings of a periodic 2D vorticity solver; fields are passed to the calls.

    Args:
        viscosity: kinematic viscosity ``nu`` (>= 0).
        length: box side ``L``.
        drag: linear drag ``mu`` (>= 0), e.g. 0.1 for Kolmogorov flow.
        forcing: vorticity forcing ``f`` on the solver grid, shape ``(n, n)``, or None.
            See :func:`~sciml.pdes.fno_forcing` and :func:`~sciml.pdes.kolmogorov_forcing`.
        method: ``"rk4cn"``, ``"imex2"``, ``"ifrk4"`` or ``"ifdp5"``.
        cfl: CFL number of the automatic step (``dt=None``), in (0, 1].
        check_every: steps between the blow-up checks (each synchronises with the device).
        max_steps: refuse a solve that would take more time steps than this (a ``dt`` of
            1e-12 or a time of 1e300 would otherwise run for ever); the message gives the
            count. The estimate is made up front and again whenever the automatic step
            shrinks.

    Example::

        ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(256))
        w = ns.solve(w0, times=torch.linspace(0, 10, 11))   # (B, 11, 256, 256)
    """

    viscosity: float
    length: float = 1.0
    drag: float = 0.0
    forcing: torch.Tensor | None = None
    method: str = "rk4cn"
    cfl: float = 0.5
    check_every: int = 25
    max_steps: int = NS_MAX_STEPS
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_real("viscosity", self.viscosity, minimum=0)
        check_real("length", self.length, positive=True)
        check_real("drag", self.drag, minimum=0)
        check_choice("method", self.method, sorted(STEPPERS))
        cfl = check_real("cfl", self.cfl, positive=True)
        if cfl > MAX_CFL:
            raise ValueError(f"cfl must be in (0, {MAX_CFL}], got {cfl}; 0.5 is a safe choice")
        if isinstance(self.check_every, bool) or not isinstance(self.check_every, int) or (
            self.check_every < 1
        ):
            raise ValueError(f"check_every must be a positive int, got {self.check_every!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or (
            self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if self.forcing is not None:
            f = check_tensor("forcing", as_tensor(self.forcing), ndim=2, real=True,
                             fft_dtype=True)
            object.__setattr__(self, "forcing", f)
            if f.shape[0] != f.shape[1]:
                raise ValueError(f"forcing must be square (n, n), got shape {tuple(f.shape)}")
            check_finite("forcing", f)

    # ------------------------------------------------------------------ plumbing

    def _ops(self, n: int, dtype: torch.dtype, device: torch.device) -> NSOperators:
        key = (n, dtype, str(device))
        ops = self._cache.get(key)
        if ops is None:
            f = self.forcing
            if f is not None:
                if f.shape[-1] != n:
                    raise ValueError(
                        f"forcing is on a {f.shape[-1]}^2 grid but the vorticity is on {n}^2; "
                        f"sample the forcing on the solver grid (e.g. fno_forcing({n}))"
                    )
                f = f.to(device)
            ops = NSOperators.build(
                n, self.length, self.viscosity, self.drag, f, dtype, torch.device(device)
            )
            self._cache[key] = ops
        return ops

    def _field(self, name: str, w: object, min_ndim: int = 2) -> torch.Tensor:
        w = check_tensor(name, as_tensor(w), min_ndim=min_ndim, real=True, fft_dtype=True)
        n = w.shape[-1]
        if w.shape[-2] != n:
            raise ValueError(f"{name} must be on a square grid (..., n, n), got {tuple(w.shape)}")
        if n < 4:
            raise ValueError(f"{name} has a {n}x{n} grid; use at least 4x4 (the 2/3 rule)")
        check_finite(name, w)
        return w

    def velocity(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity ``(u, v) = (psi_y, -psi_x)`` of a vorticity field ``(..., n, n)``.

        Computed from the 2/3-rule projection of ``w`` (the modes the solver keeps).
        """
        w = self._field("w", w)
        ops = self._ops(w.shape[-1], w.dtype, w.device)
        z = ops.physical_pair(torch.fft.fft2(w, norm="forward"))[..., 0, :, :]
        return z.real, z.imag

    def rhs(self, w: torch.Tensor) -> torch.Tensor:
        """``w_t = -u.grad(w) + nu lap(w) - mu w + f`` of the projected ``w`` (physical)."""
        w = self._field("w", w)
        ops = self._ops(w.shape[-1], w.dtype, w.device)
        s = ops.to_compact(w)
        n_hat, _ = ops.nonlinear(s)
        return ops.from_compact(n_hat + ops.linear * s)

    def stable_dt(self, w: torch.Tensor) -> float:
        """The CFL step ``cfl * dx / max|u|`` of a field (the largest over a batch)."""
        u, v = self.velocity(w)
        speed = float(torch.sqrt(u * u + v * v).amax())
        dx = self.length / w.shape[-1]
        return self.cfl * dx / speed if speed > 0 else math.inf

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        w0: torch.Tensor,
        times: Sequence[float] | torch.Tensor,
        *,
        t0: float = 0.0,
        dt: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Integrate from ``w0`` at ``t0`` and return the vorticity at ``times``.

        Args:
            w0: initial vorticity ``(n, n)`` or ``(B, n, n)``, float32 or float64 (the
                solve runs in that dtype, on that device). It is projected on the 2/3-rule
                modes first.
            times: nondecreasing output times ``>= t0`` (``t0`` itself returns the
                projected initial condition).
            t0: initial time.
            dt: time step; each output interval is split into the fewest equal steps
                no longer than ``dt``. ``None`` picks the CFL step from the current
                velocity, updated every ``check_every`` steps (then the step of a sample
                depends on the largest speed in its batch).
            progress: show a progress bar over simulated time.

        Returns:
            ``(B, T, n, n)`` (or ``(T, n, n)`` for an unbatched ``w0``).

        On Linux CPUs the first call raises glibc's malloc thresholds so the transform
        buffers are reused rather than page-faulted anew each stage (process-wide; opt out
        with ``SCIML_MALLOC_TUNING=0``, see :mod:`sciml._malloc`).

        Raises:
            NavierStokesBlowUp: the field became non-finite or ``u_max dt / dx`` exceeded
                1; the message names the step, the time and the fix.
        """
        w0 = self._field("w0", w0)
        if w0.ndim not in (2, 3):
            raise ValueError(f"w0 must be (n, n) or (B, n, n), got shape {tuple(w0.shape)}")
        t0 = check_real("t0", t0)
        ts = _times("times", times, t0)
        if dt is not None:
            dt = check_real("dt", dt, positive=True)
        squeeze = w0.ndim == 2
        w0 = w0.unsqueeze(0) if squeeze else w0
        if w0.device.type == "cpu":
            tune_malloc()  # see sciml._malloc: a third of the step time otherwise
        n = w0.shape[-1]
        ops = self._ops(n, w0.dtype, w0.device)
        stepper = STEPPERS[self.method]
        dx = self.length / n
        w_hat = ops.to_compact(w0)
        out = torch.empty((w0.shape[0], len(ts), n, n), dtype=w0.dtype, device=w0.device)
        bar = _bar(progress, ts[-1] - t0 if ts else 0.0)
        t, step = t0, 0
        factors: dict[float, list[torch.Tensor]] = {}
        speed = None
        for i, t_out in enumerate(ts):
            while t_out - t > 1e-12 * max(1.0, abs(t_out)):
                remaining = t_out - t
                h_max = dt
                if h_max is None:
                    if speed is None:
                        speed = float(ops.nonlinear(w_hat)[1][:, 0].detach().abs().amax())
                    h_max = self.cfl * dx / speed if speed > 0 else remaining
                self._check_count(step, ts[-1] - t, h_max, len(ts) - i, dt is None, speed)
                k = max(1, math.ceil(remaining / h_max - 1e-9))
                h = remaining / k
                fac = factors.get(h)
                if fac is None:
                    fac = factors[h] = stepper.factors(ops.linear, h)
                    if len(factors) > 8:
                        factors.pop(next(iter(factors)))
                burst = min(k, self.check_every)
                for _ in range(burst):
                    w_hat, z = stepper.step(w_hat, ops.nonlinear, fac, h)
                    step += 1
                t = t_out if burst == k else t + burst * h
                speed = self._check(w_hat, z, h, dx, step, t, dt is None)
                if bar is not None:
                    bar.update(burst * h)
            out[:, i] = ops.from_compact(w_hat)
        if bar is not None:
            bar.close()
        return out[0] if squeeze else out

    def _check_count(self, done: int, span: float, h: float, intervals: int,
                     adaptive: bool, speed: float | None) -> None:
        why = (f"the CFL step {h:.3g} of the current flow (max|u| = {speed:.3g}, cfl = "
               f"{self.cfl})" if adaptive else None)
        check_step_count(span, h, intervals=intervals, max_steps=self.max_steps, done=done,
                         why=why)

    def _check(self, w_hat, z, h, dx, step, t, adaptive) -> float:
        """Blow-up check after a burst of steps; returns the current max speed."""
        speed = float(z[:, 0].detach().abs().amax())
        if not math.isfinite(speed) or not bool(torch.isfinite(w_hat.detach()).all()):
            raise NavierStokesBlowUp(
                f"the vorticity became non-finite by step {step} (t = {t:.6g}); "
                f"the step dt = {h:.3g} is too large for this flow or the grid does not "
                "resolve it: pass a smaller dt (or dt=None for the CFL step), a smaller cfl, "
                "or a finer grid"
            )
        cfl = speed * h / dx
        if cfl > MAX_CFL and not adaptive:
            raise NavierStokesBlowUp(
                f"CFL violated at step {step} (t = {t:.6g}): max|u| dt / dx = {cfl:.3g} > "
                f"{MAX_CFL} with dt = {h:.3g}, max|u| = {speed:.3g}; the explicit advection is "
                f"unstable. Pass dt <= {0.5 * dx / speed:.3g} (CFL 0.5) or dt=None"
            )
        return speed

    # ------------------------------------------------------------------ residual

    def residual(
        self,
        w: torch.Tensor,
        dt: float | None = None,
        *,
        w_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pointwise residual ``r = w_t + u.grad(w) - nu lap(w) + mu w - f`` of a trajectory.

        Spatial terms are spectral (the advection with the 2/3 rule); ``w_t`` is taken
        from the trajectory itself by 4th-order finite differences in time over uniformly
        spaced frames ``dt`` apart (central inside, one-sided at the ends), unless given.
        Differentiable: used as a ground-truth-free loss by the Spectral-Refiner.

        Args:
            w: ``(..., T, n, n)`` vorticity frames (``T >= 5`` when ``w_t`` is not given).
            dt: spacing of the frames in time.
            w_t: the time derivative, same shape as ``w``, instead of ``dt``.

        Returns:
            The residual, same shape as ``w``.
        """
        w = self._field("w", w, min_ndim=3)
        if w_t is None:
            if dt is None:
                raise ValueError("residual needs dt (the frame spacing) or w_t")
            w_t = time_derivative(w, check_real("dt", dt, positive=True), dim=-3)
        else:
            w_t = check_tensor("w_t", as_tensor(w_t, like=w), real=True)
            if w_t.shape != w.shape:
                raise ValueError(f"w_t has shape {tuple(w_t.shape)} but w is {tuple(w.shape)}")
        ops = self._ops(w.shape[-1], w.dtype, w.device)
        w_hat = torch.fft.fft2(w, norm="forward")
        adv_hat = ops.advection_hat(ops.physical_pair(w_hat)) * ops.mask
        spatial = adv_hat - ops.linear_full * w_hat
        if ops.forcing_full is not None:
            spatial = spatial - ops.forcing_full
        return w_t + torch.fft.ifft2(spatial, norm="forward").real


def check_step_count(span: float, dt: float, *, intervals: int = 1,
                     max_steps: int = NS_MAX_STEPS, done: int = 0,
                     why: str | None = None) -> None:
    """Refuse a time integration of ``span`` time units at step ``dt`` that would take
    more than ``max_steps`` steps (``intervals`` output intervals each round up; ``done``
    steps already taken count too). Raises ``ValueError`` giving the count."""
    span = check_real("span", span, minimum=0.0)
    dt = check_real("dt", dt, minimum=0.0)
    intervals = check_int("intervals", intervals, minimum=0)
    todo = (span / dt if dt > 0 else math.inf) + intervals
    if done + todo <= max_steps:  # False for NaN too
        return
    why = why or f"dt = {dt:.3g}"
    raise ValueError(
        f"this solve would take about {done + todo:.3g} time steps ({why} over "
        f"{span:.3g} time units{f', after {done} steps' if done else ''}), more than "
        f"max_steps = {max_steps:,}: pass a larger dt (or dt=None for the CFL step), an "
        "earlier end time, a field of sensible size, or raise max_steps if that many "
        "steps are really meant")


def _times(name: str, times: object, t0: float) -> list[float]:
    if isinstance(times, torch.Tensor):
        if times.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(times.shape)}")
        times = times.tolist()
    if isinstance(times, (int, float)) and not isinstance(times, bool):
        times = [times]
    try:
        ts = [float(t) for t in times]  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of numbers, got {times!r}") from None
    if not ts:
        raise ValueError(f"{name} is empty; ask for at least one output time")
    for i, t in enumerate(ts):
        if not math.isfinite(t):
            raise ValueError(f"{name}[{i}] = {t} is not finite")
        if t < t0 - 1e-12 * max(1.0, abs(t0)):
            raise ValueError(f"{name}[{i}] = {t} is before t0 = {t0}; times must be >= t0")
        if i and t < ts[i - 1]:
            raise ValueError(f"{name} must be nondecreasing, but {name}[{i}] = {t} < {ts[i - 1]}")
    return ts


def _bar(on: bool, total: float):
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="navier-stokes", unit="t.u.", leave=False,
                bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} [{elapsed}<{remaining}]")


# 4th-order first-derivative stencils over 5 points: one-sided at the first two and last
# two frames, central inside (coefficients / 12).
_D4_EDGE = ((-25.0, 48.0, -36.0, 16.0, -3.0), (-3.0, -10.0, 18.0, -6.0, 1.0))
_D4_MID = (1.0, -8.0, 0.0, 8.0, -1.0)


# the time-derivative matrices in use, by (frames, dt, dtype, device): built on the host
# and copied to the device once, not at every residual evaluation (a blocking copy each)
_STENCILS: dict[tuple, torch.Tensor] = {}
_STENCILS_KEPT = 16


def _time_stencil(T: int, dt: float, dtype: torch.dtype, device: torch.device
                  ) -> torch.Tensor:
    """The ``(T, T)`` 4th-order ``d/dt`` matrix for frames ``dt`` apart, on ``device``."""
    key = (T, dt, dtype, str(device))
    d = _STENCILS.get(key)
    if d is not None and d.device == device:
        return d
    d = torch.zeros(T, T, dtype=torch.float64)
    for i in range(T):
        if i < 2:
            d[i, :5] = torch.tensor(_D4_EDGE[i])
        elif i >= T - 2:
            d[i, T - 5:] = -torch.tensor(_D4_EDGE[T - 1 - i]).flip(0)
        else:
            d[i, i - 2:i + 3] = torch.tensor(_D4_MID)
    d = (d / (12.0 * dt)).to(dtype=dtype, device=device)
    while len(_STENCILS) >= _STENCILS_KEPT:  # the oldest goes first
        _STENCILS.pop(next(iter(_STENCILS)), None)
    _STENCILS[key] = d
    return d


def time_derivative(w: torch.Tensor, dt: float, *, dim: int = -3) -> torch.Tensor:
    """4th-order finite-difference ``d/dt`` of uniformly spaced frames along ``dim``.

    Exact for polynomials of degree 4 in time. Needs at least 5 frames.
    """
    w = check_tensor("w", as_tensor(w), floating=True)
    dt = check_real("dt", dt, positive=True)
    dim = check_int("dim", dim)
    if not -w.ndim <= dim < w.ndim:
        raise ValueError(f"dim = {dim} is not an axis of w (shape {tuple(w.shape)}); pass "
                         "the time axis of the frames")
    T = w.shape[dim]
    if T < 5:
        raise ValueError(f"time_derivative needs >= 5 frames along dim {dim}, got {T}")
    d = _time_stencil(T, dt, w.dtype, w.device)
    wm = w.movedim(dim, -1)
    return (wm @ d.T).movedim(-1, dim)


def solve_navier_stokes(
    w0: torch.Tensor,
    times: Sequence[float] | torch.Tensor,
    *,
    viscosity: float,
    length: float = 1.0,
    drag: float = 0.0,
    forcing: torch.Tensor | None = None,
    method: str = "rk4cn",
    dt: float | None = None,
    cfl: float = 0.5,
    t0: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Functional form of :meth:`NavierStokes2D.solve` (same arguments, same result)."""
    ns = NavierStokes2D(viscosity=viscosity, length=length, drag=drag, forcing=forcing,
                        method=method, cfl=cfl)
    return ns.solve(w0, times, t0=t0, dt=dt, progress=progress)
