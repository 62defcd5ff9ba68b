"""Geometric multigrid (sciml.solvers.linear.GeometricMultigrid).

References: the cycle is checked as an operator (assembled densely in float64: symmetric,
positive definite, or semidefinite on exactly the null space), the coarse operator
against half the Galerkin product of piecewise-constant aggregation built independently
here, and PCG with it against scipy's sparse direct solve, on obstacle scenes, air cells,
odd grids and a pure-Neumann box.
"""

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
from sciml.solvers.linear import LinearStatus, cg
from sciml.solvers.linear.multigrid import GeometricMultigrid

F64 = torch.float64


def _systems():
    return {
        "proxy2d-32": fluid_proxy(32, d=2),
        "obstacles2d-37": random_obstacles(37, 2, seed=1),
        "obstacles3d-12": random_obstacles(12, 3, seed=2),
        "dirichlet2d-20": box_scene(20, 2, dirichlet_walls=True),
    }


def _dense(op, n: int, idx: torch.Tensor | None = None) -> torch.Tensor:
    """The operator as a dense matrix (rows and columns ``idx``, default all)."""
    idx = torch.arange(n) if idx is None else idx
    E = torch.zeros(idx.numel(), n, dtype=F64)
    E[torch.arange(idx.numel()), idx] = 1.0
    return op.matvec(E).T[idx].contiguous()  # (eigvalsh is slow on a strided view)


@pytest.mark.parametrize("smoother", ["rbgs", "jacobi"])
@pytest.mark.parametrize("name", list(_systems()))
def test_the_cycle_is_symmetric_positive_definite(name: str, smoother: str) -> None:
    s = _systems()[name]
    M = GeometricMultigrid(s, dtype=F64, max_coarse=20, smoother=smoother)
    assert M.levels >= 2
    Md = _dense(M, s.n, s.fluid_index)
    assert torch.allclose(Md, Md.T, atol=1e-12 * Md.abs().max())
    ev = torch.linalg.eigvalsh(Md)
    assert ev.min() > 1e-8 * ev.max()
    # and zero off the unknowns, whatever the input holds there
    x = torch.randn(s.n, dtype=F64)
    y = M.matvec(x)
    assert torch.all(y[~s.fluid_mask.reshape(-1)] == 0)
    assert torch.equal(y, M.matvec(torch.where(s.fluid_mask.reshape(-1), x, 0.0)))


def test_pure_neumann_cycle_is_semidefinite_on_the_constants() -> None:
    s = box_scene(16, 2, open_top=False)
    assert s.has_null_space
    M = GeometricMultigrid(s, dtype=F64, max_coarse=20)
    Md = _dense(M, s.n)
    ev = torch.linalg.eigvalsh(0.5 * (Md + Md.T))
    assert ev.min() > -1e-10 * ev.max()
    b = s.project_range(divergence_rhs(s, 1, seed=0)[0] + 0.3)
    sol = cg(s.operator(), b, M=M, rtol=1e-8)
    assert sol.status is LinearStatus.CONVERGED
    r = b - s.operator().matvec(sol.x)
    assert float(r.norm()) <= 1e-8 * float(b.norm()) * 1.01


def _aggregate(shape: tuple[int, ...]) -> np.ndarray:
    """Piecewise-constant aggregation P0 (fine cells x coarse cells), 2^d blocks."""
    fine = np.arange(int(np.prod(shape))).reshape(shape)
    cshape = tuple((n + 1) // 2 for n in shape)
    P = np.zeros((fine.size, int(np.prod(cshape))))
    for f, idx in enumerate(np.ndindex(*shape)):
        P[f, np.ravel_multi_index(tuple(i // 2 for i in idx), cshape)] = 1.0
    return P


@pytest.mark.parametrize("name", ["obstacles2d-37", "obstacles3d-12", "proxy2d-32"])
def test_coarse_operator_is_half_the_aggregation_galerkin_product(name: str) -> None:
    s = _systems()[name]
    M = GeometricMultigrid(s, dtype=F64, max_coarse=1)
    A = s.csr(reduced=False).toarray()
    P0 = _aggregate(s.shape)
    want = 0.5 * P0.T @ A @ P0
    lev = M._levels[1]
    n_c = lev.mask.numel()
    from sciml.solvers.linear.multigrid import _stencil_apply

    cols = _stencil_apply(torch.eye(n_c, dtype=F64).reshape(n_c, *lev.shape),
                          lev.diag, lev.links, s.ndim).reshape(n_c, n_c).numpy()
    # the stored level is padded to even sides with non-unknown cells: compare the rest
    cshape = tuple((n + 1) // 2 for n in s.shape)
    keep = np.array([np.ravel_multi_index(i, lev.shape) for i in np.ndindex(*cshape)])
    assert lev.shape == tuple(n + n % 2 for n in cshape)
    np.testing.assert_allclose(cols[np.ix_(keep, keep)], want, atol=1e-12)
    pad = np.setdiff1d(np.arange(n_c), keep)
    assert not cols[pad].any() and not cols[:, pad].any()


@pytest.mark.parametrize("smoother", ["rbgs", "jacobi"])
@pytest.mark.parametrize("name", list(_systems()))
def test_pcg_matches_the_direct_solve(name: str, smoother: str) -> None:
    s = _systems()[name]
    A = s.operator()
    b = divergence_rhs(s, 2, seed=3)
    sol = cg(A, b, M=GeometricMultigrid(s, smoother=smoother), rtol=1e-9)
    assert sol.status is LinearStatus.CONVERGED
    K = s.csr(reduced=True)
    for i in range(2):
        ref = spla.spsolve(K.tocsc(), s.to_fluid(b[i]).numpy())
        got = s.to_fluid(sol.x[i]).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    # a preconditioner worth the name: far fewer iterations than plain CG
    plain = cg(A, b, rtol=1e-9)
    assert np.max(sol.stats["iterations"]) * 5 < np.max(plain.stats["iterations"])


def test_batched_dtype_and_own_stencil() -> None:
    s = random_obstacles(24, 2, seed=4)
    M = GeometricMultigrid(s, max_coarse=50)
    assert M.dtype == torch.float32 and M.levels >= 3
    r = torch.randn(3, s.n, dtype=F64)
    y = M.matvec(r)
    assert y.dtype == F64 and y.shape == (3, s.n)
    for i in range(3):
        assert float((y[i] - M.matvec(r[i])).norm()) <= 1e-5 * float(y[i].norm())
    diag, links = s._stencil
    own = GeometricMultigrid((s.fluid_mask, diag, tuple(k.double() for k in links)),
                             max_coarse=50)
    assert torch.allclose(own.matvec(r), y)
    assert M.setup_seconds > 0 and "GeometricMultigrid" in repr(M)


def test_bad_input_is_refused_by_name() -> None:
    s = fluid_proxy(16, d=2)
    with pytest.raises(ValueError, match="omega"):
        GeometricMultigrid(s, omega=1.5)
    with pytest.raises((TypeError, ValueError), match="smoothing"):
        GeometricMultigrid(s, smoothing=0)
    with pytest.raises(ValueError, match="smoother"):
        GeometricMultigrid(s, smoother="sor")
    with pytest.raises(TypeError, match="system"):
        GeometricMultigrid("grid")
    with pytest.raises(TypeError, match="dtype"):
        GeometricMultigrid(s, dtype=torch.int32)
    M = GeometricMultigrid(s)
    with pytest.raises(ValueError, match="r has shape"):
        M.matvec(torch.zeros(10))
    mask, (diag, links) = s.fluid_mask, s._stencil
    with pytest.raises(ValueError, match="links"):
        GeometricMultigrid((mask, diag, (-links[0].double(), links[1].double())))


def _own_geometry():
    o2 = random_obstacles((24, 40), seed=3)
    o3 = random_obstacles(10, 3, seed=4)
    return {
        "rectangular2d-50x30": random_obstacles((50, 30), seed=1),
        "rectangular3d-8x12x10": random_obstacles((8, 12, 10), seed=2),
        "coefficients2d-1e3": PoissonSystem(o2.cells, open_top=True,
                                            coefficients=random_coefficients((24, 40), 1e3,
                                                                             seed=0)),
        "coefficients3d-1e3": PoissonSystem(o3.cells, open_top=True,
                                            coefficients=random_coefficients((10, 10, 10), 1e3,
                                                                             seed=1)),
        "all-dirichlet3d-10": PoissonSystem(o3.cells, dirichlet_walls=True),
    }


@pytest.mark.parametrize("name", list(_own_geometry()))
def test_own_geometry_rectangular_coefficients_dirichlet(name: str) -> None:
    s = _own_geometry()[name]
    M = GeometricMultigrid(s, max_coarse=16)
    assert M.levels >= 3
    # still an SPD cycle (float64 to see it)
    M64 = GeometricMultigrid(s, max_coarse=16, dtype=F64)
    Md = _dense(M64, s.n, s.fluid_index)
    assert torch.allclose(Md, Md.T, atol=1e-12 * Md.abs().max())
    assert torch.linalg.eigvalsh(Md).min() > 0
    b = divergence_rhs(s, 1, seed=5)[0]
    sol = cg(s.operator(), b, M=M, rtol=1e-9)
    assert sol.status is LinearStatus.CONVERGED
    ref = spla.spsolve(s.csr(reduced=True).tocsc(), s.to_fluid(b).numpy())
    got = s.to_fluid(sol.x).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    assert np.max(sol.stats["iterations"]) <= 25


@pytest.mark.parametrize("smoother", ["rbgs", "jacobi"])
@pytest.mark.parametrize("name", ["proxy2d-32", "obstacles2d-37", "obstacles3d-12"])
def test_fused_cpu_kernels_agree_with_the_torch_cycle(name: str, smoother: str) -> None:
    # the numba kernels (the CPU path) and the torch operations (every other device)
    # are two implementations of one cycle: same numbers up to rounding, batched
    system = _systems()[name]
    mg = GeometricMultigrid(system, smoother=smoother, dtype=F64)
    assert mg._fast, "numba is a dependency: the CPU path should be the fused one"
    r = torch.randn(3, mg.shape[0], dtype=F64, generator=torch.Generator().manual_seed(4))
    fused = mg.matvec(r)
    mg._fast = False
    plain = mg.matvec(r)
    assert torch.allclose(fused, plain, rtol=1e-10, atol=1e-12 * plain.abs().max())


@pytest.mark.parametrize("d", [2, 3])
def test_fused_operator_matches_the_differentiable_one(d: int) -> None:
    # the fused matvec ignores entries off the unknowns, even NaN, like the torch path
    base = random_obstacles(15, d, seed=5)
    system = PoissonSystem(base.cells, open_top=True,
                           coefficients=random_coefficients((15,) * d, 50.0, seed=6))
    A = system.operator()
    x = torch.randn(2, A.shape[0], dtype=F64, generator=torch.Generator().manual_seed(7))
    off = ~system.fluid_mask.reshape(-1)
    x[:, off] = float("nan")
    fused = A.matvec(x)
    traced = A.matvec(x.clone().requires_grad_())  # autograd: the torch path
    assert torch.isfinite(fused).all()
    assert torch.allclose(fused, traced.detach(), rtol=1e-12, atol=1e-12)
