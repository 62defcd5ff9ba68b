"""Autoregressive rollout and pushforward training for bundled time steppers.

A *bundled time stepper* is a module ``model(u, t, theta) -> next`` that reads the last
``K = model.time_window`` stored steps ``u (B, K, nx)``, the time ``t (B,)`` of the last
of them and the PDE parameters ``theta (B, P)``, and returns the next ``K`` steps; it
has attributes ``time_window`` and ``dt`` (time between stored steps).
:class:`~sciml.operators.MPPDE` and :class:`~sciml.operators.BundledFNO` are two; this
module is the code they share (Brandstetter, Worrall & Welling, "Message passing neural
PDE solvers", ICLR 2022, section 2.3 and appendix).

* :func:`rollout`: apply the model to its own output, window after window.
* :func:`accumulated_mse`: the paper's metric, summed over time steps, averaged over
  space and samples.
* :class:`Pushforward`: the training objective. Per batch it draws a number of unrolls
  ``n`` in ``0 .. max_unroll`` (``max_unroll`` grows by one every ``grow_every`` steps, as
  the paper grows it per epoch), rolls the model ``n`` windows forward *without*
  gradients from a random start, and trains only the last window against the data: the
  model learns to correct the distribution shift of its own predictions, at the cost of
  one extra forward pass per unroll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._validation import check_finite, check_int, check_tensor, checks

__all__ = ["Pushforward", "accumulated_mse", "rollout"]


def rollout(model: nn.Module, u: Tensor, t: Tensor, theta: Tensor, steps: int) -> Tensor:
    """``steps`` stored time steps after the window ``u``, by repeated calls of ``model``.

    Args:
        model: a bundled time stepper (see the module docstring).
        u: ``(B, K, nx)``, the last ``K`` known steps (oldest first).
        t: ``(B,)`` the time of ``u[:, -1]``.
        theta: ``(B, P)``.
        steps: how many steps to predict (rounded up to whole windows, then cut).

    ``t`` and ``theta`` are moved to the device of ``u`` (the model's, for a model that
    runs there). ``u`` is scanned for NaN/Inf once; the model's own calls skip their
    scans (see :func:`sciml.checks`), so a rollout makes one host sync.

    Returns:
        ``(B, steps, nx)``: the predictions at ``t + dt, ..., t + steps * dt``.

    Raises:
        ValueError: ``u`` holds NaN or Inf.
    """
    K = check_int("model.time_window", getattr(model, "time_window", None), minimum=1)
    steps = check_int("steps", steps, minimum=1)
    u = check_tensor("u", u, ndim=3, real=True)
    # the times and parameters follow the window's device (a copy only if they are elsewhere)
    t = torch.as_tensor(t, dtype=u.dtype, device=u.device).reshape(-1).expand(u.shape[0])
    if isinstance(theta, Tensor):
        theta = theta.to(u.device)
    # the input is scanned for NaN/Inf once, here; the windows after it are the model's
    # own, so its calls skip their scans (one host sync each on a GPU)
    check_finite("u", u)
    out = []
    with checks(finite=False):
        for _ in range(-(-steps // K)):
            u = model(u, t, theta)
            out.append(u)
            t = t + K * model.dt
    return torch.cat(out, 1)[:, :steps]


def accumulated_mse(pred: Tensor, target: Tensor) -> Tensor:
    """The MP-PDE paper's accumulated error ``sum_k mean_{b, x} (pred - target)^2``.

    Args:
        pred, target: ``(B, T, nx)`` (time on dim 1).

    Returns:
        A scalar: the per-step mean squared errors over samples and space, summed over
        the ``T`` steps.
    """
    pred = check_tensor("pred", pred, ndim=3, real=True)
    target = check_tensor("target", target, ndim=3, real=True)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         f"must have the same shape (B, T, nx)")
    return ((pred - target) ** 2).mean((0, 2)).sum()


@dataclass
class Pushforward:
    """Training objective for a :class:`~sciml.train.Trainer` (``forward=`` and ``loss``).

    Batches are whole trajectories ``(u (B, nt, nx), theta (B, P))``. In training mode a
    batch draws ``n ~ U{0 .. max_unroll(step)}`` and per sample a start ``s`` such that
    ``u[s : s + K]`` is the input and ``u[s + (n+1) K : s + (n+2) K]`` the target
    (``s`` in ``[first, nt - (n+2) K]``); the ``n`` intermediate windows are the model's
    own predictions, made under ``torch.no_grad()``. In eval mode ``n = 0`` and the starts
    are a fixed grid (so the evaluation is deterministic). Draws use the global torch RNG,
    whose state the Trainer checkpoints, so a resumed run draws the same batches: the
    number of unrolls from the CPU generator (a host number, no device sync), the starts
    on the device of the batch (on a GPU, from its generator); every index is built there.

    Args:
        max_unroll: the most unrolls (the paper: 1... a few).
        grow_every: optimiser steps per increase of the allowed unrolls (0: the full
            ``max_unroll`` from the start). Needs :attr:`trainer` set (the step count).
        first: the earliest start index (0).
        loss_kind: ``"mse"`` (mean square) or ``"paper"`` (the square root of the summed
            square error, the authors' criterion).
    """

    max_unroll: int = 1
    grow_every: int = 0
    first: int = 0
    loss_kind: str = "mse"
    trainer: object | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_int("max_unroll", self.max_unroll, minimum=0)
        check_int("grow_every", self.grow_every, minimum=0)
        check_int("first", self.first, minimum=0)
        if self.loss_kind not in ("mse", "paper"):
            raise ValueError(f"loss_kind must be 'mse' or 'paper', got {self.loss_kind!r}")

    def allowed_unroll(self) -> int:
        """``max_unroll`` now: ``min(max_unroll, step // grow_every)``."""
        if self.grow_every == 0:
            return self.max_unroll
        if self.trainer is None:
            # without the step count the schedule cannot grow: refuse rather than silently
            # train with the full max_unroll from the first step
            raise ValueError(
                f"Pushforward(grow_every={self.grow_every}) needs the Trainer's step count: "
                "set push.trainer = trainer after building the Trainer, or pass grow_every=0 "
                "for the full max_unroll from the start"
            )
        return min(self.max_unroll, int(self.trainer.global_step) // self.grow_every)

    def forward(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        u, theta = batch[0], batch[1]
        B, nt, _ = u.shape
        K, dt = model.time_window, model.dt
        dev = u.device
        if model.training:
            # a CPU draw: reading it is no device sync (it sets the loop count below)
            n = int(torch.randint(0, self.allowed_unroll() + 1, ()))
            last = nt - (n + 2) * K
            if last < self.first:
                n, last = 0, nt - 2 * K
            s = torch.randint(self.first, last + 1, (B,), device=dev)
        else:
            n = 0
            span = nt - 2 * K - self.first
            s = self.first + (torch.arange(B, device=dev) * 7919) % (span + 1)
        idx = s[:, None] + torch.arange(K, device=dev)[None, :]
        rows = torch.arange(B, device=dev)[:, None]
        window = u[rows, idx]
        t = (s + K - 1).to(u.dtype) * dt
        # the model runs without its finiteness scans (a host sync per call on a GPU): a
        # non-finite loss is caught by the Trainer
        with checks(finite=False):
            if n:
                with torch.no_grad():
                    for _ in range(n):
                        window = model(window, t, theta)
                        t = t + K * dt
            pred = model(window, t, theta)
        target = u[rows, idx + (n + 1) * K]
        return pred, target

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.loss_kind == "paper":
            return ((pred - target) ** 2).sum().sqrt()
        return ((pred - target) ** 2).mean()
