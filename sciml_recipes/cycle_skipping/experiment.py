"""The cycle-skipping experiment: recover a pulse position with the L2 and the W2 misfit.

The forward map is the periodic 1D advection ``u_t + c u_x = 0`` on ``[0, 1)`` of an
oscillatory pulse, a Gaussian-windowed cosine centred at the unknown position ``p``:

.. math:: u_0(x) = \\exp\\Big(-\\frac{d(x, p)^2}{2 s^2}\\Big)
          \\cos\\Big(\\frac{2 \\pi d(x, p)}{\\lambda}\\Big), \\qquad
          u(T, x) = u_0(x - c T)

with ``d`` the signed periodic distance. It is observed on the full grid at ``T`` with
Gaussian noise. The L2 misfit of such a signal, as a function of ``p``, oscillates with
the carrier: a local minimum every wavelength ``lambda`` near the truth and a flat plateau
where the pulses no longer overlap, so a gradient method converges to the truth only from
within about ``lambda / 2`` of it (the cycle-skipping problem of full-waveform
inversion). The quadratic Wasserstein distance of nonnegative transforms of the signals
is, for a pure translation, exactly the squared shift, so its landscape has one basin
(Engquist & Froese 2014; Yang, Engquist, Sun & Hamfeldt, Geophysics 83, 2018).

The W2 misfit is :class:`~sciml.inverse.W2Misfit` (the debiased Sinkhorn divergence,
which is also exactly the squared shift for a translation, whatever ``reg``) with a
negative ``shift`` of three noise standard deviations: the softplus then keeps the positive
lobes of the pulse and drops the noise floor, which would otherwise add a uniform mass to
the data that pulls the estimate towards the middle of the domain.

:func:`cycle_skipping` solves from ``n_starts`` starts drawn uniformly (seeded) within
``start_radius`` of the truth, all as one batch of the L-BFGS :class:`~sciml.inverse.MAP`
solver per misfit, and reports the fraction that end within ``tolerance`` (a quarter
wavelength by default: the true cycle) of the truth. The unknown is ``p`` itself, in
domain units, so L-BFGS's first trial step (of length ``min(1, 1/|grad J|)``) and its
backtracking can also jump between basins of the L2 landscape; an L2 solve ends in
whichever local minimum it reaches, and only the end point is scored.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciml.inverse.map import MAP
from sciml.inverse.misfit import L2Misfit, W2Misfit
from sciml.inverse.observe import FullObservation
from sciml.inverse.problem import InverseProblem
from sciml.utils import check_int, check_real
from sciml_recipes._figures import save_figure

from .._checks import check_instance, check_path, check_seed

__all__ = ["ShiftedPulse", "cycle_skipping", "cycle_skipping_problems",
           "plot_cycle_skipping", "recover_positions"]

_DT = torch.float64
_CASE = "w2-vs-l2"


def _wrap(d: torch.Tensor) -> torch.Tensor:
    """The signed periodic distance in ``[-1/2, 1/2)`` (its derivative is 1 a.e.)."""
    return torch.remainder(d + 0.5, 1.0) - 0.5


@dataclass(frozen=True)
class ShiftedPulse:
    """The forward map ``p -> u(T, .)``: an advected Gaussian-windowed cosine.

    Exact (no time stepping): the solution of ``u_t + c u_x = 0`` is the initial pulse
    translated by ``c T``, evaluated at the grid points ``x_i = i / n``. Differentiable in
    ``p`` (the periodic wrap has derivative 1 wherever the pulse is not negligible).

    Attributes:
        n: grid points on ``[0, 1)``.
        wavelength: the carrier wavelength ``lambda``.
        width: the standard deviation ``s`` of the Gaussian envelope.
        speed: the advection speed ``c``.
        time: the observation time ``T``.

    Call: ``forward(p)`` with ``p`` of shape ``(B, 1)``; returns ``(B, n)``.
    """

    n: int = 128
    wavelength: float = 0.06
    width: float = 0.05
    speed: float = 1.0
    time: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_int("n", self.n, minimum=8))
        for name in ("wavelength", "width", "time"):
            object.__setattr__(self, name, check_real(name, getattr(self, name),
                                                      positive=True))
        object.__setattr__(self, "speed", check_real("speed", self.speed))

    @property
    def travel(self) -> float:
        """The distance ``c T`` the pulse travels."""
        return self.speed * self.time

    def grid(self, dtype: torch.dtype = _DT, device: torch.device | str | None = None
             ) -> torch.Tensor:
        return torch.arange(self.n, dtype=dtype, device=device) / self.n

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        if not isinstance(p, torch.Tensor) or p.ndim != 2 or p.shape[1] != 1:
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"p must be a tensor of positions of shape (B, 1), got {shape}")
        d = _wrap(self.grid(p.dtype, p.device) - p - self.travel)
        return torch.exp(-0.5 * (d / self.width) ** 2) * torch.cos(
            2 * math.pi * d / self.wavelength)


def cycle_skipping_problems(
    pulse: ShiftedPulse | None = None,
    *,
    true_position: float = 0.3,
    noise_std: float = 0.1,
    reg: float = 2e-2,
    temperature: float = 0.02,
    seed: int = 0,
) -> dict[str, InverseProblem]:
    """The two inverse problems (``"l2"``, ``"w2"``) on one noisy observation.

    Args:
        pulse: the forward map (default :class:`ShiftedPulse()`).
        true_position: the initial position ``p`` that generated the data.
        noise_std: the noise standard deviation ``sigma``; the L2 misfit is the Gaussian
            likelihood ``L2Misfit(sigma)``, the W2 misfit thresholds at ``3 sigma``.
        reg, temperature: :class:`~sciml.inverse.W2Misfit` settings.
        seed: seeds the noise.

    Returns:
        ``{"l2": InverseProblem, "w2": InverseProblem}`` sharing the forward map and data.
    """
    pulse = ShiftedPulse() if pulse is None else pulse
    if not isinstance(pulse, ShiftedPulse):
        raise TypeError(f"pulse must be a ShiftedPulse, got {type(pulse).__name__}")
    true_position = check_real("true_position", true_position)
    noise_std = check_real("noise_std", noise_std, positive=True)
    reg = check_real("reg", reg, positive=True, fix="the Sinkhorn regularisation, e.g. 2e-2")
    temperature = check_real("temperature", temperature, positive=True,
                             fix="the softplus temperature, e.g. 0.02")
    obs = FullObservation((pulse.n,), noise_std=noise_std)
    gen = torch.Generator().manual_seed(check_seed(seed))
    clean = pulse(torch.tensor([[true_position]], dtype=_DT))
    data = obs.add_noise(clean, generator=gen)
    # the threshold -3 sigma drops the noise floor from the data's density (see module doc)
    w2 = W2Misfit(pulse.grid(), reg=reg, temperature=temperature, shift=-3.0 * noise_std,
                  tol=1e-8)
    return {"l2": InverseProblem(pulse, obs, data, misfit=L2Misfit(noise_std)),
            "w2": InverseProblem(pulse, obs, data, misfit=w2)}


def recover_positions(problem: InverseProblem, starts: torch.Tensor | list[float], *,
                      max_iter: int = 60) -> dict[str, Any]:
    """Solve ``problem`` from every start at once (one batched L-BFGS MAP solve).

    Returns:
        ``final`` (positions wrapped to ``[0, 1)``, numpy), ``codes`` (per-start
        :class:`~sciml.inverse.InverseStatus` names), ``iterations``, ``time_s`` (wall
        time of the batch).
    """
    check_instance("problem", problem, InverseProblem,
                   hint="build one with cycle_skipping_problems()")
    if isinstance(starts, torch.Tensor):
        x0 = starts.detach()
    elif isinstance(starts, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in starts):
        x0 = torch.tensor(starts, dtype=_DT)
    else:
        raise TypeError(f"starts must be a list of start positions or a tensor, got "
                        f"{type(starts).__name__}")
    if x0.ndim == 2 and x0.shape[1] == 1:
        x0 = x0[:, 0]
    if x0.numel() == 0:
        raise ValueError("starts is empty; pass at least one start position")
    if x0.ndim != 1 or x0.is_complex():
        raise ValueError(f"starts must be a non-empty list (or a (B,) or (B, 1) tensor) of "
                         f"start positions, got shape {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("starts contains NaN or Inf; pass finite start positions")
    x0 = x0.to(_DT).reshape(-1, 1)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    solver = MAP(method="lbfgs", max_iter=max_iter, gtol=1e-6, ftol=1e-10)
    t0 = time.perf_counter()
    res = solver(problem, x0)
    seconds = time.perf_counter() - t0
    return {"final": torch.remainder(res.estimate[:, 0], 1.0).numpy(),
            "codes": list(res.stats["codes"]), "iterations": res.stats["iterations"],
            "time_s": seconds}


def _distance(p: np.ndarray, q: float) -> np.ndarray:
    """Periodic distance on ``[0, 1)`` (the forward map cannot tell ``p`` from ``p + 1``)."""
    return np.abs((np.asarray(p) - q + 0.5) % 1.0 - 0.5)


def _landscape(problem: InverseProblem, positions: torch.Tensor, chunk: int = 50
               ) -> np.ndarray:
    with torch.no_grad():
        vals = [problem.misfit_value(positions[i:i + chunk, None])
                for i in range(0, len(positions), chunk)]
    return torch.cat(vals).numpy()


def cycle_skipping(
    n_starts: int = 50,
    *,
    seed: int = 0,
    pulse: ShiftedPulse | None = None,
    true_position: float = 0.3,
    start_radius: float = 0.25,
    noise_std: float = 0.1,
    reg: float = 2e-2,
    temperature: float = 0.02,
    tolerance: float | None = None,
    max_iter: int = 60,
    n_landscape: int = 121,
) -> dict[str, Any]:
    """Recover the pulse position from ``n_starts`` random starts with L2 and with W2.

    Starts are drawn uniformly from ``[p* - start_radius, p* + start_radius]`` with a
    generator seeded by ``seed + 1`` (the noise uses ``seed``). A start has converged when
    the periodic distance of its estimate to ``p*`` is below ``tolerance``.

    Args:
        n_starts: number of random starts, >= 1.
        seed: seeds the noise and the starts.
        pulse: the forward map (default :class:`ShiftedPulse()`: 128 points, wavelength
            0.06, envelope width 0.05, ``c T = 0.25``).
        true_position: ``p*``.
        start_radius: half-width of the start interval; keep the advected pulse away
            from the ends of ``[0, 1)``, where the (non-periodic) W2 cost wraps.
        noise_std, reg, temperature: see :func:`cycle_skipping_problems`.
        tolerance: the convergence radius (default a quarter wavelength: the true cycle).
        max_iter: L-BFGS iterations per solve.
        n_landscape: positions at which the two misfit landscapes are evaluated.

    Returns:
        A dict: ``setup`` (every setting), ``starts``, per misfit ``"l2"``/``"w2"``:
        ``final``, ``codes``, ``converged`` (bool per start), ``converged_fraction``,
        ``iterations``, ``time_s``; ``landscape`` (``position``, ``l2``, ``w2``);
        ``signals`` (``grid``, ``data``, ``clean``, ``far_index`` (the start farthest
        from the truth), ``far_l2``, ``far_w2`` (the signals at its two estimates));
        ``rows`` (benchmark rows: case ``w2-vs-l2``, impl ``sciml``, method ``l2``/``w2``,
        metrics ``converged_fraction``, ``time_s``, ``n_starts``).

    Raises:
        ValueError: ``n_starts < 1`` or another bad setting (the message names it).
    """
    n_starts = check_int("n_starts", n_starts, minimum=1)
    check_seed(seed)
    pulse = check_instance("pulse", pulse, ShiftedPulse, optional=True) or ShiftedPulse()
    true_position = check_real("true_position", true_position)
    start_radius = check_real("start_radius", start_radius, positive=True)
    if start_radius >= 0.5:
        raise ValueError(f"start_radius must be < 0.5 (half the periodic domain), got "
                         f"{start_radius}")
    tol = pulse.wavelength / 4 if tolerance is None else check_real("tolerance", tolerance,
                                                                    positive=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    n_landscape = check_int("n_landscape", n_landscape, minimum=2)
    problems = cycle_skipping_problems(pulse, true_position=true_position,
                                       noise_std=noise_std, reg=reg,
                                       temperature=temperature, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(n_starts, generator=gen, dtype=_DT)
    starts = true_position - start_radius + 2 * start_radius * u
    out: dict[str, Any] = {"starts": starts.numpy()}
    for name, problem in problems.items():
        r = recover_positions(problem, starts, max_iter=max_iter)
        r["converged"] = _distance(r["final"], true_position) < tol
        r["converged_fraction"] = float(r["converged"].mean())
        out[name] = r
    positions = torch.linspace(true_position - start_radius, true_position + start_radius,
                               n_landscape, dtype=_DT)
    out["landscape"] = {"position": positions.numpy(),
                        **{k: _landscape(p, positions) for k, p in problems.items()}}
    far = int(np.argmax(_distance(out["starts"], true_position)))
    with torch.no_grad():
        est = {k: torch.tensor([[out[k]["final"][far]]], dtype=_DT) for k in problems}
        out["signals"] = {
            "grid": pulse.grid().numpy(), "data": problems["l2"].data[0].numpy(),
            "clean": pulse(torch.tensor([[true_position]], dtype=_DT))[0].numpy(),
            "far_index": far,
            **{f"far_{k}": pulse(e)[0].numpy() for k, e in est.items()}}
    out["setup"] = {
        "n": pulse.n, "wavelength": pulse.wavelength, "width": pulse.width,
        "speed": pulse.speed, "time": pulse.time, "true_position": true_position,
        "start_radius": start_radius, "noise_std": noise_std, "reg": reg,
        "temperature": temperature, "shift": -3.0 * noise_std, "tolerance": tol,
        "n_starts": n_starts, "seed": seed, "max_iter": max_iter}
    out["rows"] = [
        {"case": _CASE, "impl": "sciml", "method": k, "metric": metric, "value": value}
        for k in problems
        for metric, value in (("converged_fraction", out[k]["converged_fraction"]),
                              ("time_s", out[k]["time_s"]), ("n_starts", n_starts))]
    return out


def plot_cycle_skipping(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Draw the landscapes, the far-start recoveries and final against start positions."""
    if not isinstance(result, dict) or "setup" not in result:
        raise TypeError(f"result must be the dict that cycle_skipping() returns, got "
                        f"{type(result).__name__}")
    path = check_path("path", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["setup"]
    p_true, tol = s["true_position"], s["tolerance"]
    colors = {"l2": "tab:red", "w2": "tab:blue"}
    labels = {"l2": "L2", "w2": "W2 (Sinkhorn)"}
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))

    land = result["landscape"]
    for k in ("l2", "w2"):
        v = np.asarray(land[k], dtype=float)
        v = (v - v.min()) / max(float(v.max() - v.min()), 1e-300)
        ax[0].plot(land["position"], v, color=colors[k], label=labels[k])
    ax[0].axvline(p_true, color="k", ls="--", lw=1, label="true position")
    ax[0].set_xlabel("initial pulse position p")
    ax[0].set_ylabel("misfit (normalised to [0, 1])")
    ax[0].set_title("misfit landscapes")
    ax[0].legend(fontsize=8)

    sig = result["signals"]
    i = sig["far_index"]
    ax[1].plot(sig["grid"], sig["data"], color="0.6", lw=1, label="observed (noisy)")
    for k in ("l2", "w2"):
        p_hat = result[k]["final"][i]
        ax[1].plot(sig["grid"], sig[f"far_{k}"], color=colors[k], lw=1.2,
                   label=f"{labels[k]}: p = {p_hat:.3f}")
    ax[1].set_xlabel("x")
    ax[1].set_ylabel(f"u(x, T = {s['time']:g})")
    ax[1].set_title(f"recovered from the farthest start p0 = {result['starts'][i]:.3f} "
                    f"(true {p_true:g})", fontsize=9)
    ax[1].legend(fontsize=8, loc="upper left")

    ax[2].axhspan(p_true - tol, p_true + tol, color="0.85", label=f"truth +- {tol:.3g}")
    for k, m in (("l2", "o"), ("w2", "x")):
        r = result[k]
        ax[2].scatter(result["starts"], r["final"], marker=m, color=colors[k], s=22,
                      label=f"{labels[k]}: {r['converged_fraction']:.0%} converged")
    ax[2].set_xlabel("start position p0")
    ax[2].set_ylabel("final position p")
    ax[2].set_title(f"{len(result['starts'])} uniform random starts")
    ax[2].legend(fontsize=8)
    fig.suptitle(f"Cycle skipping: advected windowed cosine (wavelength "
                 f"{s['wavelength']:g}), noise {s['noise_std']:g}", fontsize=10)
    path = Path(path)
    save_figure(fig, path, dpi=90)
    return path
