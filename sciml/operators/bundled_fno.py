"""A 1D FNO with temporal bundling: the FNO baseline of the MP-PDE benchmark.

Brandstetter, Worrall & Welling (ICLR 2022) compare their message-passing solver with an
FNO that reads the last ``K`` time steps and writes the next ``K`` ("FNO-PF" when it is
trained with the pushforward trick). This module is that baseline on top of
:class:`~sciml.operators.FNO`: the same call signature as :class:`~sciml.operators.MPPDE`,
so the rollout and the pushforward training in :mod:`sciml.train.rollout` serve both.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_int, check_tensor
from .fno import FNO

__all__ = ["BundledFNO"]


class BundledFNO(nn.Module):
    """The next ``K`` time steps from the last ``K``, on a periodic 1D grid.

    .. math:: u^{n+k} = u^{n} + k\\,\\Delta t\\, d_k,\\qquad
              d = \\mathrm{FNO}([u^{n-K+1}, \\dots, u^{n}, t, \\theta]),

    the same temporal-bundling output as MP-PDE (the paper's eq. 10: each ``d_k`` is a
    mean rate over ``k`` steps), so the first predicted step is ``u_last + dt * d_1``.
    The time ``t`` (divided by ``tmax``) and the PDE parameters ``theta`` enter as
    constant channels.

    Args:
        time_window: ``K``, steps read and written per call.
        dt: time between stored steps (> 0).
        n_params: number of PDE parameters in ``theta`` (0 allowed).
        width: FNO channels.
        modes: Fourier modes kept (must not exceed ``nx // 2`` of the grids it runs on).
        layers: Fourier blocks.
        tmax: the time scale ``t`` is divided by (default ``250 * dt``).

    Shapes: ``u (B, K, nx), t (B,), theta (B, n_params) -> (B, K, nx)``; ``t`` and
    ``theta`` follow the device and dtype of ``u``.
    """

    def __init__(self, time_window: int = 25, *, dt: float, n_params: int = 3,
                 width: int = 64, modes: int = 16, layers: int = 4,
                 tmax: float | None = None) -> None:
        super().__init__()
        self.time_window = check_int("time_window", time_window, minimum=1)
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ValueError(f"dt must be a positive number (the time between stored steps), "
                             f"got {dt!r}")
        self.dt = float(dt)
        self.n_params = check_int("n_params", n_params, minimum=0)
        self.tmax = float(tmax) if tmax is not None else 250 * self.dt
        if not self.tmax > 0:
            raise ValueError(f"tmax must be positive, got {tmax!r}")
        self.fno = FNO(self.time_window + 1 + self.n_params, self.time_window, width,
                       (check_int("modes", modes, minimum=1),), layers=layers)
        self.register_buffer("_steps", torch.arange(1, self.time_window + 1,
                                                    dtype=torch.float32), persistent=False)
        self._config = {"time_window": self.time_window, "dt": self.dt,
                        "n_params": self.n_params, "width": width, "modes": modes,
                        "layers": layers, "tmax": self.tmax}

    def config(self) -> dict[str, object]:
        """The constructor arguments (JSON-safe): ``BundledFNO(**m.config())`` rebuilds it."""
        return dict(self._config)

    def forward(self, u: Tensor, t: Tensor, theta: Tensor) -> Tensor:
        u, t, theta = check_window(self, u, t, theta)
        B, _, nx = u.shape
        extra = torch.cat([(t / self.tmax)[:, None], theta], 1).to(u.dtype)
        x = torch.cat([u, extra[:, :, None].expand(B, extra.shape[1], nx)], 1)
        d = self.fno(x)
        return u[:, -1:] + self.dt * self._steps[:, None].to(d.dtype) * d


def check_window(model: nn.Module, u: Tensor, t: Tensor, theta: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Validate the ``(u, t, theta)`` of a bundled time stepper (shared with MPPDE-like
    models that have ``time_window`` and ``n_params``)."""
    u = check_tensor("u", u, ndim=3, real=True)
    K = model.time_window
    if u.shape[1] != K:
        raise ValueError(f"u must be (batch, time_window={K}, nx), got {tuple(u.shape)}: "
                         f"pass the last {K} time steps")
    B = u.shape[0]
    # t and theta follow u's device and dtype (no copy when they are there already)
    t = check_tensor("t", t, real=True).to(u.device, u.dtype).reshape(-1)
    if t.shape[0] == 1 and B > 1:
        t = t.expand(B)
    if t.shape[0] != B:
        raise ValueError(f"t must hold one time per sample ({B}), got shape {tuple(t.shape)}")
    theta = check_tensor("theta", theta, real=True).to(u.device, u.dtype)
    if theta.ndim == 1:
        theta = theta.unsqueeze(0).expand(B, -1)
    if theta.shape != (B, model.n_params):
        raise ValueError(f"theta must be (batch={B}, n_params={model.n_params}), got "
                         f"{tuple(theta.shape)}")
    return u, t, theta
