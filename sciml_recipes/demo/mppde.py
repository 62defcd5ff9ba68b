"""Demo part ``mppde``: a short MP-PDE run on E1 Burgers against WENO5.

Generates E1 trajectories (conservative grid convention: WENO5 at nx = 200,
block-averaged to 50 cells), trains a narrow MP-PDE (hidden 32, 3 layers) with the
pushforward trick for a few seconds, rolls it out from the labels at steps 25..49 to
step 249 on 16 test trajectories and scores it, with WENO5 at the same 50 cells, by the
paper's accumulated MSE. A run this short is far from trained, and so (on a CPU) is the
full benchmark's (``sciml train mppde``, 3000 steps per model, accumulated MSE 18 on this
case against WENO5's 0.017); the figure shows where the rollout drifts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sciml.data.burgers import BurgersDataset, generate_burgers
from sciml_recipes.demo._common import DemoResult, check_part
from sciml_recipes.mppde.pipeline import build_stepper, rollout_error, train_stepper, weno5_error
from sciml_recipes.mppde.run import plot_rollout


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    out = Path(out_dir) / "mppde"
    kw = {"family": "E1", "convention": "conservative", "resolutions": (200, 50),
          "progress": True}
    test = BurgersDataset(generate_burgers(out / "test.h5", samples=8 if quick else 16,
                                           seed=seed + 10**6, **kw), 50)
    train = BurgersDataset(generate_burgers(out / "train.h5", samples=16 if quick else 32,
                                            seed=seed, **kw), 50)
    torch.manual_seed(seed)
    model = build_stepper("mppde", train, hidden=32, layers=3)
    budget = 3.0 if quick else 15.0
    result = train_stepper(model, train, steps=10_000, time_budget=budget, max_unroll=1,
                           grow_every=50, seed=seed, progress=True)
    case = "E1 nx=50 conservative"
    mp, we = rollout_error(model, test), weno5_error(test)
    rows = [{"case": f"{case} mppde", "metric": "train_steps", "value": result.global_step}]
    rows += [{"case": f"{case} {name}", "metric": m, "value": res[m]}
             for name, res in (("mppde", mp), ("weno5", we))
             for m in ("accumulated_mse", "rollout_s")]
    fig = plot_rollout({"mppde": model, "data": test}, Path(out_dir) / "mppde_rollout.png",
                       title=f"{case}: MP-PDE after {result.global_step} steps vs WENO5")
    return DemoResult("mppde", rows, [fig])
