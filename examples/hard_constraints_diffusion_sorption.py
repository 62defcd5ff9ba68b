"""Hard constraints with a mixture of experts on 1D diffusion-sorption (Chalapathi et al. 2024).

Trains four basis networks on the physics loss alone (no solution data): ``soft`` (a
trained linear head on the basis, the residual as a penalty), ``single`` (one
Levenberg-Marquardt hard-constraint solve per sample), ``moe`` (K = 4 independent
experts on time slabs) and ``moe-chain`` (the same slabs solved in sequence, each
starting from the previous slab's end state), then compares them with the finite-volume
reference at five initial states. Writes hard_constraints.json (the shared benchmark shape) and
hard_constraints.png. About 10 minutes on 2 CPU cores at the defaults.

    python examples/hard_constraints_diffusion_sorption.py --out runs/hardc \\
        --results benchmarks/results/hard_constraints_errors.json

Equivalent to ``sciml train hardc --out runs/hardc``. A rerun reuses the trained models
under --out; ``benchmarks/hard_constraints.py`` adds the timing rows.
"""

from __future__ import annotations

import argparse

from sciml_recipes.hardc.pipeline import HardCConfig
from sciml_recipes.hardc.run import run_hardc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/hardc", help="folder for models and figures")
    p.add_argument("--results", default=None,
                   help="JSON path (default OUT/hard_constraints.json)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--points", type=int, default=512)
    p.add_argument("--split", default="t", choices=["x", "t", "xt"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run_hardc(args.out, config=HardCConfig(points=args.points, split=args.split),
              steps=args.steps, seed=args.seed, results_json=args.results)


if __name__ == "__main__":
    main()
