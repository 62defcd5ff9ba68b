"""Demo part ``mppde``: a short MP-PDE run on E1 Burgers against WENO5.

Generates 96 E1 trajectories (conservative grid convention, solved by WENO5 at nx = 200
and block-averaged to 50 cells), trains a narrow MP-PDE (hidden 64) with the pushforward
trick for about 25 seconds, rolls it out from the labels at steps 25..49 to step 249 on
16 test trajectories and scores it, with WENO5 at the same 50 cells, by the paper's
accumulated MSE. A run this short is far from trained (the full benchmark trains for
minutes per model: ``sciml train mppde``); the figure shows where the rollout drifts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.burgers import BurgersDataset, generate_burgers
from ..train.mppde import build_stepper, rollout_error, train_stepper, weno5_error
from ..train.mppde_run import plot_rollout
from ._common import DemoResult


def run(out_dir: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out = Path(out_dir) / "mppde"
    kw = {"family": "E1", "convention": "conservative", "resolutions": (200, 50),
          "progress": True}
    train_path = generate_burgers(out / "train.h5", samples=32 if quick else 96, seed=seed,
                                  **kw)
    test_path = generate_burgers(out / "test.h5", samples=8 if quick else 16,
                                 seed=seed + 10**6, **kw)
    train, test = BurgersDataset(train_path, 50), BurgersDataset(test_path, 50)
    torch.manual_seed(seed)
    model = build_stepper("mppde", train, hidden=64)
    budget = 5.0 if quick else 25.0
    result = train_stepper(model, train, steps=10_000, time_budget=budget, max_unroll=1,
                           grow_every=50, seed=seed, progress=True)
    mp = rollout_error(model, test)
    we = weno5_error(test)
    case = "E1 nx=50 conservative"
    rows = [
        {"case": f"{case} mppde", "metric": "train_steps", "value": result.global_step},
        {"case": f"{case} mppde", "metric": "accumulated_mse", "value": mp["accumulated_mse"]},
        {"case": f"{case} mppde", "metric": "rollout_s", "value": mp["rollout_s"]},
        {"case": f"{case} weno5", "metric": "accumulated_mse", "value": we["accumulated_mse"]},
        {"case": f"{case} weno5", "metric": "rollout_s", "value": we["rollout_s"]},
    ]
    fig = plot_rollout({"mppde": model, "data": test}, Path(out_dir) / "mppde_rollout.png",
                       title=f"{case}: MP-PDE after {result.global_step} steps "
                             f"({budget:.0f} s) vs WENO5")
    return DemoResult("mppde", rows, [fig])
