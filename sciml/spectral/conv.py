"""Spectral convolution: the Fourier layer shared by the FNO and the spatiotemporal FNO."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_choice, check_int, check_int_tuple, check_tensor
from .modes import check_modes, kept_length
from .transforms import _METHODS, _irfftn_truncated, rfftn_truncated


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
        return torch.bmm(cp, w).permute(1, 2, 0).contiguous()  # (B, Cout, K)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        cp, w = ctx.saved_tensors
        gp = g.permute(2, 0, 1).contiguous()  # (K, B, Cout)
        gc = gw = None
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
        method: transform path, ``"auto"`` (measured rule), ``"fft"`` or ``"dft"``.

    Shapes: input ``(batch, in_channels, *grid)`` real; output
    ``(batch, out_channels, *out_grid)``.

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
        self.method = check_choice("method", method, _METHODS)
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
        d = len(self.modes)
        check_tensor("x", x, real=True, fft_dtype=True)
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
            raise TypeError(
                f"x has dtype {x.dtype} but the layer's weights are {self.weight.dtype}; "
                f"convert one of them (x.to({self.weight.dtype}) or layer.to(x.dtype))"
            )
        grid = tuple(x.shape[2:])
        target = self.out_shape if out_shape is None else check_int_tuple(
            "out_shape", out_shape, length=d, minimum=1)
        if target is None:
            target = grid
        check_modes(self.modes, grid, grid_name="the grid of x")
        check_modes(self.modes, target, grid_name="out_shape")

        c = rfftn_truncated(x, self.modes, method=self.method)  # (B, Cin, *kept)
        b = x.shape[0]
        k = math.prod(self.kept)
        # per-mode channel mixing as one batched complex product: (K, B, Cin) @ (K, Cin, Cout)
        w = self.complex_weight().reshape(k, self.in_channels, self.out_channels)
        y = _ModeMix.apply(c.reshape(b, self.in_channels, k), w)
        y = y.reshape(b, self.out_channels, *self.kept)
        if self.bias is not None:
            # a constant field is its DC coefficient (h_0 = 1): the bias costs nothing here
            y[(slice(None), slice(None)) + (0,) * d] += self.bias
        # x was checked on the way in and the weights are the layer's own: no value scan
        return _irfftn_truncated(y, target, method=self.method, check_values=False)
