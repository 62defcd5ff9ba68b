"""MoEHardConstraint, Partition and assemble; a smoke test of the diffusion-sorption model.

References: K separate HardConstraint solves (the batched mixture must equal them, values
and gradients), the closed-form ridge least squares, and the defining criterion of a
partition (every point in exactly the piece whose bounds hold it).
"""

from __future__ import annotations

import pytest
import torch

from sciml.constraints import HardConstraint, MoEHardConstraint, Partition, assemble


def _cubic(c, Phi, y):
    u = (Phi @ c.unsqueeze(-1)).squeeze(-1)
    return u + 0.3 * u**3 - y


def test_partition_index_matches_bounds_and_samples_stay_inside() -> None:
    part = Partition([0.0, 0.0], [1.0, 2.0], splits=(4, 2))
    assert part.n_pieces == 8
    pts = torch.rand(500, 2, dtype=torch.float64) * torch.tensor([1.0, 2.0])
    k = part.index(pts)
    for j in range(8):
        lo, hi = part.bounds(j)
        inside = ((pts[:, 0] >= lo[0]) & (pts[:, 0] < hi[0]) & (pts[:, 1] >= lo[1])
                  & (pts[:, 1] < hi[1]))
        assert torch.equal(k == j, inside)
    s = part.sample(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert s.shape == (8, 10, 2)
    for j in range(8):
        assert bool((part.index(s[j]) == j).all())
    with pytest.raises(ValueError, match="outside the domain"):
        part.index(torch.tensor([[1.5, 0.0]]))
    with pytest.raises(ValueError, match="lower < upper"):
        Partition([0.0], [0.0], splits=(2,))


def test_moe_equals_separate_solves_values_and_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    B, K, R, N = 2, 3, 10, 4
    Phi = torch.randn(B, K, R, N, generator=g, dtype=torch.float64)
    y = torch.randn(B, K, R, generator=g, dtype=torch.float64)
    P1 = Phi.clone().requires_grad_()
    res = MoEHardConstraint(_cubic, K, ridge=1e-4, tol=1e-13, max_iter=200)(
        P1, y, c0=torch.zeros(B, K, N))
    assert res.coeffs.shape == (B, K, N) and res.iterations.shape == (B, K)
    w = torch.randn(B, K, N, generator=g, dtype=torch.float64)
    (res.coeffs * w).sum().backward()
    single = HardConstraint(_cubic, ridge=1e-4, tol=1e-13, max_iter=200)
    for k in range(K):
        Pk = Phi[:, k].clone().requires_grad_()
        rk = single(Pk, y[:, k], c0=torch.zeros(B, N))
        torch.testing.assert_close(res.coeffs[:, k].detach(), rk.coeffs.detach(),
                                   rtol=1e-9, atol=1e-11)
        (rk.coeffs * w[:, k]).sum().backward()
        torch.testing.assert_close(P1.grad[:, k], Pk.grad, rtol=1e-7, atol=1e-9)


def test_moe_gradcheck_and_assemble() -> None:
    g = torch.Generator().manual_seed(1)
    Phi = torch.randn(1, 2, 6, 3, generator=g, dtype=torch.float64)
    c_true = 0.3 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    y = _cubic(c_true, Phi[0], torch.zeros(2, 6, dtype=torch.float64))[None]  # consistent
    layer = MoEHardConstraint(_cubic, 2, ridge=1e-6, tol=1e-13, max_iter=100)

    def fn(P):
        return layer(P, y, c0=torch.zeros(1, 2, 3)).coeffs

    assert torch.autograd.gradcheck(fn, (Phi.clone().requires_grad_(),), atol=1e-6)
    coeffs = torch.randn(1, 2, 3, dtype=torch.float64)
    values = torch.randn(5, 3, dtype=torch.float64)
    piece = torch.tensor([0, 1, 1, 0, 1])
    u = assemble(values, coeffs, piece)
    ref = torch.stack([values[m] @ coeffs[0, piece[m]] for m in range(5)])
    torch.testing.assert_close(u[0], ref)
    with pytest.raises(ValueError, match="piece"):
        assemble(values, coeffs, torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="experts"):
        layer(Phi, y, c0=torch.zeros(1, 3, 3))


@pytest.mark.parametrize("method", ["soft", "single", "moe"])
def test_diffusion_sorption_model_trains_one_step(method) -> None:
    from sciml.train.hardc import DiffSorpModel, HardCConfig

    torch.manual_seed(0)
    cfg = HardCConfig(n_basis=6, width=16, depth=2, points=64, ic_points=16, bc_points=8,
                      loss_points=64, max_iter=5)
    model = DiffSorpModel(method, cfg)
    loss = model.loss(torch.tensor([0.05, 0.15]))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


@pytest.mark.parametrize("experts", [3, 4])
def test_moe_across_two_processes_equals_one_process(tmp_path, experts) -> None:
    """torchrun, 2 CPU processes (gloo): each rank solves its share of the experts (3
    experts: the second rank pads with a repeat); values and gradients as in one process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import _moe_dist_script as script  # tests/ is on sys.path (pytest rootdir insertion)

    here = Path(__file__).parent
    out = tmp_path / "dist.pt"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--standalone", str(here / "_moe_dist_script.py"), "--out", str(out),
         "--experts", str(experts)],
        capture_output=True, text=True, timeout=300, cwd=here.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    assert got["world"] == 2
    share = -(-experts // 2)  # rank r owns experts r*share ... (r+1)*share - 1
    owned = torch.zeros(2, experts, dtype=torch.bool)
    owned[0, :share] = True
    owned[1, share:] = True
    assert torch.equal(got["owned"], owned)
    one, grad = script.solve(experts, distributed=False)
    torch.testing.assert_close(got["coeffs"], one.coeffs.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(got["grad"], grad, rtol=1e-10, atol=1e-12)
    assert got["status"] == one.status.name
    assert torch.equal(got["iterations"], one.iterations)
