"""Demo part ``ot``: entropic optimal transport by Sinkhorn and Sinkhorn-Newton-Sparse.

Three short runs:

- the entropic W2 distance between two Gaussian-mixture densities on a 28 x 28 grid by
  :func:`~sciml.solvers.ot.sns`, drawn with the heaviest plan entries and the
  displacement field the plan implies (its barycentric map);
- ``points-n1000-reg1e-3`` (1000 random points per side, squared distance scaled to
  max 1, reg 1e-3): :func:`~sciml.solvers.ot.sinkhorn` against ``sns``, iterations and
  time to an L1 marginal error of 1e-8, and how far their plans differ;
- agreement at n = 200, reg 1e-2: the ``sns`` plan against POT's ``sinkhorn_log`` plan
  when POT is installed (``pip install -e '.[bench]'``), else against sciml's
  ``sinkhorn``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sciml.solvers.ot import OTResult, sinkhorn, sns
from sciml_recipes._figures import save_figure
from sciml_recipes.demo._common import DemoResult, check_part, progress
from sciml_recipes.demo.ot_problems import (
    OTProblem,
    barycentric_map,
    grid_densities,
    marginal_error,
    random_points,
)

TOL = 1e-8


def solve_w2(size: int = 28, *, reg: float = 1e-3, seed: int = 0,
             tol: float = TOL) -> tuple[OTProblem, OTResult, float, float]:
    """Entropic W2 between the two seeded densities of :func:`grid_densities` by ``sns``.

    Returns the problem, the result, W2 (``sqrt(scale <P, M>)``, grid units) and the
    solve's wall time in seconds.
    """
    p = grid_densities(size, power=2, seed=seed)
    t0 = time.perf_counter()
    res = sns(p.a, p.b, p.M, reg, tol=tol, max_iter=300)
    secs = time.perf_counter() - t0
    w2 = float(p.scale * res.stats["transport_cost"]) ** 0.5
    return p, res, w2, secs


def draw_transport(axes, p: OTProblem, plan: torch.Tensor, size: int, *, lines: int = 150,
                   arrows_every: int = 2) -> None:
    """Draw a grid OT solution on four axes: source, target, heaviest plan entries,
    displacement ``T(x) - x`` of the barycentric map (arrows on every ``arrows_every``-th
    grid point where the source has mass)."""
    import numpy as np

    a = p.a.reshape(size, size).cpu().numpy()
    b = p.b.reshape(size, size).cpu().numpy()
    ext = (0, 1, 0, 1)
    # point i * size + j sits at (x, y) = ((i + 1/2) / size, (j + 1/2) / size): show a.T
    for ax, d, title in ((axes[0], a, "source a"), (axes[1], b, "target b")):
        ax.imshow(d.T, origin="lower", extent=ext, cmap="Blues")
        ax.set_title(title, fontsize=9)
    x, y = p.x.cpu().numpy(), p.y.cpu().numpy()
    P = plan.detach().cpu().numpy()
    flat = np.argsort(P, axis=None)[::-1][:lines]
    i, j = np.unravel_index(flat, P.shape)
    ax = axes[2]
    ax.imshow(a.T, origin="lower", extent=ext, cmap="Blues", alpha=0.5)
    ax.imshow(np.ma.masked_less(b.T, 0.2 * b.max()), origin="lower", extent=ext,
              cmap="Oranges", alpha=0.5)
    w = P[i, j] / P[i, j].max()
    for k in range(len(flat)):
        ax.plot([x[i[k], 0], y[j[k], 0]], [x[i[k], 1], y[j[k], 1]], color="k",
                lw=0.3 + 1.2 * w[k], alpha=0.15 + 0.5 * w[k])
    ax.set_title(f"{lines} heaviest plan entries", fontsize=9)
    T = barycentric_map(plan.detach().cpu(), p.y.cpu()).numpy()
    keep = (a.flatten() > 0.05 * a.max())
    grid = np.zeros((size, size), bool)
    grid[::arrows_every, ::arrows_every] = True
    keep &= grid.flatten()
    ax = axes[3]
    ax.imshow(a.T, origin="lower", extent=ext, cmap="Blues", alpha=0.5)
    ax.imshow(np.ma.masked_less(b.T, 0.2 * b.max()), origin="lower", extent=ext,
              cmap="Oranges", alpha=0.3)
    ax.quiver(x[keep, 0], x[keep, 1], T[keep, 0] - x[keep, 0], T[keep, 1] - x[keep, 1],
              angles="xy", scale_units="xy", scale=1, width=0.004, color="k")
    ax.set_title("barycentric map T(x) - x", fontsize=9)
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    size = 16 if quick else 28
    n = 300 if quick else 1000
    rows: list[dict[str, object]] = []
    parts = {}
    steps = {"w2": lambda: _w2(size, seed), "points": lambda: _points(n, seed),
             "agreement": lambda: _agreement(seed)}
    for name in progress(steps, desc="ot: solve"):
        r, parts[name] = steps[name]()
        rows += r
    fig = _figure(out_dir, *parts["w2"], size, parts["points"], n)
    return DemoResult("ot", rows, [fig])


def _w2(size: int, seed: int):
    p, res, w2, secs = solve_w2(size, seed=seed)
    case = f"w2-{size}x{size}-reg1e-3"
    rows = [
        {"case": case, "metric": "w2_entropic", "value": w2},
        {"case": case, "metric": "sns_seconds", "value": secs},
        {"case": case, "metric": "sns_iterations", "value": res.stats["iterations"]},
        {"case": case, "metric": "marginal_error", "value": marginal_error(res.plan, p.a, p.b)},
    ]
    return rows, (p, res, w2)


def _points(n: int, seed: int):
    """Sinkhorn and sns on the same point-cloud problem at reg 1e-3."""
    p = random_points(n, seed=seed)
    case = f"points-n{n}-reg1e-3"
    runs, rows = {}, []
    for name, solve in (("sinkhorn", sinkhorn), ("sns", sns)):
        t0 = time.perf_counter()
        runs[name] = solve(p.a, p.b, p.M, 1e-3, tol=TOL)
        secs = time.perf_counter() - t0
        rows += [
            {"case": case, "metric": f"{name}_iterations", "value": runs[name].stats["iterations"]},
            {"case": case, "metric": f"{name}_seconds", "value": secs},
            {"case": case, "metric": f"{name}_marginal_error",
             "value": marginal_error(runs[name].plan, p.a, p.b)},
        ]
    diff = (runs["sinkhorn"].plan - runs["sns"].plan).abs().sum()
    rows.append({"case": case, "metric": "plan_l1_diff_sinkhorn_vs_sns", "value": float(diff)})
    return rows, runs


def _agreement(seed: int):
    """The sns plan at n = 200, reg 1e-2 against POT's (or sciml sinkhorn's) plan."""
    p = random_points(200, seed=seed)
    ours = sns(p.a, p.b, p.M, 1e-2, tol=1e-10)
    try:
        import ot
    except ImportError:
        ref_name = "sinkhorn"
        ref = sinkhorn(p.a, p.b, p.M, 1e-2, tol=1e-10).plan
    else:
        ref_name = "pot"
        a, b, M = p.numpy()
        ref = torch.from_numpy(ot.sinkhorn(a, b, M, 1e-2, method="sinkhorn_log",
                                           stopThr=1e-12, numItermax=20000, warn=False))
    case = "points-n200-reg1e-2"
    return [
        {"case": case, "metric": f"plan_l1_diff_sns_vs_{ref_name}",
         "value": float((ours.plan - ref).abs().sum())},
        {"case": case, "metric": "sns_marginal_error",
         "value": marginal_error(ours.plan, p.a, p.b)},
        {"case": case, "metric": f"{ref_name}_marginal_error",
         "value": marginal_error(ref, p.a, p.b)},
    ], None


def _figure(out_dir: Path, p: OTProblem, res: OTResult, w2: float, size: int,
            runs: dict[str, OTResult], n: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(17, 3.6))
    draw_transport(ax[:4], p, res.plan, size)
    for name, r in runs.items():
        _, secs, err = zip(*r.stats["history"])
        ax[4].semilogy(secs, err, label=f"{name}: {r.stats['iterations']} it")
    ax[4].axhline(TOL, color="gray", lw=0.8, ls="--")
    ax[4].set_xlabel("seconds")
    ax[4].set_ylabel("L1 marginal error")
    ax[4].set_title(f"{n} random points, reg 1e-3", fontsize=9)
    ax[4].legend(fontsize=8)
    fig.suptitle(f"sciml.solvers.ot: entropic W2 = {w2:.4f} between two {size}x{size} "
                 "densities (sns, reg 1e-3); Sinkhorn vs Sinkhorn-Newton-Sparse")
    path = out_dir / "ot_transport.png"
    save_figure(fig, path, dpi=80)
    return path
