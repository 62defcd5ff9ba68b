"""Backward heat equation: a MAP estimate and its Laplace uncertainty from sparse data.

Shows :mod:`sciml.inverse` on a small problem of your own: the initial temperature ``u0``
on the periodic unit interval (128 points) is recovered from 24 noisy point values of
``u(T)``, the heat flow ``u_t = u_xx`` to ``T = 0.002`` (a linear forward map written in
three lines with the FFT). The prior is a Gaussian Sobolev prior and the truths (4, one
batch) are drawn from it, so the Laplace posterior is exact and its +-2 std band should
hold about 95% of the truth; the Laplace std is also checked against a dense posterior
covariance built here. Writes ``examples_out/inverse_problem.png``.

    python examples/inverse_problem.py
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from sciml.inverse import (
    MAP,
    InverseProblem,
    Laplace,
    SobolevPrior,
    calibration,
    random_points,
)

OUT = Path("examples_out")
N, T, NOISE = 128, 0.002, 0.01
gen = torch.Generator().manual_seed(0)
decay = torch.exp(-((2 * math.pi * torch.fft.rfftfreq(N, d=1 / N)) ** 2) * T)


def heat(u0: torch.Tensor) -> torch.Tensor:
    """u(T) for u(0) = u0, batched (B, N); differentiable (a Fourier multiplier)."""
    return torch.fft.irfft(torch.fft.rfft(u0) * decay, n=N)


# precision w (alpha - d^2/dx^2)^2: correlation length ~ 1/sqrt(alpha), pointwise std ~ 1
prior = SobolevPrior(s=2.0, weight=2.5e-4, lengths=(1.0,), alpha=100.0)
truth = prior.sample(4, (N,), generator=gen)
obs = random_points((N,), 24 / N, noise_std=NOISE, generator=gen)
data = obs.add_noise(obs(heat(truth)), generator=gen)
problem = InverseProblem(heat, obs, data, prior=prior)
res = MAP(max_iter=500)(problem, torch.zeros_like(truth), uncertainty=Laplace())

err = res.estimate - truth
print(f"MAP status {res.status.name} after {res.stats['iterations']} iterations; "
      f"relative L2 error {float(err.norm() / truth.norm()):.3f}")
print(f"calibration: {calibration(err, res.std):.3f} of the points within 2 std (0.954 ideal)")
# the dense posterior covariance (F^T O^T O F / sigma^2 + Gamma^-1)^-1, built column by column
eye = torch.eye(N, dtype=torch.float64)
OF = obs(heat(eye))  # (N, m): row i is O F e_i
Gamma = prior.apply_sqrt(prior.apply_sqrt(eye))
C = torch.linalg.inv(OF @ OF.T / NOISE**2 + torch.linalg.inv(Gamma))
print(f"Laplace std vs dense posterior: max relative difference "
      f"{float((res.std[0] / C.diagonal().sqrt() - 1).abs().max()):.1e}")

x = torch.arange(N) / N
xo = x[list(obs.indices)]
fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(x, truth[0], "k", label="true u0")
ax.plot(x, res.estimate[0], "C3", label="MAP u0")
ax.fill_between(x, res.estimate[0] - 2 * res.std[0], res.estimate[0] + 2 * res.std[0],
                color="C3", alpha=0.2, label="+-2 std (Laplace)")
ax.plot(x, heat(truth)[0], "C0", lw=1, label="u(T)")
ax.plot(xo, data[0], "C0o", ms=4, label="observed u(T)")
ax.set_xlabel("x"), ax.legend(ncol=3, fontsize=8)
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "inverse_problem.png", dpi=120, bbox_inches="tight")
print(f"figure: {OUT / 'inverse_problem.png'}")
