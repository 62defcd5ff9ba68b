"""DCDM on pressure Poisson systems: CG, IC(0)-PCG and DCDM, residual against iteration.

Solves the fluid proxy and an unseen random obstacle set with the shipped network for the
chosen dimension (2D: trained at 64^2; 3D: trained at 32^3) at the given grid sizes and
writes one convergence figure per case into --out. For the full side-by-side comparison
with scipy and PyAMG, timings and the break-even, run ``benchmarks/poisson.py``.

    python examples/dcdm_poisson.py --dim 2 --sizes 64 128 256 --out runs/dcdm
    python examples/dcdm_poisson.py --dim 3 --sizes 32 64 --out runs/dcdm
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sciml.pdes.poisson import divergence_rhs, fluid_proxy, random_obstacles
from sciml.solvers.linear import load_pretrained
from sciml_recipes.demo.dcdm import plot, solve_all


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=2, choices=[2, 3])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--out", default="runs/dcdm")
    args = p.parse_args(argv)
    net = load_pretrained(args.dim)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        results = {}
        for kind, system in (("fluid proxy", fluid_proxy(n, d=args.dim)),
                             ("unseen obstacles", random_obstacles(n, d=args.dim,
                                                                   seed=10_000 + n))):
            b = divergence_rhs(system, 1, seed=0)[0]
            case = f"{kind} {n}^{args.dim}"
            results[case] = res = solve_all(system, b, net)
            print(case + ": " + ", ".join(f"{k} {r['iterations']} its {r['seconds']:.2f} s"
                                          for k, r in res.items()), flush=True)
        fig = plot(results, out / f"dcdm_{args.dim}d_{n}.png")
        print(f"figure: {fig}")


if __name__ == "__main__":
    main()
