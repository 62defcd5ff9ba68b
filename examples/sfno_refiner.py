"""A spatiotemporal FNO on 2D Navier-Stokes, then refined on the PDE residual alone.

Shows :class:`sciml.operators.SFNO` trained by :class:`sciml.train.Trainer` (the H^-1
loss :class:`sciml.operators.SobolevLoss`) on a tiny data set made in memory: 7 vorticity
trajectories of the FNO benchmark's flow (viscosity 1e-3, forcing ``0.1 (sin + cos)(2 pi
(x + y))`` on the unit box, Gaussian-random-field initial fields), solved by
:class:`sciml.pdes.NavierStokes2D` on 64^2, Fourier-resampled to 32^2 and stored every 0.2
time units (40 frames). The SFNO maps 10 frames to the next 10; six trajectories give
the training windows, the seventh is held out. Then :class:`sciml.operators.SpectralRefiner`
fine-tunes the last spectral layer for that one trajectory on the Navier-Stokes residual
(:class:`sciml.operators.NSResidualLoss`, H^-1 norm): no ground truth is used. Prints the
relative L2 error against the solver and the residual before and after refinement (beside
persistence, the last input frame held fixed, and the solver's own residual on the same
frames). The residual measures consistency with the equation, not the error: a frame held
fixed can have a smaller residual than a better prediction, and lowering the residual need
not lower the error. The network (width 12, 3 blocks) and the training (150 steps, batch 4)
are sized to run in seconds on a CPU, not for the paper's accuracy. The held-out window
is late in the trajectory (t = 4 .. 7.8), where the forced flow has settled; from t = 0
the same model barely beats persistence (relative error about 0.34 against 0.39). Writes
``examples_out/sfno_refiner.png`` (truth, SFNO and refined vorticity at the last frame;
the residual during refinement).

    python examples/sfno_refiner.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.utils.data import TensorDataset

from sciml.operators import (
    SFNO,
    NSResidualLoss,
    SobolevLoss,
    SpectralRefiner,
    fourier_resample,
    relative_lp,
)
from sciml.pdes import NavierStokes2D, fno_forcing, gaussian_random_field
from sciml.train import TrainConfig, Trainer

OUT = Path("examples_out")
N_TRAIN, N, FRAME_DT, FRAMES, T_IN, T_OUT, NU = 6, 32, 0.2, 40, 10, 10, 1e-3

torch.manual_seed(0)
solver = NavierStokes2D(viscosity=NU, forcing=fno_forcing(64), method="ifrk4")
w0 = gaussian_random_field(N_TRAIN + 1, 64, generator=torch.Generator().manual_seed(0))
w = solver.solve(w0, torch.arange(FRAMES) * FRAME_DT)  # (7, 40, 64, 64), float64
w = fourier_resample(w, (N, N)).float()  # the exact Fourier projection on 32^2

mean, std = float(w[:N_TRAIN].mean()), float(w[:N_TRAIN].std())
wn = (w - mean) / std  # the network sees normalised vorticity
span = T_IN + T_OUT
starts = range(FRAMES - span + 1)
x_train = torch.stack([wn[i, s:s + T_IN] for i in range(N_TRAIN) for s in starts])
y_train = torch.stack([wn[i, s + T_IN:s + span] for i in range(N_TRAIN) for s in starts])

model = SFNO(modes=8, modes_t=4, width=12, layers=3, out_steps=T_OUT)
config = TrainConfig(epochs=5, max_steps=150, lr=3e-3, batch_size=4, progress=False)
result = Trainer(model, SobolevLoss(s=-1.0), config).fit(TensorDataset(x_train, y_train))
print(f"SFNO: {len(x_train)} training windows, {result.global_step} steps in "
      f"{result.elapsed:.1f} s, final H^-1 training loss {result.history[-1]['train_loss']:.3f}")

# the held-out trajectory: its last 20 frames (t = 4.0 .. 7.8), 10 in and 10 to predict
x, y = wn[N_TRAIN:, -span:-T_OUT], wn[N_TRAIN:, -T_OUT:]
equation = NavierStokes2D(viscosity=NU, forcing=fno_forcing(N, dtype=torch.float32))
residual = NSResidualLoss(equation, FRAME_DT, s=-1.0, mean=mean, std=std)
refined = SpectralRefiner(steps=100, lr=1e-3, progress=False)(model, x, residual)


def error(pred: torch.Tensor) -> float:
    return float(relative_lp(pred, y).mean())


persistence = x[:, -1:].expand_as(y)
print(f"held-out trajectory, {T_OUT} predicted frames: relative L2 error vs the solver / "
      f"H^-1 residual of the Navier-Stokes equation")
for name, pred in (("persistence", persistence), ("SFNO", refined.initial),
                   ("SFNO + refiner", refined.prediction), ("solver (truth)", y)):
    print(f"  {name:15s} error {error(pred):.4f}   residual {float(residual(pred)):.2e}")

frames = [f * std + mean for f in (y[0, -1], refined.initial[0, -1], refined.prediction[0, -1])]
titles = ("solver", f"SFNO (error {error(refined.initial):.3f})",
          f"refined (error {error(refined.prediction):.3f})")
vmax = float(frames[0].abs().max())
fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), layout="constrained")
for ax, f, title in zip(axes[:3], frames, titles):
    ax.imshow(f.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
              extent=(0, 1, 0, 1))
    ax.set_title(f"{title}, t = {(FRAMES - 1) * FRAME_DT:.1f}")
    ax.set_xticks([]), ax.set_yticks([])
axes[3].semilogy(refined.history[:, 0])
axes[3].set_xlabel("refiner step"), axes[3].set_title("H^-1 residual (no ground truth)")
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "sfno_refiner.png", dpi=110, bbox_inches="tight")
print(f"figure: {OUT / 'sfno_refiner.png'}")
