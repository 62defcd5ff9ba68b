"""ProbConserv: enforce a linear conservation law on a Gaussian prediction.

A probabilistic model predicts a solution profile ``u`` on a grid as a Gaussian
``N(mu, Sigma)``. The integral form of a conservation law is a linear constraint
``G u = b`` (``G``: quadrature weights of the domain integral, ``b``: the mass, from the
initial mass and the boundary fluxes), observed with noise ``sigma_G`` (0: exact).
Conditioning the Gaussian on it gives (Hansen et al., *Learning physical models that can
respect conservation laws*, ICML 2023, eq. 6)::

    S      = G Sigma G^T + sigma_G^2 I                      (k x k, k constraints)
    mu~    = mu - Sigma G^T S^-1 (G mu - b)
    Sigma~ = Sigma - Sigma G^T S^-1 G Sigma

With ``sigma_G = 0``, ``G mu~ = b`` holds to rounding. The correction is spread where
the model is uncertain (large ``Sigma``), typically at shocks. The HardC projection
(Negiar et al. 2023) is the special case ``Sigma = I``: the Euclidean projection of the
mean onto the constraint set (:func:`project_mean`).

Cost: with a diagonal ``Sigma`` (shape ``(..., n)``) everything is ``O(n k^2 + k^3)`` per
profile and no ``n x n`` matrix is formed; with a full ``Sigma`` (shape ``(..., n, n)``)
it is ``O(n^2 k)``. All arithmetic is float64 whatever the input dtype (the constraint
has to hold to ~1e-12), and everything is differentiable, so the update can sit inside
a training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._validation import as_tensor, as_tensors, check_finite, check_tensor

__all__ = ["ConservedGaussian", "ProbConserv", "probconserv", "project_mean"]


@dataclass(frozen=True)
class ConservedGaussian:
    """The updated Gaussian: ``mean`` (..., n) and ``cov``.

    ``cov`` has the form of the covariance that was passed in: the diagonal of the
    updated covariance, shape ``(..., n)``, for a diagonal input (the full update is a
    rank-``k`` correction of it: :meth:`ProbConserv.covariance` builds it when wanted);
    the full ``(..., n, n)`` matrix for a full input. Both in float64.
    """

    mean: Tensor
    cov: Tensor

    @property
    def std(self) -> Tensor:
        """Marginal standard deviations, shape ``(..., n)`` (clamped at 0 from below)."""
        var = self.cov if self.cov.shape == self.mean.shape else self.cov.diagonal(
            dim1=-2, dim2=-1)
        return var.clamp_min(0.0).sqrt()


def _prepare(
    mean: object, cov: object, G: object, b: object
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    # numpy arrays follow the first tensor among mean, cov, G (all meet in float64 below)
    mean, cov, G = as_tensors(mean, cov, G)
    mean = check_tensor("mean", mean, min_ndim=1, real=True)
    cov = check_tensor("cov", cov, min_ndim=1, real=True)
    G = check_tensor("G", G, min_ndim=1, real=True)
    # a Python or numpy scalar goes straight to float64 (torch's default float32 would
    # round it before the float64 update, and the constraint would hold only to ~1e-8):
    # no reference tensor here, so Python floats and float64 arrays become float64
    b = as_tensor(b)
    if not isinstance(b, Tensor):  # a list of numbers, as before
        try:
            b = torch.as_tensor(b, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"b must be a tensor, a numpy array or numbers, got "
                            f"{type(b).__name__}: {b!r}") from None
    b = b.to(mean.device)
    n = mean.shape[-1]
    if cov.shape == mean.shape:
        diagonal = True
    elif cov.shape == (*mean.shape, n):
        diagonal = False
    else:
        raise ValueError(
            f"cov has shape {tuple(cov.shape)} but mean is {tuple(mean.shape)}; pass the "
            f"variances with mean's shape (diagonal covariance) or a full covariance of "
            f"shape {(*mean.shape, n)}"
        )
    if G.ndim == 1:
        G = G.unsqueeze(0)
    if G.shape[-1] != n:
        raise ValueError(
            f"G has shape {tuple(G.shape)} but the profile has n = {n} points; G must be "
            f"(k, {n}) (or batched (..., k, {n})): one row of quadrature weights per "
            f"constraint"
        )
    k = G.shape[-2]
    if k > n:
        raise ValueError(f"G has k = {k} constraints on n = {n} unknowns; use k <= n")
    if b.ndim == 0:
        b = b.reshape(1)
    if b.shape[-1] != k:
        if k == 1:
            b = b.unsqueeze(-1)  # one constraint, b batched over the profiles: (...,) -> (..., 1)
        else:
            raise ValueError(
                f"b has shape {tuple(b.shape)} but G has k = {k} rows; b must end in {k}"
            )
    f64 = torch.float64
    in_dtype = cov.dtype
    mean, cov, G, b = (t.to(f64) for t in (mean, cov, G, b))
    for name, t in (("mean", mean), ("cov", cov), ("G", G), ("b", b)):
        check_finite(name, t)
    try:
        batch = torch.broadcast_shapes(mean.shape[:-1], G.shape[:-2], b.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"batch shapes do not broadcast: mean {tuple(mean.shape[:-1])}, G "
            f"{tuple(G.shape[:-2])}, b {tuple(b.shape[:-1])}"
        ) from None
    # one batch shape for all (a single profile with b batched over several right-hand
    # sides, say): the update concatenates per-batch blocks
    mean = mean.expand(*batch, n)
    cov = cov.expand(*batch, n) if diagonal else cov.expand(*batch, n, n)
    G = G.expand(*batch, k, n)
    b = b.expand(*batch, k)
    if diagonal and bool((cov < 0).any()):
        raise ValueError("cov holds negative variances; pass variances (std**2) >= 0")
    if not diagonal:
        _check_covariance(cov, in_dtype)
    return mean, cov, G, b, diagonal


def _check_covariance(cov: Tensor, dtype: torch.dtype) -> None:
    """Refuse a full covariance that is not symmetric (to rounding in its own dtype) or
    has a negative variance: the update's formulas assume both, and the constraint
    would hold for a wrong mean without a word."""
    scale = cov.abs().amax((-2, -1), keepdim=True)
    asym = (cov - cov.mT).abs().amax((-2, -1), keepdim=True) / scale.clamp_min(1e-300)
    tol = 64 * torch.finfo(dtype).eps
    if bool((asym > tol).any()):
        raise ValueError(
            f"cov is not symmetric: max |cov - cov^T| / max |cov| = {float(asym.max()):.3g} "
            f"(allowed {tol:.1g} for {dtype}); a covariance is symmetric: pass "
            "(cov + cov.mT) / 2 if the asymmetry is rounding, else check how cov was built")
    if bool((cov.diagonal(dim1=-2, dim2=-1) < 0).any()):
        raise ValueError("cov has negative variances on its diagonal; a covariance is "
                         "positive semidefinite: check how cov was built")


def _solve_spd(S: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``S X = rhs`` for a batch of symmetric positive definite ``S``."""
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info > 0).any()):
        raise ValueError(
            "G Sigma G^T + sigma_G^2 I is singular: the constraints are linearly dependent, "
            "or the covariance is zero wherever G has weight; use sigma_G > 0 or give the "
            "model nonzero variance there"
        )
    return torch.cholesky_solve(rhs, L)


@dataclass(frozen=True)
class ProbConserv:
    """Condition a Gaussian prediction on linear constraints ``G u = b`` (ProbConserv).

    Args:
        noise: ``sigma_G``, the standard deviation of the constraint (0: exact
            conservation; > 0: the law holds only up to that noise, e.g. for a
            quadrature error of known size).

    Call ``ProbConserv(noise)(mean, cov, G, b)``:

    Args:
        mean: predicted means, shape ``(..., n)`` (any leading batch: samples, times).
        cov: variances with ``mean``'s shape (diagonal covariance), or full covariances
            ``(..., n, n)``.
        G: constraint rows ``(k, n)`` or ``(n,)`` for one, or batched ``(..., k, n)``.
        b: right-hand sides ``(k,)``, ``(..., k)``, or ``(...,)`` for one constraint.

    Returns:
        :class:`ConservedGaussian` in float64.

    Raises:
        ValueError: shapes that do not match (the message gives the expected one),
            non-finite values, negative variances, or a singular ``G Sigma G^T`` when
            ``noise == 0``.

    Example::

        G = trapezoid_weights(x)                       # (n,)
        post = ProbConserv()(mu, var, G, mass_at_t)    # mu, var: (batch, n)
        (post.mean @ G - mass_at_t).abs().max()        # ~1e-16
    """

    noise: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.noise, (int, float)) or isinstance(self.noise, bool):
            raise TypeError(f"noise must be a float, got {self.noise!r}")
        if not (self.noise >= 0.0 and self.noise < float("inf")):
            raise ValueError(f"noise must be finite and >= 0 (sigma_G), got {self.noise}; "
                             f"use 0 for exact conservation")

    def __call__(self, mean: Tensor, cov: Tensor, G: Tensor, b: Tensor) -> ConservedGaussian:
        mean, cov, G, b, diagonal = _prepare(mean, cov, G, b)
        k = G.shape[-2]
        # A = Sigma G^T as (..., k, n) rows: never form Sigma when it is diagonal.
        A = cov.unsqueeze(-2) * G if diagonal else G @ cov.transpose(-1, -2)
        S = A @ G.transpose(-1, -2)
        if self.noise > 0:
            S = S + self.noise**2 * torch.eye(k, dtype=S.dtype, device=S.device)
        r = (G @ mean.unsqueeze(-1)).squeeze(-1) - b  # (..., k)
        # One Cholesky for both the mean and the covariance corrections.
        X = _solve_spd(S, torch.cat([r.unsqueeze(-1), A], dim=-1))  # S^-1 [r | A]
        new_mean = mean - (A.transpose(-1, -2) @ X[..., :1]).squeeze(-1)
        if diagonal:
            new_cov = cov - (A * X[..., 1:]).sum(-2)
        else:
            new_cov = cov - A.transpose(-1, -2) @ X[..., 1:]
        return ConservedGaussian(new_mean, new_cov)

    def covariance(self, var: Tensor, G: Tensor) -> Tensor:
        """The full updated covariance ``(..., n, n)`` for a diagonal input ``var``.

        ``Sigma~ = diag(var) - A^T S^-1 A`` with ``A = G diag(var)``; it does not depend
        on the mean or ``b``. Use it for small grids or few profiles: it is ``n x n`` each.
        """
        var, G = as_tensors(var, G)
        check_tensor("var", var, min_ndim=1, real=True)
        G = check_tensor("G", G, min_ndim=1, real=True)
        G = G.unsqueeze(0) if G.ndim == 1 else G
        _, var, G, _, _ = _prepare(var, var, G, torch.zeros(G.shape[-2]))
        A = var.unsqueeze(-2) * G
        S = A @ G.transpose(-1, -2)
        if self.noise > 0:
            S = S + self.noise**2 * torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
        return torch.diag_embed(var) - A.transpose(-1, -2) @ _solve_spd(S, A)


def probconserv(
    mean: Tensor, cov: Tensor, G: Tensor, b: Tensor, *, noise: float = 0.0
) -> ConservedGaussian:
    """Functional form of :class:`ProbConserv`: ``ProbConserv(noise)(mean, cov, G, b)``."""
    return ProbConserv(noise)(mean, cov, G, b)


def project_mean(mean: Tensor, G: Tensor, b: Tensor) -> Tensor:
    """HardC: the Euclidean projection of ``mean`` onto ``{u : G u = b}`` (float64).

    ``u = mean - G^T (G G^T)^-1 (G mean - b)``: ProbConserv with ``Sigma = I`` and exact
    constraints. The correction is spread by the quadrature weights, not by the model's
    uncertainty (Negiar et al., *Learning differentiable solvers for systems with hard
    constraints*, ICLR 2023).
    """
    mean64 = check_tensor("mean", as_tensor(mean), min_ndim=1, real=True).to(torch.float64)
    return ProbConserv(0.0)(mean64, torch.ones_like(mean64), G, b).mean
