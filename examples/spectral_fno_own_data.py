"""Train an FNO on your own tensors: the 1D heat-equation solution operator.

Shows :class:`sciml.operators.FNO` trained by :class:`sciml.train.Trainer` on data made in
the script (no data files): random periodic fields ``u0`` on 64 points and the exact heat
solution ``u(T) = exp(-nu k^2 T) u0_k`` by FFT. Prints the relative L2 test error and
writes ``examples_out/spectral_fno_own_data.png`` (prediction vs truth).

    python examples/spectral_fno_own_data.py
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.utils.data import TensorDataset

from sciml.operators import FNO, RelativeLpLoss, relative_lp
from sciml.train import TrainConfig, Trainer

OUT = Path("examples_out")
N, NU, T = 64, 0.02, 1.0


def random_fields(n: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random periodic fields: Fourier modes 1..8 with decaying amplitudes."""
    k = torch.arange(1, 9)
    c = torch.randn(n, 2, 8, generator=gen) / k
    x = torch.linspace(0, 2 * math.pi, N + 1)[:-1]
    kx = k[:, None] * x
    return (c[:, :1, :, None] * torch.cos(kx) + c[:, 1:, :, None] * torch.sin(kx)).sum(2)


def heat(u0: torch.Tensor) -> torch.Tensor:
    """Exact solution at time T of u_t = nu u_xx on [0, 2 pi), periodic."""
    k = torch.fft.rfftfreq(N, d=1 / N)
    return torch.fft.irfft(torch.fft.rfft(u0) * torch.exp(-NU * k**2 * T), n=N)


torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
u0 = random_fields(1100, gen)
uT = heat(u0)
train, test = TensorDataset(u0[:1000], uT[:1000]), TensorDataset(u0[1000:], uT[1000:])

model = FNO(1, 1, width=24, modes=(12,), layers=3)
config = TrainConfig(epochs=20, lr=3e-3, batch_size=50, progress=False)
trainer = Trainer(model, RelativeLpLoss(), config, metrics={"rel_l2": relative_lp})
result = trainer.fit(train, test)
print(f"trained {result.global_step} steps in {result.elapsed:.1f} s")
print(f"relative L2 test error: {result.history[-1]['eval_rel_l2']:.4f}")

with torch.no_grad():
    pred = model(u0[1000:1003])
x = torch.linspace(0, 2 * math.pi, N + 1)[:-1]
fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharey=True)
for i, ax in enumerate(axes):
    ax.plot(x, u0[1000 + i, 0], "k:", label="u0")
    ax.plot(x, uT[1000 + i, 0], "k", label="exact u(T)")
    ax.plot(x, pred[i, 0], "r--", label="FNO")
    ax.set_xlabel("x")
axes[0].legend()
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "spectral_fno_own_data.png", dpi=120, bbox_inches="tight")
print(f"figure: {OUT / 'spectral_fno_own_data.png'}")
