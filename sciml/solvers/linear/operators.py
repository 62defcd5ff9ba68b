"""The ``LinearOperator`` protocol and the adapters that bring matrices to it.

Anything with ``shape`` ``(n, n)``, ``dtype``, ``device`` and ``matvec(x)`` mapping
``(..., n)`` to ``(..., n)`` (batched over the leading dimensions) is a linear operator:
the system matrix ``A`` and the preconditioner ``M`` (which approximates ``A^{-1}``) of
every solver here follow it, whether dense, sparse, matrix-free, algebraic or learned.
:func:`aslinearoperator` adapts dense and sparse torch tensors, scipy sparse matrices and
callables at the boundary.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse
import torch

from ..._validation import check_int

_DTYPES = (torch.float32, torch.float64)


@runtime_checkable
class LinearOperator(Protocol):
    """A square linear map applied to batches of vectors.

    ``matvec(x)`` takes ``x`` of shape ``(..., n)`` and returns ``A x`` of the same shape
    and dtype, on ``x``'s device; it must not modify ``x``.
    """

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def matvec(self, x: torch.Tensor) -> torch.Tensor: ...


def _check_matrix(name: str, A: object) -> None:
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(A).__name__}; convert it "
                        f"with torch.as_tensor({name}) or use aslinearoperator({name})")
    if A.ndim != 2:
        raise ValueError(f"{name} must be a matrix (n, n), got shape {tuple(A.shape)}")


class DenseOperator:
    """A dense ``(n, n)`` tensor as an operator: ``matvec(x) = x @ A^T``."""

    def __init__(self, A: torch.Tensor) -> None:
        _check_matrix("A", A)
        self.A = A
        self.shape = (int(A.shape[0]), int(A.shape[1]))
        self.dtype = A.dtype
        self.device = A.device

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.A.mT)

    def diagonal(self) -> torch.Tensor:
        return self.A.diagonal()

    def __repr__(self) -> str:
        return f"DenseOperator(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class SparseOperator:
    """A torch sparse CSR ``(n, n)`` tensor as an operator (batched by one sparse-dense
    product ``A @ X^T`` per call)."""

    def __init__(self, A: torch.Tensor) -> None:
        if not isinstance(A, torch.Tensor):
            raise TypeError(f"A must be a sparse CSR torch.Tensor, got {type(A).__name__}; "
                            "use torch.as_tensor(A).to_sparse_csr() or aslinearoperator(A)")
        if A.layout is not torch.sparse_csr:
            raise ValueError(f"SparseOperator needs a sparse CSR tensor, got layout {A.layout}; "
                             "use A.to_sparse_csr()")
        self.A = A
        self.shape = (int(A.shape[0]), int(A.shape[1]))
        self.dtype = A.dtype
        self.device = A.device

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        n = self.shape[1]
        flat = x.reshape(-1, n)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            if flat.shape[0] == 1:
                # one system: a sparse matrix-vector product, about 3x faster on the CPU
                # than the sparse-dense product with a (n, 1) strided right-hand side
                return torch.mv(self.A, flat[0]).reshape(x.shape)
            y = torch.matmul(self.A, flat.mT)
        return y.mT.reshape(x.shape)

    def diagonal(self) -> torch.Tensor:
        crow, col = self.A.crow_indices(), self.A.col_indices()
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.device),
                                       crow.diff())
        on = rows == col
        d = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        return d.index_add_(0, rows[on], self.A.values()[on])

    def to_scipy(self) -> scipy.sparse.csr_array:
        """The matrix as a float64 scipy CSR array (on the host)."""
        return scipy.sparse.csr_array(
            (self.A.values().detach().cpu().double().numpy(),
             self.A.col_indices().cpu().numpy(), self.A.crow_indices().cpu().numpy()),
            shape=self.shape)

    def __repr__(self) -> str:
        return (f"SparseOperator(shape={self.shape}, nnz={self.A.values().numel()}, "
                f"dtype={self.dtype}, device={self.device})")


class CallableOperator:
    """A function ``f(x)`` mapping ``(..., n)`` to ``(..., n)`` as an operator (matrix-free)."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int],
                 dtype: torch.dtype, device: torch.device | str = "cpu") -> None:
        if not callable(f):
            raise TypeError(f"f must be callable as f(x) -> A x, got {type(f).__name__}")
        if isinstance(shape, torch.Tensor) or not isinstance(shape, (tuple, list)) or \
                len(shape) != 2:
            raise TypeError(f"shape must be a pair (n, n), got {shape!r}")
        rows, cols = (check_int(f"shape[{i}]", v, minimum=1) for i, v in enumerate(shape))
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        self.f = f
        self.shape = (rows, cols)
        self.dtype = dtype
        self.device = torch.device(device)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)

    def __repr__(self) -> str:
        return f"CallableOperator({self.f!r}, shape={self.shape}, dtype={self.dtype})"


class IdentityOperator:
    """The identity ``I_n`` (the "no preconditioner" preconditioner); ``matvec`` returns
    ``x`` itself, not a copy."""

    def __init__(self, n: int, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.shape = (n, n)
        self.dtype = dtype
        self.device = torch.device(device)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def diagonal(self) -> torch.Tensor:
        return torch.ones(self.shape[0], dtype=self.dtype, device=self.device)

    def __repr__(self) -> str:
        return f"IdentityOperator({self.shape[0]}, dtype={self.dtype})"


def is_operator(A: object) -> bool:
    """True when ``A`` already follows the :class:`LinearOperator` protocol."""
    return not isinstance(A, torch.Tensor) and isinstance(A, LinearOperator)


def _check_square(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {tuple(shape)}")


def _float_dtype(name: str, dtype: torch.dtype) -> None:
    if dtype not in _DTYPES:
        raise TypeError(f"{name} has dtype {dtype}; the linear solvers take float32 or float64: "
                        f"pass dtype=torch.float64 (or convert {name} with .double())")


def scipy_to_torch_csr(A: object, dtype: torch.dtype = torch.float64,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy sparse matrix as a torch sparse CSR tensor of ``dtype`` on ``device``."""
    csr = scipy.sparse.csr_array(A)
    csr.sum_duplicates()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(csr.data, dtype=np.float64)).to(dtype),
            size=csr.shape).to(device)


def aslinearoperator(
    A: object,
    *,
    shape: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LinearOperator:
    """Adapt ``A`` to the :class:`LinearOperator` protocol.

    Equivalent in purpose to ``scipy.sparse.linalg.aslinearoperator``.

    Args:
        A: a dense torch tensor ``(n, n)``; a torch sparse tensor (CSR, or COO/CSC which is
            converted to CSR); a scipy sparse matrix or a numpy array (converted to torch, of
            ``dtype``, float64 by default); an object already following the protocol
            (returned as is); or a callable ``f(x)`` mapping ``(..., n)`` to ``(..., n)``,
            which needs ``shape`` and ``dtype``.
        shape: ``(n, n)``, only for a callable.
        dtype: float32 or float64; torch tensors are converted to it, scipy matrices built
            in it. ``None`` keeps a tensor's dtype.
        device: where a tensor or scipy matrix is placed; ``None`` keeps a tensor's device
            (CPU for scipy).

    Raises:
        ValueError: ``A`` is not square.
        TypeError: ``A`` is of an unsupported kind or dtype, or a callable lacks
            ``shape``/``dtype``, or an operator's dtype differs from ``dtype``.
    """
    if dtype is not None:
        _float_dtype("dtype", dtype)
    if isinstance(A, torch.Tensor):
        _check_square("A", tuple(A.shape))
        if dtype is None:
            _float_dtype("A", A.dtype)
        A = A.to(dtype=dtype or A.dtype, device=device if device is not None else A.device)
        if A.layout is torch.strided:
            return DenseOperator(A)
        if A.layout is not torch.sparse_csr:
            A = A.to_sparse_csr()
        return SparseOperator(A)
    if scipy.sparse.issparse(A):
        _check_square("A", A.shape)
        return SparseOperator(scipy_to_torch_csr(A, dtype or torch.float64, device or "cpu"))
    if isinstance(A, np.ndarray):
        _check_square("A", A.shape)
        return DenseOperator(torch.as_tensor(A, dtype=dtype or torch.float64,
                                             device=device or "cpu"))
    if is_operator(A):
        _check_square("A", tuple(A.shape))
        _float_dtype("A", A.dtype)
        if dtype is not None and A.dtype != dtype:
            raise TypeError(f"the operator A has dtype {A.dtype} but dtype={dtype} was asked; "
                            "an operator cannot be converted: build it in that dtype")
        return A
    if callable(A):
        if shape is None or dtype is None:
            raise TypeError(
                "a callable A needs its shape and dtype: aslinearoperator(f, shape=(n, n), "
                "dtype=torch.float64); f must map (..., n) to (..., n)")
        _check_square("A", tuple(shape))
        return CallableOperator(A, shape, dtype, device if device is not None else "cpu")
    raise TypeError(
        f"cannot use an object of type {type(A).__name__} as a linear operator: pass a torch "
        "tensor, a scipy sparse matrix, a callable with shape=/dtype=, or an object with "
        "shape, dtype, device and matvec(x)")


def to_scipy_csr(A: object, name: str = "A") -> scipy.sparse.csr_array:
    """An explicit matrix (scipy sparse, numpy, dense or sparse torch, or a
    :class:`DenseOperator`/:class:`SparseOperator`) as a canonical float64 scipy CSR array."""
    if isinstance(A, (DenseOperator, SparseOperator)):
        A = A.A
    if isinstance(A, torch.Tensor):
        _check_square(name, tuple(A.shape))
        if A.layout is torch.strided:
            A = A.detach().cpu().double().numpy()
        else:
            A = SparseOperator(A.detach().to_sparse_csr()).to_scipy()
    if isinstance(A, np.ndarray) or scipy.sparse.issparse(A):
        _check_square(name, A.shape)
        csr = scipy.sparse.csr_array(A, dtype=np.float64)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        csr.sort_indices()
        return csr
    raise TypeError(f"{name} must be an explicit matrix (scipy sparse, numpy array, or dense or "
                    f"sparse torch tensor), got {type(A).__name__}; a matrix-free operator has "
                    "no entries to factor")
