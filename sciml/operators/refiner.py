"""The Spectral-Refiner: per-trajectory fine-tuning of a trained SFNO's last spectral layer on
the Navier-Stokes residual (:class:`SpectralRefiner`, its function form :func:`refine`, and
what both return, :class:`RefineResult`). It needs no ground truth: the residual of the
refined prediction is the only objective."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .._validation import as_tensor, check_bool, check_finite, check_int, check_tensor, checks
from ..spectral import irfftn_truncated, rfftn_truncated
from .fno import SFNO
from .losses import NSResidualLoss

__all__ = ["RefineResult", "SpectralRefiner", "refine"]


@dataclass(frozen=True)
class SpectralRefiner:
    """Fine-tune the last spectral layer of a trained SFNO on the residual, per trajectory.

    The trained network is frozen and its latent field (the input of the last Fourier block)
    is computed once. The last block's spectral convolution is rebuilt with *all* modes the
    grid holds (no truncation) with the trained weights copied into the low modes and zeros
    elsewhere, one copy per trajectory, and each copy is fitted by Adam for ``steps`` steps
    to make the Navier-Stokes residual of its own predicted trajectory small in the norm of
    the :class:`~sciml.operators.NSResidualLoss` (``s = -1``: H^-1, the paper's; ``s = 0``:
    L2). No ground truth enters: this is a-posteriori error control. All other weights,
    the skips and the projection included, stay fixed.

    The copies are independent (separate weights, a summed loss and Adam's per-weight
    steps), so refining a batch together gives each trajectory what refining it alone
    would, up to float rounding.

    On a GPU the steps take no host synchronisation and a call two: ``x`` is checked for
    NaN/Inf once on entry, the model and the steps then run without the finiteness scans of
    the spectral and PDE routines, and the residual history is checked once at the end (a
    refinement that diverged to NaN/Inf raises :class:`FloatingPointError` naming the step).

    Args:
        steps: Adam steps per trajectory (>= 1).
        lr: Adam learning rate.
        batch_size: trajectories refined together (memory: about ``16 n_x n_y (T/2 + 1)
            width^2`` bytes each in float32).
        progress: show a progress bar.

    Reference: Cao, Brarda, Li, Wang, "Spectral-Refiner: accurate fine-tuning of
    spatiotemporal Fourier neural operator for turbulent flows", ICLR 2025.
    """

    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_bool("progress", self.progress)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
            math.isfinite(self.lr) and self.lr > 0
        ):
            raise ValueError(f"lr must be a positive number, got {self.lr!r} (e.g. 1e-3)")

    def __call__(
        self, model: SFNO, x: torch.Tensor, residual: NSResidualLoss, *,
        out_steps: int | None = None,
    ) -> RefineResult:
        """Refine the predictions of ``model`` from the inputs ``x`` (``(B, T_in, n, n)``)."""
        if not isinstance(model, SFNO):
            raise TypeError(f"model must be an SFNO, got {type(model).__name__}")
        if not isinstance(residual, NSResidualLoss):
            raise TypeError(f"residual must be an NSResidualLoss, got {type(residual).__name__}")
        # a numpy x takes the model's dtype and device
        x = check_tensor("x", as_tensor(x, like=next(model.parameters(), None)), real=True)
        check_finite("x", x)  # once here, not in every step
        with checks(finite=False):  # the model's own scan of x would repeat it
            t_out = model._check(x, out_steps)
        if t_out < 5:
            raise ValueError(
                f"the refiner needs at least 5 output frames for the residual's time "
                f"derivative, got out_steps={t_out}"
            )
        param = next(model.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        flags = [p.requires_grad for p in model.parameters()]
        was_training = model.training
        model.eval().requires_grad_(False)
        parts = []
        bar = tqdm(total=self.steps * x.shape[0], desc="refine", unit="step",
                   disable=not self.progress, leave=False)
        try:
            for i in range(0, x.shape[0], self.batch_size):
                parts.append(self._refine_batch(model, x[i:i + self.batch_size], residual,
                                                t_out, bar))
        finally:
            bar.close()
            for p, f in zip(model.parameters(), flags):
                p.requires_grad_(f)
            model.train(was_training)
        result = RefineResult(
            initial=torch.cat([p[0] for p in parts]),
            prediction=torch.cat([p[1] for p in parts]),
            history=torch.cat([p[2] for p in parts], dim=1),
        )
        _check_history(result.history, self.lr)
        return result

    def _refine_batch(
        self, model: SFNO, x: torch.Tensor, residual: NSResidualLoss, t_out: int, bar: tqdm,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        conv = model.blocks[-1].conv
        nx, ny, t_in = x.shape[2], x.shape[3], x.shape[1]
        full = (nx // 2, ny // 2, min(t_in, t_out) // 2 + 1)
        # x was checked on entry: no NaN/Inf scan in the layers either
        with torch.no_grad(), checks(finite=False):
            h = model.latent(x)
            initial = model.head(h, x, t_out)
            c = rfftn_truncated(h, full)  # (B, C, *kept), fixed from here on
        b, width = x.shape[0], conv.in_channels
        kept = tuple(c.shape[2:])
        weight = nn.Parameter(_full_weights(conv.weight.detach(), conv.modes, full, b))
        bias = None if conv.bias is None else nn.Parameter(
            conv.bias.detach().expand(b, -1).clone())
        k = math.prod(kept)
        cout = conv.out_channels
        cf = c.reshape(b, width, k).permute(0, 2, 1).reshape(b * k, width).contiguous()
        ccf = cf.conj().resolve_conj().unsqueeze(2)  # (BK, Cin, 1)
        w = torch.view_as_complex(weight.detach()).reshape(b * k, width, cout)  # shares memory
        # The weights are large (n_x n_y T/2 width^2 per trajectory): their gradient is the
        # outer product conj(c) g, written into one buffer reused every step. A fresh tensor
        # of this size per step is page-faulted in by the OS each time (10x slower here).
        weight.grad = torch.zeros_like(weight)
        gw = torch.view_as_complex(weight.grad).reshape(b * k, width, cout)
        # fused Adam: one pass over each weight tensor per step
        opt = torch.optim.Adam([weight] + ([bias] if bias is not None else []), lr=self.lr,
                               fused=True)

        def predict() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                y0 = torch.bmm(cf.unsqueeze(1), w).squeeze(1)  # (BK, Cout)
            y0.requires_grad_(True)
            y = y0.reshape(b, k, cout).permute(0, 2, 1).reshape(b, cout, *kept)
            if bias is not None:
                dc = torch.zeros(b, cout, *kept, dtype=y.dtype, device=y.device)
                dc[(slice(None), slice(None)) + (0,) * 3] = bias.to(y.dtype)
                y = y + dc
            spectral = irfftn_truncated(y, (nx, ny, t_out))
            return y0, model.head(h, x, t_out, spectral=spectral)

        history = []
        # x was checked on entry and the history is checked at the end: no NaN/Inf scan
        # (a host sync on a GPU) inside the steps
        with checks(finite=False):
            for _ in range(self.steps):
                if bias is not None:
                    bias.grad = None
                y0, pred = predict()
                per = residual.per_sample(pred)
                history.append(per.detach())
                # the sum keeps the trajectories' gradients separate and unscaled
                per.sum().backward()
                torch.mul(ccf, y0.grad.unsqueeze(1), out=gw)
                opt.step()
                bar.update(b)
            with torch.no_grad():
                out = predict()[1]
                history.append(residual.per_sample(out))
        return initial, out, torch.stack(history)


def _check_history(history: torch.Tensor, lr: float) -> None:
    """Raise if the residual became NaN/Inf (one host sync), naming the first step."""
    bad = ~torch.isfinite(history)
    if bool(bad.any()):
        step, traj = (int(v) for v in bad.nonzero()[0])
        raise FloatingPointError(
            f"the refinement diverged: the residual of trajectory {traj} is "
            f"{float(history[step, traj])} before step {step + 1} (history row {step}); "
            f"lower the learning rate (lr={lr}) or refine from a better-trained model"
        )


def _full_weights(
    trained: torch.Tensor, modes: tuple[int, ...], full: tuple[int, ...], batch: int,
) -> torch.Tensor:
    """Embed the trained ``(*kept, in, out, 2)`` weights in the low modes of a full layer."""
    kept_full = (*tuple(2 * m for m in full[:-1]), full[-1])
    out = trained.new_zeros(batch, *kept_full, *trained.shape[-3:])
    # on a full axis frequencies 0..m-1 sit first and -m..-1 last, for any m
    src_parts = [[(slice(0, m), slice(0, m)), (slice(m, 2 * m), slice(2 * M - m, 2 * M))]
                 for m, M in zip(modes[:-1], full[:-1])]
    mt = min(modes[-1], full[-1])
    for ax in src_parts[0]:
        for ay in src_parts[1]:
            src = (ax[0], ay[0], slice(0, mt))
            dst = (slice(None), ax[1], ay[1], slice(0, mt))
            out[dst] = trained[src]
    return out


@dataclass
class RefineResult:
    """What the Spectral-Refiner returns.

    Attributes:
        initial: the frozen model's predictions ``(B, T_out, n, n)`` (model units).
        prediction: the refined predictions, same shape.
        history: the residual norm of each trajectory before each step and after the
            last, ``(steps + 1, B)``; ``history[0]`` is the residual of ``initial``.
    """

    initial: torch.Tensor
    prediction: torch.Tensor
    history: torch.Tensor

    @property
    def residual_before(self) -> torch.Tensor:
        return self.history[0]

    @property
    def residual_after(self) -> torch.Tensor:
        return self.history[-1]


def refine(
    model: SFNO, x: torch.Tensor, residual: NSResidualLoss, *, steps: int = 100,
    lr: float = 1e-3, batch_size: int = 4, out_steps: int | None = None,
    progress: bool = True,
) -> RefineResult:
    """Function form of :class:`SpectralRefiner`: ``SpectralRefiner(steps, lr, ...)(model, x,
    residual)``."""
    return SpectralRefiner(steps=steps, lr=lr, batch_size=batch_size, progress=progress)(
        model, x, residual, out_steps=out_steps)
