"""Demo part ``mppde``: MP-PDE rollouts on E1 Burgers against WENO5.

Generates 16 E1 test trajectories (conservative grid convention: WENO5 at nx = 200,
block-averaged to 50 cells), rolls the shipped MP-PDE (trained by ``sciml train mppde``
on 512 such trajectories) out from the labels at steps 25..49 to step 249 and scores it,
with WENO5 at the same 50 cells, by the paper's accumulated MSE; then trains a narrow
MP-PDE from scratch for a few seconds to show the pushforward training (far from trained:
the full benchmark trains each model for thousands of steps). The figure shows where the
rollouts drift.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.burgers import BurgersDataset, generate_burgers
from ..train.mppde import (
    build_stepper,
    load_pretrained,
    rollout_error,
    train_stepper,
    weno5_error,
)
from ..train.mppde_run import plot_rollout
from ._common import DemoResult


def run(out_dir: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out = Path(out_dir) / "mppde"
    kw = {"family": "E1", "convention": "conservative", "resolutions": (200, 50),
          "progress": True}
    test = BurgersDataset(generate_burgers(out / "test.h5", samples=8 if quick else 16,
                                           seed=seed + 10**6, **kw), 50)
    case = "E1 nx=50 conservative"
    rows = []
    models = {"data": test}
    try:
        shipped = load_pretrained("E1", 50, "conservative")
    except FileNotFoundError:
        shipped = None
    if shipped is not None:
        res = rollout_error(shipped, test)
        rows += [{"case": f"{case} mppde (shipped)", "metric": m, "value": res[m]}
                 for m in ("accumulated_mse", "rollout_s")]
        models["mppde"] = shipped
    # a short run from scratch: the pushforward training at work
    train = BurgersDataset(generate_burgers(out / "train.h5", samples=16 if quick else 32,
                                            seed=seed, **kw), 50)
    torch.manual_seed(seed)
    fresh = build_stepper("mppde", train, hidden=32, layers=3)
    budget = 3.0 if quick else 10.0
    result = train_stepper(fresh, train, steps=10_000, time_budget=budget, max_unroll=1,
                           grow_every=50, seed=seed, progress=True)
    res = rollout_error(fresh, test)
    rows += [{"case": f"{case} mppde ({result.global_step} steps)", "metric": m,
              "value": res[m]} for m in ("accumulated_mse", "rollout_s")]
    models.setdefault("mppde", fresh)
    we = weno5_error(test)
    rows += [{"case": f"{case} weno5", "metric": m, "value": we[m]}
             for m in ("accumulated_mse", "rollout_s")]
    title = f"{case}: {'shipped' if shipped is not None else 'briefly trained'} MP-PDE vs WENO5"
    fig = plot_rollout(models, Path(out_dir) / "mppde_rollout.png", title=title)
    return DemoResult("mppde", rows, [fig])
