"""Recover the initial vorticity, the viscosity and the forcing of 2D Navier-Stokes.

The FNO setting at 64^2 (nu = 1e-3, forcing 0.1 (sin + cos)(2 pi (x + y)), initial field
from the GRF(2.5, 7) of the FNO data) is observed at T = 1 at 5% of the grid points with
noise of 5% of the field's rms. The initial vorticity is recovered by whitened L-BFGS
under the GRF prior, once through the pseudo-spectral solver and once through an SFNO
surrogate trained here on solver data, each with its low-rank Laplace posterior; then the
viscosity and the forcing amplitude are recovered with the initial field known, from 8
independent noise draws. Prints the errors, the calibration of the posterior standard
deviations, the bias and spread of the parameters against their Laplace std, and writes
inverse_navier_stokes.png and the results JSON (shared benchmark shape) into --out.

    python examples/inverse_navier_stokes.py --out runs/inverse      # about 15 minutes
    python examples/inverse_navier_stokes.py --quick                 # 32^2, short training
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.ns_inverse.experiment import experiment_settings, run_ns_inverse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/inverse"))
    p.add_argument("--no-surrogate", action="store_true", help="skip the SFNO case")
    p.add_argument("--train-budget", type=float, default=600.0,
                   help="seconds of surrogate training (a finished run in --out is reused)")
    p.add_argument("--quick", action="store_true", help="32^2, 10%% observed, short training")
    args = p.parse_args(argv)

    setup, kw = experiment_settings(args.quick, args.train_budget)
    out = args.out / "quick" if args.quick else args.out
    result = run_ns_inverse(out, setup, surrogate=not args.no_surrogate, **kw)
    print(f"setup: {result['setup']}")
    if result["surrogate"]:
        print(f"surrogate: {result['surrogate']}")
    print(format_table([(r["case"], r["method"], r["metric"], f"{r['value']:.4g}")
                        for r in result["rows"]], ("case", "method", "metric", "value")))
    path = write_results(out / "inverse_navier_stokes.json", "inverse_navier_stokes",
                         result["rows"], extra={"setup": result["setup"],
                                                "surrogate": result["surrogate"]})
    print(f"figure: {result['figure']}\nresults: {path}")


if __name__ == "__main__":
    main()
