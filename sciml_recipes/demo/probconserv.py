"""Demo part ``probconserv``: a conservation-law update of a learned Stefan profile.

Trains a small deep ensemble of conditional neural processes on sparse observations of
the Stefan problem (p* drawn from [0.55, 0.7]), predicts the profile at t* = 0.5 for
p* = 0.5 (outside the training range) and 0.6, and applies HardC and ProbConserv
(Hansen et al. 2023) with the trapezoid mass and the integrated inflow. Reports the
conservation error, MSE, log-likelihood and shock position error before and after, and
draws the profiles with their 2-sigma bands.
"""

from __future__ import annotations

from pathlib import Path

from sciml_recipes.demo._common import DemoResult, check_part
from sciml_recipes.gpme.pipeline import evaluate_case, train_ensemble
from sciml_recipes.gpme.run import plot_cases


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    members, steps, tasks = (2, 150, 256) if quick else (3, 600, 512)
    model = train_ensemble("stefan", members=members, steps=steps, tasks=tasks, seed=seed,
                           progress=True)
    results = [evaluate_case("stefan", p, model, None, n_eval=10, seed=seed + 1)
               for p in (0.5, 0.6)]
    rows = []
    for r in results:
        for method in ("base", "hardc", "probconserv"):
            for metric in ("ce", "mse", "shock_error"):
                rows.append({"case": f"{r.case} {method}", "metric": metric,
                             "value": r.metrics[method][metric]})
    fig = plot_cases(results, Path(out_dir) / "probconserv_stefan.png")
    return DemoResult("probconserv", rows, [fig])
