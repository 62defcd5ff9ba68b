"""Settings and result of a training run, and the optimiser and schedule they define."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._validation import check_bool, check_choice, check_int, check_positive

SCHEDULES = ("onecycle", "cosine", "constant")

#: Mixed-precision modes (``TrainConfig.amp``) and the autocast dtype of each.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Settings that change the sequence of optimiser steps: a run may only be resumed with
#: the values it was started with. The others (time_budget, checkpoint_every, eval_every,
#: log_every, progress, num_workers) may change between segments of a resumed run.
RUN_FIELDS = (
    "epochs", "lr", "batch_size", "schedule", "weight_decay", "grad_clip", "max_steps",
    "seed", "shuffle", "amp",
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, stopping, checkpoints, evaluation.

    The optimiser is Adam (``weight_decay == 0``) or AdamW (decoupled weight decay,
    Loshchilov & Hutter 2019). The learning-rate schedule is stepped once per optimiser
    step and spans ``min(epochs * steps_per_epoch, max_steps)`` steps:

    * ``"onecycle"``: :class:`torch.optim.lr_scheduler.OneCycleLR` with ``max_lr=lr``
      (warm-up from ``lr / 25`` over 30 % of the steps, cosine annealing to
      ``lr / 25e4``; Smith & Topin 2019);
    * ``"cosine"``: :class:`torch.optim.lr_scheduler.CosineAnnealingLR` from ``lr`` to 0;
    * ``"constant"``: ``lr`` throughout.

    Args:
        epochs: passes over the training data (>= 1).
        lr: learning rate (the peak of the one-cycle schedule), > 0.
        batch_size: samples per batch *per process* (under torchrun the global batch is
            ``batch_size * world_size``).
        schedule: ``"onecycle"``, ``"cosine"`` or ``"constant"``.
        weight_decay: decoupled weight decay (AdamW) when > 0.
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        max_steps: stop after this many optimiser steps (None: no cap).
        time_budget: seconds of training (evaluation and checkpoint writing excluded,
            summed over resumed segments); training stops after the step that exceeds it.
        checkpoint_every: also write a checkpoint every this many optimiser steps (one is
            always written at the end of each epoch and when training stops).
        eval_every: evaluate every this many epochs (and always when training stops).
        seed: seeds the order of the samples (epoch ``e`` is shuffled by a generator
            seeded from ``(seed, e)``; the global RNG is not used).
        shuffle: shuffle the samples each epoch (False: dataset order).
        progress: show a tqdm bar with the running loss and the ETA (rank 0 only).
        num_workers: DataLoader worker processes that load batches (0: in the main process).
        log_every: read the training losses back from the device every this many
            optimiser steps (and at every checkpoint and epoch end): the progress bar's
            running loss is updated and the NaN/Inf check of the loss made there. Each read
            is one host synchronisation; the steps in between take none, so on a GPU the
            host keeps queueing work. A non-finite loss is therefore found up to
            ``log_every`` steps after it happened (the error names its step; nothing is
            written after it).
        amp: mixed precision: ``None`` or ``"off"`` (float32, the default), ``"bf16"``
            (forward and loss under :func:`torch.autocast` with bfloat16 on the model's
            device type) or ``"fp16"`` (autocast with float16 and a
            :class:`torch.amp.GradScaler`, whose state is saved in checkpoints and restored
            on resume; the optimiser is then the fused Adam(W), so that the scaler's
            overflow check stays on the device). ``"off"`` is stored as ``None``.

    Raises:
        TypeError: a setting has the wrong type.
        ValueError: a setting is out of range; the message says the accepted range.
    """

    epochs: int
    lr: float = 1e-3
    batch_size: int = 4
    schedule: str = "onecycle"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None
    checkpoint_every: int | None = None
    eval_every: int = 1
    seed: int = 0
    shuffle: bool = True
    progress: bool = True
    num_workers: int = 0
    log_every: int = 50
    amp: str | None = None

    def __post_init__(self) -> None:
        # (name, minimum, fix, None allowed); numpy/torch integer scalars are stored as int
        for name, minimum, fix, optional in (
            ("epochs", 1, "train for at least one epoch", False),
            ("batch_size", 1, "use at least one sample per batch", False),
            ("max_steps", 1, "use None for no cap", True),
            ("checkpoint_every", 1, "use None to checkpoint at epoch ends only", True),
            ("eval_every", 1, "use 1 to evaluate after every epoch", False),
            ("seed", 0, "use a non-negative seed", False),
            ("num_workers", 0, "use 0 to load in the main process", False),
            ("log_every", 1, "a typical value is 50", False),
        ):
            v = getattr(self, name)
            if not (optional and v is None):
                object.__setattr__(self, name, check_int(f"TrainConfig.{name}", v,
                                                         minimum=minimum, fix=fix))
        # (name, 0 allowed, fix, None allowed); stored as float
        for name, zero, fix, optional in (
            ("lr", False, "a typical value is 1e-3", False),
            ("weight_decay", True, "use 0 for none", False),
            ("grad_clip", False, "use None for no clipping", True),
            ("time_budget", False, "use None for no limit", True),
        ):
            v = getattr(self, name)
            if not (optional and v is None):
                object.__setattr__(self, name, check_positive(f"TrainConfig.{name}", v,
                                                              allow_zero=zero, fix=fix))
        check_choice("TrainConfig.schedule", self.schedule, SCHEDULES)
        object.__setattr__(self, "amp", _check_amp(self.amp))
        for name in ("shuffle", "progress"):
            object.__setattr__(self, name, check_bool(f"TrainConfig.{name}", getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-safe dict (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Raises:
            ValueError: ``d`` has keys that are not settings.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig setting(s) {unknown}; known: {sorted(names)}")
        return cls(**d)


def _check_amp(v: object) -> str | None:
    """``TrainConfig.amp`` checked: ``None`` for off, else ``"bf16"`` or ``"fp16"``."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise TypeError(f"TrainConfig.amp must be None or a str ('off', 'bf16', 'fp16'), got "
                        f"{v!r} ({type(v).__name__})")
    if v == "off":
        return None
    if v not in AMP_DTYPES:
        raise ValueError(
            f"TrainConfig.amp must be None, 'off', 'bf16' or 'fp16', got {v!r}; use 'bf16' "
            "for bfloat16 autocast, 'fp16' for float16 autocast with loss scaling, or None "
            "for float32"
        )
    return v


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        history: one record per epoch end and one where training stopped mid-epoch:
            ``epoch`` (epochs done, fractional mid-epoch), ``step`` (optimiser steps),
            ``train_loss`` (sample-weighted mean over the epoch's batches so far), ``lr``
            (of the last step), ``elapsed`` (training seconds) and, when the run was
            evaluated there, ``eval_loss`` and ``eval_<metric>``. Includes the records
            of earlier segments of a resumed run.
        global_step: optimiser steps taken (over all segments).
        epochs_done: epochs done, fractional when stopped mid-epoch.
        elapsed: seconds of training summed over all segments (evaluation and
            checkpoint writing excluded).
        stopped: ``"epochs"``, ``"max_steps"`` or ``"time_budget"``.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    global_step: int = 0
    epochs_done: float = 0.0
    elapsed: float = 0.0
    stopped: str = "epochs"


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW when ``config.weight_decay > 0``, over the trainable parameters.

    With ``config.amp == "fp16"`` the fused implementation: it takes the GradScaler's
    inverse scale and overflow flag as device tensors and skips an overflowed step on the
    device, where the default one makes the scaler read the flag on the host every step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (none with requires_grad=True)")
    kw: dict[str, Any] = {"fused": True} if config.amp == "fp16" else {}
    if config.weight_decay > 0:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **kw)
    return torch.optim.Adam(params, lr=config.lr, **kw)


def _constant(step: int) -> float:
    # a module-level function (not a lambda) so the scheduler's state stays picklable
    return 1.0


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of ``config`` over ``total_steps`` optimiser steps."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_steps, eta_min=0.0
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _constant)
