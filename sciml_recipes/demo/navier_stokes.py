"""Demo part ``navier_stokes``: pseudo-spectral 2D turbulence, checked against exact answers.

Two short runs (the FNO-data flow on the unit torus and Kolmogorov flow with drag on the
2 pi box) give the vorticity figure. Two checks with known answers give the numbers: the
Taylor-Green vortex must decay at exactly the viscous rate, and the equation's residual
(:meth:`~sciml.pdes.NavierStokes2D.residual`) of the computed trajectory must be small
against a wrong-viscosity control.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from sciml.pdes import (
    NavierStokes2D,
    fno_forcing,
    gaussian_random_field,
    kolmogorov_forcing,
    mcwilliams_vorticity,
    taylor_green_vorticity,
    time_derivative,
)
from sciml_recipes._figures import save_figure
from sciml_recipes.demo._common import DemoResult, check_part, progress


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    gen = torch.Generator().manual_seed(seed)
    n = 64 if quick else 128
    frames = torch.linspace(0, 10.0, 6)
    runs = {}
    flows = {
        "fno": (NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(n), method="ifdp5"),
                gaussian_random_field(2, n, generator=gen)),
        "kolmogorov": (NavierStokes2D(viscosity=1e-3, length=2 * math.pi, drag=0.1,
                                      forcing=kolmogorov_forcing(n), method="ifdp5"),
                       mcwilliams_vorticity(2, n, max_velocity=1.0, generator=gen)),
    }
    rows: list[dict[str, object]] = []
    for name, (ns, w0) in progress(flows.items(), desc="navier-stokes: simulate"):
        t0 = time.perf_counter()
        w = ns.solve(w0, frames)
        secs = time.perf_counter() - t0
        runs[name] = (ns, w)
        u, v = ns.velocity(w[:, -1])
        rows += [
            {"case": f"{name}-{n}", "metric": "wall_s_2_samples_T10", "value": secs},
            {"case": f"{name}-{n}", "metric": "max_speed_final", "value":
             float((u * u + v * v).sqrt().max())},
        ]

    # exact check 1: Taylor-Green decays at the viscous rate (float64, 64^2)
    tg = NavierStokes2D(viscosity=1e-3, method="ifdp5")
    w_tg = tg.solve(taylor_green_vorticity(64, wavenumber=2), [1.0], dt=0.05)
    exact = taylor_green_vorticity(64, 1.0, viscosity=1e-3, wavenumber=2)
    rows.append({"case": "taylor-green-64", "metric": "max_abs_error_t1",
                 "value": float((w_tg[-1] - exact).abs().max())})

    # exact check 2: residual of a finely framed trajectory vs a wrong-viscosity control
    ns = flows["fno"][0]
    h = 0.01
    w = ns.solve(runs["fno"][1][:, -1], torch.arange(0, 21) * h + 10.0, t0=10.0)
    wt = time_derivative(w, h).norm()
    good = float(ns.residual(w, dt=h).norm() / wt)
    bad = float(NavierStokes2D(viscosity=2e-3, forcing=ns.forcing).residual(w, dt=h).norm() / wt)
    rows += [
        {"case": f"fno-{n}", "metric": "rel_residual", "value": good},
        {"case": f"fno-{n}", "metric": "rel_residual_if_nu_doubled", "value": bad},
    ]
    fig = _figure(out_dir, runs, frames)
    return DemoResult("navier_stokes", rows, [fig])


def _figure(out_dir: Path, runs: dict, frames: torch.Tensor) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(frames)
    fig, ax = plt.subplots(len(runs), cols, figsize=(2.6 * cols, 2.7 * len(runs)))
    titles = {"fno": "FNO forcing, nu=1e-3", "kolmogorov": "Kolmogorov k=4, drag 0.1"}
    for r, (name, (_, w)) in enumerate(runs.items()):
        lim = float(w[0].abs().max())
        for c in range(cols):
            a = ax[r, c]
            a.imshow(w[0, c].T.numpy(), cmap="RdBu_r", origin="lower", vmin=-lim, vmax=lim)
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(f"t = {frames[c]:.0f}", fontsize=9)
        ax[r, 0].set_ylabel(titles[name], fontsize=9)
    fig.suptitle("sciml.pdes.NavierStokes2D: vorticity (pseudo-spectral, IF Dormand-Prince)")
    path = out_dir / "navier_stokes_vorticity.png"
    save_figure(fig, path, dpi=80)
    return path
