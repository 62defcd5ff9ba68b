"""Inverse problems through the differentiable stack: every case of the issue in one run.

1. ``ns-ic-solver``: the initial vorticity of 2D Navier-Stokes (the FNO setting at 64^2,
   ``nu = 1e-3``) from the vorticity at ``T = 1`` observed at 5% of the grid points with
   noise (5% of the rms of ``w(T)``): MAP by whitened L-BFGS under the GRF prior of the
   data, through the pseudo-spectral solver, then the low-rank Laplace posterior.
   ``rel_l2`` of the recovered field, ``time_s`` (MAP + Laplace), ``calibration_2sd``
   (the fraction of grid points whose error lies within two posterior standard
   deviations; 0.95 if calibrated).
2. ``ns-ic-sfno``: the same data, through a trained SFNO surrogate (one frame in, one
   out), trained here on solver data (reused from ``--runs`` when there).
3. ``ns-viscosity``: ``(log nu, A)`` with the initial field known, from ``--draws``
   independent noise draws of the same observations (one batched solve): ``bias``,
   ``spread`` (of the estimates over the draws) and the dense Laplace ``laplace_std``.
4. ``w2-vs-l2``: cycle skipping (:func:`sciml_recipes.cycle_skipping.cycle_skipping`): the
   fraction of 50 random starts from which L2 and W2 recover an advected pulse's position.

    python benchmarks/inverse.py             # about 15 minutes on 2 cores (first run)
    python benchmarks/inverse.py --quick     # smoke test (32^2, short training, 8 starts)

Writes benchmarks/results/inverse.json and the figures inverse_navier_stokes.png and
inverse_w2_vs_l2.png beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.cycle_skipping import cycle_skipping, plot_cycle_skipping
from sciml_recipes.ns_inverse.experiment import experiment_settings, run_ns_inverse

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/inverse"),
                   help="where the surrogate's data and weights are kept")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--starts", type=int, default=50)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--train-budget", type=float, default=600.0,
                   help="seconds of surrogate training (when not reused)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)

    setup, kw = experiment_settings(args.quick, args.train_budget)
    if not args.quick:
        kw["draws"] = args.draws
    ns = run_ns_inverse(args.runs / "quick" if args.quick else args.runs, setup, **kw)
    starts = 8 if args.quick else args.starts
    name = "inverse_quick" if args.quick else "inverse"
    cs = cycle_skipping(starts, seed=0)
    rows = ns["rows"] + cs["rows"]
    print(f"setup: {ns['setup']}")
    if ns["surrogate"]:
        print(f"surrogate: {ns['surrogate']}")
    print(format_table([(r["case"], r["method"], r["metric"], f"{r['value']:.4g}")
                        for r in rows], ("case", "method", "metric", "value")))
    args.out.mkdir(parents=True, exist_ok=True)
    fig_ns = Path(ns["figure"])
    target = args.out / ("inverse_navier_stokes_quick.png" if args.quick
                         else "inverse_navier_stokes.png")
    target.write_bytes(fig_ns.read_bytes())
    fig_cs = plot_cycle_skipping(cs, args.out / ("inverse_w2_vs_l2_quick.png" if args.quick
                                                 else "inverse_w2_vs_l2.png"))
    path = write_results(args.out / f"{name}.json", "inverse", rows,
                         extra={"setup": {"navier_stokes": ns["setup"],
                                          "surrogate": ns["surrogate"],
                                          "w2_vs_l2": cs["setup"]}})
    print(f"figures: {target}, {fig_cs}\nresults: {path}")


if __name__ == "__main__":
    main()
