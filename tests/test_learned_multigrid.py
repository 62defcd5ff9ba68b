"""The learned multigrid preconditioner: SPD whatever its weights, exact solves through
PCG, training that lowers its loss, shipped networks that beat the classical cycle, and
clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from sciml.pdes.poisson import (
    PoissonSystem,
    box_scene,
    divergence_rhs,
    fluid_proxy,
    random_coefficients,
    random_obstacles,
)
from sciml.solvers.linear import (
    GeometricMultigrid,
    LearnedMultigrid,
    LearnedMultigridNet,
    LinearStatus,
    cg,
    learned_multigrid_loss,
    load_learned_multigrid,
    save_learned_multigrid,
    train_learned_multigrid,
)

F64 = torch.float64


def _random_net(dim: int, seed: int) -> LearnedMultigridNet:
    """A network with a random (large) head: weights far from the trained ones."""
    torch.manual_seed(seed)
    net = LearnedMultigridNet(dim)
    with torch.no_grad():
        net.head.weight.normal_(0, 3.0)
        net.head.bias.normal_(0, 3.0)
    return net


def _dense(M, n: int, idx: torch.Tensor) -> torch.Tensor:
    E = torch.zeros(idx.numel(), n, dtype=F64)
    E[torch.arange(idx.numel()), idx] = 1.0
    return M.matvec(E).T[idx].contiguous()


@pytest.mark.parametrize("system", [random_obstacles(33, 2, seed=1),
                                    random_obstacles(12, 3, seed=2),
                                    box_scene(20, 2, dirichlet_walls=True)],
                         ids=["obstacles2d", "obstacles3d", "dirichlet2d"])
def test_spd_whatever_the_weights(system: PoissonSystem) -> None:
    # the defining property: plain CG applies for any network, trained or random
    M = LearnedMultigrid(system, _random_net(system.ndim, 0), dtype=F64, max_coarse=20)
    assert M.levels >= 2
    Md = _dense(M, system.n, system.fluid_index)
    assert torch.allclose(Md, Md.T, atol=1e-12 * Md.abs().max())
    ev = torch.linalg.eigvalsh(Md)
    assert ev.min() > 1e-8 * ev.max()


def test_untrained_network_is_the_constant_over_relaxation() -> None:
    net = LearnedMultigridNet(2)
    omega, beta = net(torch.randn(6, 9, 11))
    assert torch.allclose(omega, torch.full_like(omega, 1.3))
    assert torch.allclose(beta, torch.ones_like(beta))


@pytest.mark.parametrize("dim", [2, 3])
def test_pcg_matches_the_direct_solve(dim: int) -> None:
    s = random_obstacles(40 if dim == 2 else 14, dim, seed=7)
    b = divergence_rhs(s, 2, seed=1)
    sol = cg(s.operator(), b, M=LearnedMultigrid(s), rtol=1e-9)
    assert sol.status is LinearStatus.CONVERGED
    K = s.csr(reduced=True).tocsc()
    for i in range(2):
        ref = spla.spsolve(K, s.to_fluid(b[i]).numpy())
        np.testing.assert_allclose(s.to_fluid(sol.x[i]).numpy(), ref, rtol=0,
                                   atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("dim, n", [(2, 128), (3, 32)])
def test_shipped_network_beats_the_classical_cycle_on_unseen_scenes(dim: int, n: int) -> None:
    # scenes of seeds the training never saw, and one with coefficients it never saw
    scenes = [random_obstacles(n, dim, seed=123_456)]
    base = random_obstacles(n, dim, seed=654_321)
    scenes.append(PoissonSystem(base.cells, open_top=True, coefficients=random_coefficients(
        (n,) * dim, 1e3, seed=3)))
    for s in scenes:
        b = divergence_rhs(s, 1, seed=0)[0]
        A = s.operator()
        gmg = cg(A, b, M=GeometricMultigrid(s), rtol=1e-6)
        lmg = cg(A, b, M=LearnedMultigrid(s), rtol=1e-6)
        assert lmg.status is LinearStatus.CONVERGED
        assert lmg.stats["iterations"] <= gmg.stats["iterations"]


def test_shipped_weights_are_small_and_load(tmp_path) -> None:
    from sciml.solvers.linear.pretrained import WEIGHTS as _WEIGHTS

    for dim in (2, 3):
        path = _WEIGHTS / f"learned_mg_{dim}d.pt"
        assert path.stat().st_size < 2 * 2**20
        net = load_learned_multigrid(dim)
        assert net.dim == dim and not net.training
    with pytest.raises(ValueError, match="holds a 2D network"):
        load_learned_multigrid(3, path=_WEIGHTS / "learned_mg_2d.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(ValueError):
        load_learned_multigrid(2, path=bad)


def test_training_lowers_the_loss(tmp_path) -> None:
    scenes = [fluid_proxy(48, d=2), random_obstacles(48, 2, seed=1)]
    s = scenes[1]
    base = GeometricMultigrid(s)
    A = s.operator(torch.float32)
    g = torch.Generator().manual_seed(0)
    rhs = A.matvec(torch.randn(8, s.n, generator=g) * s.fluid_mask.reshape(-1))
    untrained = LearnedMultigridNet(2)
    with torch.no_grad():
        before = float(learned_multigrid_loss(untrained, base, A, rhs))
    net = train_learned_multigrid(scenes, steps=30, lr=1e-2, seed=0, progress=False,
                                  out_dir=tmp_path / "run")
    with torch.no_grad():
        after = float(learned_multigrid_loss(net, base, A, rhs))
    assert after < before
    path = save_learned_multigrid(net, tmp_path / "lmg.pt", {"steps": 30})
    again = load_learned_multigrid(2, path=path)
    for p, q in zip(net.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_cli_trains_and_writes_loadable_weights(tmp_path) -> None:
    from sciml_recipes.cli import main

    out = tmp_path / "lmg"
    assert main(["train", "learned-mg", "--dim", "2", "--size", "48", "--scenes", "2",
                 "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    net = load_learned_multigrid(2, path=out / "learned_mg_2d.pt")
    assert net.dim == 2


def test_bad_input_is_refused_by_name() -> None:
    s = random_obstacles(16, 2, seed=0)
    with pytest.raises(ValueError, match="net is for 3D"):
        LearnedMultigrid(s, LearnedMultigridNet(3))
    with pytest.raises(TypeError, match="net must be a LearnedMultigridNet"):
        LearnedMultigrid(s, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        LearnedMultigridNet(4)
    with pytest.raises(ValueError, match="mix"):
        train_learned_multigrid([s, random_obstacles(8, 3, seed=0)], steps=1)
    with pytest.raises(ValueError, match="nothing to learn"):
        train_learned_multigrid([random_obstacles(20, 2, seed=0)], steps=1)
    with pytest.raises(ValueError, match="non-empty"):
        train_learned_multigrid([], steps=1)


def test_loaders_place_the_network_on_the_device_asked_for() -> None:
    from sciml.solvers.linear import load_pretrained

    for load in (load_learned_multigrid, load_pretrained):
        net = load(2, device="cpu")
        assert all(p.device.type == "cpu" for p in net.parameters())
        with pytest.raises(ValueError, match="device must be"):
            load(2, device="gpu-please")
