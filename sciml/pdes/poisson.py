"""Pressure Poisson systems on 2D / 3D cell grids of any shape, with obstacles.

The linear systems of the pressure projection of incompressible flow, as solved by the
Deep Conjugate Direction Method (Kaneda et al., ICML 2023). Every cell of a
``(N0, N1)`` or ``(N0, N1, N2)`` grid is FLUID (an unknown pressure), SOLID (an
obstacle: Neumann walls, no flow through its faces) or AIR (open: Dirichlet ``p = 0``).
Each of the ``2 d`` sides of the domain is a Neumann wall or a Dirichlet (open) face
(``boundary``; the shorthands ``open_top``, the high side of the last axis open, and
``dirichlet_walls``, every side open, cover the common cases).

A FLUID cell ``i`` may carry a conductivity ``k_i > 0`` (``coefficients``; 1 when not
given). The face between cells ``i`` and ``j`` conducts

* ``2 k_i k_j / (k_i + k_j)`` (the harmonic mean) when both are FLUID: the flux
  continuity of a medium that is ``k_i`` on one half of the link and ``k_j`` on the
  other, the usual two-point flux of a finite-volume scheme;
* ``k_i`` when ``i`` is FLUID and ``j`` is AIR or a Dirichlet domain face: the ghost
  value ``p = 0`` sits one cell away and an AIR cell has no conductivity of its own,
  so the fluid cell's value is the natural (and the continuous limit's) choice;
* nothing when either side is SOLID or a Neumann wall.

For a fluid cell ``i`` the unscaled 5-point (2D) / 7-point (3D) operator is

.. math::

    (A p)_i = \\sum_{j \\in F(i)} g_{ij} (p_i - p_j) + \\sum_{f \\in D(i)} g_f\\, p_i,

with ``F(i)`` its fluid face neighbours, ``D(i)`` its faces to AIR cells or Dirichlet
domain faces and ``g`` the face conductances above (all 1 without coefficients). ``A``
is ``-div(k grad)`` with ``h = 1``: divide by ``h^2`` yourself for a physical spacing.
``A p = -divergence(g * gradient(p))`` on the fluid cells, with :func:`gradient` and
:func:`divergence` on the cell faces and ``g`` from
:meth:`PoissonSystem.face_conductances`.

``A`` is symmetric positive semidefinite. It is definite exactly when every connected
fluid region (face connectivity) touches a Dirichlet face or AIR cell; each region that
does not ("floating") adds the constant on that region to the null space, and ``A p = b``
is then solvable only if ``b`` sums to 0 over the region
(:meth:`PoissonSystem.has_null_space`, :meth:`PoissonSystem.project_range`,
:meth:`PoissonSystem.sealed`).

Vectors live on the full grid flattened in C order, length ``n = N0 N1 [N2]``, so a CNN
can read them reshaped to the grid; entries of non-fluid cells are ignored on input and
zero on output (the operator is ``P A_f P`` with ``P`` the fluid selection).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from enum import IntEnum
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
from scipy import ndimage
from torch import Tensor

from .. import _stencil_kernels
from .._validation import (
    as_tensor,
    as_tensors,
    check_bool,
    check_tensor,
)

__all__ = [
    "CellType",
    "PoissonOperator",
    "PoissonSystem",
    "box_scene",
    "divergence",
    "divergence_rhs",
    "fluid_proxy",
    "gradient",
    "layered_coefficients",
    "random_coefficients",
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
_SIDE_KINDS = ("neumann", "dirichlet")
Boundary = tuple[tuple[str, str], ...]


def _canonical(device: torch.device | str | None) -> torch.device:
    return torch.empty(0, device=device).device  # "cuda" -> "cuda:0"


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
    return dtype


def _parse_boundary(boundary: object, d: int) -> Boundary:
    """``boundary`` as ``d`` ``(low, high)`` pairs of "neumann" / "dirichlet"."""
    usage = (f"'neumann', 'dirichlet', or a sequence of {d} entries (one per axis), each "
             f"a side kind or a (low, high) pair of them, e.g. "
             f"{[('neumann', 'neumann')] * (d - 1) + [('neumann', 'dirichlet')]}")
    if isinstance(boundary, str):
        if boundary not in _SIDE_KINDS:
            raise ValueError(f"boundary must be {usage}; got {boundary!r}")
        return ((boundary, boundary),) * d
    if not isinstance(boundary, Sequence):
        raise TypeError(f"boundary must be {usage}; got {type(boundary).__name__}")
    if len(boundary) != d:
        raise ValueError(f"boundary must have {d} entries for a {d}D grid (one per axis), "
                         f"got {len(boundary)}: {boundary!r}")
    out = []
    for a, side in enumerate(boundary):
        if isinstance(side, str):
            side = (side, side)
        if not isinstance(side, Sequence) or len(side) != 2:
            raise ValueError(f"boundary[{a}] must be a side kind or a (low, high) pair, "
                             f"got {side!r}; boundary must be {usage}")
        for kind in side:
            if not (isinstance(kind, str) and kind in _SIDE_KINDS):
                raise ValueError(f"boundary[{a}] holds {kind!r}; each side is 'neumann' "
                                 f"(a wall) or 'dirichlet' (open, p = 0)")
        out.append((str(side[0]), str(side[1])))
    return tuple(out)


def _resolve_boundary(open_top: object, dirichlet_walls: object, boundary: object,
                      d: int) -> Boundary:
    """The boundary from either ``boundary`` or the shorthands (default: open top)."""
    if boundary is not None:
        if open_top is not None or dirichlet_walls is not None:
            raise ValueError("pass either boundary or the shorthands open_top / "
                             "dirichlet_walls, not both")
        return _parse_boundary(boundary, d)
    top = True if open_top is None else check_bool("open_top", open_top)
    walls = False if dirichlet_walls is None else check_bool("dirichlet_walls",
                                                             dirichlet_walls)
    if walls:
        return (("dirichlet", "dirichlet"),) * d
    last = ("neumann", "dirichlet" if top else "neumann")
    return (("neumann", "neumann"),) * (d - 1) + (last,)


class PoissonSystem:
    """A pressure Poisson system: cell types and conductivities on a grid, and its boundary.

    Args:
        cells: integer tensor ``(N0, N1)`` or ``(N0, N1, N2)`` of :class:`CellType`
            values, every side ``>= 2`` (stored as a CPU ``int8`` copy).
        open_top: shorthand: the domain faces on the high side of the last axis are
            Dirichlet (``p = 0``, air above), the other sides Neumann walls (the
            default when neither ``boundary`` nor ``dirichlet_walls`` is given).
        dirichlet_walls: shorthand: every domain face is Dirichlet (overrides
            ``open_top``).
        boundary: per side, instead of the shorthands: ``"neumann"`` or ``"dirichlet"``
            for every side, or one entry per axis, each a side kind for both ends or a
            ``(low, high)`` pair, e.g. ``[("neumann", "neumann"), ("dirichlet",
            "neumann")]`` (2D: walls at both ends of axis 0, open at the low end of
            axis 1). Stored as ``d`` ``(low, high)`` pairs.
        coefficients: optional cell conductivities ``k``, a real tensor of the grid's
            shape, finite and ``> 0`` on the FLUID cells (other cells are ignored);
            stored as a CPU float64 copy, 0 off the fluid. ``None``: ``k = 1``. Face
            conductances are the harmonic mean between fluid cells and the fluid cell's
            value towards AIR cells and Dirichlet faces (see the module docstring).

    AIR cells are Dirichlet (``p = 0``) and SOLID cells Neumann wherever they are. A
    system is immutable; :meth:`with_coefficients` and :meth:`sealed` build new ones.

    Raises:
        TypeError: ``cells`` is not an integer tensor; a shorthand is not a bool;
            ``coefficients`` is not a real floating tensor; ``boundary`` is not a str or
            a sequence.
        ValueError: ``d`` not 2 or 3, a side ``< 2``, values outside
            :class:`CellType`, no FLUID cell, a bad ``boundary`` entry, ``boundary``
            together with a shorthand, ``coefficients`` of another shape or not finite
            and positive on the fluid cells.
    """

    cells: Tensor
    boundary: Boundary
    coefficients: Tensor | None

    def __init__(self, cells: Tensor, open_top: bool | None = None,
                 dirichlet_walls: bool | None = None, *,
                 boundary: str | Sequence[str | tuple[str, str]] | None = None,
                 coefficients: Tensor | None = None) -> None:
        c = check_tensor("cells", as_tensor(cells, integers=True))
        if c.dtype not in _INT_DTYPES:
            raise TypeError(f"cells must be an integer tensor of CellType values, got dtype "
                            f"{c.dtype}; use cells.to(torch.int8)")
        if c.ndim not in (2, 3):
            raise ValueError(f"cells must be a 2D (N0, N1) or 3D (N0, N1, N2) grid "
                             f"(d in {{2, 3}}), got shape {tuple(c.shape)}")
        if min(c.shape) < 2:
            raise ValueError(f"the grid needs >= 2 cells per side (N >= 2), got shape "
                             f"{tuple(c.shape)}")
        c = c.detach().to("cpu", torch.int64)
        bad = torch.unique(c[(c < 0) | (c > 2)])
        if bad.numel():
            raise ValueError(f"cells holds values {bad[:10].tolist()} outside CellType "
                             f"(FLUID=0, SOLID=1, AIR=2); map them to one of these")
        if not bool((c == FLUID).any()):
            raise ValueError("cells has no FLUID cell, so the system has no unknowns; mark "
                             "the cells whose pressure you want with CellType.FLUID")
        bnd = _resolve_boundary(open_top, dirichlet_walls, boundary, c.ndim)
        k = None
        if coefficients is not None:
            k = check_tensor("coefficients", as_tensor(coefficients), real=True)
            if tuple(k.shape) != tuple(c.shape):
                raise ValueError(f"coefficients has shape {tuple(k.shape)} but cells is "
                                 f"{tuple(c.shape)}; give one conductivity per cell")
            k = k.detach().to("cpu", torch.float64)
            fluid = c == FLUID
            kf = k[fluid]
            if not bool(torch.isfinite(kf).all()):
                raise ValueError(f"coefficients holds {int((~torch.isfinite(kf)).sum())} "
                                 f"non-finite value(s) (NaN or Inf) on FLUID cells; every "
                                 f"fluid cell needs a finite conductivity > 0")
            if not bool((kf > 0).all()):
                raise ValueError(f"coefficients must be > 0 on the FLUID cells, got "
                                 f"{int((kf <= 0).sum())} value(s) <= 0 (smallest "
                                 f"{float(kf.min()):.3g}); a blocked cell is SOLID, not k = 0")
            k = torch.where(fluid, k, 0.0).contiguous()
        set_ = object.__setattr__
        set_(self, "cells", c.to(torch.int8).contiguous())
        set_(self, "boundary", bnd)
        set_(self, "coefficients", k)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PoissonSystem is immutable (cannot set {name}); build a new "
                             f"one, e.g. with with_coefficients() or sealed()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"PoissonSystem is immutable (cannot delete {name})")

    def __getstate__(self) -> dict:
        # the defining data only: caches (possibly on a GPU) are rebuilt on demand
        return {"cells": self.cells, "boundary": self.boundary,
                "coefficients": self.coefficients}

    def __setstate__(self, state: dict) -> None:
        for key in ("cells", "boundary", "coefficients"):
            object.__setattr__(self, key, state[key])

    def __repr__(self) -> str:
        k = "None" if self.coefficients is None else (
            f"[{float(self.coefficients[self.fluid_mask].min()):.3g}, "
            f"{float(self.coefficients.max()):.3g}]")
        return (f"PoissonSystem(shape={self.shape}, n_fluid={self.n_fluid}, "
                f"boundary={self.boundary}, coefficients={k})")

    def with_coefficients(self, coefficients: Tensor | None) -> PoissonSystem:
        """The same cells and boundary with other cell conductivities (``None``: 1)."""
        return PoissonSystem(self.cells, boundary=self.boundary, coefficients=coefficients)

    # ------------------------------------------------------------------ sizes, layout

    @property
    def open_top(self) -> bool:
        """True when the high side of the last axis is Dirichlet (read-only)."""
        return self.boundary[-1][1] == "dirichlet"

    @property
    def dirichlet_walls(self) -> bool:
        """True when every side of the domain is Dirichlet (read-only)."""
        return all(k == "dirichlet" for side in self.boundary for k in side)

    @property
    def ndim(self) -> int:
        """``d``, the grid dimension (2 or 3)."""
        return self.cells.ndim

    @property
    def N(self) -> int:
        """Cells per side of a square / cubic grid.

        Raises:
            ValueError: the sides differ; use :attr:`shape`.
        """
        if len(set(self.shape)) != 1:
            raise ValueError(f"N is defined for grids with equal sides only; this grid is "
                             f"{self.shape}: use system.shape")
        return self.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid shape ``(N0, N1[, N2])``."""
        return tuple(self.cells.shape)

    @property
    def n(self) -> int:
        """Length of a full-grid vector, the number of cells."""
        return self.cells.numel()

    @cached_property
    def fluid_mask(self) -> Tensor:
        """Bool, the grid's shape, True on FLUID cells (CPU)."""
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
        x = check_tensor("x", as_tensor(x, integers=True), min_ndim=1)
        if x.shape[-1] != self.n:
            raise ValueError(f"x has shape {tuple(x.shape)}; its last dimension must be the "
                             f"full grid n = {self.n} (reshape grid input to (..., n))")
        return x.index_select(-1, self._index(x.device))

    def from_fluid(self, xf: Tensor) -> Tensor:
        """Scatter fluid entries onto the full grid: ``(..., n_fluid)`` -> ``(..., n)``,
        zero on the non-fluid cells."""
        xf = check_tensor("xf", as_tensor(xf, integers=True), min_ndim=1)
        if xf.shape[-1] != self.n_fluid:
            raise ValueError(f"xf has shape {tuple(xf.shape)}; its last dimension must be "
                             f"n_fluid = {self.n_fluid}")
        out = xf.new_zeros(*xf.shape[:-1], self.n)
        return out.index_copy(-1, self._index(xf.device), xf)

    # ------------------------------------------------------------------ faces, stencil

    def _sides(self, axis: int) -> tuple[Tensor, Tensor]:
        """Cell types on the low and high side of each face normal to ``axis``
        (``shape[axis] + 1`` faces along it). Domain faces see a ghost cell: AIR if
        Dirichlet, SOLID if a Neumann wall (a wall and an obstacle act alike)."""
        c = self.cells
        ghost = list(c.shape)
        ghost[axis] = 1
        kind = {"neumann": SOLID, "dirichlet": AIR}
        low, high = self.boundary[axis]
        ext = torch.cat([c.new_full(ghost, kind[low]), c, c.new_full(ghost, kind[high])],
                        dim=axis)
        m = self.shape[axis] + 1
        return ext.narrow(axis, 0, m), ext.narrow(axis, 1, m)

    @cached_property
    def _conductances(self) -> tuple[Tensor, ...]:
        """Per axis, the float64 conductance of each face normal to it (``shape[a] + 1``
        along ``a``): 1, or the harmonic mean of the two fluid cells' coefficients, or the
        fluid cell's coefficient towards AIR / a Dirichlet face; 0 where no flow passes."""
        out = []
        for a in range(self.ndim):
            lo, hi = self._sides(a)
            flo, fhi = lo == FLUID, hi == FLUID
            if self.coefficients is None:
                out.append(((lo != SOLID) & (hi != SOLID) & (flo | fhi)).double())
                continue
            k = self.coefficients
            zero = k.new_zeros([1 if b == a else s for b, s in enumerate(self.shape)])
            ext = torch.cat([zero, k, zero], dim=a)
            klo, khi = ext.narrow(a, 0, self.shape[a] + 1), ext.narrow(a, 1, self.shape[a] + 1)
            both = flo & fhi
            # k_lo * (2 k_hi / (k_lo + k_hi)): the harmonic mean without overflow
            mean = klo * (2.0 * khi / torch.where(both, klo + khi, 1.0))
            g = torch.where(both, mean, 0.0)
            g = torch.where(flo & (hi == AIR), klo, g)
            g = torch.where((lo == AIR) & fhi, khi, g)
            out.append(g)
        return tuple(out)

    @cached_property
    def _open_faces(self) -> tuple[Tensor, ...]:
        """Per axis, bool faces that carry flow: no SOLID side and at least one FLUID side."""
        return tuple(g > 0 for g in self._conductances)

    def face_conductances(self, dtype: torch.dtype = torch.float64,
                          device: torch.device | str | None = None) -> tuple[Tensor, ...]:
        """The conductance ``g`` of every cell face: per axis ``a`` a tensor of the grid's
        shape with ``shape[a] + 1`` along ``a`` (face ``k`` lies between cells ``k - 1``
        and ``k``), 0 on faces that carry no flow. ``A p = -divergence(g * gradient(p))``
        (see :func:`gradient`, :func:`divergence`)."""
        dev = _canonical(device)
        return tuple(g.to(dev, _check_dtype(dtype), copy=True) for g in self._conductances)

    @cached_property
    def _stencil(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(diag, links)`` on the CPU in float64: ``diag`` of the grid's shape (0 off the
        fluid), the sum of the conductances of each fluid cell's open faces (to fluid
        neighbours, AIR cells and Dirichlet domain faces); ``links[a]`` the conductance
        between cells ``i`` and ``i + e_a`` (``shape[a] - 1`` along ``a``), 0 unless both
        are FLUID. Public form: :meth:`stencil`."""
        fluid = self.fluid_mask
        diag = torch.zeros(self.shape, dtype=torch.float64)
        links = []
        for a, g in enumerate(self._conductances):
            m = self.shape[a]
            diag += g.narrow(a, 0, m) + g.narrow(a, 1, m)
            both = fluid.narrow(a, 0, m - 1) & fluid.narrow(a, 1, m - 1)
            links.append(torch.where(both, g.narrow(a, 1, m - 1), 0.0))
        return diag * fluid, tuple(links)

    def stencil(self, dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """The stencil of ``A`` on ``device`` in ``dtype``: ``(fluid_mask, diag, links)``.

        * ``fluid_mask``: bool, the grid's shape, True on FLUID cells;
        * ``diag``: the grid's shape, ``A_ii`` (the sum of the conductances of cell
          ``i``'s open faces: to fluid neighbours, AIR cells and Dirichlet domain faces),
          0 off the fluid;
        * ``links``: one tensor per axis ``a``, the grid's shape but ``shape[a] - 1``
          along ``a``: the conductance ``-A_ij`` between cell ``i`` and ``i + e_a``, 0
          unless both are FLUID.

        So ``(A p)_i = diag_i p_i - sum_a (links_a[i] p_{i+e_a} + links_a[i-e_a]
        p_{i-e_a})`` on the fluid cells: the input of a geometric multigrid or your own
        stencil code. The tensors are fresh copies.
        """
        diag, links = self._stencil
        dtype, dev = _check_dtype(dtype), _canonical(device)
        return (self.fluid_mask.to(dev, copy=True), diag.to(dev, dtype, copy=True),
                tuple(lk.to(dev, dtype, copy=True) for lk in links))

    def operator(self, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> PoissonOperator:
        """The matrix-free stencil operator ``A`` (see :class:`PoissonOperator`)."""
        return PoissonOperator(self, dtype=dtype, device=device)

    def _csr_parts(self, reduced: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        d, shape = self.ndim, self.shape
        diag, links = self._stencil
        rows = self.fluid_index.numpy()
        strides = [math.prod(shape[a + 1:]) for a in range(d)]
        minus, plus = [], []
        for a, link in enumerate(links):
            m = shape[a]
            lnk = link.numpy()
            up = np.zeros(shape)  # cell i couples to i + e_a
            down = np.zeros(shape)  # cell i couples to i - e_a
            up[(slice(None),) * a + (slice(0, m - 1),)] = lnk
            down[(slice(None),) * a + (slice(1, m),)] = lnk
            plus.append((strides[a], up.reshape(-1)[rows]))
            minus.append((-strides[a], down.reshape(-1)[rows]))
        # columns ascending within a row: -stride_0, ..., -1, 0, +1, ..., +stride_0
        entries = [*minus, (0, diag.reshape(-1).numpy()[rows]), *plus[::-1]]
        offsets = np.array([o for o, _ in entries], dtype=np.int64)
        vals = np.stack([w if o == 0 else -w for o, w in entries], axis=1)
        valid = vals != 0
        valid[:, d] = True  # the diagonal is always stored
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
            anchored |= face.narrow(a, 0, self.shape[a]) | face.narrow(a, 1, self.shape[a])
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
        b = check_tensor("b", as_tensor(b), min_ndim=1, real=True)
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
                             "sealing leaves no fluid; open a side (boundary=...) or add "
                             "AIR cells")
        return PoissonSystem(cells.reshape(self.shape), boundary=self.boundary,
                             coefficients=self.coefficients)


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
        mask, diag, links = system.stencil(dtype, device)
        self.device = _canonical(device)
        self.dtype = dtype
        self.grid_shape = system.shape
        self.shape = (system.n, system.n)
        self._d = system.ndim
        self._mask = mask
        self._diag = diag
        self._links = links
        self._three: tuple | None = None  # numpy views for the fused CPU kernel

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
        """``A x`` for grid-shaped ``x`` ``(..., N0, N1[, N2])``; same shape out (a numpy
        ``x`` is converted to the operator's dtype and device)."""
        x = check_tensor("x", as_tensor(x, like=self._diag), min_ndim=self._d)
        if tuple(x.shape[x.ndim - self._d:]) != self.grid_shape:
            raise ValueError(f"x has shape {tuple(x.shape)}; grid_matvec needs "
                             f"(..., {', '.join(map(str, self.grid_shape))})")
        self._check(x)
        if self._fused_ok(x):
            return self._fused(x)
        x = torch.where(self._mask, x, 0)  # non-fluid entries are ignored, even NaN
        y = self._diag * x
        for a, link in enumerate(self._links):
            ax = x.ndim - self._d + a
            m = self.grid_shape[a]
            y.narrow(ax, 0, m - 1).sub_(link * x.narrow(ax, 1, m - 1))
            y.narrow(ax, 1, m - 1).sub_(link * x.narrow(ax, 0, m - 1))
        return y

    def _fused_ok(self, x: Tensor) -> bool:
        """The fused CPU kernel applies: CPU, float32/64, and no gradient to record."""
        return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                and not (torch.is_grad_enabled() and x.requires_grad)
                and _stencil_kernels.available())

    def _fused(self, x: Tensor) -> Tensor:
        """``A x`` in one pass over memory (numba); the same numbers as the torch path."""
        if self._three is None:
            three = (lambda t: t.contiguous().numpy()) if self._d == 3 else \
                (lambda t: t.contiguous().unsqueeze(0).numpy())
            links = [three(k) for k in self._links]
            if self._d == 2:
                links.insert(0, np.zeros((0, *self.grid_shape), dtype=links[0].dtype))
            self._three = (three(self._mask), three(self._diag), tuple(links))
        mask, diag, links = self._three
        lead = x.shape[: x.ndim - self._d]
        xs = x.reshape(-1, *diag.shape).contiguous()
        out = torch.empty_like(xs)
        _stencil_kernels.apply(out.numpy(), xs.numpy(), mask, diag, links)
        return out.reshape(*lead, *self.grid_shape)

    def matvec(self, x: Tensor) -> Tensor:
        """``A x`` for ``x`` ``(..., n)`` (batched over leading dimensions); a numpy ``x``
        is converted to the operator's dtype and device."""
        x = check_tensor("x", as_tensor(x, like=self._diag), min_ndim=1)
        if x.shape[-1] != self.shape[1]:
            raise ValueError(f"x has shape {tuple(x.shape)} but A is {self.shape}")
        lead = x.shape[:-1]
        return self.grid_matvec(x.reshape(*lead, *self.grid_shape)).reshape(*lead, -1)


# ---------------------------------------------------------------------------- faces, rhs


def _face_shape(system: PoissonSystem, a: int) -> tuple[int, ...]:
    return tuple(s + (b == a) for b, s in enumerate(system.shape))


def gradient(system: PoissonSystem, p: Tensor) -> tuple[Tensor, ...]:
    """The face gradient of ``p`` ``(..., n)``: per axis ``a``, ``(..., *face_a)`` with
    ``shape[a] + 1`` faces along ``a``; face ``k`` holds ``p_k - p_{k-1}``, with ``p = 0``
    in AIR cells and beyond Dirichlet faces, and 0 on faces that carry no flow (a SOLID
    side, a Neumann wall, or no FLUID side). Non-fluid entries of ``p`` are ignored.
    The flux is ``g * gradient(p)`` with ``g`` from
    :meth:`PoissonSystem.face_conductances` (``g = 1`` on open faces without
    coefficients)."""
    _require_system(system)
    p = check_tensor("p", as_tensor(p), min_ndim=1, real=True)
    if p.shape[-1] != system.n:
        raise ValueError(f"p has shape {tuple(p.shape)}; its last dimension must be "
                         f"n = {system.n}")
    lead = p.shape[:-1]
    pg = torch.where(system.fluid_mask.to(p.device), p.reshape(*lead, *system.shape), 0)
    out = []
    for a, face in enumerate(system._open_faces):
        ax = len(lead) + a
        m = system.shape[a] + 1
        zero = pg.new_zeros(*lead, *[1 if b == a else s for b, s in enumerate(system.shape)])
        ext = torch.cat([zero, pg, zero], dim=ax)
        grad = ext.narrow(ax, 1, m) - ext.narrow(ax, 0, m)
        out.append(grad * face.to(p.device))
    return tuple(out)


def divergence(system: PoissonSystem, u: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    """The divergence of face velocities ``u`` (as from :func:`gradient`), ``(..., n)``:
    ``sum_a u_a[k + 1] - u_a[k]`` on FLUID cells, 0 elsewhere. ``A p = -divergence(g *
    gradient(p))`` on the fluid cells, ``g`` the face conductances (1 without
    coefficients)."""
    _require_system(system)
    d = system.ndim
    if not isinstance(u, (tuple, list)) or len(u) != d:
        raise ValueError(f"u must be a tuple of {d} face tensors (one per axis)")
    lead = None
    div = None
    for a, ua in enumerate(as_tensors(*u)):  # numpy faces follow the first tensor
        ua = check_tensor(f"u[{a}]", ua, min_ndim=d, real=True)
        fs = _face_shape(system, a)
        if tuple(ua.shape[ua.ndim - d:]) != fs or (lead is not None and ua.shape[:-d] != lead):
            raise ValueError(f"u[{a}] has shape {tuple(ua.shape)}; faces normal to axis {a} "
                             f"are (..., {', '.join(map(str, fs))}) with the same leading dims")
        lead = ua.shape[:-d]
        ax = ua.ndim - d + a
        m = system.shape[a]
        term = ua.narrow(ax, 1, m) - ua.narrow(ax, 0, m)
        div = term if div is None else div + term
    div = torch.where(system.fluid_mask.to(div.device), div, 0)
    return div.reshape(*lead, system.n)


# the scenes and right-hand sides live in their own module (it imports this one)
from .poisson_scenes import (  # noqa: E402
    box_scene,
    divergence_rhs,
    fluid_proxy,
    layered_coefficients,
    random_coefficients,
    random_face_velocity,
    random_obstacles,
    random_rhs,
)
