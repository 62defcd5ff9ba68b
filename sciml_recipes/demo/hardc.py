"""Demo part ``hardc``: soft, single hard and mixture-of-experts constraints.

Trains three small basis networks on the 1D diffusion-sorption physics loss alone (no
solution data, PDEBench constants, t <= 500 s) for a few dozen steps each: coefficients
from a trained head (soft, the residual as a penalty), from one Levenberg-Marquardt
hard-constraint solve (single) and from four experts on time slabs (moe). Reports the
relative L2 error against the finite-volume reference, the LM iterations and the PDE
residual at the collocation points, and draws the fields.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sciml_recipes.demo._common import DemoResult, check_part
from sciml_recipes.hardc.pipeline import HardCConfig
from sciml_recipes.hardc.run import evaluate_hardc, plot_hardc, train_hardc


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    steps = 10 if quick else 40
    cfg = HardCConfig(points=256, loss_points=256, ic_points=64, bc_points=32)
    models = {m: train_hardc(m, cfg, steps=steps, seed=seed, progress=True)
              for m in ("soft", "single", "moe", "moe-chain")}
    scores, test = evaluate_hardc(models, n=128, nt=21)
    rows = []
    for m, s in scores.items():
        rows.append({"case": f"diffusion-sorption {m}", "metric": "rel_l2",
                     "value": s["rel_l2"]})
        if "lm_iterations" in s:
            rows.append({"case": f"diffusion-sorption {m}", "metric": "lm_iterations",
                         "value": s["lm_iterations"]})
            # norm of the weighted residual rows (a root mean square) the constraint minimised
            res = models[m].last_solve
            rows.append({"case": f"diffusion-sorption {m}", "metric": "constraint_residual",
                         "value": float(torch.as_tensor(res.residual_norm).double().mean())})
    fig = plot_hardc(models, test, Path(out_dir) / "hardc_diffusion_sorption.png")
    return DemoResult("hardc", rows, [fig])
