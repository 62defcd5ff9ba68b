"""DCDM: the solver loop with a network, its safeguard, and the training losses.

References: the exact inverse as the "network" (one iteration, loss 0), a float64 sparse
LU solve, and the defining criterion of a solve (the residual bound).
"""

from __future__ import annotations

import pytest
import torch
from scipy.sparse.linalg import spsolve

from sciml.operators import DCDMNet
from sciml.pdes.poisson import divergence_rhs, fluid_proxy, random_obstacles
from sciml.solvers.linear import LinearStatus, cg, dcdm
from sciml_recipes.dcdm.pipeline import DCDMData, dcdm_energy_loss, dcdm_loss, train_dcdm


class _Exact(torch.nn.Module):
    """q = A^-1 r by a sparse LU solve: what a perfect DCDM network would return."""

    def __init__(self, system) -> None:
        super().__init__()
        self.s, self.A = system, system.csr()
        self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float64))  # runs in float64

    def forward(self, r, mask):
        out = []
        for x in r.reshape(r.shape[0], -1):
            xf = self.s.to_fluid(x.double()).numpy()
            out.append(self.s.from_fluid(torch.from_numpy(spsolve(self.A, xf))))
        return torch.stack(out).reshape(r.shape).to(r.dtype)


class _Orthogonal(torch.nn.Module):
    """A useless network: a direction orthogonal to r (no progress at all)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, r, mask):
        flat = r.reshape(r.shape[0], -1)
        z = torch.roll(flat, 1, -1) * mask.reshape(-1).to(r.dtype)
        z = z - (z * flat).sum(-1, keepdim=True) / (flat * flat).sum(-1, keepdim=True) * flat
        return z.reshape(r.shape)


@pytest.fixture(scope="module")
def scene():
    s = fluid_proxy(24, d=2)
    return s, s.operator(), divergence_rhs(s, 2, seed=0)


def test_exact_network_solves_in_one_iteration_and_losses_vanish(scene) -> None:
    s, op, b = scene
    sol = dcdm(op, b[0], net=_Exact(s), system=s, rtol=1e-8, safeguard=False)
    assert sol.status is LinearStatus.CONVERGED and sol.stats["iterations"] == 1
    x_ref = s.from_fluid(torch.from_numpy(spsolve(s.csr(), s.to_fluid(b[0]).numpy())))
    torch.testing.assert_close(sol.x, x_ref, rtol=1e-8, atol=1e-10)
    r = (b / b.norm(dim=-1, keepdim=True)).reshape(2, *s.shape)
    energy = torch.stack([v @ s.to_fluid(x) for v, x in zip(
        s.to_fluid(r.reshape(2, -1)), [s.from_fluid(torch.from_numpy(spsolve(
            s.csr(), s.to_fluid(v).numpy()))) for v in r.reshape(2, -1)])])
    mask = s.fluid_mask.double()
    assert float(dcdm_energy_loss(_Exact(s), op, r, mask, energy)) < 1e-12
    assert float(dcdm_loss(_Exact(s), op, r, mask)) < 1e-20


def test_safeguard_turns_a_useless_network_into_a_converging_solve(scene) -> None:
    s, op, b = scene
    bad = dcdm(op, b, net=_Orthogonal(), system=s, rtol=1e-6, max_iter=200, safeguard=False)
    assert bad.status is not LinearStatus.CONVERGED  # the paper's loop stalls
    good = dcdm(op, b, net=_Orthogonal(), system=s, rtol=1e-6, max_iter=400)
    assert good.status is LinearStatus.CONVERGED
    res = (b - op.matvec(good.x)).norm(dim=-1)
    assert bool((res <= 1e-6 * b.norm(dim=-1) * (1 + 1e-9)).all())
    # no worse than plain CG by much: the residual direction is always in the span
    assert good.stats["iterations"] <= 2 * cg(op, b, rtol=1e-6).stats["iterations"]
    assert good.stats["network_applications"] >= good.stats["iterations"]


def test_training_lowers_the_energy_loss_and_the_iterations() -> None:
    torch.manual_seed(0)
    systems = [fluid_proxy(16, d=2), random_obstacles(16, d=2, seed=1)]
    data = DCDMData(systems, 16, k=12, seed=0)
    r = torch.stack([x for x, i, e in data.items if i == 0])
    e = torch.tensor([e for x, i, e in data.items if i == 0])
    assert bool((e > 0).all())
    op = systems[0].operator(dtype=torch.float32)
    mask = systems[0].fluid_mask.float()
    torch.manual_seed(0)
    net0 = DCDMNet(2, channels=4)
    before = float(dcdm_energy_loss(net0, op, r, mask, e).detach())
    assert 0 <= before <= 1
    torch.manual_seed(0)
    net = train_dcdm(systems, net=DCDMNet(2, channels=4), per_system=16, k=12, steps=60,
                     lr=3e-3, batch_size=8, progress=False)
    after = float(dcdm_energy_loss(net, op, r, mask, e).detach())
    assert after < 0.8 * before
    with pytest.raises(ValueError, match="loss"):
        train_dcdm(systems, loss="l2", steps=1)
    with pytest.raises(ValueError, match="mix"):
        train_dcdm([systems[0], fluid_proxy(8, d=3)], steps=1)


def test_training_on_two_grid_sizes_lowers_the_loss_on_both() -> None:
    """Mixed sizes train from batches of one shape each; both sizes improve."""
    from sciml_recipes.dcdm.pipeline import _ShapeBatches

    systems = [fluid_proxy(16, d=2), random_obstacles(24, d=2, seed=1)]
    data = DCDMData(systems, 12, k=8, seed=3)
    batches = _ShapeBatches(data, 5)
    assert sum(b[0].shape[0] for b in batches.batches) == len(data)
    assert {tuple(b[0].shape[1:]) for b in batches.batches} == {(16, 16), (24, 24)}
    torch.manual_seed(0)
    net = train_dcdm(systems, net=DCDMNet(2, channels=4), per_system=12, k=8, steps=60,
                     lr=3e-3, batch_size=6, progress=False, seed=3)
    for i, s in enumerate(systems):
        op = s.operator(dtype=torch.float32)
        sel = [j for j, it in enumerate(data.items) if it[1] == i]
        r = torch.stack([data.items[j][0] for j in sel])
        e = torch.tensor([data.items[j][2] for j in sel], dtype=torch.float64)
        torch.manual_seed(0)
        net0 = DCDMNet(2, channels=4)
        before = float(dcdm_energy_loss(net0, op, r, s.fluid_mask.float(), e).detach())
        after = float(dcdm_energy_loss(net, op, r, s.fluid_mask.float(), e).detach())
        assert after < 0.9 * before, (s.shape, before, after)


def test_bad_input(scene) -> None:
    s, op, b = scene
    with pytest.raises(TypeError, match=r"nn\.Module"):
        dcdm(op, b[0], net=lambda r: r, system=s)
    with pytest.raises(TypeError, match="PoissonSystem"):
        dcdm(op, b[0], net=_Orthogonal(), system=None)


def test_shipped_weights_load_and_cli_trains(tmp_path) -> None:
    from sciml.solvers.linear import load_pretrained
    from sciml.solvers.linear.pretrained import WEIGHTS
    from sciml_recipes.cli import main

    for dim in (2, 3):
        if (WEIGHTS / f"dcdm_{dim}d.pt").exists():
            net = load_pretrained(dim)
            assert net.dim == dim and not net.training
    out = tmp_path / "run"
    assert main(["train", "dcdm", "--dim", "2", "--size", "16", "12", "--scenes", "2",
                 "--per-scene", "8", "--ritz", "8", "--channels", "2", "--steps", "3",
                 "--out", str(out), "--no-progress"]) == 0
    blob = torch.load(out / "dcdm_2d.pt", weights_only=True)
    assert blob["config"]["channels"] == 2 and blob["settings"]["steps"] == 3
    assert blob["settings"]["size"] == [16, 12]
    with pytest.raises(ValueError, match="dim"):
        load_pretrained(4)


def test_demo_dcdm_quick(tmp_path) -> None:
    from sciml.solvers.linear.pretrained import WEIGHTS
    from sciml_recipes.cli import main

    if not (WEIGHTS / "dcdm_2d.pt").exists():
        pytest.fail("the shipped 2D DCDM weights are missing from the package")
    assert main(["demo", "dcdm", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "dcdm_poisson_2d.png").exists()


def test_a_scipy_sparse_operator_works_with_the_safeguard(scene) -> None:
    """dcdm(scipy A) used to fail with 'csr_matrix' object has no attribute 'matvec'."""
    import scipy.sparse as sp

    s, op, b = scene
    n = b.shape[-1]
    A = sp.csr_matrix(op.matvec(torch.eye(n, dtype=b.dtype)).T.numpy())
    ref = dcdm(op, b, net=_Orthogonal(), system=s, rtol=1e-6, max_iter=400)
    got = dcdm(A, b, net=_Orthogonal(), system=s, rtol=1e-6, max_iter=400)
    assert got.status is LinearStatus.CONVERGED
    assert got.stats["iterations"] == ref.stats["iterations"]
    res = (b - op.matvec(got.x)).norm(dim=-1)
    assert bool((res <= 1e-6 * b.norm(dim=-1) * (1 + 1e-9)).all())
