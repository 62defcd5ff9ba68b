"""The Fourier neural operator and its spatiotemporal variant (SFNO)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_finite, check_int, check_int_tuple, check_tensor
from ..spectral import check_modes
from ..spectral.transforms import _autocast_on
from ._layers import ChannelMLP, FourierBlock, Pointwise, _ratio

__all__ = ["FNO", "SFNO"]


def _coordinates(grid: tuple[int, ...], like: torch.Tensor) -> list[torch.Tensor]:
    """Periodic grid coordinates ``i / n`` in ``[0, 1)``, one broadcastable tensor per axis."""
    out = []
    for i, n in enumerate(grid):
        c = torch.arange(n, device=like.device, dtype=like.dtype) / n
        shape = [1, 1] + [1] * len(grid)
        shape[2 + i] = n
        out.append(c.reshape(shape))
    return out


def _mlp(in_channels: int, out_channels: int, hidden: int) -> nn.Module:
    """A channel MLP with ``hidden`` channels, or one linear layer when ``hidden`` is 0."""
    if hidden:
        return ChannelMLP(in_channels, out_channels, hidden)
    return Pointwise(in_channels, out_channels)


class FNO(nn.Module):
    """Fourier neural operator (Li et al., ICLR 2021) on a periodic grid of 1 to 3 axes.

    ``x -> lift([x, coordinates]) -> L Fourier blocks -> project``: the lifting and the
    projection are channel MLPs (hidden widths ``lifting_ratio * width`` and
    ``projection_ratio * width``), each block is a :class:`FourierBlock` (spectral
    convolution with a linear skip, then a channel MLP with a gated skip). Any grid axis
    may be time (the FNO-3D of Li et al. over x, y, t).

    Args:
        in_channels, out_channels: channels of the input and output fields.
        width: channels inside the network.
        modes: Fourier modes kept per grid axis, a tuple (see
            :mod:`sciml.spectral.modes`); its length (1-3) is the number of grid axes, so a
            plain int is refused (``(16, 16)`` for 2D).
        layers: number of Fourier blocks.
        lifting_ratio, projection_ratio: hidden width of the lifting / projection MLP over
            ``width`` (0: a single linear layer).
        mlp_ratio: hidden width of the MLP inside each block over ``width``.
        coordinates: append the grid coordinates to the input channels.

    Shapes: ``(batch, in_channels, *grid)`` -> ``(batch, out_channels, *grid)``.

    Precision: under ``torch.autocast`` (bf16 or fp16, CPU or CUDA) the pointwise layers
    run in half precision and every spectral convolution in float32 (its input cast up,
    autocast off inside, its output float32; see :class:`~sciml.spectral.SpectralConv`),
    so the output has the autocast dtype of the projection. TF32 for the float32 matrix
    products (the dft path, the mode mixing, the pointwise layers outside autocast) is
    left to torch's global setting (``torch.set_float32_matmul_precision``; off by
    default).

    Checks: the forward scans ``x`` for NaN/Inf once (one host synchronisation on a GPU,
    none inside ``sciml.checks(finite=False)``); the blocks run without their own scans,
    and neither pass copies anything to the device once the spectral constants are cached
    (after the first call).

    Equivalent to neuraloperator's ``FNO(n_modes, in, out, hidden_channels=width,
    n_layers=layers)`` with its defaults (grid embedding, channel MLPs, linear and
    soft-gating skips), where neuraloperator's ``n_modes`` is
    ``(2 m_1, ..., 2 m_{d-1}, 2 m_d - 1)`` of ours.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        modes: tuple[int, ...],
        *,
        layers: int = 4,
        lifting_ratio: float = 2.0,
        projection_ratio: float = 2.0,
        mlp_ratio: float = 0.5,
        coordinates: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.width = check_int("width", width, minimum=1)
        if isinstance(modes, int) and not isinstance(modes, bool):
            # one number cannot say how many grid axes the FNO has (1D, 2D or 3D)
            raise TypeError(
                f"modes must be a tuple with one entry per grid axis, got {modes!r}: pass "
                f"({modes},) for 1D, ({modes}, {modes}) for 2D or ({modes}, {modes}, {modes}) "
                "for 3D"
            )
        self.modes = check_int_tuple("modes", modes, minimum=1)
        if not 1 <= len(self.modes) <= 3:
            raise ValueError(f"modes must name 1 to 3 grid axes, got {self.modes}")
        self.layers = check_int("layers", layers, minimum=1)
        self.coordinates = bool(coordinates)
        for name, v in (("lifting_ratio", lifting_ratio), ("projection_ratio", projection_ratio)):
            if v != 0:
                _ratio(name, v)
        d = len(self.modes)
        self.lifting = _mlp(in_channels + (d if coordinates else 0), width,
                            round(lifting_ratio * width))
        self.blocks = nn.ModuleList(
            FourierBlock(width, self.modes, mlp_ratio=mlp_ratio, last=i == layers - 1)
            for i in range(layers)
        )
        self.projection = _mlp(width, out_channels, round(projection_ratio * width))
        self._config = {"in_channels": in_channels, "out_channels": out_channels,
                        "width": width, "modes": list(self.modes), "layers": layers,
                        "lifting_ratio": lifting_ratio, "projection_ratio": projection_ratio,
                        "mlp_ratio": mlp_ratio, "coordinates": self.coordinates}

    def config(self) -> dict[str, object]:
        """The constructor arguments (JSON-safe): ``FNO(**model.config())`` rebuilds it."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = len(self.modes)
        check_tensor("x", x, real=True)
        if x.ndim != 2 + d or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (batch, {self.in_channels}, {d} grid axes) for this FNO, "
                f"got {tuple(x.shape)}"
            )
        _check_dtype(self, x)
        grid = tuple(x.shape[2:])
        check_modes(self.modes, grid, grid_name="the grid of x")
        # the one value scan of the forward (one host sync on a GPU): the blocks run
        # without their own
        check_finite("x", x)
        if self.coordinates:
            b = x.shape[0]
            x = torch.cat([x] + [c.expand(b, 1, *grid) for c in _coordinates(grid, x)], dim=1)
        h = self.lifting(x)
        for block in self.blocks:
            h = block._forward(h)
        return self.projection(h)


def _check_dtype(model: nn.Module, x: torch.Tensor) -> None:
    """Name a dtype mismatch between the input and the weights (torch's own message is a
    matmul error deep inside the lifting layer); half precision passes under autocast."""
    p = next(model.parameters(), None)
    if p is not None and p.dtype != x.dtype and not (
            x.dtype in (torch.float16, torch.bfloat16) and _autocast_on(x.device.type)):
        raise TypeError(f"x is {x.dtype} but the model's weights are {p.dtype}: convert one, "
                        f"x.to({p.dtype}) or model.to({x.dtype})")


class SFNO(nn.Module):
    """Spatiotemporal FNO (Cao et al., Spectral-Refiner, ICLR 2025): trajectories to trajectories.

    The input frames ``w(t_1..t_Tin)`` become one field over (x, y, t) with the channels
    ``[w, x, y, t, sin(pi k t), cos(pi k t) (k = 1..time_features)]``; a channel MLP lifts
    them to ``width``, ``layers`` Fourier blocks with 3D spectral convolutions over
    (x, y, t) follow (``modes`` per space axis, ``modes_t`` in time), and the last block
    synthesises its output on ``out_steps`` time points, so the output length is free (the
    inverse transform in t resamples). A channel MLP projects to one channel, and the
    result is added to the last input frame: the network predicts the increment.

    Args:
        modes: spatial Fourier modes per axis (an int or ``(mx, my)``).
        modes_t: temporal modes (at most ``T // 2 + 1`` of both input and output lengths).
        width: channels inside the network.
        layers: number of Fourier blocks.
        out_steps: default number of output frames (``None``: as many as the input).
        time_features: pairs of temporal features ``sin/cos(pi k t)`` in the lifting.

    Shapes: ``(batch, T_in, n_x, n_y)`` -> ``(batch, T_out, n_x, n_y)``; the model works
    on any grid with at least ``2 modes`` points per space axis (zero-shot
    super-resolution).

    Precision and checks as for :class:`FNO`: autocast runs the spectral convolutions in
    float32 (the output is float32: the last input frame plus the projected increment);
    :meth:`forward` and :meth:`latent` scan ``x`` for NaN/Inf once (one host sync on a
    GPU), :meth:`head` not at all.
    """

    def __init__(
        self,
        modes: int | tuple[int, int],
        modes_t: int,
        width: int = 20,
        *,
        layers: int = 4,
        out_steps: int | None = None,
        time_features: int = 2,
    ) -> None:
        super().__init__()
        self.modes = check_int_tuple("modes", modes, length=2, minimum=1)
        self.modes_t = check_int("modes_t", modes_t, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.layers = check_int("layers", layers, minimum=1)
        self.out_steps = None if out_steps is None else check_int("out_steps", out_steps,
                                                                  minimum=1)
        self.time_features = check_int("time_features", time_features, minimum=0)
        all_modes = (*self.modes, self.modes_t)
        self.lifting = _mlp(4 + 2 * self.time_features, width, 2 * width)
        self.blocks = nn.ModuleList(
            FourierBlock(width, all_modes, last=i == layers - 1) for i in range(layers)
        )
        self.projection = _mlp(width, 1, 2 * width)

    def config(self) -> dict[str, object]:
        """The constructor arguments (JSON-safe): ``SFNO(**model.config())`` rebuilds it."""
        return {"modes": list(self.modes), "modes_t": self.modes_t, "width": self.width,
                "layers": self.layers, "out_steps": self.out_steps,
                "time_features": self.time_features}

    def _check(self, x: torch.Tensor, out_steps: int | None) -> int:
        check_tensor("x", x, real=True)
        if x.ndim != 4:
            raise ValueError(
                f"x must have shape (batch, T_in, n_x, n_y) (a batch of frame sequences), got "
                f"{tuple(x.shape)}"
            )
        _check_dtype(self, x)
        t_out = out_steps if out_steps is not None else self.out_steps or x.shape[1]
        t_out = check_int("out_steps", t_out, minimum=1)
        grid = (x.shape[2], x.shape[3], x.shape[1])
        check_modes((*self.modes, self.modes_t), grid,
                    grid_name="the input (n_x, n_y, T_in)")
        check_modes((*self.modes, self.modes_t), (*grid[:2], t_out),
                    grid_name="the output (n_x, n_y, T_out)")
        # the one value scan of a forward (one host sync on a GPU): the blocks run without
        # their own
        check_finite("x", x)
        return t_out

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        b, t, nx, ny = x.shape
        u = x.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, nx, ny, T)
        cx, cy, _ = _coordinates((nx, ny, t), x)
        ct = torch.linspace(0.0, 1.0, t, device=x.device, dtype=x.dtype).reshape(1, 1, 1, 1, t)
        feats = [u, cx.expand(b, 1, nx, ny, t), cy.expand(b, 1, nx, ny, t),
                 ct.expand(b, 1, nx, ny, t)]
        for k in range(1, self.time_features + 1):
            feats.append(torch.sin(math.pi * k * ct).expand(b, 1, nx, ny, t))
            feats.append(torch.cos(math.pi * k * ct).expand(b, 1, nx, ny, t))
        return torch.cat(feats, dim=1)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the last Fourier block, ``(batch, width, n_x, n_y, T_in)``."""
        self._check(x, None if self.out_steps is None else self.out_steps)
        return self._latent(x)

    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lifting(self._features(x))
        for block in self.blocks[:-1]:
            h = block._forward(h)
        return h

    def head(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        out_steps: int,
        *,
        spectral: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last block and the projection, from the latent ``h`` of :meth:`latent`.

        ``spectral`` replaces the last block's spectral convolution of ``h`` (the
        Spectral-Refiner swaps in its own full-mode layer here). No value scan: ``h`` comes
        from :meth:`latent`, which checked ``x`` (the refiner calls this every step).
        """
        target = (x.shape[2], x.shape[3], out_steps)
        h = self.blocks[-1]._forward(h, target, spectral=spectral)
        inc = self.projection(h)[:, 0].permute(0, 3, 1, 2)  # (B, T_out, nx, ny)
        return x[:, -1:] + inc

    def forward(self, x: torch.Tensor, out_steps: int | None = None) -> torch.Tensor:
        t_out = self._check(x, out_steps)
        return self.head(self._latent(x), x, t_out)
