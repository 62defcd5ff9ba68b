"""The pieces of the training loop that hold no Trainer state: batches, progress, clock."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def default_forward(model: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
    """``(model(x), y)`` for a batch ``(x, y)``."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        kind = f"{type(batch).__name__} of length {len(batch)}" if isinstance(
            batch, (tuple, list)) else type(batch).__name__
        raise ValueError(
            f"the default forward takes batches (x, y), got a {kind}; pass "
            "Trainer(..., forward=lambda model, batch: (prediction, target))"
        )
    x, y = batch
    return model(x), y


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to ``device`` without blocking the host.

    A CPU tensor bound for a GPU is first copied into pinned (page-locked) memory: only
    from there is ``non_blocking=True`` a true asynchronous copy (from pageable memory the
    copy waits for the device). Pinning here rather than with ``DataLoader(pin_memory=
    True)`` leaves tensors that are already on the GPU alone (the DataLoader's pinning
    refuses them).
    """
    if isinstance(batch, Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def dataset_len(name: str, data: object) -> int:
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(
            f"{name} must be a map-style torch Dataset (with __len__ and __getitem__), got "
            f"{type(data).__name__}; wrap tensors with torch.utils.data.TensorDataset(x, y)"
        )
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"{name} is empty (0 samples); pass a dataset with at least one sample")
    return n


def batch_sum(name: str, value: object, count: int) -> Tensor:
    """Sum over the batch of a per-sample ``(count,)`` value, or ``count *`` a scalar."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a tensor, got {type(value).__name__}")
    value = value.detach()
    if value.ndim == 0:
        return value.double() * count
    if value.shape == (count,):
        return value.double().sum()
    raise ValueError(
        f"{name} returned shape {tuple(value.shape)} for a batch of {count} samples; return a "
        f"scalar (the batch mean) or one value per sample, shape ({count},)"
    )


class LossLog:
    """The training losses of the steps since they were last read, kept on the device.

    Reading them (:meth:`read`) is the training loop's one host synchronisation; the steps
    in between take none, so the host can queue the next steps while the device works.
    """

    def __init__(self) -> None:
        self._losses: list[Tensor] = []
        self._where: list[tuple[int, int, int, int]] = []

    def __len__(self) -> int:
        return len(self._losses)

    def add(self, loss: Tensor, step: int, epoch: int, batch: int, count: int) -> None:
        """Keep the scalar ``loss`` of optimiser step ``step`` (``batch`` of ``epoch``, 0-based,
        of ``count`` samples)."""
        self._losses.append(loss.detach())
        self._where.append((step, epoch, batch, count))

    def read(self, ctx: Any) -> list[tuple[float, tuple[int, int, int, int]]]:
        """Each kept step's loss averaged over the ranks, oldest first, with its
        ``(step, epoch, batch, count)``; empties the log.

        One host synchronisation (and under torchrun one all-reduce, so every rank must
        read at the same steps); nothing when the log is empty.
        """
        if not self._losses:
            return []
        # float64: a float32 loss is exact in it, so the sums match those of loss.item()
        values = torch.stack([v.to(torch.float64) for v in self._losses])
        totals = ctx.sum(values)
        out = [(t / ctx.world_size, w) for t, w in zip(totals, self._where)]
        self._losses, self._where = [], []
        return out


@dataclass
class Progress:
    """Where a run stands; stored in the checkpoint as plain values."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    elapsed: float = 0.0
    loss_sum: float = 0.0  # sample-weighted sum of this epoch's training losses
    loss_count: int = 0
    lr: float = math.nan  # learning rate of the last step
    world_size: int = 1
    n_train: int = 0


class Clock:
    """Training time: wall-clock since ``start``, minus the paused intervals, plus ``offset``."""

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.start = time.perf_counter()
        self.paused = 0.0
        self.paused_at: float | None = None

    def elapsed(self) -> float:
        now = time.perf_counter() if self.paused_at is None else self.paused_at
        return self.offset + now - self.start - self.paused

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        if self.paused_at is not None:  # already paused
            yield
            return
        self.paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - self.paused_at
            self.paused_at = None
