"""Algebraic preconditioners as linear operators: Jacobi and smoothed-aggregation AMG.

Each approximates ``A^{-1}`` and is applied as ``M.matvec(r)``; each accepts inputs of
either float dtype and returns the input's dtype. Incomplete Cholesky lives in
:mod:`sciml.solvers.linear.ichol`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse
import torch

from .operators import SparseOperator, to_scipy_csr


class Jacobi:
    """Diagonal (Jacobi) preconditioner ``M = diag(A)^{-1}``.

    Built from a dense or sparse torch tensor, a scipy sparse matrix, a numpy array, or
    any operator with a ``diagonal()`` method. The inverse diagonal lives on ``A``'s
    device (CPU for scipy), in ``A``'s dtype (float64 for scipy and numpy).

    Args:
        A: the SPD matrix or operator.

    Raises:
        TypeError: ``A`` has no accessible diagonal.
        ValueError: a diagonal entry is not finite and positive (then ``M`` is not SPD).
    """

    def __init__(self, A: object) -> None:
        if isinstance(A, torch.Tensor):
            if A.ndim != 2 or A.shape[0] != A.shape[1]:
                raise ValueError(f"A must be a square (n, n) matrix, got shape "
                                 f"{tuple(A.shape)}")
            if A.layout is torch.strided:
                d = A.detach().diagonal()
            else:
                d = SparseOperator(A.detach().to_sparse_csr()).diagonal()
        elif scipy.sparse.issparse(A) or isinstance(A, np.ndarray):
            d = torch.from_numpy(np.asarray(to_scipy_csr(A).diagonal(), dtype=np.float64))
        elif hasattr(A, "diagonal") and callable(A.diagonal):
            d = A.diagonal()
            if not isinstance(d, torch.Tensor):
                d = torch.as_tensor(np.asarray(d, dtype=np.float64))
        else:
            raise TypeError(
                f"Jacobi needs the diagonal of A, but {type(A).__name__} has no diagonal(): "
                "pass a matrix, or give the operator a diagonal() method")
        if not d.is_floating_point():
            d = d.double()
        ok = torch.isfinite(d) & (d > 0)
        if not bool(ok.all()):
            i = int(torch.nonzero(~ok)[0])
            raise ValueError(f"A[{i}, {i}] = {float(d[i]):.3g}: Jacobi needs a finite positive "
                             "diagonal (an SPD matrix has one); check the sign convention "
                             "(assemble -Laplacian) and the boundary rows")
        self.inv_diag = 1.0 / d
        n = d.shape[0]
        self.shape = (n, n)
        self.dtype = d.dtype
        self.device = d.device
        self._cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        inv = self._cache.get(key)
        if inv is None:
            inv = self._cache[key] = self.inv_diag.to(dtype=x.dtype, device=x.device)
        return x * inv

    def diagonal(self) -> torch.Tensor:
        return self.inv_diag

    def __repr__(self) -> str:
        return f"Jacobi(n={self.shape[0]}, dtype={self.dtype}, device={self.device})"


class PyAMGPreconditioner:
    """One smoothed-aggregation AMG cycle from pyamg as the preconditioner.

    ``pyamg.smoothed_aggregation_solver(A, **kwargs).aspreconditioner(cycle=cycle)``: for
    SPD ``A`` the default symmetric Gauss-Seidel smoothing makes the cycle an SPD
    operator, so plain CG applies. The cycle runs in float64 on the host, one right-hand
    side at a time; ``matvec`` returns the input's dtype and device. Reference: P. Vanek,
    J. Mandel, M. Brezina, "Algebraic multigrid by smoothed aggregation for second and
    fourth order elliptic problems", Computing 56 (1996).

    Args:
        A: the SPD matrix (scipy sparse, torch sparse or dense tensor, numpy array).
        cycle: ``"V"``, ``"W"``, ``"F"`` or ``"AMLI"``.
        **kwargs: passed unchanged to ``pyamg.smoothed_aggregation_solver`` (e.g.
            ``strength``, ``smooth``, ``max_coarse``); see pyamg's documentation.

    Attributes:
        setup_seconds: wall time of the AMG setup.
        ml: the pyamg multilevel solver (levels, operator complexity, ...).

    Raises:
        ImportError: pyamg is not installed.
    """

    def __init__(self, A: object, *, cycle: str = "V", **kwargs: Any) -> None:
        try:
            import pyamg
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PyAMGPreconditioner needs pyamg: pip install pyamg (or the bench extra: "
                "pip install 'sciml[bench]')") from err
        if cycle not in ("V", "W", "F", "AMLI"):
            raise ValueError(f"cycle must be one of 'V', 'W', 'F', 'AMLI', got {cycle!r}")
        S = to_scipy_csr(A)
        t0 = time.perf_counter()
        self.ml = pyamg.smoothed_aggregation_solver(S, **kwargs)
        self._M = self.ml.aspreconditioner(cycle=cycle)
        self.setup_seconds = time.perf_counter() - t0
        n = S.shape[0]
        self.shape = (n, n)
        self.dtype = torch.float64
        self.device = torch.device("cpu")

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        n = self.shape[0]
        flat = x.detach().reshape(-1, n).to(device="cpu", dtype=torch.float64).numpy()
        z = np.stack([np.asarray(self._M.matvec(row)).reshape(n) for row in flat])
        return torch.from_numpy(z).to(x.device, x.dtype).reshape(x.shape)

    def __repr__(self) -> str:
        return (f"PyAMGPreconditioner(n={self.shape[0]}, levels={len(self.ml.levels)}, "
                f"setup_seconds={self.setup_seconds:.3g})")

