"""Periodic fields between grids and in wavenumber shells: resampling and spectra.

* :func:`fourier_resample`: point values on one grid -> point values on another, by
  trigonometric interpolation (exact for band-limited fields).
* :func:`cell_average_resample`: cell averages on ``m`` cells -> cell averages on ``n``
  cells of the band-limited function they determine (finite-volume data, e.g. the
  Burgers family's conservative grids).
* :func:`shell_spectrum` / :func:`error_spectrum`: energy per integer wavenumber shell
  of 2D fields, and of the error of a prediction (where a model loses accuracy by
  scale).

All follow the library's FFT conventions (:func:`~sciml.spectral.integer_wavenumbers`;
"forward" normalisation, so a mode's coefficient is its amplitude).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import as_tensor, as_tensors, check_int, check_tensor
from .calculus import integer_wavenumbers

__all__ = ["cell_average_resample", "error_spectrum", "fourier_resample", "shell_spectrum"]


def fourier_resample(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample the trailing ``len(shape)`` axes of a real field by trigonometric interpolation.

    Axis by axis: the real FFT is truncated (coarser grid) or zero-padded (finer grid) and
    transformed back with "forward" normalisation, so values (not sums) are preserved and a
    band-limited field is reproduced exactly. Axes whose size does not change are untouched.

    Args:
        x: a real tensor ``(..., n_1, ..., n_d)``.
        shape: the new sizes ``(m_1, ..., m_d)`` of the last ``d`` axes.

    Returns:
        ``(..., m_1, ..., m_d)``, in ``x``'s dtype and device.
    """
    x = check_tensor("x", as_tensor(x), real=True)
    if isinstance(shape, int) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be a sequence of sizes, got {shape!r}: e.g. (64, 64)")
    shape = tuple(check_int(f"shape[{i}]", n, minimum=1) for i, n in enumerate(shape))
    d = len(shape)
    if d > x.ndim:
        raise ValueError(f"shape {shape} names {d} axes but x has shape {tuple(x.shape)}")
    for i, n_new in enumerate(shape):
        axis = x.ndim - d + i
        n_old = x.shape[axis]
        if n_old == n_new:
            continue
        c = torch.fft.rfft(x, dim=axis, norm="forward")
        keep = min(n_old, n_new) // 2 + 1
        c = c.narrow(axis, 0, keep)
        if n_old % 2 == 0 and n_new > n_old:
            # the old Nyquist bin stands for cos only; split between +/- n/2 on the finer grid
            idx = [slice(None)] * c.ndim
            idx[axis] = slice(keep - 1, keep)
            c = c.clone()
            c[tuple(idx)] = c[tuple(idx)] * 0.5
        x = torch.fft.irfft(c, n=n_new, dim=axis, norm="forward")
    return x


def cell_average_resample(v: torch.Tensor, n: int) -> torch.Tensor:
    """Cell averages on ``m = v.shape[-1]`` periodic cells -> cell averages on ``n`` cells.

    The averages determine a band-limited function (each mode ``k`` of a cell average is
    the point mode times ``sinc(k / m)``); its averages over the new cells are returned:
    the coarse sinc factor is divided out, the fine one applied, and the phase moved from
    the old cell centres to the new ones. Exact for trigonometric polynomials below the
    coarser grid's Nyquist mode. Works on any box length (only cell counts enter).

    Args:
        v: real ``(..., m)`` cell averages.
        n: the new number of cells.

    Returns:
        ``(..., n)`` in ``v``'s dtype and device.
    """
    v = check_tensor("v", as_tensor(v), min_ndim=1, real=True)
    n = check_int("n", n, minimum=1)
    m = v.shape[-1]
    if m == n:
        return v
    V = torch.fft.rfft(v, dim=-1)
    keep = min(V.shape[-1], n // 2 + 1)
    k = torch.arange(keep, dtype=v.dtype, device=v.device)
    # torch.sinc is sin(pi x) / (pi x): the cell average of mode k on h = L / m cells
    shift = torch.polar(torch.ones_like(k), torch.pi * k * (1 / n - 1 / m))
    V = V[..., :keep] / torch.sinc(k / m) * torch.sinc(k / n) * shift
    if m % 2 == 0 and keep == m // 2 + 1 and n > m:
        V[..., -1] = V[..., -1] / 2  # split the coarse Nyquist mode between +-k
    return torch.fft.irfft(V, n=n, dim=-1) * (n / m)


def shell_spectrum(u: torch.Tensor) -> np.ndarray:
    """Energy per integer wavenumber shell of square 2D fields ``(..., n, n)``.

    ``E[j]`` sums ``|c_k|^2`` (forward-normalised coefficients) over the modes with
    ``round(|k|) = j`` (shells beyond ``n // 2`` are folded into the last), averaged over
    every leading index; so ``E.sum()`` is the mean square of the field (Parseval).

    Returns:
        float64 numpy array of ``n // 2 + 1`` shells.
    """
    u = check_tensor("u", as_tensor(u), min_ndim=2, real=True)
    n = u.shape[-1]
    if u.shape[-2] != n:
        raise ValueError(f"u must be square on its last two axes, got shape {tuple(u.shape)}")
    c = torch.fft.fft2(u.to(torch.float64), norm="forward")
    p = (c.real**2 + c.imag**2).reshape(-1, n, n).mean(0)
    k = integer_wavenumbers(n, device=u.device)
    kk = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long().clamp(max=n // 2)
    out = torch.zeros(n // 2 + 1, dtype=torch.float64, device=u.device)
    return out.index_add_(0, kk.reshape(-1), p.reshape(-1)).cpu().numpy()


def error_spectrum(pred: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Shell spectra (:func:`shell_spectrum`) of the error ``pred - target`` and of the truth.

    Returns:
        ``(error, truth)``, each ``(n // 2 + 1,)``.
    """
    pred, target = as_tensors(pred, target)
    pred = check_tensor("pred", pred, min_ndim=2, real=True)
    target = check_tensor("target", target, min_ndim=2, real=True)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has "
                         f"{tuple(target.shape)}")
    return shell_spectrum(pred - target), shell_spectrum(target)
