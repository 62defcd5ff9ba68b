"""MoEHardConstraint, Partition and assemble; a smoke test of the diffusion-sorption model.

References: K separate HardConstraint solves (the batched mixture must equal them, values
and gradients), the closed-form ridge least squares, and the defining criterion of a
partition (every point in exactly the piece whose bounds hold it).
"""

from __future__ import annotations

import pytest
import torch

from sciml.constraints import (
    ChainedHardConstraint,
    HardConstraint,
    HardConstraintError,
    LMStatus,
    MoEHardConstraint,
    Partition,
    assemble,
)


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


def _chain_residual(cubic: float):
    """PDE-like rows ``P c (+ cubic (P c)^3) - y`` and start rows ``I c - target``; the
    target is ``(B,)`` (slab 0's initial value) or ``(B, n)`` (the previous slab's state)."""

    def residual(c, P, y, I, target):
        u = (P @ c.unsqueeze(-1)).squeeze(-1)
        t = target[:, None] if target.ndim == 1 else target
        return torch.cat([u + cubic * u**3 - y, (I @ c.unsqueeze(-1)).squeeze(-1) - t], -1)

    return residual


def _chain_problem(B=2, K=3, R=7, n=4, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(B, K, R, N, generator=g, dtype=torch.float64)
    y = torch.randn(B, K, R, generator=g, dtype=torch.float64)
    I = torch.randn(B, K, n, N, generator=g, dtype=torch.float64)
    u0 = torch.randn(B, K, generator=g, dtype=torch.float64)  # only [:, 0] is read
    return P, y, I, u0


def _dense_chain(P, y, I, u0, ridge):
    """Reference: slab after slab, each the closed-form ridge least squares (float64)."""
    B, K, _, N = P.shape
    out, prev = [], None
    for k in range(K):
        t = u0[:, 0, None].expand(B, I.shape[2]) if prev is None else (
            I[:, k] @ prev.unsqueeze(-1)).squeeze(-1)
        A = torch.cat([P[:, k], I[:, k]], 1)
        b = torch.cat([y[:, k], t], 1)
        At = A.transpose(-1, -2)
        eye = torch.eye(N, dtype=A.dtype)
        prev = torch.linalg.solve(At @ A + ridge * eye, At @ b.unsqueeze(-1)).squeeze(-1)
        out.append(prev)
    return torch.stack(out, 1)


def test_chain_equals_dense_least_squares_slab_after_slab_values_and_gradients() -> None:
    P, y, I, u0 = _chain_problem()
    ridge = 1e-3
    layer = ChainedHardConstraint(_chain_residual(0.0), 3, start_basis=2, start_target=3,
                                  ridge=ridge, tol=1e-12, max_iter=100)
    P1, I1 = P.clone().requires_grad_(), I.clone().requires_grad_()
    res = layer(P1, y, I1, u0, c0=torch.zeros(2, 3, 5))
    assert res.coeffs.shape == (2, 3, 5) and res.coeffs.dtype == torch.float64
    for t in (res.iterations, res.grad_norm, res.residual_norm):
        assert t.shape == (2, 3)
    assert res.status is LMStatus.CONVERGED
    P2, I2 = P.clone().requires_grad_(), I.clone().requires_grad_()
    ref = _dense_chain(P2, y, I2, u0, ridge)
    torch.testing.assert_close(res.coeffs.detach(), ref.detach(), rtol=1e-9, atol=1e-11)
    w = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (res.coeffs * w).sum().backward()
    (ref * w).sum().backward()
    # the gradient reaches slab 0's data through the later links of the chain
    assert float(P1.grad[:, 0].abs().sum()) > 0
    torch.testing.assert_close(P1.grad, P2.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(I1.grad, I2.grad, rtol=1e-7, atol=1e-9)


def test_chain_equals_hard_constraint_solves_in_sequence_and_is_continuous() -> None:
    # nonlinear rows; fewer rows than coefficients, so each slab meets its start rows
    # exactly: slab k starts where slab k - 1 ends (continuity at the slab starts)
    P, y, I, u0 = _chain_problem(R=3, n=2, N=6, seed=1)
    P, y = 0.5 * P, 0.5 * y
    kw = dict(ridge=1e-10, tol=1e-13, max_iter=200)
    res = ChainedHardConstraint(_chain_residual(0.3), 3, start_basis=2, start_target=3,
                                **kw)(P, y, I, u0, c0=torch.zeros(2, 3, 6))
    assert res.status is LMStatus.CONVERGED
    single = HardConstraint(_chain_residual(0.3), **kw)
    prev = None
    for k in range(3):
        t = u0[:, 0] if prev is None else (I[:, k] @ prev.unsqueeze(-1)).squeeze(-1)
        prev = single(P[:, k], y[:, k], I[:, k], t, c0=torch.zeros(2, 6)).coeffs
        torch.testing.assert_close(res.coeffs[:, k], prev, rtol=1e-9, atol=1e-11)
    c = res.coeffs
    torch.testing.assert_close(I[:, 0] @ c[:, 0, :, None],
                               u0[:, 0, None, None].expand(2, 2, 1), atol=1e-7, rtol=0)
    for k in range(1, 3):
        torch.testing.assert_close(I[:, k] @ c[:, k, :, None], I[:, k] @ c[:, k - 1, :, None],
                                   atol=1e-7, rtol=0)


def test_chain_gradcheck() -> None:
    # as many rows as coefficients: zero residual, so LM converges to rounding and the
    # finite differences see the solution map itself
    P, y, I, u0 = _chain_problem(B=1, K=3, R=2, n=1, N=3, seed=3)
    layer = ChainedHardConstraint(_chain_residual(0.3), 3, start_basis=2, start_target=3,
                                  ridge=1e-6, tol=1e-13, max_iter=100)

    def fn(P_, I_, u0_):
        return layer(P_, y, I_, u0_, c0=torch.zeros(1, 3, 3)).coeffs

    args = (0.5 * P, I, u0)
    assert layer(*args[:1], y, *args[1:], c0=torch.zeros(1, 3, 3)).status is LMStatus.CONVERGED
    assert torch.autograd.gradcheck(fn, tuple(a.clone().requires_grad_() for a in args),
                                    atol=1e-6)


def test_max_iter_per_call_and_worst_status() -> None:
    P, y, I, u0 = _chain_problem(seed=4)
    c0 = torch.zeros(2, 3, 5)
    chain = ChainedHardConstraint(_chain_residual(0.3), 3, start_basis=2, start_target=3)
    res = chain(P, y, I, u0, c0=c0, max_iter=1)
    assert res.status is LMStatus.MAX_ITER and int(res.iterations.max()) <= 1
    assert chain.max_iter == 50  # the call did not change the setting
    moe = MoEHardConstraint(_cubic, 3, max_iter=50)
    res = moe(P, y, c0=c0, max_iter=1)
    assert res.status is LMStatus.MAX_ITER and int(res.iterations.max()) <= 1
    assert int(moe(P, y, c0=c0).iterations.max()) > 1
    single = HardConstraint(_cubic)
    assert int(single(P[:, 0], y[:, 0], c0=c0[:, 0], max_iter=1).iterations.max()) <= 1
    for layer in (chain, moe):
        with pytest.raises(AttributeError):
            layer.max_iter = 3
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        moe(P, y, c0=c0, max_iter=0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        chain(P, y, I, u0, c0=c0, max_iter=0)


@pytest.mark.parametrize("kind", ["moe", "chain"])
def test_result_skeleton_stats_converged_and_throw(kind) -> None:
    P, y, I, u0 = _chain_problem(seed=4)
    c0 = torch.zeros(2, 3, 5)
    args = (P, y, I, u0)
    if kind == "moe":  # a linear residual: converges within max_iter
        layer = MoEHardConstraint(_chain_residual(0.0), 3, ridge=1e-6)
    else:
        layer = ChainedHardConstraint(_chain_residual(0.0), 3, start_basis=2, start_target=3)
    bad = layer(*args, c0=c0, max_iter=1)
    good = layer(*args, c0=c0, throw=True)  # converges: no error
    for res in (bad, good):
        assert res.converged == (res.status is LMStatus.CONVERGED)
        for name in ("iterations", "grad_norm", "residual_norm"):
            assert res.stats[name] is getattr(res, name)
            assert res.stats[name].shape == (2, 3)
        assert len(res.stats["member_status"]) == 6
    assert good.converged and not bad.converged and bad.status is LMStatus.MAX_ITER
    assert all(s is LMStatus.CONVERGED for s in good.stats["member_status"])
    # row-major (B, K): a member that stopped before max_iter converged
    flat = bad.iterations.flatten().tolist()
    for it, s in zip(flat, bad.stats["member_status"]):
        if it < 1:
            assert s is LMStatus.CONVERGED
    n_bad = sum(s is not LMStatus.CONVERGED for s in bad.stats["member_status"])
    assert n_bad >= 1
    with pytest.raises(HardConstraintError, match=f"MAX_ITER: .*max_iter.*{n_bad} of 6"):
        layer(*args, c0=c0, max_iter=1, throw=True)


def test_chain_rejects_bad_input() -> None:
    P, y, I, u0 = _chain_problem()
    res_fn = _chain_residual(0.0)
    with pytest.raises(ValueError, match="n_experts must be >= 1"):
        ChainedHardConstraint(res_fn, 0, start_basis=2, start_target=3)
    with pytest.raises(ValueError, match="different data tensors"):
        ChainedHardConstraint(res_fn, 3, start_basis=2, start_target=2)
    with pytest.raises(ValueError, match="start_target must be >= 0"):
        ChainedHardConstraint(res_fn, 3, start_basis=2, start_target=-1)
    with pytest.raises(TypeError, match="residual must be callable"):
        ChainedHardConstraint(None, 3, start_basis=2, start_target=3)
    with pytest.raises(ValueError, match="ridge"):
        ChainedHardConstraint(res_fn, 3, start_basis=2, start_target=3, ridge=-1.0)
    layer = ChainedHardConstraint(res_fn, 3, start_basis=2, start_target=3)
    c0 = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="n_experts=3"):
        layer(P, y, I, u0, c0=torch.zeros(2, 2, 5))
    with pytest.raises(ValueError, match="c0 must have 3 dimensions"):
        layer(P, y, I, u0, c0=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"data\[3\] \(start_target\).*got 3 data"):
        layer(P, y, I, c0=c0)
    with pytest.raises(ValueError, match=r"data\[1\] has leading shape"):
        layer(P, y[:1], I, u0, c0=c0)
    with pytest.raises(ValueError, match="N = 5 basis functions"):
        layer(P, y, I[..., :4], u0, c0=c0)
    with pytest.raises(ValueError, match=r"data\[2\] must have 4 dimensions"):
        layer(P, y, I[..., 0], u0, c0=c0)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        layer(P, y, I, u0.tolist(), c0=c0)


@pytest.mark.parametrize("method", ["soft", "single", "moe"])
def test_diffusion_sorption_model_trains_one_step(method) -> None:
    from sciml_recipes.hardc.pipeline import DiffSorpModel, HardCConfig

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
