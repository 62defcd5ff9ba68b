"""Conventions for truncated real Fourier transforms, written once.

A truncated spectrum over ``d`` grid axes keeps ``modes = (m_1, ..., m_d)``:

* on each *full* axis (all but the last), the frequencies ``0, 1, ..., m-1`` and
  ``-m, ..., -1`` (the "+/- corners" of the classic FNO), stored in that order, so the
  axis has length ``2m``; ``m`` may go up to ``n // 2`` (for even ``n`` that keeps the
  whole axis, the Nyquist frequency included as ``-n/2``);
* on the *halved* last axis (the real-FFT axis), the frequencies ``0, ..., m-1``;
  ``m`` may go up to ``n // 2 + 1`` (the Nyquist bin included for even ``n``).

Normalisation is "forward": the kept coefficients are Fourier-series coefficients
``c_k = (1/N) sum_x u(x) exp(-2 pi i k.x / N)``, so a spectrum can be synthesised on any
grid (``out_shape``) without rescaling. The synthesis of a kept spectrum on a grid of
shape ``N'`` is ``v(x) = Re sum_k h_k c_k exp(2 pi i k.x / N')`` where the Hermitian
weight ``h_k`` is 1 on the DC and Nyquist bins of the halved axis and 2 elsewhere: the
exact result of zero-padding the half spectrum and calling ``irfftn(s=N', norm="forward")``.
"""

from __future__ import annotations

import torch

from .._validation import check_int, check_int_tuple


def kept_frequencies(n: int, m: int, halved: bool) -> list[int]:
    """The integer frequencies kept on an axis of ``n`` points with ``m`` modes."""
    n = check_int("n", n, minimum=1)
    m = check_int("m", m, minimum=1)
    if not isinstance(halved, bool):
        raise TypeError(f"halved must be True or False, got {halved!r}")
    if m > max_modes(n, halved):
        raise ValueError(f"m = {m} modes do not fit an axis of n = {n} points (at most "
                         f"{max_modes(n, halved)}{' on the halved axis' if halved else ''})")
    if halved:
        return list(range(m))
    return list(range(m)) + list(range(-m, 0))


def kept_length(m: int, halved: bool) -> int:
    """Length of a kept axis: ``m`` on the halved axis, ``2m`` on a full axis."""
    return m if halved else 2 * m


def modes_from_kept_shape(
    kept_shape: tuple[int, ...], *, name: str = "the spectrum"
) -> tuple[int, ...]:
    """Invert :func:`kept_length` over all axes (full axes must have even length)."""
    kept_shape = check_int_tuple("kept_shape", kept_shape, minimum=1)
    if not kept_shape:
        raise ValueError("kept_shape is empty: give the spectral shape, one length per axis")
    modes = []
    for i, L in enumerate(kept_shape):
        halved = i == len(kept_shape) - 1
        if not halved and L % 2:
            raise ValueError(
                f"{name} must have an even length (2 * modes) on every spectral axis but the "
                f"last; axis {i} has length {L} (spectral shape {tuple(kept_shape)})"
            )
        modes.append(L if halved else L // 2)
    return tuple(modes)


def hermitian_weights(n: int, m: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Weights ``h_j`` of the kept halved-axis bins on an output axis of ``n`` points.

    ``h = 1`` for the DC bin and, for even ``n``, the Nyquist bin ``n/2``; ``h = 2`` for
    the bins whose conjugate partner is implied by the real transform.
    """
    n = check_int("n", n, minimum=1)
    m = check_int("m", m, minimum=1)
    if m > n // 2 + 1:
        raise ValueError(f"m = {m} halved-axis bins do not fit an axis of n = {n} points "
                         f"(at most n // 2 + 1 = {n // 2 + 1})")
    h = torch.full((m,), 2.0, dtype=dtype)
    h[0] = 1.0
    if n % 2 == 0 and m > n // 2:
        h[n // 2] = 1.0
    return h


def max_modes(n: int, halved: bool) -> int:
    return n // 2 + 1 if halved else n // 2


def check_modes(
    modes: object, grid: tuple[int, ...], *, name: str = "modes", grid_name: str = "grid"
) -> tuple[int, ...]:
    """Validate ``modes`` against a grid shape; return it as a tuple of ints."""
    grid = check_int_tuple(grid_name, grid, minimum=1)
    d = len(grid)
    if d == 0:
        raise ValueError(f"{grid_name} is empty: the transform needs at least one axis")
    modes_t = check_int_tuple(name, modes, length=d, minimum=1)
    for i, (m, n) in enumerate(zip(modes_t, grid)):
        halved = i == d - 1
        top = max_modes(n, halved)
        if m > top:
            which = "the halved (last) axis" if halved else "a full axis"
            raise ValueError(
                f"{name}[{i}] = {m} is too large for {grid_name} size {n} on axis {i}: "
                f"{which} holds at most {top} modes (n // 2{' + 1' if halved else ''}); "
                f"lower {name}[{i}] or use a finer grid"
            )
    return modes_t
