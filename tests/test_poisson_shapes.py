"""Poisson systems of any shape: rectangular grids, cell coefficients, per-side boundaries.

References: a dense float64 matrix assembled cell by cell and face by face from the
definition (written here, independently of the library's stencil), its eigenvalues, a
scipy sparse LU solve, and the residual bound of each solve.
"""

from __future__ import annotations

import itertools
import pickle

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
    layered_coefficients,
    random_coefficients,
    random_face_velocity,
    random_obstacles,
    random_rhs,
)
from sciml.solvers.linear import LinearStatus, NetworkPreconditioner, cg, dcdm
from sciml.solvers.linear.pretrained import load_pretrained

F64 = torch.float64
FLUID, SOLID, AIR = int(CellType.FLUID), int(CellType.SOLID), int(CellType.AIR)
SIDES = ("neumann", "dirichlet")


def _dense_reference(cells: np.ndarray, boundary, k: np.ndarray | None) -> np.ndarray:
    """``A`` from the definition, one fluid cell and one face at a time: a fluid
    neighbour couples with the harmonic mean of the two conductivities, an AIR neighbour
    or a Dirichlet domain face adds the fluid cell's own, SOLID and Neumann add nothing."""
    shape = cells.shape
    k = np.ones(shape) if k is None else k
    A = np.zeros((cells.size, cells.size))
    for idx in np.ndindex(*shape):
        if cells[idx] != FLUID:
            continue
        i = np.ravel_multi_index(idx, shape)
        for a in range(len(shape)):
            for side, step in ((0, -1), (1, 1)):
                nb = list(idx)
                nb[a] += step
                nb = tuple(nb)
                if not 0 <= nb[a] < shape[a]:
                    if boundary[a][side] == "dirichlet":
                        A[i, i] += k[idx]
                elif cells[nb] == FLUID:
                    g = 2.0 * k[idx] * k[nb] / (k[idx] + k[nb])
                    A[i, i] += g
                    A[i, np.ravel_multi_index(nb, shape)] -= g
                elif cells[nb] == AIR:
                    A[i, i] += k[idx]
    return A


def _random_cells(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """FLUID, SOLID and AIR cells at random (70 / 20 / 10 %)."""
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    cells = torch.where(u < 0.7, FLUID, torch.where(u < 0.9, SOLID, AIR)).to(torch.int8)
    cells.view(-1)[0] = FLUID
    return cells


def _coefficients(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor | None:
    if kind == "unit":
        return None
    if kind == "random":
        return random_coefficients(shape, 1e4, smooth=1.0, seed=seed)
    return layered_coefficients(shape, 1e4, layers=3, axis=seed % len(shape))


def _all_boundaries(d: int):
    for sides in itertools.product(SIDES, repeat=2 * d):
        yield tuple((sides[2 * a], sides[2 * a + 1]) for a in range(d))


def _check_against_reference(s: PoissonSystem, gen: torch.Generator) -> np.ndarray:
    k = None if s.coefficients is None else s.coefficients.numpy()
    ref = _dense_reference(s.cells.numpy(), s.boundary, k)
    scale = np.abs(ref).max()
    tol = dict(rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(s.csr(reduced=False).toarray(), ref, **tol)
    keep = s.fluid_index.numpy()
    np.testing.assert_allclose(s.csr().toarray(), ref[np.ix_(keep, keep)], **tol)
    x = torch.randn(2, s.n, generator=gen, dtype=F64)
    xm = x * s.fluid_mask.reshape(-1)
    y = s.operator().matvec(x)
    np.testing.assert_allclose(y.numpy(), xm.numpy() @ ref.T, rtol=0,
                               atol=1e-12 * scale * float(x.abs().max()))
    np.testing.assert_allclose((s.torch_csr(reduced=False) @ x.T).T.numpy(), y.numpy(),
                               rtol=0, atol=1e-12 * scale * float(x.abs().max()))
    # A = -div(g grad) on the faces
    g = s.face_conductances()
    flux = [ga * gr for ga, gr in zip(g, gradient(s, x))]
    np.testing.assert_allclose(-divergence(s, flux).numpy(), y.numpy(), rtol=0,
                               atol=1e-12 * scale * float(x.abs().max()))
    return ref


def _check_stencil_contract(s: PoissonSystem, ref: np.ndarray) -> None:
    diag, links = s._stencil
    assert diag.dtype == F64 and diag.shape == s.shape
    np.testing.assert_allclose(diag.reshape(-1).numpy(), np.diag(ref), rtol=1e-14, atol=0)
    assert (diag[~s.fluid_mask] == 0).all()
    assert len(links) == s.ndim
    for a, link in enumerate(links):
        want = list(s.shape)
        want[a] -= 1
        assert link.dtype == F64 and tuple(link.shape) == tuple(want)
        for idx in np.ndindex(*want):
            nb = list(idx)
            nb[a] += 1
            i, j = (np.ravel_multi_index(t, s.shape) for t in (idx, tuple(nb)))
            assert float(link[idx]) == pytest.approx(-ref[i, j], rel=1e-14, abs=0)
    mask, d2, l2 = s.stencil(torch.float32)
    assert mask.dtype == torch.bool and torch.equal(mask, s.fluid_mask)
    assert d2.dtype == torch.float32 and torch.equal(d2, diag.float())
    assert all(torch.equal(x, y.float()) for x, y in zip(l2, links))


def _check_spectrum(s: PoissonSystem, ref: np.ndarray) -> None:
    keep = s.fluid_index.numpy()
    A = ref[np.ix_(keep, keep)]
    np.testing.assert_array_equal(A, A.T)
    lam = np.linalg.eigvalsh(A)
    tiny = 1e-10 * lam[-1]
    assert lam[0] > -tiny  # positive semidefinite
    Z = s.null_space()
    n_zero = int((np.abs(lam) <= tiny).sum())
    assert n_zero == Z.shape[0] == (s._floating[1])
    assert s.has_null_space() == (n_zero > 0)
    if n_zero:
        z = s.to_fluid(Z).numpy()
        assert np.abs(A @ z.T).max() <= 1e-12 * lam[-1]
    else:
        assert lam[0] > tiny  # definite


@pytest.mark.parametrize("coef", ["unit", "random", "layered"])
@pytest.mark.parametrize("shape", [(4, 7), (3, 4, 5)], ids=["2d", "3d"])
def test_operator_equals_a_dense_assembly_for_every_boundary(shape, coef, gen):
    """Every combination of Neumann / Dirichlet sides, with obstacles and air cells."""
    for case, boundary in enumerate(_all_boundaries(len(shape))):
        cells = _random_cells(shape, seed=case)
        s = PoissonSystem(cells, boundary=boundary,
                          coefficients=_coefficients(coef, shape, case))
        assert s.boundary == boundary
        ref = _check_against_reference(s, gen)
        _check_stencil_contract(s, ref)
        _check_spectrum(s, ref)


@pytest.mark.parametrize("make", [
    lambda: random_obstacles((12, 20), n_obstacles=4, seed=0),
    lambda: random_obstacles((6, 8, 10), n_obstacles=3, seed=2, air_layer=1.0),
    lambda: fluid_proxy((10, 16), radius=0.3),
    lambda: fluid_proxy((6, 8, 5)).with_coefficients(
        random_coefficients((6, 8, 5), 1e4, seed=1)),
    lambda: box_scene((5, 9), boundary=[("dirichlet", "neumann"), "neumann"],
                      coefficients=layered_coefficients((5, 9), 1e4, 3)),
], ids=["obstacles2d", "obstacles3d", "proxy2d", "proxy3d-k", "box2d-layered"])
def test_rectangular_scenes_match_the_reference_and_are_definite(make, gen):
    s = make()
    ref = _check_against_reference(s, gen)
    _check_stencil_contract(s, ref)
    _check_spectrum(s, ref)
    assert not s.has_null_space()


@pytest.mark.parametrize("shape", [(6, 9), (4, 5, 3)], ids=["2d", "3d"])
def test_pure_neumann_keeps_the_null_space(shape, gen):
    k = random_coefficients(shape, 1e4, seed=3)
    s = box_scene(shape, boundary="neumann", coefficients=k)
    assert s.has_null_space() and not s.open_top and not s.dirichlet_walls
    Z = s.null_space()
    assert Z.shape == (1, s.n)
    np.testing.assert_allclose(Z.numpy(), np.full((1, s.n), s.n ** -0.5), atol=1e-15)
    ones = torch.ones(s.n, dtype=F64)
    assert s.operator().matvec(ones).abs().max() < 1e-10 * float(k.max())
    b = random_rhs(s, 2, generator=gen)
    assert (Z @ b.T).abs().max() < 1e-12 * b.norm()
    sol = cg(s.operator(), b, rtol=1e-8)
    assert sol.status is LinearStatus.CONVERGED
    res = (b - s.operator().matvec(sol.x)).norm(dim=-1)
    assert bool((res <= 1e-8 * b.norm(dim=-1)).all())
    # the minimum-norm solution of the dense reference, up to the constant
    ref = np.linalg.lstsq(s.csr().toarray(), b.numpy().T, rcond=None)[0].T
    x = s.project_range(sol.x).numpy()
    assert np.abs(x - ref).max() < 1e-5 * np.abs(ref).max()
    with pytest.raises(ValueError, match="no fluid region touches"):
        s.sealed()


def test_projection_with_coefficients_removes_the_divergence(gen):
    s = random_obstacles((10, 14), n_obstacles=3, seed=7, air_layer=1.0).with_coefficients(
        random_coefficients((10, 14), 1e4, seed=7))
    u = random_face_velocity(s, 1, generator=gen)
    b = divergence(s, u)[0]
    p = s.from_fluid(torch.from_numpy(spsolve(s.csr().tocsc(), s.to_fluid(b).numpy())))
    flux = [ga * gr for ga, gr in zip(s.face_conductances(), gradient(s, p))]
    div = divergence(s, [ua[0] + fa for ua, fa in zip(u, flux)])
    assert div.abs().max() < 1e-9 * b.abs().max()


@pytest.mark.parametrize("make", [
    lambda: random_obstacles((16, 28), n_obstacles=4, seed=5),
    lambda: random_obstacles((8, 10, 12), n_obstacles=3, seed=6).with_coefficients(
        random_coefficients((8, 10, 12), 1e4, seed=6)),
    lambda: fluid_proxy((20, 12)).with_coefficients(layered_coefficients((20, 12), 1e4, 4,
                                                                         axis=0)),
], ids=["rect2d", "rect3d-random-k", "rect2d-layered-k"])
def test_cg_matches_a_sparse_lu_solve(make, gen):
    s = make()
    b = divergence_rhs(s, 2, generator=gen)
    op = s.operator()
    sol = cg(op, b, rtol=1e-8)
    assert sol.status is LinearStatus.CONVERGED
    res = (b - op.matvec(sol.x)).norm(dim=-1)
    assert bool((res <= 1e-8 * b.norm(dim=-1)).all())
    A = s.csr().tocsc()
    for x, rhs in zip(sol.x, b):
        ref = spsolve(A, s.to_fluid(rhs).numpy())
        err = np.abs(s.to_fluid(x).numpy() - ref).max()
        assert err < 1e-4 * np.abs(ref).max()


@pytest.fixture(scope="module")
def net():
    return load_pretrained(2)


@pytest.mark.parametrize("make", [
    lambda: fluid_proxy((30, 50)),
    lambda: random_obstacles((24, 40), n_obstacles=4, seed=1),
    lambda: fluid_proxy((16, 24)).with_coefficients(random_coefficients((16, 24), 1e2,
                                                                         seed=0)),
    lambda: box_scene((12, 20), coefficients=layered_coefficients((12, 20), 1e2, 3)),
], ids=["proxy-rect", "obstacles-rect", "proxy-random-k", "box-rect-layered-k"])
def test_dcdm_solves_rectangular_and_variable_coefficient_systems(make, net):
    s = make()
    b = divergence_rhs(s, 2, seed=0)
    op = s.operator()
    sol = dcdm(op, b, net=net, system=s, rtol=1e-8, max_iter=3000)
    assert sol.status is LinearStatus.CONVERGED
    res = (b - op.matvec(sol.x)).norm(dim=-1)
    assert bool((res <= 1e-8 * b.norm(dim=-1) * (1 + 1e-9)).all())
    ref = spsolve(s.csr().tocsc(), s.to_fluid(b[0]).numpy())
    assert np.abs(s.to_fluid(sol.x[0]).numpy() - ref).max() < 1e-4 * np.abs(ref).max()
    assert (sol.x[:, ~s.fluid_mask.reshape(-1)] == 0).all()


def test_dcdm_pads_an_odd_rectangular_grid_to_the_networks_depth(net):
    s = fluid_proxy((30, 50))
    M = NetworkPreconditioner(net, s)
    assert M.padded == net.padded_shape(s.shape) == (32, 56)
    assert net.levels(M.padded) > net.levels(s.shape)
    r = divergence_rhs(s, 2, seed=1)
    q = M(r)
    assert q.shape == r.shape and (q[:, ~s.fluid_mask.reshape(-1)] == 0).all()
    scale = float(q.abs().max())
    torch.testing.assert_close(M(3.0 * r), 3.0 * q, rtol=0, atol=1e-5 * 3 * scale)
    # the same as running the network by hand on the zero-padded grid and cropping
    grid = torch.zeros(2, 32, 56)
    grid[:, :30, :50] = r.reshape(2, 30, 50).float()
    mask = torch.zeros(32, 56, dtype=torch.bool)
    mask[:30, :50] = s.fluid_mask
    with torch.no_grad():
        by_hand = net(grid, mask)[:, :30, :50].reshape(2, -1).double()
    torch.testing.assert_close(q, by_hand, rtol=0, atol=1e-6 * scale)
    # a square power-of-two grid is left alone
    assert net.padded_shape((64, 64)) == (64, 64)


# --------------------------------------------------------------------- scenes, helpers


def test_scenes_take_a_shape_and_an_int_gives_the_same_scene():
    assert torch.equal(random_obstacles(12, 2, 5, seed=3).cells,
                       random_obstacles((12, 12), n_obstacles=5, seed=3).cells)
    assert torch.equal(fluid_proxy(10, 3).cells, fluid_proxy((10, 10, 10)).cells)
    assert box_scene((3, 5)).shape == (3, 5)
    s = random_obstacles((10, 24), n_obstacles=3, seed=0)
    assert s.shape == (10, 24) and not s.has_null_space()
    p = fluid_proxy((12, 20))
    assert p.shape == (12, 20)
    assert torch.equal(p.cells, p.cells.flip(0))  # the ball sits in the middle
    assert (p.cells == SOLID).any() and p.open_top
    with pytest.raises(ValueError, match="N is defined for grids with equal sides"):
        _ = p.N
    assert fluid_proxy(8, 2).N == 8
    # a closed box always gets an air layer, so the system stays definite
    c = random_obstacles((8, 12), n_obstacles=2, boundary="neumann", seed=0)
    assert (c.cells[:, -1] == AIR).all() and not c.has_null_space()


def test_coefficient_helpers():
    k = random_coefficients((6, 10), 1e4, seed=2)
    assert k.shape == (6, 10) and k.dtype == F64
    assert float(k.min()) == pytest.approx(1.0) and float(k.max()) == pytest.approx(1e4)
    assert torch.equal(k, random_coefficients((6, 10), 1e4, seed=2))
    assert not torch.equal(k, random_coefficients((6, 10), 1e4, seed=3))
    assert torch.equal(random_coefficients((4, 4), 1.0, seed=0), torch.ones(4, 4, dtype=F64))
    lay = layered_coefficients((4, 6, 8), 50.0, layers=4, axis=1)
    assert lay.shape == (4, 6, 8)
    np.testing.assert_array_equal(lay[0, :, 0].numpy(), [1, 1, 50, 1, 1, 50])  # 4 slabs
    assert torch.equal(lay, lay[:1, :, :1].expand(4, 6, 8))


def test_systems_are_immutable_and_pickle(gen):
    s = random_obstacles((6, 9), n_obstacles=2, seed=1).with_coefficients(
        random_coefficients((6, 9), 1e3, seed=1))
    with pytest.raises(AttributeError, match="immutable"):
        s.cells = s.cells
    s.operator()  # fills the caches
    t = pickle.loads(pickle.dumps(s))
    assert torch.equal(t.cells, s.cells) and t.boundary == s.boundary
    assert torch.equal(t.coefficients, s.coefficients)
    x = torch.randn(s.n, generator=gen, dtype=F64)
    assert torch.equal(t.operator().matvec(x), s.operator().matvec(x))
    assert (s.coefficients[~s.fluid_mask] == 0).all()  # stored 0 off the fluid
    _, diag, _ = s.stencil()
    diag.zero_()  # a copy: the system is untouched
    assert (s._stencil[0] != 0).any()


def test_unit_coefficients_equal_no_coefficients(gen):
    s = random_obstacles((9, 13), n_obstacles=3, seed=4)
    t = s.with_coefficients(torch.ones(s.shape, dtype=F64))
    x = torch.randn(2, s.n, generator=gen, dtype=F64)
    assert torch.equal(s.operator().matvec(x), t.operator().matvec(x))
    assert (s.csr() != t.csr()).nnz == 0


def test_shorthands_are_boundaries():
    c = torch.zeros(3, 4, dtype=torch.int8)
    assert PoissonSystem(c).boundary == (("neumann", "neumann"), ("neumann", "dirichlet"))
    assert PoissonSystem(c, open_top=False).boundary == (("neumann", "neumann"),) * 2
    assert PoissonSystem(c, dirichlet_walls=True).boundary == (("dirichlet", "dirichlet"),) * 2
    assert PoissonSystem(c, boundary="dirichlet").dirichlet_walls
    s = PoissonSystem(c, boundary=["dirichlet", ("neumann", "dirichlet")])
    assert s.boundary == (("dirichlet", "dirichlet"), ("neumann", "dirichlet"))
    assert s.open_top and not s.dirichlet_walls


# --------------------------------------------------------------------- bad input


def test_bad_shapes_boundaries_and_coefficients_are_refused():
    c = torch.zeros(4, 6, dtype=torch.int8)
    c[0, 0] = SOLID
    for bad, match in [
        (torch.zeros(4, 6, dtype=F64).fill_(-1.0), "coefficients must be > 0"),
        (torch.zeros(4, 6, dtype=F64), "coefficients must be > 0"),
        (torch.full((4, 6), float("nan"), dtype=F64), "coefficients holds 23 non-finite"),
        (torch.full((4, 6), float("inf"), dtype=F64), "coefficients holds 23 non-finite"),
        (torch.ones(6, 4, dtype=F64), r"coefficients has shape \(6, 4\) but cells is"),
    ]:
        with pytest.raises(ValueError, match=match):
            PoissonSystem(c, coefficients=bad)
    # only fluid cells need a valid conductivity
    k = torch.ones(4, 6, dtype=F64)
    k[0, 0] = float("nan")
    assert PoissonSystem(c, coefficients=k).coefficients[0, 0] == 0
    with pytest.raises(TypeError, match="coefficients must be a real floating"):
        PoissonSystem(c, coefficients=torch.ones(4, 6, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"coefficients must be a torch\.Tensor"):
        PoissonSystem(c, coefficients=[[1.0] * 6] * 4)
    torch.testing.assert_close(PoissonSystem(c, coefficients=np.ones((4, 6))).coefficients,
                               PoissonSystem(c, coefficients=k.nan_to_num(1.0)).coefficients)
    for bad, err, match in [
        ("robin", ValueError, "boundary must be 'neumann', 'dirichlet'"),
        (["neumann"], ValueError, "boundary must have 2 entries"),
        (["neumann", ("neumann", "periodic")], ValueError, r"boundary\[1\] holds 'periodic'"),
        (["neumann", ("neumann",)], ValueError, r"boundary\[1\] must be a side kind"),
        (3, TypeError, "boundary must be"),
    ]:
        with pytest.raises(err, match=match):
            PoissonSystem(c, boundary=bad)
    with pytest.raises(ValueError, match="boundary or the shorthands"):
        PoissonSystem(c, open_top=True, boundary="neumann")
    with pytest.raises(TypeError, match="dirichlet_walls must be True or False"):
        PoissonSystem(c, dirichlet_walls="yes")
    with pytest.raises(ValueError, match="N >= 2"):
        PoissonSystem(torch.zeros(4, 1, 3, dtype=torch.int8))
    with pytest.raises(ValueError, match="d=2 but the shape"):
        box_scene((4, 5, 6), d=2)
    with pytest.raises(ValueError, match="2 or 3 sides"):
        random_obstacles((4, 5, 6, 7))
    with pytest.raises(ValueError, match=r"N\[1\] must be >= 2"):
        fluid_proxy((8, 1))
    with pytest.raises(ValueError, match="contrast must be >= 1"):
        random_coefficients((4, 4), 0.5)
    with pytest.raises(TypeError, match="shape must be a grid shape"):
        random_coefficients(8)
    with pytest.raises(ValueError, match="layers must be <= shape"):
        layered_coefficients((4, 6), layers=7)
    with pytest.raises(ValueError, match="axis must be in"):
        layered_coefficients((4, 6), axis=2)
    with pytest.raises(ValueError, match="contrast must be finite and > 0"):
        layered_coefficients((4, 6), contrast=0.0)
