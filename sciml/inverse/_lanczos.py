"""Batched Lanczos with full reorthogonalisation, for the top eigenpairs of a symmetric
operator applied only through products (Golub & Van Loan, *Matrix Computations*, 4th
ed., Alg. 10.1.1 with complete reorthogonalisation, sec. 10.3.1).

The Ritz pairs come from the Rayleigh-Ritz projection ``T = Q^T A Q`` formed from the
stored products (equal to the Lanczos tridiagonal in exact arithmetic and robust when
a Krylov space is exhausted: a low-rank operator's space closes after ``rank + 1``
steps, and the iteration then continues with a fresh random direction orthogonal to
all previous ones).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _orthogonalise(w: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Remove from ``w (B, n)`` its components on the rows of ``Q (B, j, n)``, twice
    (classical Gram-Schmidt run twice is as accurate as modified Gram-Schmidt)."""
    for _ in range(2):
        w = w - torch.einsum("bj,bjn->bn", torch.einsum("bjn,bn->bj", Q, w), Q)
    return w


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    steps: int,
    *,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Ritz pairs of ``steps`` Lanczos steps on ``B`` independent symmetric operators.

    Args:
        matvec: ``(B, n) -> (B, n)``, row ``i`` the product with operator ``i``.
        n: the dimension; ``steps <= n``.
        steps: Krylov dimension.
        batch: ``B``.
        seed: the seed of the random start (and restart) vectors.

    Returns:
        ``theta (B, steps)`` in decreasing order and the orthonormal Ritz vectors
        ``V (B, n, steps)``.
    """
    g = torch.Generator().manual_seed(seed)

    def fresh() -> torch.Tensor:
        # drawn on the host (the same stream on every device); to a GPU through pinned
        # memory, so the copy does not block the host
        v = torch.randn(batch, n, generator=g, dtype=torch.float64)
        if torch.device(device).type == "cuda":
            v = v.pin_memory()
        return v.to(device=device, non_blocking=True).to(dtype)  # cast on the device

    Q = torch.zeros(batch, steps, n, dtype=dtype, device=device)
    AQ = torch.zeros_like(Q)
    q = fresh()
    q = q / q.norm(dim=-1, keepdim=True)
    eps = torch.finfo(dtype).eps
    scale = torch.zeros(batch, dtype=dtype, device=device)
    for j in range(steps):
        Q[:, j] = q
        w = matvec(q)
        AQ[:, j] = w
        scale = torch.maximum(scale, w.norm(dim=-1))
        if j == steps - 1:
            break
        w = _orthogonalise(w, Q[:, : j + 1])
        beta = w.norm(dim=-1)
        # an exhausted Krylov space: continue with a random direction orthogonal to Q
        dead = beta <= 100 * eps * scale.clamp_min(torch.finfo(dtype).tiny)
        if bool(dead.any()):
            r = _orthogonalise(fresh(), Q[:, : j + 1])
            w = torch.where(dead[:, None], r, w)
            beta = w.norm(dim=-1)
        q = w / beta[:, None]
        q = _orthogonalise(q, Q[:, : j + 1])
        q = q / q.norm(dim=-1, keepdim=True)
    T = Q @ AQ.transpose(1, 2)
    T = 0.5 * (T + T.transpose(1, 2))
    theta, Y = torch.linalg.eigh(T)
    theta, Y = theta.flip(-1), Y.flip(-1)
    return theta, Q.transpose(1, 2) @ Y
