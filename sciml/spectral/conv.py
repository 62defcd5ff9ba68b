"""Spectral convolution: the Fourier layer shared by the FNO and the spatiotemporal FNO."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_choice, check_finite, check_int, check_int_tuple, check_tensor
from . import _calibration
from .modes import check_modes, kept_length
from .transforms import (
    _METHODS,
    _autocast_on,
    _irfftn_truncated,
    _rfftn_truncated,
    full_precision,
)

_LAYER_METHODS = (*_METHODS, "triton")
_HALF = (torch.float16, torch.bfloat16)


class _ModeMix(torch.autograd.Function):
    """``y[b, o, k] = sum_i c[b, i, k] w[k, i, o]``: one complex matrix per mode.

    Written out so that every batched product sees contiguous operands in both passes
    (torch's complex ``bmm`` on permuted views falls back to a per-matrix loop that was
    5x slower here).
    """

    @staticmethod
    def forward(ctx, c, w):  # type: ignore[override]
        cp = c.permute(2, 0, 1).contiguous()  # (K, B, Cin)
        ctx.save_for_backward(cp, w)
        ctx.device_type = c.device.type
        return torch.bmm(cp, w).permute(1, 2, 0).contiguous()  # (B, Cout, K)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        cp, w = ctx.saved_tensors
        gc = gw = None
        with full_precision(ctx.device_type):
            gp = g.permute(2, 0, 1).contiguous()  # (K, B, Cout)
            if ctx.needs_input_grad[0]:
                wh = w.conj().transpose(1, 2).resolve_conj().contiguous()
                gc = torch.bmm(gp, wh).permute(1, 2, 0).contiguous()
            if ctx.needs_input_grad[1]:
                ch = cp.conj().transpose(1, 2).resolve_conj().contiguous()
                gw = torch.bmm(ch, gp)
        return gc, gw


class SpectralConv(nn.Module):
    """Convolution by a learned kernel applied per Fourier mode (Li et al., FNO, 2021).

    .. math:: v = \\mathcal{F}^{-1}_{N'}\\big[\\, W_k\\, (\\mathcal{F} u)_k \\,\\big]_{k \\in K}
              + b

    The input is transformed over its trailing grid axes, the kept modes ``K`` (see
    :mod:`sciml.spectral.modes`) are mixed across channels by a complex matrix per mode,
    and the result is synthesised on the input grid or on ``out_shape``. Any grid axis may
    be time: over (x, y, t) this is the spatiotemporal layer, and a different output
    length in t resamples the trajectory in time.

    Args:
        in_channels, out_channels: channel counts.
        modes: modes kept per grid axis; its length sets the number of grid axes.
        out_shape: default output grid (``None``: same as the input).
        bias: add a learned constant per output channel (folded into the DC mode).
        method: ``"fft"`` (``torch.fft`` and a gather of the kept modes), ``"dft"`` (the
            pruned transform as matrix products), ``"triton"`` (the fused kernels of
            :mod:`sciml.spectral._triton`; needs Triton and a CUDA device, float32
            weights) or ``"auto"``: on the CPU the measured cost model picks fft or dft
            per transform (:func:`~sciml.spectral.choose_method`, calibrated per machine);
            on CUDA the FFT path, unless timings of this very case recorded on this GPU
            model by the GPU suite say another path (dft or triton) is faster (see
            :mod:`sciml.spectral._calibration`; never by assumption).
        device, dtype: of the parameters (float32 or float64).

    Shapes: input ``(batch, in_channels, *grid)`` real; output
    ``(batch, out_channels, *out_grid)``.

    Precision: the transforms and the per-mode mixing run in the weights' dtype. Under
    ``torch.autocast`` (bf16 or fp16, CPU or CUDA) a half-precision input is cast up to
    the weights' dtype, autocast is switched off inside the layer (both passes), and the
    output is in the weights' dtype (float32), as autocast does for the operations it
    keeps in float32; the gradient flows back to the half-precision producer. Outside
    autocast the input's dtype must be the weights'. TF32: the dft path and the mode
    mixing are float32/complex64 matrix products and follow torch's global setting
    (``torch.backends.cuda.matmul.allow_tf32`` / ``torch.set_float32_matmul_precision``),
    which this layer leaves to the user: torch's default keeps them full float32; with
    TF32 on, expect ~1e-3 relative error from those products (cuFFT, the fft path, does
    not use TF32; the Triton path uses its own ``tf32x3``, about float32 accuracy).

    Checks: a direct call scans the input for NaN/Inf through its DC coefficients, one
    host synchronisation on a GPU (skipped inside ``sciml.checks(finite=False)``); the
    models built from this layer (FNO, SFNO) scan once at their own boundary and call the
    layer without a scan. The device constants (DFT matrices, Hermitian weights) are
    cached per device, so after the first call neither pass copies to the device.

    Equivalent to neuraloperator's ``SpectralConv(in, out, n_modes)`` with
    ``n_modes = (2 m_1, ..., 2 m_{d-1}, 2 m_d - 1)`` and ``fft_norm="forward"`` (up to
    weight layout and initialisation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, ...],
        *,
        out_shape: tuple[int, ...] | None = None,
        bias: bool = True,
        method: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.modes = check_int_tuple(
            "modes", (modes,) if isinstance(modes, int) and not isinstance(modes, bool)
            else modes, minimum=1)
        d = len(self.modes)
        if not 1 <= d <= 3:
            raise ValueError(f"modes must name 1 to 3 grid axes, got {self.modes}")
        self.out_shape = (
            None if out_shape is None else check_int_tuple("out_shape", out_shape, length=d,
                                                           minimum=1)
        )
        if self.out_shape is not None:
            check_modes(self.modes, self.out_shape, grid_name="out_shape")
        self.method = check_choice("method", method, _LAYER_METHODS)
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.kept = tuple(kept_length(m, i == d - 1) for i, m in enumerate(self.modes))
        # weight layout (*kept, in, out, re/im): one contiguous complex matrix per mode
        self.weight = nn.Parameter(
            torch.empty(*self.kept, in_channels, out_channels, 2, device=device, dtype=dtype)
        )
        self.bias = (
            nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = math.sqrt(2.0 / (self.in_channels + self.out_channels))
        with torch.no_grad():
            # complex normal: real and imaginary parts each carry half the variance
            self.weight.normal_(0.0, std / math.sqrt(2.0))
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        out = f", out_shape={self.out_shape}" if self.out_shape is not None else ""
        return (
            f"{self.in_channels}, {self.out_channels}, modes={self.modes}{out}, "
            f"bias={self.bias is not None}, method={self.method!r}"
        )

    def complex_weight(self) -> torch.Tensor:
        """The weights as a complex tensor ``(*kept, in_channels, out_channels)``."""
        return torch.view_as_complex(self.weight)

    def forward(self, x: torch.Tensor, out_shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: ``(batch, in_channels, *grid)``, the weights' dtype (or half precision
                under autocast).
            out_shape: output grid for this call (default: the layer's, else the input's).

        Returns:
            ``(batch, out_channels, *out_grid)`` in the weights' dtype.

        Raises:
            TypeError: ``x`` is not a real tensor of the weights' dtype.
            ValueError: a shape that does not match the layer, too many modes for the grid,
                NaN/Inf in ``x``.
            RuntimeError: ``method="triton"`` where Triton or a CUDA device is missing.
        """
        return self._forward(x, out_shape, check_values=True)

    def _input(self, x: object) -> torch.Tensor:
        """``x`` checked against the layer (no value scan), cast up from half precision
        under autocast."""
        d = len(self.modes)
        check_tensor("x", x, real=True)
        if x.ndim != 2 + d:
            raise ValueError(
                f"x must have shape (batch, channels, {', '.join(f'n{i + 1}' for i in range(d))})"
                f" for modes {self.modes}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}) but this SpectralConv "
                f"expects in_channels={self.in_channels}"
            )
        if x.dtype != self.weight.dtype:
            if x.dtype in _HALF and _autocast_on(x.device.type):
                # autocast hands half precision over from the pointwise layers: the
                # transforms and the mixing stay in the weights' precision
                return x.to(self.weight.dtype)
            raise TypeError(
                f"x has dtype {x.dtype} but the layer's weights are {self.weight.dtype}; "
                f"convert one of them (x.to({self.weight.dtype}) or layer.to(x.dtype)), or run "
                "under torch.autocast for half-precision inputs"
            )
        return x

    def _method_for(self, x: torch.Tensor, target: tuple[int, ...]) -> str:
        """The path of this call: the layer's method; for ``"auto"`` on CUDA the recorded
        fastest one (the FFT path without a record), on the CPU ``"auto"`` (decided per
        transform by the cost model)."""
        if self.method != "auto" or x.device.type != "cuda":
            return self.method
        backward = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        m = _calibration.gpu_method(
            x.device, batch=x.shape[0], in_channels=self.in_channels,
            out_channels=self.out_channels, modes=self.modes, grid=tuple(x.shape[2:]),
            out_grid=target, dtype=self.weight.dtype, backward=backward)
        if m == "triton" and not _triton_available():
            m = None  # measured faster elsewhere, but this process cannot run it
        return m or "fft"

    def _forward(self, x: torch.Tensor, out_shape: tuple[int, ...] | None, *,
                 check_values: bool) -> torch.Tensor:
        """The layer; ``check_values=False`` skips the NaN/Inf scan (the caller did it)."""
        d = len(self.modes)
        x = self._input(x)
        grid = tuple(x.shape[2:])
        target = self.out_shape if out_shape is None else check_int_tuple(
            "out_shape", out_shape, length=d, minimum=1)
        if target is None:
            target = grid
        check_modes(self.modes, grid, grid_name="the grid of x")
        check_modes(self.modes, target, grid_name="out_shape")
        method = self._method_for(x, target)
        with full_precision(x.device.type):
            if method == "triton":
                return self._triton(x, target, check_values)
            c = _rfftn_truncated(x, self.modes, method=method, check_values=check_values)
            b = x.shape[0]
            k = math.prod(self.kept)
            # per-mode channel mixing as one batched complex product:
            # (K, B, Cin) @ (K, Cin, Cout)
            w = self.complex_weight().reshape(k, self.in_channels, self.out_channels)
            y = _ModeMix.apply(c.reshape(b, self.in_channels, k), w)
            y = y.reshape(b, self.out_channels, *self.kept)
            if self.bias is not None:
                # a constant field is its DC coefficient (h_0 = 1): the bias costs nothing here
                y[(slice(None), slice(None)) + (0,) * d] += self.bias
            # the input was scanned on the way in (here or by the calling model) and the
            # weights are the layer's own: no value scan of the spectrum
            return _irfftn_truncated(y, target, method=method, check_values=False)

    def _triton(self, x: torch.Tensor, target: tuple[int, ...], check_values: bool
                ) -> torch.Tensor:
        """The fused Triton layer (imported on first use)."""
        try:
            from . import _triton
        except ImportError as err:  # pragma: no cover - the module ships with sciml
            raise ImportError(
                "SpectralConv(method='triton') needs sciml.spectral._triton, which does not "
                f"import here ({err}); use method='fft' or method='dft'") from err
        if not _triton.available():
            raise RuntimeError(
                "SpectralConv(method='triton') needs Triton (pip install triton) and a CUDA "
                "device (or TRITON_INTERPRET=1 for the slow CPU interpreter); this machine "
                "has not both: use method='fft' or method='dft' (or 'auto')")
        if check_values:
            check_finite("x", x)
        return _triton.spectral_conv_triton(x, self.weight, self.bias, self.modes, target)


def _triton_available() -> bool:
    try:
        from . import _triton
    except ImportError:  # pragma: no cover
        return False
    return _triton.available()
