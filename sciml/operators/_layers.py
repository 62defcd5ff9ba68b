"""Pointwise layers, the Fourier block and Fourier resampling shared by the FNO and SFNO."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_finite, check_int
from ..spectral import SpectralConv, fourier_resample


def _ratio(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return float(v)


class Pointwise(nn.Module):
    """A 1x1 convolution over any grid: ``y[b, o, ...] = sum_c W[o, c] x[b, c, ...] + b[o]``.

    One matrix product over the flattened grid (the same arithmetic as ``nn.Conv1d`` with
    kernel 1, without its per-call layout checks).
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # the initialisation of nn.Conv1d / nn.Linear
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        grid = x.shape[2:]
        flat = x.reshape(b, c, -1)
        if self.bias is None:
            y = torch.matmul(self.weight, flat)
        else:
            y = torch.baddbmm(self.bias[None, :, None].expand(b, -1, 1), self.weight.expand(
                b, -1, -1), flat)
        return y.reshape(b, self.out_channels, *grid)


class ChannelMLP(nn.Module):
    """Two pointwise layers with a GELU between them: ``W2 gelu(W1 x + b1) + b2``."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.fc1 = Pointwise(in_channels, hidden_channels)
        self.fc2 = Pointwise(hidden_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class FourierBlock(nn.Module):
    """One FNO layer: spectral convolution plus a linear skip, then a channel MLP plus a gated skip.

    .. math:: z = \\sigma(K x + W x), \\qquad y = \\sigma(\\mathrm{MLP}(z) + g \\odot x)

    where ``K`` is a :class:`~sciml.spectral.SpectralConv`, ``W`` a 1x1 linear map and ``g``
    a learned per-channel gate (the "linear" FNO skip and "soft-gating" MLP skip of
    neuraloperator's ``FNOBlocks``). The last block of a network leaves out the outer
    activations. When the block changes the grid (``out_shape``, e.g. a different number of
    time steps), the skips are resampled by :func:`fourier_resample`.
    """

    def __init__(
        self,
        width: int,
        modes: tuple[int, ...],
        *,
        mlp_ratio: float = 0.5,
        last: bool = False,
    ) -> None:
        super().__init__()
        self.width = check_int("width", width, minimum=1)
        self.conv = SpectralConv(width, width, modes)
        self.skip = Pointwise(width, width, bias=False)
        hidden = max(1, round(width * _ratio("mlp_ratio", mlp_ratio)))
        self.mlp = ChannelMLP(width, width, hidden)
        self.gate = nn.Parameter(torch.ones(width))
        self.last = bool(last)

    def forward(
        self,
        x: torch.Tensor,
        out_shape: tuple[int, ...] | None = None,
        *,
        spectral: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the block; ``spectral`` replaces ``self.conv(x, out_shape)`` when given.

        A direct call scans ``x`` for NaN/Inf (one host synchronisation on a GPU, skipped
        inside ``sciml.checks(finite=False)``); the FNO and SFNO scan their input once and
        run their blocks without a scan.
        """
        return self._forward(x, out_shape, spectral=spectral, check_values=True)

    def _forward(
        self,
        x: torch.Tensor,
        out_shape: tuple[int, ...] | None = None,
        *,
        spectral: torch.Tensor | None = None,
        check_values: bool = False,
    ) -> torch.Tensor:
        """The block without the value scan unless ``check_values`` (the models' path)."""
        grid = tuple(x.shape[2:])
        target = grid if out_shape is None else tuple(out_shape)
        if spectral is None:
            k = self.conv._forward(x, target, check_values=check_values)
        else:
            if check_values:
                check_finite("x", x)
            k = spectral
        s = self.skip(x)
        g = x * self.gate.view(1, -1, *([1] * len(grid)))
        if target != grid:
            # the resampling is an FFT: in the spectral layer's precision (under autocast
            # the skip is half precision, which the CPU FFT does not take)
            s = fourier_resample(s.to(k.dtype), target)
            g = fourier_resample(g.to(k.dtype), target)
        z = k + s
        if not self.last:
            z = F.gelu(z)
        y = self.mlp(z) + g
        return y if self.last else F.gelu(y)
