"""Private spectral helpers shared by the Sobolev misfit and the Sobolev prior.

They follow the conventions of :mod:`sciml.spectral.calculus` (box ``[0, L_i)``, angular
wavenumbers ``2 pi k / L``, ``rfftn`` layouts) and compute the *squared* H^s norm
directly: ``sobolev_norm(u) ** 2`` has an infinite derivative where ``u = 0`` (the square
root), which an optimiser or a Hessian-vector product would hit at a perfect fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..spectral._paths import halved_weights as _cached_halved_weights
from ..spectral.calculus import _lengths, wavenumbers


def check_lengths(lengths: object) -> tuple[float, ...]:
    """Box lengths as a tuple of positive floats (a bare number is one axis)."""
    if isinstance(lengths, (int, float)) and not isinstance(lengths, bool):
        lengths = (lengths,)
    return _lengths("lengths", lengths)


def dims(d: int) -> tuple[int, ...]:
    return tuple(range(-d, 0))


def symbol(shape: Sequence[int], lengths: Sequence[float], s: float, alpha: float,
           dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(alpha + |kappa|^2)^s`` on the rfftn layout (0 for the mean when alpha = 0, s < 0)."""
    ks = wavenumbers(tuple(shape), tuple(lengths), device=device, dtype=dtype)
    base = alpha + sum(k**2 for k in ks)
    if s == 0:
        return torch.ones_like(base)
    if alpha == 0 and s < 0:
        return torch.where(base > 0, torch.where(base > 0, base, 1.0) ** s, 0.0)
    return base**s


def halved_weights(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The weights of the ``n // 2 + 1`` bins of a halved (rfft) axis of ``n`` points, on
    ``device`` (:func:`sciml.spectral.modes.hermitian_weights`), from the spectral layers'
    per-device cache: no host data is copied over at each evaluation of a norm."""
    return _cached_halved_weights(n, n // 2 + 1, device, dtype)


def check_field(name: str, u: object, lengths: Sequence[float]) -> torch.Tensor:
    """A real float32/float64 tensor with a batch axis and ``len(lengths)`` grid axes."""
    from .._validation import as_tensor, check_tensor

    d = len(lengths)
    u = check_tensor(name, as_tensor(u), min_ndim=d + 1, real=True, fft_dtype=True)
    for i, n in enumerate(u.shape[-d:]):
        if n < 2:
            raise ValueError(f"{name} grid axis {i} has {n} point(s); a spectral grid "
                             f"needs >= 2 (shape {tuple(u.shape)})")
    return u


def sobolev_sq(u: torch.Tensor, s: float, alpha: float,
               lengths: Sequence[float]) -> torch.Tensor:
    """``||u||_{H^s}^2`` over the last ``len(lengths)`` axes, summed over all axes but the
    first; equal to ``sobolev_norm(u, s, alpha=alpha, lengths=lengths) ** 2``."""
    d = len(lengths)
    shape = tuple(u.shape[-d:])
    c = torch.fft.rfftn(u, dim=dims(d), norm="forward")
    w = symbol(shape, lengths, s, alpha, u.dtype, u.device)
    h = halved_weights(shape[-1], u.dtype, u.device)
    sq = (w * h * (c.real**2 + c.imag**2)).sum(dim=dims(d)) * math.prod(lengths)
    return sq.reshape(sq.shape[0], -1).sum(-1) if sq.ndim > 1 else sq


def gram(u: torch.Tensor, s: float, alpha: float, lengths: Sequence[float]) -> torch.Tensor:
    """The matrix ``Q`` of the quadratic form ``||u||_{H^s}^2 = u^T Q u`` applied to ``u``:
    ``Q u = (|Omega| / N) irfftn((alpha + |kappa|^2)^s rfftn(u))``."""
    d = len(lengths)
    shape = tuple(u.shape[-d:])
    w = symbol(shape, lengths, s, alpha, u.dtype, u.device)
    scale = math.prod(lengths) / math.prod(shape)
    return scale * multiply(u, w, d)


def multiply(u: torch.Tensor, m: torch.Tensor, d: int) -> torch.Tensor:
    """``irfftn(m * rfftn(u))`` over the last ``d`` axes (a real Fourier multiplier)."""
    shape = tuple(u.shape[-d:])
    return torch.fft.irfftn(m * torch.fft.rfftn(u, dim=dims(d)), s=shape, dim=dims(d))
