"""Pressure Poisson systems on ``N^2`` / ``N^3`` cell grids with obstacles.

The linear systems of the pressure projection of incompressible flow, as solved by the
Deep Conjugate Direction Method (Kaneda et al., ICML 2023). Every cell of the grid is
FLUID (an unknown pressure), SOLID (an obstacle: Neumann walls, no flow through its
faces) or AIR (open: Dirichlet ``p = 0``). The domain boundary is a Neumann wall, except
the faces on the high side of the last axis when ``open_top`` (air above) and every face
when ``dirichlet_walls``.

For a fluid cell ``i`` the unscaled 5-point (2D) / 7-point (3D) operator is

.. math::

    (A p)_i = \\sum_{j \\in F(i)} (p_i - p_j) + |D(i)|\\, p_i,

with ``F(i)`` its fluid face neighbours and ``D(i)`` its faces to AIR cells or open
domain faces (the ghost value there is 0); faces to SOLID cells and Neumann walls add
nothing. ``A`` is ``-Δ_h`` with ``h = 1``: divide by ``h^2`` yourself for a physical
spacing. ``A = -div ∘ grad`` on the fluid cells, with :func:`gradient` and
:func:`divergence` on the cell faces.

``A`` is symmetric positive semidefinite. It is definite exactly when every connected
fluid region (face connectivity) touches a Dirichlet face or AIR cell; each region that
does not ("floating") adds the constant on that region to the null space, and ``A p = b``
is then solvable only if ``b`` sums to 0 over the region
(:meth:`PoissonSystem.has_null_space`, :meth:`PoissonSystem.project_range`,
:meth:`PoissonSystem.sealed`).

Vectors live on the full grid flattened in C order, length ``n = N^d``, so a CNN can read
them reshaped to ``(N,)*d``; entries of non-fluid cells are ignored on input and zero on
output (the operator is ``P A_f P`` with ``P`` the fluid selection).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
from scipy import ndimage
from torch import Tensor

from .._validation import check_int, check_tensor
from ..spectral import wavenumbers

__all__ = [
    "CellType",
    "PoissonOperator",
    "PoissonSystem",
    "box_scene",
    "divergence",
    "divergence_rhs",
    "fluid_proxy",
    "gradient",
    "random_face_velocity",
    "random_obstacles",
    "random_rhs",
]


class CellType(IntEnum):
    """What a grid cell holds."""

    FLUID = 0  # an unknown pressure
    SOLID = 1  # an obstacle: no flow through its faces (Neumann)
    AIR = 2  # open: p = 0 (Dirichlet)


FLUID, SOLID, AIR = int(CellType.FLUID), int(CellType.SOLID), int(CellType.AIR)
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _canonical(device: torch.device | str | None) -> torch.device:
    return torch.empty(0, device=device).device  # "cuda" -> "cuda:0"


@dataclass(frozen=True, eq=False)
class PoissonSystem:
    """A pressure Poisson system: the cell types of an ``(N,)*d`` grid and its boundary.

    Args:
        cells: integer tensor ``(N, N)`` or ``(N, N, N)`` of :class:`CellType` values
            (stored as a CPU ``int8`` copy).
        open_top: the domain faces on the high side of the last axis are Dirichlet
            (``p = 0``, air above); the other domain faces are Neumann walls.
        dirichlet_walls: every domain face is Dirichlet (overrides the walls).

    Raises:
        TypeError: ``cells`` is not an integer tensor; a flag is not a bool.
        ValueError: ``d`` not 2 or 3, unequal sides, ``N < 2``, values outside
            :class:`CellType`, or no FLUID cell.
    """

    cells: Tensor
    open_top: bool = True
    dirichlet_walls: bool = False

    def __post_init__(self) -> None:
        c = check_tensor("cells", self.cells)
        if c.dtype not in _INT_DTYPES:
            raise TypeError(f"cells must be an integer tensor of CellType values, got dtype "
                            f"{c.dtype}; use cells.to(torch.int8)")
        if c.ndim not in (2, 3):
            raise ValueError(f"cells must be a 2D (N, N) or 3D (N, N, N) grid (d in {{2, 3}}), "
                             f"got shape {tuple(c.shape)}")
        if len(set(c.shape)) != 1:
            raise ValueError(f"cells must have equal sides (N,)*d, got shape {tuple(c.shape)}; "
                             f"pad it with SOLID cells to a square/cube")
        if c.shape[0] < 2:
            raise ValueError(f"the grid needs N >= 2 cells per side, got shape {tuple(c.shape)}")
        c = c.detach().to("cpu", torch.int64)
        bad = torch.unique(c[(c < 0) | (c > 2)])
        if bad.numel():
            raise ValueError(f"cells holds values {bad[:10].tolist()} outside CellType "
                             f"(FLUID=0, SOLID=1, AIR=2); map them to one of these")
        if not bool((c == FLUID).any()):
            raise ValueError("cells has no FLUID cell, so the system has no unknowns; mark "
                             "the cells whose pressure you want with CellType.FLUID")
        for name in ("open_top", "dirichlet_walls"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        object.__setattr__(self, "cells", c.to(torch.int8).contiguous())

    def __repr__(self) -> str:
        return (f"PoissonSystem(shape={self.shape}, n_fluid={self.n_fluid}, "
                f"open_top={self.open_top}, dirichlet_walls={self.dirichlet_walls})")

    # ------------------------------------------------------------------ sizes, layout

    @property
    def ndim(self) -> int:
        """``d``, the grid dimension (2 or 3)."""
        return self.cells.ndim

    @property
    def N(self) -> int:
        """Cells per side."""
        return self.cells.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid shape ``(N,)*d``."""
        return tuple(self.cells.shape)

    @property
    def n(self) -> int:
        """Length of a full-grid vector, ``N^d``."""
        return self.cells.numel()

    @cached_property
    def fluid_mask(self) -> Tensor:
        """Bool ``(N,)*d``, True on FLUID cells (CPU)."""
        return self.cells == FLUID

    @cached_property
    def fluid_index(self) -> Tensor:
        """The flat (C-order) indices of the FLUID cells, ``(n_fluid,)`` int64 (CPU)."""
        return torch.nonzero(self.fluid_mask.reshape(-1)).reshape(-1)

    @property
    def n_fluid(self) -> int:
        """The number of unknowns."""
        return self.fluid_index.numel()

    @cached_property
    def _on_device(self) -> dict:
        return {}

    def _index(self, device: torch.device) -> Tensor:
        key = ("index", device)
        if key not in self._on_device:
            self._on_device[key] = self.fluid_index.to(device)
        return self._on_device[key]

    def to_fluid(self, x: Tensor) -> Tensor:
        """Gather the fluid entries: ``(..., n)`` -> ``(..., n_fluid)``."""
        x = check_tensor("x", x, min_ndim=1)
        if x.shape[-1] != self.n:
            raise ValueError(f"x has shape {tuple(x.shape)}; its last dimension must be the "
                             f"full grid n = {self.n} (reshape grid input to (..., n))")
        return x.index_select(-1, self._index(x.device))

    def from_fluid(self, xf: Tensor) -> Tensor:
        """Scatter fluid entries onto the full grid: ``(..., n_fluid)`` -> ``(..., n)``,
        zero on the non-fluid cells."""
        xf = check_tensor("xf", xf, min_ndim=1)
        if xf.shape[-1] != self.n_fluid:
            raise ValueError(f"xf has shape {tuple(xf.shape)}; its last dimension must be "
                             f"n_fluid = {self.n_fluid}")
        out = xf.new_zeros(*xf.shape[:-1], self.n)
        return out.index_copy(-1, self._index(xf.device), xf)

    # ------------------------------------------------------------------ faces, stencil

    def _sides(self, axis: int) -> tuple[Tensor, Tensor]:
        """Cell types on the low and high side of each face normal to ``axis`` (``N + 1``
        faces along it). Domain faces see a ghost cell: AIR if Dirichlet, SOLID if a
        Neumann wall (a wall and an obstacle act alike)."""
        c = self.cells
        ghost = list(c.shape)
        ghost[axis] = 1
        hi_open = self.dirichlet_walls or (self.open_top and axis == self.ndim - 1)
        lo = c.new_full(ghost, AIR if self.dirichlet_walls else SOLID)
        hi = c.new_full(ghost, AIR if hi_open else SOLID)
        ext = torch.cat([lo, c, hi], dim=axis)
        return ext.narrow(axis, 0, self.N + 1), ext.narrow(axis, 1, self.N + 1)

    @cached_property
    def _open_faces(self) -> tuple[Tensor, ...]:
        """Per axis, bool faces that carry flow: no SOLID side and at least one FLUID side."""
        out = []
        for a in range(self.ndim):
            lo, hi = self._sides(a)
            out.append((lo != SOLID) & (hi != SOLID) & ((lo == FLUID) | (hi == FLUID)))
        return tuple(out)

    @cached_property
    def _stencil(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(diagonal, links)``: the float64 diagonal ``(N,)*d`` (0 off the fluid) and per
        axis the bool fluid-fluid couplings between cells ``i`` and ``i + e_a`` (``N - 1``
        along the axis)."""
        N, fluid = self.N, self.fluid_mask
        diag = torch.zeros(self.shape, dtype=torch.float64)
        links = []
        for a, face in enumerate(self._open_faces):
            diag += face.narrow(a, 0, N).double() + face.narrow(a, 1, N).double()
            links.append(fluid.narrow(a, 0, N - 1) & fluid.narrow(a, 1, N - 1))
        return diag * fluid, tuple(links)

    def operator(self, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> PoissonOperator:
        """The matrix-free stencil operator ``A`` (see :class:`PoissonOperator`)."""
        return PoissonOperator(self, dtype=dtype, device=device)

    def _csr_parts(self, reduced: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        d, N = self.ndim, self.N
        diag, links = self._stencil
        rows = self.fluid_index.numpy()
        strides = [N ** (d - 1 - a) for a in range(d)]
        minus, plus = [], []
        for a, link in enumerate(links):
            lnk = link.numpy()
            up = np.zeros(self.shape, dtype=bool)  # cell i couples to i + e_a
            down = np.zeros(self.shape, dtype=bool)  # cell i couples to i - e_a
            up[(slice(None),) * a + (slice(0, N - 1),)] = lnk
            down[(slice(None),) * a + (slice(1, N),)] = lnk
            plus.append((strides[a], up.reshape(-1)[rows]))
            minus.append((-strides[a], down.reshape(-1)[rows]))
        # columns ascending within a row: -N^(d-1), ..., -1, 0, +1, ..., +N^(d-1)
        entries = [*minus, (0, np.ones(rows.size, dtype=bool)), *plus[::-1]]
        offsets = np.array([o for o, _ in entries], dtype=np.int64)
        valid = np.stack([v for _, v in entries], axis=1)
        vals = np.full(valid.shape, -1.0)
        vals[:, d] = diag.reshape(-1).numpy()[rows]
        r, k = np.nonzero(valid)  # row-major: entries stay sorted by column
        data = vals[r, k]
        indices = rows[r] + offsets[k]
        counts = valid.sum(axis=1)
        if reduced:
            remap = np.full(self.n, -1, dtype=np.int64)
            remap[rows] = np.arange(rows.size)
            indices = remap[indices]
            size = rows.size
        else:
            full = np.zeros(self.n, dtype=np.int64)
            full[rows] = counts
            counts, size = full, self.n
        indptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, indices, data, size

    def csr(self, reduced: bool = True) -> sp.csr_matrix:
        """``A`` as a float64 scipy CSR matrix (assembled on each call, not cached).

        ``reduced=True``: the ``n_fluid x n_fluid`` matrix of the unknowns, in the order
        of :attr:`fluid_index` (use :meth:`to_fluid` / :meth:`from_fluid`).
        ``reduced=False``: the full ``n x n`` matrix with empty rows and columns at
        non-fluid cells.
        """
        indptr, indices, data, size = self._csr_parts(reduced)
        idx = np.int32 if max(indices.size, size) < 2**31 - 1 else np.int64
        return sp.csr_matrix((data, indices.astype(idx), indptr.astype(idx)),
                             shape=(size, size))

    def torch_csr(self, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None, reduced: bool = True) -> Tensor:
        """``A`` as a torch sparse CSR tensor (int64 indices); see :meth:`csr`."""
        indptr, indices, data, size = self._csr_parts(reduced)
        with warnings.catch_warnings():  # torch's "CSR support is in beta" notice
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            return torch.sparse_csr_tensor(
                torch.from_numpy(indptr), torch.from_numpy(indices), torch.from_numpy(data),
                size=(size, size), dtype=dtype, device=device, check_invariants=False)

    # ------------------------------------------------------------------ null space

    @cached_property
    def _floating(self) -> tuple[Tensor, int]:
        """``(labels, k)``: flat int64 labels, ``1..k`` on the cells of the fluid regions
        that touch no Dirichlet face, 0 elsewhere."""
        labels, n_regions = ndimage.label(self.fluid_mask.numpy())  # face connectivity
        anchored = torch.zeros(self.shape, dtype=torch.bool)
        for a in range(self.ndim):
            lo, hi = self._sides(a)
            face = ((lo == FLUID) & (hi == AIR)) | ((lo == AIR) & (hi == FLUID))
            anchored |= face.narrow(a, 0, self.N) | face.narrow(a, 1, self.N)
        floating = np.ones(n_regions + 1, dtype=bool)
        floating[0] = False
        floating[np.unique(labels[anchored.numpy() & (labels > 0)])] = False
        k = int(floating.sum())
        relabel = np.zeros(n_regions + 1, dtype=np.int64)
        relabel[floating] = np.arange(1, k + 1)
        return torch.from_numpy(relabel[labels].reshape(-1)), k

    def has_null_space(self) -> bool:
        """True when some fluid region touches no Dirichlet face or AIR cell (``A`` is
        then singular, with the constant on each such region in its null space)."""
        return self._floating[1] > 0

    def null_space(self, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> Tensor:
        """An orthonormal basis of the null space, ``(k, n)`` dense (``k`` floating
        regions; ``(0, n)`` when ``A`` is definite): row ``r`` is the normalised
        indicator of region ``r``."""
        labels, k = self._floating
        basis = torch.zeros(k + 1, self.n, dtype=dtype, device=device)
        basis[labels.to(basis.device), torch.arange(self.n, device=basis.device)] = 1.0
        basis = basis[1:]
        return basis / basis.sum(-1, keepdim=True).sqrt()

    def project_range(self, b: Tensor) -> Tensor:
        """Remove the null-space component of ``b`` ``(..., n)``: subtract its mean over
        each floating region, which makes ``A p = b`` solvable (``b`` unchanged when
        ``A`` is definite)."""
        b = check_tensor("b", b, min_ndim=1, real=True)
        if b.shape[-1] != self.n:
            raise ValueError(f"b has shape {tuple(b.shape)}; its last dimension must be "
                             f"n = {self.n}")
        labels, k = self._floating
        if k == 0:
            return b
        labels = labels.to(b.device)
        flat = b.reshape(-1, self.n)
        sums = flat.new_zeros(flat.shape[0], k + 1).index_add_(1, labels, flat)
        means = sums / torch.bincount(labels, minlength=k + 1).to(flat)
        means[:, 0] = 0
        return (flat - means[:, labels]).reshape(b.shape)

    def sealed(self) -> PoissonSystem:
        """This system with every floating fluid region turned SOLID, so ``A`` is definite.

        Raises:
            ValueError: no fluid region touches a Dirichlet face or AIR cell.
        """
        labels, k = self._floating
        if k == 0:
            return self
        cells = self.cells.reshape(-1).clone()
        cells[labels > 0] = SOLID
        if not bool((cells == FLUID).any()):
            raise ValueError("no fluid region touches a Dirichlet face or AIR cell, so "
                             "sealing leaves no fluid; open the top (open_top=True) or add "
                             "AIR cells")
        return PoissonSystem(cells.reshape(self.shape), self.open_top, self.dirichlet_walls)


def _require_system(system: object) -> PoissonSystem:
    if not isinstance(system, PoissonSystem):
        raise TypeError(f"system must be a PoissonSystem, got {type(system).__name__}; build "
                        "one with PoissonSystem(cells) or a scene such as fluid_proxy(N)")
    return system


class PoissonOperator:
    """The matrix-free stencil ``A`` of a :class:`PoissonSystem` on one device and dtype.

    A ``LinearOperator`` (``shape``, ``dtype``, ``device``, ``matvec``): applied with
    tensor shifts, ``2d + 1`` fused multiply-adds per cell, differentiable, on any device.
    Build it with :meth:`PoissonSystem.operator`.
    """

    def __init__(self, system: PoissonSystem, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        _require_system(system)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
        diag, links = system._stencil
        self.device = _canonical(device)
        self.dtype = dtype
        self.grid_shape = system.shape
        self.shape = (system.n, system.n)
        self._d = system.ndim
        self._mask = system.fluid_mask.to(self.device)
        self._diag = diag.to(self.device, dtype)
        self._links = tuple(lk.to(self.device, dtype) for lk in links)

    def __repr__(self) -> str:
        return f"PoissonOperator(grid={self.grid_shape}, dtype={self.dtype}, device={self.device})"

    def _check(self, x: Tensor) -> None:
        if x.dtype != self.dtype or x.device != self.device:
            raise TypeError(f"x is {x.dtype} on {x.device} but the operator is {self.dtype} "
                            f"on {self.device}; use x.to(op.device, op.dtype) or build "
                            f"system.operator(dtype=..., device=...) to match")

    def diagonal(self) -> Tensor:
        """The diagonal of ``A``, ``(n,)``, zero on non-fluid cells."""
        return self._diag.reshape(-1).clone()

    def grid_matvec(self, x: Tensor) -> Tensor:
        """``A x`` for grid-shaped ``x`` ``(..., N, N[, N])``; same shape out."""
        x = check_tensor("x", x, min_ndim=self._d)
        if tuple(x.shape[x.ndim - self._d:]) != self.grid_shape:
            raise ValueError(f"x has shape {tuple(x.shape)}; grid_matvec needs "
                             f"(..., {', '.join(map(str, self.grid_shape))})")
        self._check(x)
        N = self.grid_shape[0]
        x = torch.where(self._mask, x, 0)  # non-fluid entries are ignored, even NaN
        y = self._diag * x
        for a, link in enumerate(self._links):
            ax = x.ndim - self._d + a
            y.narrow(ax, 0, N - 1).sub_(link * x.narrow(ax, 1, N - 1))
            y.narrow(ax, 1, N - 1).sub_(link * x.narrow(ax, 0, N - 1))
        return y

    def matvec(self, x: Tensor) -> Tensor:
        """``A x`` for ``x`` ``(..., n)`` (batched over leading dimensions)."""
        x = check_tensor("x", x, min_ndim=1)
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"x has shape {tuple(x.shape)} but A is {self.shape}")
        lead = x.shape[:-1]
        return self.grid_matvec(x.reshape(*lead, *self.grid_shape)).reshape(*lead, -1)


# ---------------------------------------------------------------------------- scenes


def _check_grid(N: object, d: object) -> tuple[int, int]:
    N = check_int("N", N, minimum=2)
    if d not in (2, 3) or isinstance(d, bool):
        raise ValueError(f"d must be 2 or 3, got {d!r}")
    return N, int(d)


def _centres(N: int, d: int) -> list[Tensor]:
    """Cell-centre coordinates in the unit box, one broadcastable tensor per axis."""
    x = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    return [x.reshape([N if b == a else 1 for b in range(d)]) for a in range(d)]


def _rng(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass a generator or a seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        return torch.Generator().manual_seed(check_int("seed", seed))
    return generator


def box_scene(N: int, d: int = 3, open_top: bool = True, *,
              dirichlet_walls: bool = False) -> PoissonSystem:
    """An all-fluid box: Neumann walls, open top (``open_top``) or all faces Dirichlet
    (``dirichlet_walls``). ``open_top=False`` alone gives the pure Neumann problem, whose
    null space is the constant."""
    N, d = _check_grid(N, d)
    return PoissonSystem(torch.full((N,) * d, FLUID, dtype=torch.int8), open_top,
                         dirichlet_walls)


def fluid_proxy(N: int, d: int = 3, radius: float = 0.2,
                center: tuple[float, ...] | None = None) -> PoissonSystem:
    """DCDM's fluid-proxy scene: a solid ball (disc in 2D) in a box with Neumann walls on
    the sides and bottom and an open (Dirichlet) top.

    Args:
        N, d: grid ``(N,)*d``.
        radius: the ball's radius as a fraction of the side (cells with centres within
            ``radius * N`` cells of the centre are SOLID).
        center: the ball's centre in the unit box, ``d`` numbers (default the middle).

    Fluid pockets the ball cuts off from the top are filled with SOLID
    (:meth:`PoissonSystem.sealed`), so ``A`` is definite.
    """
    N, d = _check_grid(N, d)
    if not (isinstance(radius, (int, float)) and 0 < radius < math.inf):
        raise ValueError(f"radius must be a number > 0 (a fraction of the side), got {radius!r}")
    center = (0.5,) * d if center is None else tuple(float(c) for c in center)
    if len(center) != d or not all(0.0 <= c <= 1.0 for c in center):
        raise ValueError(f"center must be {d} numbers in [0, 1], got {center!r}")
    r2 = sum((x - c) ** 2 for x, c in zip(_centres(N, d), center))
    cells = torch.where(r2 <= radius**2, SOLID, FLUID).to(torch.int8)
    if not bool((cells == FLUID).any()):
        raise ValueError(f"a ball of radius {radius} fills the grid; use a smaller radius")
    return PoissonSystem(cells, open_top=True).sealed()


def random_obstacles(N: int, d: int = 3, n_obstacles: int = 6, *, air_layer: float = 0.5,
                     open_top: bool = True, generator: torch.Generator | None = None,
                     seed: int | None = None) -> PoissonSystem:
    """Random solid balls and boxes in a box, sometimes under a layer of AIR.

    Each obstacle is a ball (radius) or an axis-aligned box (half-sides) with sizes
    uniform in ``[0.05, 0.2]`` of the side and a uniform centre. With probability
    ``air_layer`` (always when ``open_top=False``) the top ``1 .. max(1, N // 8)`` cell
    layers along the last axis become AIR. Fluid pockets cut off from every Dirichlet
    face are filled with SOLID, so ``A`` is always definite.

    Args:
        N, d: grid ``(N,)*d``.
        n_obstacles: how many obstacles (they may overlap).
        air_layer: probability of the air layer.
        open_top: as in :class:`PoissonSystem`.
        generator, seed: the randomness (a CPU generator, or a seed for a new one; the
            global generator when neither is given).

    Raises:
        ValueError: the obstacles leave no fluid connected to a Dirichlet face.
    """
    N, d = _check_grid(N, d)
    n_obstacles = check_int("n_obstacles", n_obstacles, minimum=0)
    if not 0.0 <= air_layer <= 1.0:
        raise ValueError(f"air_layer is a probability in [0, 1], got {air_layer!r}")
    g = _rng(generator, seed)
    x = _centres(N, d)
    solid = torch.zeros((N,) * d, dtype=torch.bool)
    for _ in range(n_obstacles):
        u = torch.rand(1 + 2 * d, generator=g, dtype=torch.float64).tolist()
        centre, size = u[1:1 + d], [0.05 + 0.15 * s for s in u[1 + d:]]
        if u[0] < 0.5:
            solid |= sum((xa - c) ** 2 for xa, c in zip(x, centre)) <= size[0] ** 2
        else:
            inside = torch.ones((N,) * d, dtype=torch.bool)
            for xa, c, s in zip(x, centre, size):
                inside &= (xa - c).abs() <= s
            solid |= inside
    cells = torch.where(solid, SOLID, FLUID).to(torch.int8)
    u = torch.rand(2, generator=g, dtype=torch.float64).tolist()
    if not open_top or u[0] < air_layer:
        cells[..., N - 1 - int(u[1] * max(1, N // 8)):] = AIR
    if not bool((cells == FLUID).any()):
        raise ValueError(f"{n_obstacles} obstacles left no fluid; use fewer obstacles")
    return PoissonSystem(cells, open_top=open_top).sealed()


# ---------------------------------------------------------------------------- faces, rhs


def _face_shape(system: PoissonSystem, a: int) -> tuple[int, ...]:
    return tuple(s + (b == a) for b, s in enumerate(system.shape))


def gradient(system: PoissonSystem, p: Tensor) -> tuple[Tensor, ...]:
    """The face gradient of ``p`` ``(..., n)``: per axis ``a``, ``(..., *face_a)`` with
    ``N + 1`` faces along ``a``; face ``k`` holds ``p_k - p_{k-1}``, with ``p = 0`` in
    AIR cells and beyond Dirichlet faces, and 0 on faces that carry no flow (a SOLID
    side, a Neumann wall, or no FLUID side). Non-fluid entries of ``p`` are ignored."""
    _require_system(system)
    p = check_tensor("p", p, min_ndim=1, real=True)
    if p.shape[-1] != system.n:
        raise ValueError(f"p has shape {tuple(p.shape)}; its last dimension must be "
                         f"n = {system.n}")
    lead = p.shape[:-1]
    pg = torch.where(system.fluid_mask.to(p.device), p.reshape(*lead, *system.shape), 0)
    out = []
    for a, face in enumerate(system._open_faces):
        ax = len(lead) + a
        zero = pg.new_zeros(*lead, *[1 if b == a else s for b, s in enumerate(system.shape)])
        ext = torch.cat([zero, pg, zero], dim=ax)
        grad = ext.narrow(ax, 1, system.N + 1) - ext.narrow(ax, 0, system.N + 1)
        out.append(grad * face.to(p.device))
    return tuple(out)


def divergence(system: PoissonSystem, u: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    """The divergence of face velocities ``u`` (as from :func:`gradient`), ``(..., n)``:
    ``sum_a u_a[k + 1] - u_a[k]`` on FLUID cells, 0 elsewhere. ``A p = -divergence(
    gradient(p))`` on the fluid cells."""
    _require_system(system)
    d = system.ndim
    if not isinstance(u, (tuple, list)) or len(u) != d:
        raise ValueError(f"u must be a tuple of {d} face tensors (one per axis)")
    lead = None
    div = None
    for a, ua in enumerate(u):
        ua = check_tensor(f"u[{a}]", ua, min_ndim=d, real=True)
        fs = _face_shape(system, a)
        if tuple(ua.shape[ua.ndim - d:]) != fs or (lead is not None and ua.shape[:-d] != lead):
            raise ValueError(f"u[{a}] has shape {tuple(ua.shape)}; faces normal to axis {a} "
                             f"are (..., {', '.join(map(str, fs))}) with the same leading dims")
        lead = ua.shape[:-d]
        ax = ua.ndim - d + a
        term = ua.narrow(ax, 1, system.N) - ua.narrow(ax, 0, system.N)
        div = term if div is None else div + term
    div = torch.where(system.fluid_mask.to(div.device), div, 0)
    return div.reshape(*lead, system.n)


def _smooth(w: Tensor, sigma: float) -> Tensor:
    """Periodic Gaussian filter (standard deviation ``sigma`` cells) over all but dim 0."""
    dims = tuple(range(1, w.ndim))
    grid = tuple(w.shape[1:])
    kernel = torch.ones((), dtype=w.dtype, device=w.device)
    # angular wavenumbers per cell (a box of side m cells), rfftn layout
    for k in wavenumbers(grid, grid, device=w.device, dtype=w.dtype):
        kernel = kernel * torch.exp(-0.5 * (sigma * k) ** 2)
    return torch.fft.irfftn(torch.fft.rfftn(w, dim=dims) * kernel, s=w.shape[1:], dim=dims)


def random_face_velocity(system: PoissonSystem, batch: int = 1, *, smooth: float = 2.0,
                         generator: torch.Generator | None = None,
                         seed: int | None = None) -> tuple[Tensor, ...]:
    """A random smooth velocity on the faces: per axis ``(batch, *face_a)`` float64 (on the
    generator's device), white noise through a periodic Gaussian filter of ``smooth``
    cells (0: white noise), unit RMS per sample and axis, then zero on faces that carry no
    flow (SOLID sides, Neumann walls, faces with no FLUID side)."""
    _require_system(system)
    batch = check_int("batch", batch, minimum=1)
    if not (isinstance(smooth, (int, float)) and 0 <= smooth < math.inf):
        raise ValueError(f"smooth is a length in cells, >= 0, got {smooth!r}")
    g = _rng(generator, seed)
    device = g.device if g is not None else torch.device("cpu")
    out = []
    for a, face in enumerate(system._open_faces):
        w = torch.randn(batch, *_face_shape(system, a), generator=g, dtype=torch.float64,
                        device=device)
        if smooth > 0:
            w = _smooth(w, float(smooth))
        w = w / w.std(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-300)
        out.append(w * face.to(device))
    return tuple(out)


def divergence_rhs(system: PoissonSystem, batch: int = 1, *,
                   generator: torch.Generator | None = None, seed: int | None = None,
                   smooth: float = 2.0) -> Tensor:
    """Right-hand sides of the pressure projection: ``b = divergence(u*)``, ``(batch, n)``
    float64, for ``u*`` from :func:`random_face_velocity`; zero on non-fluid cells.

    Solving ``A p = b`` and setting ``u = u* + gradient(p)`` makes ``u`` divergence-free
    on the fluid cells (``p`` is minus the physical pressure times ``dt / rho``; ``u*`` is
    symmetric in law, so the sign carries no information). No flow crosses SOLID faces or
    Neumann walls, so ``b`` already sums to 0 over floating regions; the null-space
    component is projected out anyway (:meth:`PoissonSystem.project_range`) to remove
    round-off.
    """
    _require_system(system)
    u = random_face_velocity(system, batch, smooth=smooth, generator=generator, seed=seed)
    return system.project_range(divergence(system, u))


def random_rhs(system: PoissonSystem, batch: int = 1, *,
               generator: torch.Generator | None = None, seed: int | None = None) -> Tensor:
    """White-noise right-hand sides ``(batch, n)`` float64 on the fluid cells (zero
    elsewhere), with the null-space component projected out."""
    _require_system(system)
    batch = check_int("batch", batch, minimum=1)
    g = _rng(generator, seed)
    device = g.device if g is not None else torch.device("cpu")
    b = torch.randn(batch, system.n, generator=g, dtype=torch.float64, device=device)
    b = torch.where(system.fluid_mask.reshape(-1).to(device), b, 0)
    return system.project_range(b)
