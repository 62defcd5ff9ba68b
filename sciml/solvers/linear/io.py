"""Reading a linear system ``A x = b`` from files: your own matrix, scene and vectors.

Three matrix files are understood, told apart by their suffix and contents:

* a Matrix Market ``.mtx`` file (as ``scipy.io.mmwrite`` writes it, or as downloaded from
  the SuiteSparse collection);
* an ``.npz`` file written by ``scipy.sparse.save_npz`` (any sparse format);
* an ``.npz`` Poisson scene: an integer array ``cells`` of
  :class:`~sciml.pdes.CellType` values on a 2D or 3D grid, an optional real array
  ``coefficients`` of the same shape (cell conductivities) and an optional string array
  ``boundary`` of shape ``(d, 2)`` (``"neumann"`` / ``"dirichlet"`` for the low and high
  side of each axis; without it the :class:`~sciml.pdes.PoissonSystem` default, a
  Neumann box open at the top). :func:`save_scene` writes one.

Vectors (a right-hand side, an initial guess) are ``.npy`` (``numpy.save``) or ``.txt``
(one number a line, ``numpy.savetxt``) files.

Everything is read as float64; the solvers convert to the dtype and device you choose.

Example:
    >>> from sciml.solvers.linear import cg, load_system, load_vector  # doctest: +SKIP
    >>> system = load_system("laplace.mtx")  # doctest: +SKIP
    >>> sol = cg(system.matrix, load_vector("b.npy"), rtol=1e-8)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from ...pdes import PoissonSystem

__all__ = ["LoadedSystem", "load_matrix", "load_scene", "load_system", "load_vector",
           "save_scene"]

_MATRIX_HELP = ("pass a Matrix Market .mtx file (scipy.io.mmwrite), a scipy.sparse.save_npz "
                ".npz file or a Poisson scene .npz (arrays 'cells' and optional "
                "'coefficients')")


@dataclass(frozen=True)
class LoadedSystem:
    """A linear system's matrix read from a file, with its Poisson scene if it was one.

    Attributes:
        matrix: ``A`` as a float64 ``scipy.sparse.csr_matrix``, square. For a scene it is
            the matrix on the fluid cells only (:meth:`~sciml.pdes.PoissonSystem.csr`,
            ``n_fluid`` unknowns); the scene's own operator works on the full grid.
        scene: the :class:`~sciml.pdes.PoissonSystem` of a scene file (it carries the grid
            that geometric and learned multigrid need), else ``None``.
        path: the file it was read from.
    """

    matrix: sp.csr_matrix
    scene: PoissonSystem | None
    path: Path

    @property
    def kind(self) -> str:
        """``"scene"`` for a Poisson scene file, ``"matrix"`` otherwise."""
        return "matrix" if self.scene is None else "scene"


def _as_path(name: str, path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    return Path(path)


def _existing(name: str, path: object, fix: str) -> Path:
    p = _as_path(name, path)
    if not p.is_file():
        raise FileNotFoundError(f"{name} {p} does not exist or is not a file; {fix}")
    return p


def _npz_error(path: Path, e: Exception) -> ValueError:
    return ValueError(f"cannot read NPZ file {path}: {e}; write it with "
                      "scipy.sparse.save_npz, numpy.savez or save_scene")


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` that the NPZ file ``path`` holds; only those are loaded."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k in keys}
    except (OSError, ValueError, EOFError) as e:  # not a zip, truncated, or pickled arrays
        raise _npz_error(path, e) from None


def _npz_kind(path: Path) -> str:
    """``"scene"`` or ``"sparse"``: what the NPZ file ``path`` holds, from its array names."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
    except (OSError, ValueError, EOFError) as e:
        raise _npz_error(path, e) from None
    if "cells" in names:
        return "scene"
    if "format" in names:
        return "sparse"
    raise ValueError(f"{path} holds arrays {sorted(names)}: neither a sparse matrix (write "
                     "it with scipy.sparse.save_npz) nor a Poisson scene (arrays 'cells' "
                     "and optional 'coefficients')")


def _check_matrix(path: Path, A: sp.spmatrix, symmetric: bool) -> sp.csr_matrix:
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"matrix {path} is {A.shape[0]}x{A.shape[1]}, not square; a linear "
                         "system A x = b with one solution needs a square matrix")
    A = sp.csr_matrix(A)
    if not np.issubdtype(A.dtype, np.number) or np.iscomplexobj(A.data):
        raise ValueError(f"matrix {path} has dtype {A.dtype}; pass a real matrix")
    A = A.astype(np.float64)
    if not np.all(np.isfinite(A.data)):
        raise ValueError(f"matrix {path} has {int((~np.isfinite(A.data)).sum())} NaN or Inf "
                         "entries; fix the matrix")
    A.sum_duplicates()
    if symmetric and A.nnz:
        asym = abs(A - A.T).max()
        if asym > 1e-12 * abs(A).max():
            raise ValueError(
                f"matrix {path} is not symmetric (max |A - A^T| = {asym:.3g}); conjugate "
                "gradients need a symmetric positive definite matrix. For a general one use "
                "scipy.sparse.linalg.gmres, or pass symmetric=False to only read it")
    return A


def load_matrix(path: str | os.PathLike, *, symmetric: bool = True) -> sp.csr_matrix:
    """Read a square sparse matrix from a Matrix Market or ``scipy.sparse.save_npz`` file.

    Equivalent to ``scipy.io.mmread`` / ``scipy.sparse.load_npz`` followed by
    ``.tocsr().astype(float64)``, with the checks a solver needs.

    Args:
        path: a ``.mtx`` file or a ``.npz`` file written by ``scipy.sparse.save_npz``.
        symmetric: check that ``A`` is symmetric (to ``1e-12`` of its largest entry), as
            conjugate gradients need; ``False`` reads any square real matrix.

    Returns:
        ``A`` as a float64 ``scipy.sparse.csr_matrix`` (duplicate entries summed).

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: no file at ``path``.
        ValueError: an unknown suffix, an unreadable file, a Poisson scene (use
            :func:`load_scene` or :func:`load_system`), a non-square, complex or
            non-finite matrix, or (``symmetric``) a non-symmetric one.
    """
    import scipy.io

    p = _existing("matrix", path, _MATRIX_HELP)
    suffix = p.suffix.lower()
    if suffix == ".mtx":
        try:
            A = scipy.io.mmread(str(p))
        except Exception as e:  # scipy raises many kinds of errors on a malformed file
            raise ValueError(f"cannot read Matrix Market file {p}: {e}; write it with "
                             "scipy.io.mmwrite") from None
        if not sp.issparse(A):  # an 'array' (dense) Matrix Market file
            A = np.asarray(A)
            if A.ndim != 2:
                raise ValueError(f"matrix {p} holds an array of shape {A.shape}, not a "
                                 "matrix; write a 2D matrix with scipy.io.mmwrite")
            A = sp.csr_matrix(A)
    elif suffix == ".npz":
        if _npz_kind(p) == "scene":
            raise ValueError(f"{p} is a Poisson scene (it has a 'cells' array), not a sparse "
                             "matrix; read it with load_scene or load_system")
        try:
            A = sp.load_npz(p)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot read sparse matrix {p}: {e}; write it with "
                             "scipy.sparse.save_npz") from None
    else:
        raise ValueError(f"unknown matrix format {suffix or '(no suffix)'} of {p}: "
                         f"{_MATRIX_HELP}")
    return _check_matrix(p, A, symmetric)


def _scene_from_arrays(path: Path, arrays: dict[str, np.ndarray]) -> PoissonSystem:
    import torch

    from ...pdes import PoissonSystem

    cells = arrays["cells"]
    if cells.dtype.kind not in "iub":
        raise ValueError(f"scene {path}: 'cells' must be an integer array of CellType values "
                         f"(0 fluid, 1 solid, 2 air), got dtype {cells.dtype}; save it as "
                         "an integer array, e.g. cells.astype(numpy.int8)")
    coeff = None
    if "coefficients" in arrays:
        c = arrays["coefficients"]
        if c.dtype.kind not in "iuf":
            raise ValueError(f"scene {path}: 'coefficients' must be a real array, got dtype "
                             f"{c.dtype}; save one real conductivity per cell")
        coeff = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float64))
    boundary = None
    if "boundary" in arrays:
        b = arrays["boundary"]
        if b.dtype.kind != "U" or b.ndim != 2 or b.shape != (cells.ndim, 2):
            raise ValueError(f"scene {path}: 'boundary' must be a string array of shape "
                             f"({cells.ndim}, 2) ('neumann' or 'dirichlet' for the low and "
                             f"high side of each axis), got dtype {b.dtype} shape {b.shape}")
        boundary = [(str(lo), str(hi)) for lo, hi in b]
    try:
        return PoissonSystem(torch.from_numpy(np.ascontiguousarray(cells, dtype=np.int64)),
                             boundary=boundary, coefficients=coeff)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scene {path}: {e}") from None


def load_scene(path: str | os.PathLike) -> PoissonSystem:
    """Read a Poisson scene file (cells, optional coefficients and boundary).

    Args:
        path: an ``.npz`` file with an integer array ``cells`` (``(N0, N1)`` or
            ``(N0, N1, N2)``, :class:`~sciml.pdes.CellType` values), optionally a real
            array ``coefficients`` of the same shape and a string array ``boundary`` of
            shape ``(d, 2)``, as :func:`save_scene` or ``numpy.savez`` writes them.

    Returns:
        The :class:`~sciml.pdes.PoissonSystem` (default boundary when the file has none:
        Neumann walls, open top).

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: no file at ``path``.
        ValueError: not an ``.npz`` file, no ``cells`` array, or arrays that do not make a
            valid :class:`~sciml.pdes.PoissonSystem` (the message says which and why).
    """
    p = _existing("scene", path, "pass an .npz file with a 'cells' array (save_scene)")
    if p.suffix.lower() != ".npz":
        raise ValueError(f"scene {p} must be an .npz file (numpy.savez or save_scene), got "
                         f"suffix {p.suffix or '(none)'}")
    arrays = _read_npz(p, ("cells", "coefficients", "boundary"))
    if "cells" not in arrays:
        raise ValueError(f"scene {p} has no array 'cells'; a scene "
                         "needs an integer array 'cells' (optional 'coefficients', "
                         "'boundary'); a sparse matrix is read by load_matrix")
    return _scene_from_arrays(p, arrays)


def save_scene(path: str | os.PathLike, system: PoissonSystem) -> Path:
    """Write a Poisson scene file that :func:`load_scene` reads back into an equal system.

    Args:
        path: destination, an ``.npz`` file (written whole or not at all).
        system: the :class:`~sciml.pdes.PoissonSystem`; its cells (``int8``), its
            coefficients (float64, when it has them) and its boundary are written.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``, or ``system`` is not a
            :class:`~sciml.pdes.PoissonSystem`.
        ValueError: ``path`` does not end in ``.npz``.
    """
    from ..._files import atomic_write
    from ...pdes import PoissonSystem

    p = _as_path("path", path)
    if not isinstance(system, PoissonSystem):
        raise TypeError(f"system must be a sciml.pdes.PoissonSystem, got "
                        f"{type(system).__name__}")
    if p.suffix.lower() != ".npz":
        raise ValueError(f"path {p} must end in .npz (numpy.savez writes the scene); pass "
                         "e.g. scene.npz")
    arrays = {"cells": system.cells.numpy().astype(np.int8),
              "boundary": np.array(system.boundary, dtype=str)}
    if system.coefficients is not None:
        arrays["coefficients"] = system.coefficients.numpy().astype(np.float64)
    return atomic_write(p, lambda f: np.savez(f, **arrays))


def load_system(path: str | os.PathLike, *, symmetric: bool = True) -> LoadedSystem:
    """Read the matrix of ``A x = b`` from any file that :mod:`sciml.solvers.linear.io` reads.

    Args:
        path: a Matrix Market ``.mtx`` file, a ``scipy.sparse.save_npz`` ``.npz`` file, or
            a Poisson scene ``.npz`` (see :func:`load_scene`).
        symmetric: for a matrix file, check that it is symmetric (see
            :func:`load_matrix`); a scene's matrix always is.

    Returns:
        A :class:`LoadedSystem`: the float64 CSR matrix, and for a scene the
        :class:`~sciml.pdes.PoissonSystem` (``matrix`` is then its fluid-cell matrix).

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: no file at ``path``.
        ValueError: as :func:`load_matrix` and :func:`load_scene`.
    """
    p = _existing("matrix", path, _MATRIX_HELP)
    if p.suffix.lower() == ".npz" and _npz_kind(p) == "scene":
        scene = load_scene(p)
        return LoadedSystem(matrix=scene.csr(), scene=scene, path=p)
    return LoadedSystem(matrix=load_matrix(p, symmetric=symmetric), scene=None, path=p)


def load_vector(path: str | os.PathLike, *, name: str = "vector") -> np.ndarray:
    """Read one real vector (a right-hand side, an initial guess) as float64.

    Args:
        path: a ``.npy`` file (``numpy.save``; any shape with one non-singleton axis) or a
            ``.txt`` file (``numpy.savetxt``: one number a line, or one line of numbers).
        name: what the vector is, for error messages (e.g. ``"RHS"``).

    Returns:
        A 1D float64 numpy array.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: no file at ``path``.
        ValueError: an unknown suffix, an unreadable file, not one real vector, or NaN /
            Inf entries.
    """
    p = _existing(name, path, "pass a .npy (numpy.save) or .txt (numpy.savetxt) vector")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".txt"):
        raise ValueError(f"unknown {name} format {suffix or '(no suffix)'} of {p}: pass a "
                         ".npy (numpy.save) or .txt (one number a line) vector")
    try:
        if suffix == ".npy":
            v = np.load(p, allow_pickle=False)
        else:
            v = np.loadtxt(p, dtype=np.float64, ndmin=1)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read {name} {p}: {e}; write it with numpy.save or "
                         "numpy.savetxt") from None
    v = np.squeeze(np.asarray(v))
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise ValueError(f"{name} {p} must be one real vector, got shape {v.shape} dtype "
                         f"{v.dtype}")
    v = v.astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} {p} has {int((~np.isfinite(v)).sum())} NaN or Inf "
                         "entries; fix the vector")
    return v
