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
    """Move the tensors of a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
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
