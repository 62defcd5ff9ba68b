"""MP-PDE against WENO5 and an FNO on the 1D Burgers family (Brandstetter et al. 2022).

For each family (E1, E2, E3), grid convention (``paper``: the original pipeline's
inconsistent grids and filtered labels; ``conservative``: cell averages throughout) and
resolution (nx = 50, 40), generates the data, trains an MP-PDE and a temporally bundled
FNO with the pushforward trick, and scores them and WENO5 at the same nx by the paper's
accumulated MSE (start from the labels at steps 25..49, roll out to step 249). In the
conservative convention it also finds the coarsest WENO5 grid that is as accurate as
MP-PDE and times both rollouts. Writes mppde.json (the shared benchmark shape) and
mppde_rollout.png.

    python examples/mppde_burgers.py --out runs/mppde --time-budget 600

Equivalent to ``sciml train mppde --out runs/mppde``. Training is resumable: a rerun
continues unfinished runs and reuses finished ones; ``--train-only`` trains without
scoring, so several processes can train different cases side by side and a final run on a
quiet machine takes the timings.
"""

from __future__ import annotations

import argparse

from sciml_recipes.mppde.run import run_mppde


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/mppde")
    p.add_argument("--families", nargs="+", default=["E1", "E2", "E3"])
    p.add_argument("--conventions", nargs="+", default=["paper", "conservative"])
    p.add_argument("--nx", type=int, nargs="+", default=[50, 40])
    p.add_argument("--models", nargs="+", default=["mppde", "fno"])
    p.add_argument("--train-samples", type=int, default=512)
    p.add_argument("--time-budget", type=float, default=600.0,
                   help="seconds of training per model")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--results", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run_mppde(args.out, families=args.families, conventions=args.conventions, nxs=args.nx,
              models=args.models, train_samples=args.train_samples,
              time_budget=args.time_budget, train_only=args.train_only,
              results_json=args.results, seed=args.seed)


if __name__ == "__main__":
    main()
