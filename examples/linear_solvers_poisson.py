"""CG, IC(0)-PCG and DCDM on a pressure Poisson system you draw yourself.

Shows :mod:`sciml.solvers.linear` on a :class:`sciml.pdes.PoissonSystem` built from a
hand-made 64^2 cell map (a room with two solid blocks, Neumann walls, air above): plain
CG on the matrix-free operator, CG preconditioned by incomplete Cholesky on the scipy CSR
of the fluid cells, and DCDM with the shipped 2D network (:func:`load_pretrained`). Prints
iterations per method and checks the stopping bound ``||b - A x|| <= rtol ||b||`` with
the true residual; writes ``examples_out/linear_solvers_poisson.png`` (residual history).

    python examples/linear_solvers_poisson.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from sciml.pdes import CellType, PoissonSystem, divergence_rhs
from sciml.solvers.linear import (
    IncompleteCholesky,
    aslinearoperator,
    cg,
    dcdm,
    load_pretrained,
)

OUT = Path("examples_out")
N, RTOL = 64, 1e-6

cells = torch.full((N, N), CellType.FLUID, dtype=torch.int8)
cells[10:30, 8:24] = CellType.SOLID  # a block on the floor (axis 1 is up)
cells[36:56, 30:40] = CellType.SOLID  # a floating block
cells[:, N - 4:] = CellType.AIR  # four layers of air at the top
system = PoissonSystem(cells, open_top=True).sealed()
A = system.operator()  # matrix-free 5-point operator on the full grid, float64
b = divergence_rhs(system, 1, seed=0)[0]  # the divergence of a random face velocity

Af = system.csr(reduced=True)  # scipy CSR on the fluid cells only
bf = system.to_fluid(b)
runs = {
    "CG": (cg(A, b, rtol=RTOL), A, b),
    "IC(0)-PCG": (cg(Af, bf, rtol=RTOL, M=IncompleteCholesky(Af)), Af, bf),
    "DCDM": (dcdm(A, b, net=load_pretrained(2), system=system, rtol=RTOL), A, b),
}

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
ax0.imshow(cells.T, origin="lower", cmap="Greys", vmax=3)
ax0.set_title(f"cells ({system.n_fluid} fluid unknowns)")
for name, (sol, op, rhs) in runs.items():
    # the true residual, recomputed here from the returned x (not the solver's recursion)
    rel = float(torch.linalg.vector_norm(rhs - aslinearoperator(op).matvec(sol.x))
                / torch.linalg.vector_norm(rhs))
    print(f"{name:10s} {sol.status.name:9s} {sol.stats['iterations']:4d} iterations, "
          f"||b - Ax|| / ||b|| = {rel:.2e} (bound {RTOL:g} held: {rel <= RTOL})")
    hist = sol.stats["history"].squeeze() / torch.linalg.vector_norm(rhs)
    ax1.semilogy(hist, label=f"{name} ({sol.stats['iterations']} it)")
ax1.axhline(RTOL, color="k", ls=":", lw=1)
ax1.set_xlabel("iteration"), ax1.set_ylabel("||r|| / ||b||"), ax1.legend()
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "linear_solvers_poisson.png", dpi=120, bbox_inches="tight")
print(f"figure: {OUT / 'linear_solvers_poisson.png'}")
