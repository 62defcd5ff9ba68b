"""Truncated real FFT pair over 1 to 3 (or more) trailing axes, with cheap adjoints.

``rfftn_truncated(x, modes)`` returns only the kept Fourier coefficients of a real field;
``irfftn_truncated(c, shape)`` synthesises a real field on any grid from such a spectrum.
See :mod:`sciml.spectral.modes` for the conventions (which modes, which order, which
normalisation). Both run on two execution paths (``"fft"``: ``torch.fft`` then a gather;
``"dft"``: dense matrix products over the kept modes only), picked by
:func:`sciml.spectral.choose_method` unless ``method`` names one.

The backward of each is written by hand: the adjoint of the analysis is a synthesis with
conjugate matrices (no Hermitian weights), and the adjoint of the synthesis is an analysis
with Hermitian weights; each costs one transform of the same size as the forward and
saves no activations; the device constants both passes need (matrices, Hermitian weights)
are cached per device and fetched in the forward, so after the first call neither pass
copies anything to the device.

Under ``torch.autocast`` both transforms run in the dtype of their input (autocast is
switched off inside them, the backward too): the inputs must be float32/float64
(complex64/complex128), never half precision.
"""

from __future__ import annotations

import contextlib
import math

import torch

from .._validation import (
    as_tensor,
    check_choice,
    check_finite,
    check_int,
    check_int_tuple,
    check_tensor,
)
from ._paths import (
    axis_matrix,
    best_order,
    choose_method,
    dft_c2r,
    dft_r2c,
    fft_gather,
    fft_scatter,
    halved_weights,
)
from .modes import check_modes, kept_length, modes_from_kept_shape

_METHODS = ("auto", "fft", "dft")


def _autocast_on(device_type: str) -> bool:
    """Whether autocast may act on this device's operations.

    CPU autocast counts for every device: :class:`sciml.testing.SimCuda` runs
    ``torch.autocast("cuda")`` as CPU autocast on tensors that report cuda (on a real GPU
    CPU autocast does not touch cuda operations, so answering True there costs nothing).
    """
    return torch.is_autocast_enabled("cpu") or (
        device_type != "cpu" and torch.is_autocast_enabled(device_type))


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off for one device type (a no-op context when it is not on): the
    transforms and the mode mixing run in the dtype of their inputs."""
    if _autocast_on(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64


def _plan(kind: str, modes: tuple[int, ...], grid: tuple[int, ...], method: str, lead: int,
          device: torch.device, dtype: torch.dtype):
    """The device constants of one transform, from the caches of :mod:`._paths`.

    ``kind``: ``"fwd"`` (analysis), ``"inv"`` (synthesis), ``"fwd_adj"`` (the analysis'
    adjoint, a synthesis) or ``"inv_adj"`` (the synthesis' adjoint, an analysis); ``grid``
    the real-space grid of the transform. Fetched once in the forward for both passes, so
    the backward builds and copies nothing.

    Returns:
        fft: the Hermitian weights of the halved axis for the adjoints, else ``None``;
        dft: ``(matrices per axis, axis order)``.
    """
    d = len(modes)
    if method == "fft":
        if kind.endswith("_adj"):
            return halved_weights(grid[-1], modes[-1], device, _real_dtype(dtype))
        return None
    cdtype = _complex_dtype(dtype)
    mats = [axis_matrix(kind, grid[i], modes[i], i == d - 1, device, cdtype) for i in range(d)]
    kept = tuple(kept_length(m, i == d - 1) for i, m in enumerate(modes))
    order, _ = best_order(lead, grid, kept, kind in ("fwd", "inv_adj"),
                          measured=device.type == "cpu")
    return mats, order


def _analysis(x: torch.Tensor, modes: tuple[int, ...], method: str, adjoint_of_synthesis: bool,
              plan) -> torch.Tensor:
    """Kept coefficients of real ``x`` over its last ``len(modes)`` axes.

    ``adjoint_of_synthesis=False``: c = (1/N) sum u exp(-i k.x)          (forward norm)
    ``adjoint_of_synthesis=True`` : c = h * sum u exp(-i k.x)             (synthesis^H)
    """
    d = len(modes)
    if method == "fft":
        kept = tuple(kept_length(m, i == d - 1) for i, m in enumerate(modes))
        norm = "backward" if adjoint_of_synthesis else "forward"
        spec = torch.fft.rfftn(x, dim=tuple(range(-d, 0)), norm=norm)
        c = fft_gather(spec, kept)
        if adjoint_of_synthesis:
            c = c * plan
        return c
    mats, order = plan
    return dft_r2c(x, mats, order)


def _synthesis(c: torch.Tensor, modes: tuple[int, ...], grid: tuple[int, ...], method: str,
               adjoint: bool, plan) -> torch.Tensor:
    """Real field on ``grid`` from kept coefficients ``c``.

    ``adjoint=False``: v = Re sum h c exp(i k.x)                          (synthesis)
    ``adjoint=True`` : v = (1/N) Re sum c exp(i k.x)                      (analysis^H)
    """
    d = len(modes)
    if method == "fft":
        if adjoint:
            c = c / plan
        half = (*grid[:-1], grid[-1] // 2 + 1)
        spec = fft_scatter(c, half)
        norm = "backward" if adjoint else "forward"
        return torch.fft.irfftn(spec, s=grid, dim=tuple(range(-d, 0)), norm=norm)
    mats, order = plan
    return dft_c2r(c, mats, order)


class _RfftnTruncated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, modes, method):  # type: ignore[override]
        d = len(modes)
        grid = tuple(x.shape[-d:])
        lead = math.prod(x.shape[:-d])
        ctx.modes, ctx.method, ctx.grid = modes, method, grid
        # the backward's constants are fetched here, where the caches are warm after the
        # first call: the backward then copies nothing to the device
        ctx.plan = (_plan("fwd_adj", modes, grid, method, lead, x.device, x.dtype)
                    if ctx.needs_input_grad[0] else None)
        ctx.device_type = x.device.type
        plan = _plan("fwd", modes, grid, method, lead, x.device, x.dtype)
        with full_precision(x.device.type):
            return _analysis(x, modes, method, False, plan)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        if g is None:
            return None, None, None
        with full_precision(ctx.device_type):
            gx = _synthesis(g.contiguous(), ctx.modes, ctx.grid, ctx.method, True, ctx.plan)
        return gx, None, None


class _IrfftnTruncated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, modes, grid, method):  # type: ignore[override]
        lead = math.prod(c.shape[:-len(modes)])
        ctx.modes, ctx.method = modes, method
        ctx.plan = (_plan("inv_adj", modes, grid, method, lead, c.device, c.dtype)
                    if ctx.needs_input_grad[0] else None)
        ctx.device_type = c.device.type
        plan = _plan("inv", modes, grid, method, lead, c.device, c.dtype)
        with full_precision(c.device.type):
            return _synthesis(c, modes, grid, method, False, plan)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        if g is None:
            return None, None, None, None
        with full_precision(ctx.device_type):
            gc = _analysis(g.contiguous(), ctx.modes, ctx.method, True, ctx.plan)
        return gc, None, None, None


def _resolve_method(method: str, device, lead, grid, kept, r2c: bool) -> str:
    method = check_choice("method", method, _METHODS)
    if method == "auto":
        return choose_method(device, lead, grid, kept, r2c)
    return method


def rfftn_truncated(
    x: torch.Tensor, modes: int | tuple[int, ...], *, ndim: int | None = None, method: str = "auto"
) -> torch.Tensor:
    """Kept Fourier coefficients of a real field over its trailing axes.

    .. math:: c_k = \\frac{1}{N} \\sum_x u(x)\\, e^{-2\\pi i\\, k\\cdot x / N},
              \\quad k \\in K(\\text{modes})

    Args:
        x: real tensor ``(..., n_1, ..., n_d)``.
        modes: modes kept per axis (an int applies to every axis); see
            :mod:`sciml.spectral.modes` for which frequencies that means.
        ndim: number of trailing grid axes ``d`` (default: ``len(modes)``, or 1 for an int).
        method: ``"auto"`` (the measured rule), ``"fft"`` or ``"dft"`` (pruned matmuls).

    Returns:
        Complex tensor ``(..., 2 m_1, ..., 2 m_{d-1}, m_d)``, frequencies ``0..m-1`` then
        ``-m..-1`` on full axes.

    Raises:
        TypeError: ``x`` is not a real floating tensor.
        ValueError: too many modes for the grid, too few dimensions, non-finite values.

    Equivalent to ``torch.fft.rfftn(x, norm="forward")`` restricted to the kept corners.
    """
    return _rfftn_truncated(as_tensor(x), modes, ndim=ndim, method=method, check_values=True)


def _rfftn_truncated(x, modes, *, ndim: int | None = None, method: str,
                     check_values: bool) -> torch.Tensor:
    check_tensor("x", x, real=True, fft_dtype=True)
    if ndim is not None:
        d = check_int("ndim", ndim, minimum=1)
    elif isinstance(modes, int) and not isinstance(modes, bool):
        d = 1
    else:
        d = len(check_int_tuple("modes", modes, minimum=1))
    if x.ndim < d:
        raise ValueError(f"x needs at least {d} grid axes, got shape {tuple(x.shape)}")
    grid = tuple(x.shape[-d:])
    modes_t = check_modes(modes, grid)
    lead = math.prod(x.shape[:-d])
    kept = tuple(kept_length(m, i == d - 1) for i, m in enumerate(modes_t))
    m = _resolve_method(method, x.device, lead, grid, kept, True)
    if lead == 0:  # an empty batch: pocketfft rejects it, the matrix path handles it
        m = "dft"
    c = _RfftnTruncated.apply(x, modes_t, m)
    if check_values:
        # Any NaN/Inf in x reaches every coefficient, the DC one (a plain mean) included:
        # checking the DC coefficients is exact and costs batch*channels values, not a pass.
        check_finite("x", c[(Ellipsis,) + (0,) * d])
    return c


def irfftn_truncated(
    c: torch.Tensor, shape: int | tuple[int, ...], *, method: str = "auto"
) -> torch.Tensor:
    """Real field on a grid of ``shape`` from a truncated spectrum (zero-padded inverse).

    .. math:: v(x) = \\mathrm{Re} \\sum_{k \\in K} h_k\\, c_k\\, e^{2\\pi i\\, k\\cdot x / N'}

    with Hermitian weights ``h`` (1 on the DC/Nyquist bins of the halved axis, else 2).
    ``shape`` may differ from the grid the spectrum came from: that resamples (the
    Fourier interpolant), which is how a model changes resolution or time length.

    Args:
        c: complex tensor ``(..., 2 m_1, ..., 2 m_{d-1}, m_d)`` as from
            :func:`rfftn_truncated`.
        shape: output grid ``(n'_1, ..., n'_d)``; ``d`` is taken from its length.
        method: ``"auto"``, ``"fft"`` or ``"dft"``.

    Returns:
        Real tensor ``(..., n'_1, ..., n'_d)`` of the matching real dtype.

    Equivalent to zero-padding ``c`` into a half spectrum and calling
    ``torch.fft.irfftn(..., s=shape, norm="forward")``.
    """
    return _irfftn_truncated(as_tensor(c), shape, method=method, check_values=True)


def _irfftn_truncated(c, shape, *, method: str, check_values: bool) -> torch.Tensor:
    check_tensor("c", c, complex_=True, fft_dtype=True)
    grid = check_int_tuple("shape", shape, length=None if not isinstance(shape, int) else 1,
                           minimum=1)
    d = len(grid)
    if d == 0:
        raise ValueError("shape must name at least one output grid axis, got ()")
    if c.ndim < d:
        raise ValueError(
            f"c needs at least {d} spectral axes for an output shape {grid}, "
            f"got shape {tuple(c.shape)}"
        )
    kept = tuple(c.shape[-d:])
    modes_t = modes_from_kept_shape(kept, name="c")
    check_modes(modes_t, grid, name="modes implied by c", grid_name="shape")
    if check_values:
        # one reduction: any NaN/Inf entry makes the sum non-finite
        check_finite("c", c.sum())
    lead = math.prod(c.shape[:-d])
    m = _resolve_method(method, c.device, lead, grid, kept, False)
    if lead == 0:
        m = "dft"
    return _IrfftnTruncated.apply(c, modes_t, grid, m)
