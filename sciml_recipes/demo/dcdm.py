"""Demo part ``dcdm``: a 2D pressure Poisson solve by CG, IC(0)-PCG, GMG-PCG, learned-MG-PCG
and DCDM.

The shipped 2D network (trained at 64^2 on the fluid proxy and 7 random obstacle sets)
solves the fluid proxy at 64^2 and an unseen obstacle set at 128^2 to a relative residual
of 1e-6; reports iterations and seconds per solver and draws the residual against the
iteration.
"""

from __future__ import annotations

import time
from pathlib import Path

from sciml.pdes.poisson import divergence_rhs, fluid_proxy, random_obstacles
from sciml.solvers.linear import (
    GeometricMultigrid,
    IncompleteCholesky,
    LearnedMultigrid,
    cg,
    dcdm,
    load_pretrained,
)
from sciml_recipes._figures import save_figure
from sciml_recipes.demo._common import DemoResult, check_part


def solve_all(system, b, net, rtol: float = 1e-6) -> dict[str, dict]:
    """CG, IC(0)-PCG (on the fluid cells), CG with the geometric-multigrid V-cycle, with the
    learned multigrid (the shipped 2D network) and DCDM
    on one system: iterations, seconds (setup included), relative residual history."""
    op = system.operator()
    out = {}
    t0 = time.perf_counter()
    sol = cg(op, b, rtol=rtol)
    out["cg"] = (sol, time.perf_counter() - t0)
    A = system.csr(reduced=True)
    t0 = time.perf_counter()
    ic = IncompleteCholesky(A)
    bf = system.to_fluid(b)
    sol = cg(A, bf, rtol=rtol, M=ic)
    out["ic-pcg"] = (sol, time.perf_counter() - t0)
    t0 = time.perf_counter()
    sol = cg(op, b, rtol=rtol, M=GeometricMultigrid(system))
    out["gmg-pcg"] = (sol, time.perf_counter() - t0)
    t0 = time.perf_counter()
    sol = cg(op, b, rtol=rtol, M=LearnedMultigrid(system))
    out["learned-mg-pcg"] = (sol, time.perf_counter() - t0)
    t0 = time.perf_counter()
    sol = dcdm(op, b, net=net, system=system, rtol=rtol)
    out["dcdm"] = (sol, time.perf_counter() - t0)
    nb = float(b.norm())
    return {k: {"iterations": s.stats["iterations"], "seconds": t, "status": s.status.name,
                "history": (s.stats["history"].reshape(-1) / nb).tolist()}
            for k, (s, t) in out.items()}


def plot(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.4),
                             squeeze=False)
    for ax, (case, res) in zip(axes[0], results.items()):
        for name, r in res.items():
            ax.semilogy(r["history"], label=f"{name} ({r['iterations']} its)")
        ax.axhline(1e-6, color="k", lw=0.8, ls=":")
        ax.set_xlabel("iteration")
        ax.set_ylabel("relative residual")
        ax.set_title(case, fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
    return path


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    net = load_pretrained(2)
    cases = {"fluid proxy 64^2 (seen)": fluid_proxy(64, d=2)}
    if not quick:
        cases["unseen obstacles 128^2"] = random_obstacles(128, d=2, seed=1000 + seed)
    results, rows = {}, []
    for case, system in cases.items():
        b = divergence_rhs(system, 1, seed=seed)[0]
        results[case] = res = solve_all(system, b, net)
        for name, r in res.items():
            rows.append({"case": f"{case} {name}", "metric": "iterations",
                         "value": r["iterations"]})
            rows.append({"case": f"{case} {name}", "metric": "seconds",
                         "value": r["seconds"]})
    fig = plot(results, Path(out_dir) / "dcdm_poisson_2d.png")
    return DemoResult("dcdm", rows, [fig])
