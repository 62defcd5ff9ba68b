"""ProbConserv on the GPME family: conservation as a Bayesian update (Hansen et al. 2023).

For diffusion (k in {1, 5}), the porous medium equation (m in {1, 3, 6}) and the Stefan
problem (p* in {0.5, 0.6}): trains a deep ensemble of conditional neural processes on
sparse observations (parameters from the training ranges in sciml_recipes.gpme), a second one
with a PDE-residual penalty, then at t* = 0.5 compares base / soft / HardC / ProbConserv
(and ProbConserv followed by the differentiable nonnegative-monotone projection) on
conservation error, MSE, log-likelihood and the Stefan shock position. Writes
probconserv.json (the shared benchmark shape) and probconserv_profiles.png.

    python examples/probconserv_gpme.py --out runs/probconserv \
        --results benchmarks/results/probconserv.json

Equivalent to ``sciml train probconserv --out runs/probconserv``. A rerun reuses the
trained ensembles under --out.
"""

from __future__ import annotations

import argparse

from sciml_recipes.gpme.run import run_probconserv


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/probconserv", help="folder for models and figures")
    p.add_argument("--results", default=None, help="JSON path (default OUT/probconserv.json)")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--n-eval", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run_probconserv(args.out, members=args.members, steps=args.steps, n_eval=args.n_eval,
                    seed=args.seed, results_json=args.results)


if __name__ == "__main__":
    main()
