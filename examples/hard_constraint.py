"""Physics as a hard constraint: a random-feature basis solved onto the Bratu equation.

Shows :class:`sciml.constraints.HardConstraint` on a tiny nonlinear PDE: ``u'' + lam e^u =
0`` on (0, 1) with ``u(0) = u(1) = 0``, for three values of ``lam`` at once (a batch). The
basis is 40 fixed random features ``tanh(w x + s)`` (what a network's last layer would
give); the layer picks the coefficients that make the PDE and boundary residuals vanish in
least squares (batched Levenberg-Marquardt, float64). The coefficients are differentiable
(implicit function theorem): ``d u(1/2) / d lam`` is checked against the exact solution
``u = -2 log(cosh((x - 1/2) theta / 2) / cosh(theta / 4))``, ``theta = sqrt(2 lam)
cosh(theta / 4)``. Writes ``examples_out/hard_constraint.png``.

    python examples/hard_constraint.py
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from sciml.constraints import HardConstraint

OUT = Path("examples_out")
torch.manual_seed(0)
N, B = 40, 3
w, s = 8 * torch.randn(N, dtype=torch.float64), 4 * torch.randn(N, dtype=torch.float64)


def features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The basis and its second derivative at points ``x``: two ``(len(x), N)`` arrays."""
    t = torch.tanh(w * x[:, None] + s)
    return t, -2 * w**2 * t * (1 - t**2)


def residual(c, P, Pxx, Pb, lam):
    """PDE residual at the collocation points, then the two boundary values."""
    u = (P @ c[..., None])[..., 0]
    pde = (Pxx @ c[..., None])[..., 0] + lam * torch.exp(u)
    return torch.cat([pde / P.shape[1] ** 0.5, (Pb @ c[..., None])[..., 0]], dim=-1)


def exact(lam: float, x: torch.Tensor) -> torch.Tensor:
    theta = 1.0
    for _ in range(100):  # the lower branch: fixed point of theta = sqrt(2 lam) cosh(theta/4)
        theta = math.sqrt(2 * lam) * math.cosh(theta / 4)
    return -2 * torch.log(torch.cosh((x - 0.5) * theta / 2) / math.cosh(theta / 4))


x = torch.linspace(0, 1, 101, dtype=torch.float64)
P, Pxx = features(x)
Pb, _ = features(torch.tensor([0.0, 1.0], dtype=torch.float64))
lam = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64, requires_grad=True)
data = (P.expand(B, -1, -1), Pxx.expand(B, -1, -1), Pb.expand(B, -1, -1), lam)

layer = HardConstraint(residual, ridge=1e-10, max_iter=100)
c0 = torch.zeros(B, N, dtype=torch.float64)
res = layer(*data, c0=c0)
before = residual(c0, *data).norm(dim=-1).detach()
u = (P @ res.coeffs[..., None])[..., 0]
(du,) = torch.autograd.grad(u[:, 50].sum(), lam)  # u(1/2) per lam, through the solve
print(f"status {res.status.name}, LM iterations {res.iterations.tolist()}")
for i, l in enumerate(lam.detach().flatten().tolist()):
    err = float((u[i].detach() - exact(l, x)).abs().max())
    h = 1e-6
    fd = float(exact(l + h, x)[50] - exact(l - h, x)[50]) / (2 * h)
    print(f"lam = {l}: residual {float(before[i]):.2e} -> {float(res.residual_norm[i]):.2e}, "
          f"max |u - exact| = {err:.1e}, du(1/2)/dlam = {float(du[i]):.5f} (exact {fd:.5f})")

fig, ax = plt.subplots(figsize=(6, 4))
for i, l in enumerate(lam.detach().flatten().tolist()):
    ax.plot(x, exact(l, x), "k", lw=3, alpha=0.3)
    ax.plot(x, u[i].detach(), f"C{i}--", label=f"hard constraint, lam = {l}")
ax.set_xlabel("x"), ax.set_ylabel("u"), ax.set_title("Bratu: basis solve (dashed), exact (grey)")
ax.legend()
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "hard_constraint.png", dpi=120, bbox_inches="tight")
print(f"figure: {OUT / 'hard_constraint.png'}")
