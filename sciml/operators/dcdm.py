"""The network of the Deep Conjugate Direction Method: ``f(r) ~ A^-1 r`` up to scale.

Kaneda et al. (ICML 2023) train a CNN ``f`` so that one step along ``q = f(r)`` from any
residual ``r`` of a Poisson system removes as much of it as possible, and use ``q`` as the
search direction of a conjugate-direction iteration. Three lessons, learned on a
prototype, shape this version:

* **Scale equivariance.** ``f(s r) = s f(r)`` for ``s > 0``: the residual is scaled to unit
  RMS on the fluid cells on the way in and the output scaled back, and every layer is
  bias-free with leaky ReLU (positively homogeneous), so the network never sees the
  residual's size, which falls by orders of magnitude during a solve.
* **A receptive field that grows with the grid.** A fixed-depth U-Net stops helping at
  2-4x its training size. Here the layers form a learned V-cycle whose depth follows
  ``log2 N``: the same smoothing convolutions (shared weights) act on every level, from
  the full grid down to ``coarsest`` cells, so the network runs on any grid size with
  the same ~10k parameters and always sees the whole domain.

  A cap on the depth (``max_levels``) exists because the shared weights do not always
  extrapolate to a deeper hierarchy than the one they were trained on. Measured with the
  shipped 3D network (trained at 32^3, 4 levels) on the fluid proxy at rtol 1e-6:
  16^3 / 32^3 / 48^3 (3 / 4 / 4 levels) took 17 / 19 / 19 iterations, 64^3 took 46 with
  its natural 5 levels but 22 with 4; 128^3 took 332 with its natural 6 levels, 93 with
  5, 35 with 4 and 77 with 3. So the shipped 3D network keeps its training depth
  (``max_levels = 4``). The 2D network (trained at 64^2, 5 levels) does extrapolate
  (256^2: 42 iterations with 7 levels, 32 with 6, 39 with 5) and is left uncapped.
* **Obstacles.** Features are multiplied by the fluid mask at every level (a solid or
  air cell carries nothing), which keeps the network positively homogeneous.

One application costs about ``2 (2 s + 2) C^2 3^d`` multiply-adds per fine cell
(``s`` smoothing convolutions down and up, ``C`` channels) times ``8/7`` (``d = 3``) or
``4/3`` (``d = 2``) for the coarser levels: see :meth:`DCDMNet.macs`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_int, check_tensor

__all__ = ["DCDMNet"]


class DCDMNet(nn.Module):
    """A weight-shared multilevel network approximating ``A^-1 r`` up to a scale factor.

    Args:
        dim: 2 or 3 (grid dimensions).
        channels: feature channels ``C`` at every level.
        smoothing: convolutions per level on the way down and on the way up (shared by
            all levels).
        coarsest: stop coarsening once a side would drop below this many cells.
        negative_slope: of the leaky ReLU.
        max_levels: at most this many levels, the finest included (``None``: as many as
            ``coarsest`` allows); see the module docstring for why a cap can help.

    Call ``net(r, mask)`` with ``r`` ``(B, *grid)`` (residuals on the full grid) and
    ``mask`` ``(*grid)`` or ``(B, *grid)`` (1 on fluid cells, 0 elsewhere); returns
    ``(B, *grid)``, zero off the fluid cells, with ``net(s r) = s net(r)`` for ``s > 0``.
    """

    def __init__(self, dim: int = 3, channels: int = 16, smoothing: int = 1,
                 coarsest: int = 4, negative_slope: float = 0.1,
                 max_levels: int | None = None) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        self.dim = dim
        self.channels = check_int("channels", channels, minimum=1)
        self.smoothing = check_int("smoothing", smoothing, minimum=1)
        self.coarsest = check_int("coarsest", coarsest, minimum=1)
        if not (isinstance(negative_slope, (int, float)) and 0 <= negative_slope < 1):
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.max_levels = None if max_levels is None else check_int("max_levels", max_levels,
                                                                    minimum=1)
        conv = nn.Conv2d if dim == 2 else nn.Conv3d

        def c(cin: int, cout: int) -> nn.Module:
            return conv(cin, cout, 3, padding=1, bias=False)

        self.lift = c(1, channels)
        self.down = nn.ModuleList(c(channels, channels) for _ in range(smoothing))
        self.bottom = nn.ModuleList(c(channels, channels) for _ in range(2))
        self.up = nn.ModuleList(c(channels, channels) for _ in range(smoothing))
        self.project = c(channels, 1)

    def config(self) -> dict:
        return {"dim": self.dim, "channels": self.channels, "smoothing": self.smoothing,
                "coarsest": self.coarsest, "negative_slope": self.negative_slope,
                "max_levels": self.max_levels}

    def levels(self, shape: tuple[int, ...]) -> int:
        """Number of grid levels for a grid of ``shape`` (the finest included)."""
        n = 1
        s = list(shape)
        cap = math.inf if self.max_levels is None else self.max_levels
        while n < cap and all(v % 2 == 0 and v // 2 >= self.coarsest for v in s):
            s = [v // 2 for v in s]
            n += 1
        return n

    def padded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The grid a residual on ``shape`` is best padded to (with non-fluid cells) for
        this network: ``shape`` itself unless padding adds a level.

        The depth is limited by the first side that turns odd or would drop below
        ``coarsest`` cells, so an odd or rectangular grid (``(30, 50)``: 2 levels) can get
        far fewer levels than its shortest side allows. Each side is rounded up to a
        multiple of ``2^j``, ``j`` the number of halvings the shortest side allows
        (down to ``coarsest`` cells, at most ``max_levels - 1``): ``(30, 50)`` becomes
        ``(32, 56)`` with 4 levels. :class:`~sciml.solvers.linear.NetworkPreconditioner`
        pads to this shape and crops the direction back.
        """
        shape = tuple(int(v) for v in shape)
        cap = math.inf if self.max_levels is None else self.max_levels - 1
        smallest, j = min(shape), 0
        while j < cap and -(-smallest // 2 ** (j + 1)) >= self.coarsest:
            j += 1
        step = 2**j
        padded = tuple(-(-v // step) * step for v in shape)
        return padded if self.levels(padded) > self.levels(shape) else shape

    def macs(self, shape: tuple[int, ...]) -> int:
        """Multiply-adds of one application on a grid of ``shape`` (batch 1)."""
        k = 3 ** self.dim
        C = self.channels
        total, cells = 0, math.prod(shape)
        L = self.levels(tuple(shape))
        for level in range(L):
            per = 2 * self.smoothing * C * C * k
            if level == L - 1:
                per = 2 * C * C * k
            total += per * cells
            cells //= 2 ** self.dim
        return total + 2 * C * k * math.prod(shape)

    def _act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.dim == 2 else F.avg_pool3d(x, 2)

    def forward(self, r: Tensor, mask: Tensor | None = None) -> Tensor:
        d = self.dim
        r = check_tensor("r", r, min_ndim=d + 1, real=True)
        grid = tuple(r.shape[-d:])
        if r.ndim != d + 1:
            raise ValueError(f"r must be (B, *grid) with a {d}D grid, got shape "
                             f"{tuple(r.shape)}")
        if mask is None:
            m = torch.ones_like(r)
        else:
            mask = check_tensor("mask", mask, real=False)
            if tuple(mask.shape[-d:]) != grid or mask.ndim not in (d, d + 1):
                raise ValueError(f"mask must be {grid} or (B, *{grid}), got "
                                 f"{tuple(mask.shape)}")
            if mask.device != r.device:
                # no silent copy here: one per call would be a blocking transfer per
                # iteration of a solve; the caller moves the mask once
                raise ValueError(f"mask is on {mask.device} but r is on {r.device}: move "
                                 "the mask once, mask.to(r.device), and reuse it")
            m = mask.to(r.dtype).expand_as(r)
        w = next(self.parameters())
        x = (r * m).to(w.dtype)
        m = m.to(w.dtype)
        # unit RMS over the fluid cells in, the same factor back out: f(s r) = s f(r)
        count = m.flatten(1).sum(1).clamp_min(1.0)
        scale = (x.flatten(1).pow(2).sum(1) / count).sqrt()
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        shape = (-1,) + (1,) * d
        x = (x / safe.view(shape)).unsqueeze(1)
        m = m.unsqueeze(1)
        h = self.lift(x) * m
        skips, masks = [], []
        L = self.levels(grid)
        for _ in range(L - 1):
            for conv in self.down:
                h = (h + self._act(conv(h))) * m
            skips.append(h)
            masks.append(m)
            h = self._pool(h)
            m = (self._pool(m) > 0).to(m.dtype)
        for conv in self.bottom:
            h = (h + self._act(conv(h))) * m
        for skip, m in zip(reversed(skips), reversed(masks)):
            h = F.interpolate(h, scale_factor=2, mode="nearest") + skip
            for conv in self.up:
                h = (h + self._act(conv(h))) * m
        out = (self.project(h) * m).squeeze(1)
        return (out * safe.view(shape)).to(r.dtype) * (scale > 0).view(shape).to(r.dtype)
