"""Pressure Poisson systems: stencil vs CSR, closed-form spectrum, definiteness and null
space, divergence right-hand sides against loops, a manufactured solution, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import spsolve

from sciml.pdes.poisson import (
    CellType,
    PoissonSystem,
    box_scene,
    divergence,
    divergence_rhs,
    fluid_proxy,
    gradient,
    random_face_velocity,
    random_obstacles,
    random_rhs,
)

F64 = torch.float64
FLUID, SOLID, AIR = int(CellType.FLUID), int(CellType.SOLID), int(CellType.AIR)


def _hand_scene() -> PoissonSystem:
    """2D, closed box: a solid wall at column 3 splits it; the right part has one AIR
    cell, the left part (columns 0-2) touches no Dirichlet face: one floating region."""
    c = torch.zeros(8, 8, dtype=torch.int64)
    c[3, :] = SOLID
    c[6, 7] = AIR
    c[5, 2] = SOLID
    return PoissonSystem(c, open_top=False)


SCENES = {
    "box2d-open": lambda: box_scene(6, 2),
    "box3d-dirichlet": lambda: box_scene(4, 3, dirichlet_walls=True),
    "neumann2d": lambda: box_scene(5, 2, open_top=False),
    "proxy2d": lambda: fluid_proxy(12, 2, radius=0.3),
    "proxy3d": lambda: fluid_proxy(8, 3),
    "obstacles2d": lambda: random_obstacles(12, 2, 5, seed=3),
    "obstacles3d": lambda: random_obstacles(8, 3, 4, seed=1, air_layer=1.0),
    "hand2d": _hand_scene,
}


@pytest.fixture(params=list(SCENES), ids=list(SCENES))
def scene(request) -> PoissonSystem:
    return SCENES[request.param]()


# --------------------------------------------------------------------- the operator


def _dense_by_loop(s: PoissonSystem) -> np.ndarray:
    """The definition, cell by cell: for a fluid cell, each fluid neighbour adds
    ``p_i - p_j``, each AIR neighbour or open domain face adds ``p_i``."""
    N, d = s.N, s.ndim
    A = np.zeros((s.n, s.n))
    flat = lambda idx: int(np.ravel_multi_index(idx, s.shape))  # noqa: E731
    for idx in itertools.product(range(N), repeat=d):
        if s.cells[idx] != FLUID:
            continue
        i = flat(idx)
        for a, step in itertools.product(range(d), (-1, 1)):
            nb = (*idx[:a], idx[a] + step, *idx[a + 1:])
            if not 0 <= nb[a] < N:
                top = s.open_top and a == d - 1 and step == 1
                A[i, i] += 1.0 if (s.dirichlet_walls or top) else 0.0
            elif s.cells[nb] == FLUID:
                A[i, i] += 1.0
                A[i, flat(nb)] -= 1.0
            elif s.cells[nb] == AIR:
                A[i, i] += 1.0
    return A


def test_stencil_equals_csr_and_is_symmetric(scene, close, gen):
    s = scene
    op = s.operator()
    x = torch.randn(3, s.n, generator=gen, dtype=F64)
    y = op.matvec(x)
    A = s.csr(reduced=False)
    Ar = s.csr(reduced=True)
    assert A.shape == (s.n, s.n) and Ar.shape == (s.n_fluid, s.n_fluid)
    np.testing.assert_array_equal(A.toarray(), _dense_by_loop(s))
    close(y, (A @ x.numpy().T).T, F64)
    close(y, s.from_fluid(torch.from_numpy((Ar @ s.to_fluid(x).numpy().T).T)), F64)
    Tr = s.torch_csr(reduced=True)
    close(s.to_fluid(y), (Tr @ s.to_fluid(x).T).T, F64)
    close(y, (s.torch_csr(reduced=False) @ x.T).T, F64)
    assert abs(A - A.T).max() == 0 and abs(Ar - Ar.T).max() == 0
    close(op.diagonal(), A.diagonal(), F64)
    # grid-shaped input, batching over several leading dims
    close(op.grid_matvec(x.reshape(3, *s.shape)).reshape(3, -1), y, F64)
    close(op.matvec(x.reshape(3, 1, s.n))[:, 0], y, F64)
    # non-fluid entries: ignored on input (even NaN), zero on output
    solid = ~s.fluid_mask.reshape(-1)
    assert (y[:, solid] == 0).all()
    x_bad = x.clone()
    x_bad[:, solid] = math.nan
    close(op.matvec(x_bad), y, F64)


@pytest.mark.parametrize("d", [2, 3])
def test_dirichlet_box_spectrum_is_the_closed_form(d):
    N = 7 if d == 2 else 4
    s = box_scene(N, d, dirichlet_walls=True)
    lam = np.linalg.eigvalsh(s.csr().toarray())
    one = 2 - 2 * np.cos(np.pi * np.arange(1, N + 1) / (N + 1))
    exact = np.sort([sum(t) for t in itertools.product(one, repeat=d)])
    np.testing.assert_allclose(lam, exact, rtol=0, atol=1e-10)


def test_open_top_box_diagonal_counts_faces():
    """3 x 3 open box: a corner cell at the bottom has 2 neighbours, the top middle cell
    3 neighbours plus the open face above."""
    d = box_scene(3, 2).operator().diagonal().reshape(3, 3)
    assert d[0, 0] == 2 and d[1, 2] == 4 and d[1, 1] == 4 and d[0, 2] == 3


@pytest.mark.parametrize("make", [
    lambda: fluid_proxy(8, 3),
    lambda: fluid_proxy(16, 2),
    lambda: random_obstacles(8, 3, 6, seed=0),
    lambda: random_obstacles(16, 2, 8, seed=2),
    lambda: random_obstacles(16, 2, 8, seed=5, air_layer=1.0),
], ids=["proxy3d", "proxy2d", "obst3d", "obst2d", "obst2d-air"])
def test_scenes_are_positive_definite(make):
    s = make()
    assert not s.has_null_space() and s.null_space().shape == (0, s.n)
    assert np.linalg.eigvalsh(s.csr().toarray())[0] > 1e-6


def test_sealing_fills_the_pockets_a_ball_cuts_off():
    """A disc of radius 0.5 touches all four walls: the two bottom corners are cut off
    from the open top and must become SOLID; the two top corners stay fluid."""
    s = fluid_proxy(16, 2, radius=0.5)
    assert not s.has_null_space()
    assert s.cells[0, 0] == SOLID and s.cells[15, 0] == SOLID
    assert s.cells[0, 15] == FLUID and s.cells[15, 15] == FLUID
    assert np.linalg.eigvalsh(s.csr().toarray())[0] > 1e-8


def test_neumann_box_has_the_constant_null_space(gen):
    s = box_scene(6, 2, open_top=False)
    assert s.has_null_space()
    Z = s.null_space()
    np.testing.assert_allclose(Z.numpy(), np.full((1, 36), 1 / 6), rtol=0, atol=1e-15)
    assert s.operator().matvec(torch.ones(36, dtype=F64)).abs().max() < 1e-14
    lam = np.linalg.eigvalsh(s.csr().toarray())
    assert abs(lam[0]) < 1e-12 and lam[1] > 0.1  # exactly one zero eigenvalue
    for b in (divergence_rhs(s, 4, generator=gen), random_rhs(s, 4, generator=gen)):
        assert (Z @ b.T).abs().max() < 1e-12 * b.norm()
    with pytest.raises(ValueError, match="no fluid region touches"):
        s.sealed()


def test_floating_region_is_detected_projected_and_sealed(gen):
    s = _hand_scene()
    A = s.csr(reduced=False).toarray()
    left = torch.zeros(8, 8, dtype=torch.bool)
    left[:3] = True
    Z = s.null_space()
    assert Z.shape == (1, 64)
    np.testing.assert_allclose(Z[0].numpy(), left.reshape(-1).numpy() / math.sqrt(24),
                               atol=1e-15)
    assert np.abs(A @ Z[0].numpy()).max() < 1e-14
    b = torch.randn(2, 64, generator=gen, dtype=F64)
    pb = s.project_range(b)
    assert (Z @ pb.T).abs().max() < 1e-12
    flat = left.reshape(-1)
    assert torch.equal(pb[:, ~flat], b[:, ~flat])  # the anchored region is untouched
    sealed = s.sealed()
    assert not sealed.has_null_space()
    assert (sealed.cells[:3] == SOLID).all() and torch.equal(sealed.cells[3:], s.cells[3:])
    # the sealed system is the anchored block of the original one
    keep = sealed.fluid_index.numpy()
    np.testing.assert_array_equal(sealed.csr().toarray(), A[np.ix_(keep, keep)])


# --------------------------------------------------------------------- faces and rhs


def _open_face(s: PoissonSystem, a: int, idx: tuple[int, ...]) -> bool:
    """Loop reference: face ``idx`` normal to axis ``a`` carries flow."""
    N, c = s.N, s.cells

    def kind(k: int) -> int:
        if 0 <= k < N:
            return int(c[(*idx[:a], k, *idx[a + 1:])])
        top = s.dirichlet_walls or (s.open_top and a == s.ndim - 1 and k == N)
        return AIR if (s.dirichlet_walls or top) else SOLID

    lo, hi = kind(idx[a] - 1), kind(idx[a])
    return SOLID not in (lo, hi) and FLUID in (lo, hi)


@pytest.mark.parametrize("make", [
    lambda: random_obstacles(7, 2, 4, seed=4, air_layer=1.0),
    lambda: random_obstacles(5, 3, 3, seed=2, air_layer=1.0),
    _hand_scene,
], ids=["2d", "3d", "hand"])
def test_divergence_rhs_matches_a_loop(make):
    s = make()
    u = random_face_velocity(s, 2, seed=7)
    b = divergence_rhs(s, 2, seed=7)
    d, N = s.ndim, s.N
    for a in range(d):
        shape = tuple(N + (e == a) for e in range(d))
        for idx in itertools.product(*map(range, shape)):
            if not _open_face(s, a, idx):
                assert (u[a][(slice(None), *idx)] == 0).all(), (a, idx)
    ref = torch.zeros(2, *s.shape, dtype=F64)
    for idx in itertools.product(range(N), repeat=d):
        if s.cells[idx] == FLUID:
            for a in range(d):
                hi = (*idx[:a], idx[a] + 1, *idx[a + 1:])
                ref[(slice(None), *idx)] += u[a][(slice(None), *hi)] - u[a][(slice(None), *idx)]
    ref = s.project_range(ref.reshape(2, -1))  # the hand scene has a floating region
    np.testing.assert_allclose(b.numpy(), ref.numpy(), rtol=0, atol=1e-12)
    assert (b[:, ~s.fluid_mask.reshape(-1)] == 0).all()


def test_minus_div_grad_is_the_operator_and_projection_removes_divergence(scene, gen):
    s = scene
    p = torch.randn(2, s.n, generator=gen, dtype=F64)
    np.testing.assert_allclose(s.operator().matvec(p).numpy(),
                               -divergence(s, gradient(s, p)).numpy(), rtol=0, atol=1e-12)
    if s.has_null_space():
        return
    u = random_face_velocity(s, 1, generator=gen)
    b = divergence(s, u)[0]
    pf = spsolve(s.csr().tocsc(), s.to_fluid(b).numpy())
    p = s.from_fluid(torch.from_numpy(pf))
    g = gradient(s, p)
    div = divergence(s, [ua[0] + ga for ua, ga in zip(u, g)])
    assert div.abs().max() < 1e-10 * b.abs().max()


def test_manufactured_solution_is_recovered(gen):
    for s in (random_obstacles(10, 3, 5, seed=11), fluid_proxy(20, 2, radius=0.25)):
        p = torch.randn(s.n_fluid, generator=gen, dtype=F64)
        b = s.to_fluid(s.operator().matvec(s.from_fluid(p)))
        p_hat = spsolve(s.csr().tocsc(), b.numpy())
        np.testing.assert_allclose(p_hat, p.numpy(), rtol=0, atol=1e-10)


def test_randomness_is_reproducible():
    a = random_obstacles(12, 3, 6, seed=3)
    assert torch.equal(a.cells, random_obstacles(12, 3, 6, seed=3).cells)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(a.cells, random_obstacles(12, 3, 6, generator=g).cells)
    assert not torch.equal(a.cells, random_obstacles(12, 3, 6, seed=4).cells)
    b = divergence_rhs(a, 2, seed=1)
    assert torch.equal(b, divergence_rhs(a, 2, seed=1))
    assert not torch.equal(b, divergence_rhs(a, 2, seed=2))
    r = random_rhs(a, 3, seed=1)
    assert r.shape == (3, a.n) and (r[:, ~a.fluid_mask.reshape(-1)] == 0).all()
    assert torch.equal(r, random_rhs(a, 3, seed=1))


def test_float32_operator_and_gradient_flow(gen):
    s = random_obstacles(6, 2, 2, seed=0)
    op32 = s.operator(dtype=torch.float32)
    x = torch.randn(2, s.n, generator=gen, dtype=F64)
    y32 = op32.matvec(x.float())
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.double().numpy(), s.operator().matvec(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    xr = x.clone().requires_grad_(True)
    torch.autograd.gradcheck(lambda v: s.operator().matvec(v), (xr,))


def test_a_64_cubed_fluid_proxy_assembles_and_applies(gen):
    s = fluid_proxy(64, 3)
    A = s.csr()
    assert A.shape == (s.n_fluid, s.n_fluid) and A.nnz < 7 * s.n_fluid
    x = torch.randn(s.n, generator=gen, dtype=F64)
    y = s.operator().matvec(x)
    np.testing.assert_allclose(s.to_fluid(y).numpy(), A @ s.to_fluid(x).numpy(),
                               rtol=0, atol=1e-12 * float(y.abs().max()))


@pytest.mark.gpu
def test_operator_on_cuda_matches_cpu(gen):
    s = random_obstacles(16, 3, 5, seed=0)
    x = torch.randn(2, s.n, generator=gen, dtype=F64)
    y = s.operator(device="cuda").matvec(x.cuda()).cpu()
    np.testing.assert_allclose(y.numpy(), s.operator().matvec(x).numpy(), atol=1e-12)
    T = s.torch_csr(device="cuda")
    np.testing.assert_allclose((T @ s.to_fluid(x.cuda()).T).T.cpu().numpy(),
                               s.to_fluid(y).numpy(), atol=1e-12)


# --------------------------------------------------------------------- bad input


def test_bad_input_is_rejected_with_the_fix():
    ok = torch.zeros(4, 4, dtype=torch.int64)
    bad = ok.clone()
    bad[0, 0], bad[1, 1] = 3, -1
    with pytest.raises(ValueError, match=r"values \[-1, 3\] outside CellType"):
        PoissonSystem(bad)
    with pytest.raises(TypeError, match="integer tensor"):
        PoissonSystem(ok.double())
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        PoissonSystem([[0] * 4] * 4)
    # numpy cells are taken (issue 21): the same system as from the tensor
    assert PoissonSystem(np.zeros((4, 4), dtype=np.int8)).n_fluid == PoissonSystem(ok).n_fluid
    with pytest.raises(ValueError, match="d in"):
        PoissonSystem(torch.zeros(2, 2, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="N is defined for grids with equal sides"):
        _ = PoissonSystem(torch.zeros(4, 5, dtype=torch.int64)).N
    with pytest.raises(ValueError, match="N >= 2"):
        PoissonSystem(torch.zeros(1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="no FLUID cell"):
        PoissonSystem(torch.full((4, 4), SOLID))
    with pytest.raises(TypeError, match="open_top must be True or False"):
        PoissonSystem(ok, open_top=1)
    with pytest.raises(ValueError, match="N must be >= 2"):
        box_scene(1)
    with pytest.raises(ValueError, match="d must be 2 or 3"):
        fluid_proxy(8, d=4)
    with pytest.raises(ValueError, match="radius"):
        fluid_proxy(8, radius=-0.1)
    with pytest.raises(ValueError, match="center"):
        fluid_proxy(8, d=2, center=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="not both"):
        random_obstacles(8, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="air_layer"):
        random_obstacles(8, air_layer=2.0)
    s = box_scene(4, 2)
    op = s.operator()
    with pytest.raises(ValueError, match=r"x has shape \(15,\) but A is \(16, 16\)"):
        op.matvec(torch.zeros(15, dtype=F64))
    with pytest.raises(TypeError, match=r"float32 on cpu but the operator is torch\.float64"):
        op.matvec(torch.zeros(16))
    with pytest.raises(ValueError, match="grid_matvec needs"):
        op.grid_matvec(torch.zeros(2, 4, 5, dtype=F64))
    with pytest.raises(ValueError, match="n_fluid = 16"):
        s.from_fluid(torch.zeros(15))
    with pytest.raises(ValueError, match="smooth"):
        divergence_rhs(s, smooth=-1.0)
    with pytest.raises(ValueError, match="tuple of 2 face tensors"):
        divergence(s, (torch.zeros(5, 4),))
