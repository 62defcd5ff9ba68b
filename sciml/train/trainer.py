"""The one Trainer every model in sciml trains through.

A training run is a sequence of optimiser steps fixed by the config and the data: epoch
``e`` visits the samples in an order drawn from a generator seeded with ``(seed, e)``
(never the global RNG), so a run killed at any point and resumed from its last
checkpoint skips the batches already done and takes exactly the steps the uninterrupted
run would have taken; the checkpoint carries the weights, the optimiser and schedule
states, the RNG states (for dropout and the like) and the running loss of the epoch.

Under torchrun (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel and
each epoch's order is sharded over the ranks so that ``W`` processes with batch ``b``
take the steps of one process with batch ``W * b`` (see :mod:`._distributed`). Only
rank 0 writes files and shows progress. Evaluation is sharded too: every rank evaluates
its share of the samples and the sums and counts are all-reduced, so every rank gets
the exact sample-weighted means over the whole evaluation set.

Files in ``out_dir``: ``checkpoint.pt`` (latest state, replaced atomically every
``checkpoint_every`` steps, at each epoch end and when training stops), ``metrics.jsonl``
(one JSON record per line, see :class:`TrainResult`) and ``model.pt`` (the final
weights with the config and ``model_config``, written when ``fit`` returns). Both ``.pt``
files also record the fingerprints of the ``data_files`` and the checksums of their
tensors. While ``fit`` runs, rank 0 holds ``out_dir/train.lock``: a second run on the same
``out_dir`` stops at once with an error naming the first one's pid.

A resumed run must match its checkpoint: the same run settings, the same ``model_config``
and data files of the same content (by fingerprint); the error names what differs.
Checkpoints are read onto the CPU and the state then moved to the Trainer's device, so a
run written on a GPU resumes on the CPU and the other way round.

On a GPU a training step takes no host synchronisation of the Trainer's own: the batch is
copied from pinned memory without blocking, and the batch losses stay on the device until
they are read back together every ``log_every`` steps, at checkpoints and at epoch ends
(for the progress bar, the metrics and the NaN/Inf check). Mixed precision
(``TrainConfig.amp``) runs the forward pass and the loss under :func:`torch.autocast`;
with ``"fp16"`` a :class:`torch.amp.GradScaler` scales the loss, and its state is part of
the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .._files import writer_lock
from ._checkpoint import (
    CHECKPOINT,
    FORMAT,
    FORMAT_VERSION,
    METRICS,
    MODEL,
    append_record,
    check_json,
    check_resumable,
    load_checkpoint,
    load_model_state,
    rewrite_records,
    rng_state,
    save,
    set_rng_state,
    truncate_records,
)
from ._config import (
    AMP_DTYPES,
    RUN_FIELDS,
    TrainConfig,
    TrainResult,
    make_optimizer,
    make_scheduler,
)
from ._distributed import (
    Distributed,
    default_device,
    epoch_order,
    epoch_seed,
    shard_batches,
    steps_per_epoch,
)
from ._loop import (
    Clock,
    LossLog,
    Progress,
    batch_sum,
    dataset_len,
    default_forward,
    to_device,
)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_checkpoint", "load_model_state"]

Forward = Callable[[nn.Module, Any], tuple[Tensor, Tensor]]
Metric = Callable[[Tensor, Tensor], Tensor]


class Trainer:
    """Train a model by minibatch Adam(W) with checkpoints, resume, metrics and torchrun.

    Args:
        model: the module to train (moved to ``device``).
        loss: ``loss(prediction, target)``, a scalar tensor (the batch mean).
        config: the settings (:class:`TrainConfig`).
        out_dir: directory for ``checkpoint.pt``, ``metrics.jsonl`` and ``model.pt``
            (created if needed); None writes nothing.
        metrics: evaluation metrics by name, ``metric(prediction, target)`` returning
            one value per sample, shape ``(B,)``, or a scalar batch mean; averaged over the
            evaluation set weighted by samples. The name ``"loss"`` is reserved.
        forward: ``forward(model, batch) -> (prediction, target)`` for batches that are
            not ``(x, y)`` pairs (default: ``(model(x), y)``). During training under
            torchrun it receives the DistributedDataParallel wrapper.
        device: where to train (default: the CPU, or ``cuda:LOCAL_RANK`` under torchrun
            on a CUDA machine).
        model_config: JSON-safe description of how to rebuild the model, stored in the
            checkpoint and in ``model.pt``; a resumed run must pass the same one.
        data_files: the files the data are read from, by name (e.g. ``{"data": path}``):
            their fingerprints (:func:`sciml.data.fingerprint`) are stored in the
            checkpoint and in ``model.pt``, and a resumed run must read files of the same
            content (they may have moved).

    The Trainer never seeds the global RNG (the sample order has its own generator):
    seed it (``torch.manual_seed``) for reproducible dropout or noise in the model. Its
    state is saved in each checkpoint and restored on resume.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a metric is named ``"loss"``, or ``model_config`` is not JSON-safe,
            or the model has no trainable parameters.

    Example::

        trainer = Trainer(model, nn.functional.mse_loss, TrainConfig(epochs=10, lr=1e-3),
                          out_dir="runs/fno", metrics={"rel_l2": rel_l2})
        result = trainer.fit(train_set, test_set, resume=True)
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[Tensor, Tensor], Tensor],
        config: TrainConfig,
        *,
        out_dir: str | os.PathLike | None = None,
        metrics: Mapping[str, Metric] | None = None,
        forward: Forward | None = None,
        device: str | torch.device | None = None,
        model_config: Mapping[str, Any] | None = None,
        data_files: Mapping[str, str | os.PathLike] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss):
            raise TypeError(f"loss must be callable as loss(prediction, target), got {loss!r}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        metrics = dict(metrics or {})
        for name, fn in metrics.items():
            if not isinstance(name, str) or not callable(fn):
                raise TypeError(f"metrics must map names (str) to callables, got {name!r}: {fn!r}")
        if "loss" in metrics:
            raise ValueError("the metric name 'loss' is reserved for the loss; rename the metric")
        if forward is not None and not callable(forward):
            raise TypeError(f"forward must be callable as forward(model, batch), got {forward!r}")
        data_files = dict(data_files or {})
        for name, file in data_files.items():
            if not isinstance(name, str) or not isinstance(file, (str, os.PathLike)):
                raise TypeError(f"data_files must map names (str) to paths, got {name!r}: "
                                f"{file!r}")
        self.config = config
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.device = torch.device(device) if device is not None else default_device()
        self.model_config = check_json("model_config", model_config)
        self._model = model.to(self.device)
        self._loss = loss
        self._metrics = metrics
        self._forward = forward or default_forward
        if config.amp is not None:
            available = getattr(torch.amp, "is_autocast_available", None)
            if available is not None and not available(self.device.type):
                raise ValueError(
                    f"TrainConfig.amp={config.amp!r} needs torch.autocast on the device type "
                    f"{self.device.type!r}, which this torch does not offer; train with "
                    "amp=None or on a 'cuda' or 'cpu' device"
                )
        self._optimizer = make_optimizer(self._model, config)
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scaler: torch.amp.GradScaler | None = None
        self._losses = LossLog()
        self._progress = Progress()
        self._dist: Distributed | None = None
        self._data_files = {k: str(v) for k, v in data_files.items()}
        #: ``{name: {"file", "fingerprint"}}`` of the data files, taken when ``fit`` starts
        self._inputs: dict[str, dict[str, str]] = {}

    @property
    def model(self) -> nn.Module:
        """The trained module (never the DistributedDataParallel wrapper)."""
        return self._model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser (rebuilt, without state, at the start of each :meth:`fit`)."""
        return self._optimizer

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule of the latest :meth:`fit` (None before the first)."""
        return self._scheduler

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The loss scaler of the latest :meth:`fit` with ``amp="fp16"`` (else None)."""
        return self._scaler

    @property
    def global_step(self) -> int:
        """Optimiser steps taken so far (over all resumed segments)."""
        return self._progress.global_step

    # -------------------------------------------------------------------- evaluate

    def evaluate(self, data: Dataset) -> dict[str, float]:
        """The loss and each metric, averaged over the samples of ``data``.

        .. math:: \\bar m = \\frac{1}{N} \\sum_{\\text{batches } B} \\sum_{i \\in B} m_i,

        where a metric that returns a scalar counts as that value for each sample of its
        batch (so a batch-mean loss gives the exact dataset mean even when the last batch
        is smaller). The model runs in eval mode under ``torch.no_grad()`` (and the
        autocast of ``config.amp``) with batches of ``config.batch_size`` in dataset order.
        Under torch.distributed (inside :meth:`fit`, or in a process group the caller
        initialised) each rank evaluates the samples ``rank::world_size`` and the sums and
        counts are all-reduced: every rank returns the same values. Called on every rank,
        then.

        Args:
            data: a map-style dataset, collated like the training data.

        Returns:
            ``{"loss": ..., name: ... for each metric}`` as Python floats.

        Raises:
            ValueError: ``data`` is empty, or a metric returns a shape other than a scalar
                or ``(B,)``.
        """
        n = dataset_len("data", data)
        ctx = self._dist or Distributed.current(self.device)
        mine = list(range(n))[ctx.rank::ctx.world_size]
        batches = [mine[i:i + self.config.batch_size]
                   for i in range(0, len(mine), self.config.batch_size)]
        # with a generator of its own: DataLoader would draw a seed from the global RNG
        loader = DataLoader(data, batch_sampler=batches, num_workers=self.config.num_workers,
                            generator=torch.Generator().manual_seed(self.config.seed))
        names = ["loss", *self._metrics]
        fns = [self._loss, *self._metrics.values()]
        sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=self.device)
        was_training = self._model.training
        self._model.eval()
        try:
            with torch.no_grad(), self._autocast():
                for indices, batch in zip(batches, loader):
                    pred, target = self._forward(self._model, to_device(batch, self.device))
                    for i, (name, fn) in enumerate(zip(names, fns)):
                        sums[i] += batch_sum(name, fn(pred, target), len(indices))
                    sums[-1] += len(indices)
        finally:
            self._model.train(was_training)
        *totals, count = ctx.sum(sums)
        return {name: total / count for name, total in zip(names, totals)}

    # ------------------------------------------------------------------------- fit

    def fit(
        self, train_data: Dataset, eval_data: Dataset | None = None, *, resume: bool = False
    ) -> TrainResult:
        """Train on ``train_data``, evaluating on ``eval_data`` after every ``eval_every`` epochs.

        Args:
            train_data: a map-style dataset; its items are collated into batches with
                :func:`torch.utils.data.default_collate` (``drop_last=False``).
            eval_data: evaluated (see :meth:`evaluate`) every ``eval_every`` epochs and
                when training stops; None skips evaluation.
            resume: continue from ``out_dir/checkpoint.pt`` at the exact batch where it
                was written (weights, optimiser, schedule, RNG states restored), and drop
                the metrics records written after it. Without a checkpoint the run
                starts fresh (and says so on stderr). A fresh run (``resume=False``)
                replaces the files of ``out_dir``.

        Returns:
            A :class:`TrainResult`.

        Raises:
            ValueError: a dataset is empty; ``resume=True`` without ``out_dir``; another
                process is training into ``out_dir``; the checkpoint was written with a data
                file of other content (both files and fingerprints named), another
                ``model_config`` (each differing entry named with both values), different
                run settings (the setting and both values), another world size or another
                dataset size, or it is corrupt or holds non-finite weights.
            FloatingPointError: the training loss is NaN or Inf. It is found when the
                losses are read back (every ``log_every`` steps, at checkpoints and epoch
                ends); the error names the step, nothing is written for it or after it (the
                last checkpoint stays intact) but the weights in memory have taken the steps
                up to the read.
        """
        n = dataset_len("train_data", train_data)
        if eval_data is not None:
            dataset_len("eval_data", eval_data)
        if resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir (where the checkpoint is); pass out_dir=")
        if self.out_dir is not None:
            from ..data import fingerprint

            self._inputs = {name: {"file": file, "fingerprint": fingerprint(file)}
                            for name, file in self._data_files.items()}
        with Distributed(self.device) as ctx, self._lock(ctx):
            self._dist = ctx
            try:
                return self._fit(ctx, train_data, eval_data, n, resume)
            finally:
                self._dist = None

    def _lock(self, ctx: Distributed) -> contextlib.AbstractContextManager:
        """``out_dir/train.lock``, held by rank 0 while it trains (see :mod:`sciml._files`)."""
        if self.out_dir is None or not ctx.is_main:
            return contextlib.nullcontext()
        return writer_lock(self.out_dir, lock=self.out_dir / "train.lock",
                           fix="wait for it to finish, or choose another out_dir (--out)")

    def _fit(
        self, ctx: Distributed, train_data: Dataset, eval_data: Dataset | None, n: int,
        resume: bool,
    ) -> TrainResult:
        cfg = self.config
        spe = steps_per_epoch(n, cfg.batch_size, ctx.world_size)
        total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
        self._optimizer = make_optimizer(self._model, cfg)
        self._scheduler = make_scheduler(self._optimizer, cfg, total)
        self._scaler = torch.amp.GradScaler(self.device.type) if cfg.amp == "fp16" else None
        self._losses = LossLog()
        prog = self._progress = Progress(
            lr=self._optimizer.param_groups[0]["lr"], world_size=ctx.world_size, n_train=n
        )
        history: list[dict[str, Any]] = []
        resumed = resume and self._resume(ctx, prog, history)
        if self.out_dir is not None and ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if resumed:
                truncate_records(self.out_dir / METRICS, prog.global_step)
            else:
                # the files of a run being replaced go first: a kill before this run's
                # first checkpoint must not leave an old checkpoint beside new metrics
                for name in (CHECKPOINT, MODEL):
                    (self.out_dir / name).unlink(missing_ok=True)
                rewrite_records(self.out_dir / METRICS, [])
        net: nn.Module = self._model
        if ctx.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(self._model, device_ids=ids)
        self._model.train()
        clock = Clock(prog.elapsed)
        bar = tqdm(total=total, initial=prog.global_step, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and ctx.is_main), file=sys.stderr)
        try:
            stop = self._stop_reason(ctx, prog, clock)
            while stop is None and prog.epoch < cfg.epochs:
                batches = shard_batches(
                    epoch_order(n, prog.epoch, seed=cfg.seed, shuffle=cfg.shuffle),
                    cfg.batch_size, ctx.rank, ctx.world_size,
                )
                remaining = batches[prog.batch_in_epoch:]
                # a generator of our own: DataLoader would otherwise draw its base seed
                # from the global RNG at every epoch, shifting the dropout stream on resume
                g = torch.Generator().manual_seed(epoch_seed(cfg.seed + 1, prog.epoch))
                loader = DataLoader(train_data, batch_sampler=remaining,
                                    num_workers=cfg.num_workers, generator=g)
                end_of_epoch = False
                for indices, batch in zip(remaining, loader):
                    loss = self._step(net, to_device(batch, self.device), prog)
                    self._losses.add(loss, prog.global_step + 1, prog.epoch,
                                     prog.batch_in_epoch, len(indices))
                    prog.global_step += 1
                    prog.batch_in_epoch += 1
                    bar.update(1)
                    end_of_epoch = prog.batch_in_epoch == len(batches)
                    stop = self._stop_reason(ctx, prog, clock)
                    if end_of_epoch or stop is not None:
                        break  # read with the record that follows
                    save_now = (cfg.checkpoint_every is not None
                                and prog.global_step % cfg.checkpoint_every == 0)
                    if save_now or prog.global_step % cfg.log_every == 0:
                        # outside clock.pause(): the read waits for the queued steps
                        self._read_losses(ctx, prog, bar)
                    if save_now:
                        with clock.pause():
                            self._checkpoint(ctx, prog, history, clock)
                self._read_losses(ctx, prog, bar)
                if end_of_epoch:
                    prog.epoch += 1
                    prog.batch_in_epoch = 0
                due = (stop is not None or prog.epoch >= cfg.epochs
                       or prog.epoch % cfg.eval_every == 0)
                self._close_record(ctx, prog, history, clock, eval_data if due else None, spe)
            if not history or history[-1]["step"] != prog.global_step:
                # resumed from a checkpoint written where training had already stopped
                self._close_record(ctx, prog, history, clock, eval_data, spe)
        finally:
            bar.close()
        prog.elapsed = clock.elapsed()
        if self.out_dir is not None and ctx.is_main:
            save({"format": FORMAT, "format_version": FORMAT_VERSION,
                  "model": self._model.state_dict(), "config": cfg.to_dict(),
                  "model_config": self.model_config, "data_files": self._inputs},
                 self.out_dir / MODEL)
        stopped = "epochs" if prog.epoch >= cfg.epochs else (stop or "epochs")
        return TrainResult(
            history=history, global_step=prog.global_step,
            epochs_done=prog.epoch + prog.batch_in_epoch / spe, elapsed=prog.elapsed,
            stopped=stopped,
        )

    def _step(self, net: nn.Module, batch: Any, prog: Progress) -> Tensor:
        """One optimiser step; returns the batch loss, a 0-dim tensor on the device.

        No host synchronisation: the loss is checked for NaN/Inf when it is read back
        (:meth:`_read_losses`). Under ``amp="fp16"`` a step whose scaled gradients
        overflow is skipped by the fused optimiser on the device and the scale lowered.
        """
        with self._autocast():
            pred, target = self._forward(net, batch)
            loss = self._loss(pred, target)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss must return a scalar tensor, got {shape}; reduce it "
                             "with .mean()")
        self._optimizer.zero_grad(set_to_none=True)
        scaler = self._scaler
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(self._optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(self._model.parameters(), self.config.grad_clip)
        prog.lr = float(self._optimizer.param_groups[0]["lr"])
        if scaler is None:
            self._optimizer.step()
        else:
            scaler.step(self._optimizer)
            scaler.update()
        self._scheduler.step()  # type: ignore[union-attr]
        return loss.detach()

    def _autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` of ``config.amp`` on the Trainer's device type (or nothing)."""
        if self.config.amp is None:
            return contextlib.nullcontext()
        # looked up at call time: sciml.testing.SimCuda replaces torch.autocast
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.config.amp])

    def _read_losses(self, ctx: Distributed, prog: Progress, bar: Any = None) -> None:
        """Add the losses kept on the device to the epoch's running sum (one host sync).

        Raises:
            FloatingPointError: a kept loss is NaN or Inf (naming its step).
        """
        for value, (step, epoch, batch, _) in (read := self._losses.read(ctx)):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss is {value} at step {step} (epoch {epoch}, batch "
                    f"{batch}); lower the learning rate (lr={self.config.lr}), set grad_clip, "
                    "or check the data for NaN/Inf. It was found when the losses were read "
                    f"back after step {prog.global_step} (every log_every="
                    f"{self.config.log_every} steps and at checkpoints): nothing was written "
                    f"for step {step} or later, so the last checkpoint is intact, but the "
                    "weights in memory have taken these steps"
                )
        for value, (_, _, _, count) in read:
            prog.loss_sum += value * count
            prog.loss_count += count
        if bar is not None and prog.loss_count:
            bar.set_postfix(loss=f"{prog.loss_sum / prog.loss_count:.4g}",
                            lr=f"{prog.lr:.3g}", refresh=False)

    def _stop_reason(self, ctx: Distributed, prog: Progress, clock: Clock) -> str | None:
        cfg = self.config
        if cfg.max_steps is not None and prog.global_step >= cfg.max_steps:
            return "max_steps"
        if cfg.time_budget is not None:
            over = float(clock.elapsed() >= cfg.time_budget)
            if ctx.active:
                # the ranks' clocks differ: stop when any of them has run out. The flag is
                # filled on the device (no blocking copy) and read once: a step's one sync
                flag = torch.full((1,), over, dtype=torch.float64, device=self.device)
                over = ctx.sum(flag)[0]
            if over > 0:
                return "time_budget"
        return None

    def _close_record(
        self, ctx: Distributed, prog: Progress, history: list[dict[str, Any]], clock: Clock,
        eval_data: Dataset | None, spe: int,
    ) -> None:
        """Record the epoch end (or the stop), evaluate if asked, then checkpoint."""
        rec: dict[str, Any] = {
            "epoch": prog.epoch + prog.batch_in_epoch / spe,
            "step": prog.global_step,
            "train_loss": prog.loss_sum / prog.loss_count if prog.loss_count else math.nan,
            "lr": prog.lr,
            "elapsed": clock.elapsed(),
        }
        with clock.pause():
            if eval_data is not None:
                rec.update({f"eval_{k}": v for k, v in self.evaluate(eval_data).items()})
            history.append(rec)
            if self.out_dir is not None and ctx.is_main:
                # the record goes before the checkpoint: a record the checkpoint does not
                # know about has a larger step and is dropped on resume
                append_record(self.out_dir / METRICS, rec)
            if prog.batch_in_epoch == 0:
                prog.loss_sum, prog.loss_count = 0.0, 0
            self._checkpoint(ctx, prog, history, clock)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(
        self, ctx: Distributed, prog: Progress, history: list[dict], clock: Clock
    ) -> None:
        """Write ``out_dir/checkpoint.pt`` (rank 0; a collective under torchrun)."""
        if self.out_dir is None:
            return
        # every loss up to here is finite before anything is written (a collective)
        self._read_losses(ctx, prog)
        rngs = ctx.gather_objects(rng_state())
        if not ctx.is_main:
            return
        prog.elapsed = clock.elapsed()
        extra = {} if self._scaler is None else {"scaler": self._scaler.state_dict()}
        save({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self._model.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "scheduler": self._scheduler.state_dict(),  # type: ignore[union-attr]
            **extra,
            "rng": rngs,
            "progress": asdict(prog),
            "config": self.config.to_dict(),
            "model_config": self.model_config,
            "data_files": self._inputs,
            "history": list(history),
        }, self.out_dir / CHECKPOINT)

    def _resume(self, ctx: Distributed, prog: Progress, history: list[dict]) -> bool:
        """Restore from ``out_dir/checkpoint.pt`` if there is one; return whether it was."""
        path = self.out_dir / CHECKPOINT  # type: ignore[operator]
        if not path.is_file():
            if ctx.is_main:
                print(f"sciml.train: no checkpoint at {path}; starting a fresh run",
                      file=sys.stderr)
            return False
        # read onto the CPU whatever device wrote it; load_state_dict moves each tensor to
        # the device of the weight or state it fills
        ckpt = load_checkpoint(path, map_location="cpu")
        check_resumable(path, ckpt, self.config.to_dict(), RUN_FIELDS,
                        {"world_size": prog.world_size, "n_train": prog.n_train},
                        model_config=self.model_config, data_files=self._inputs)
        saved_prog = ckpt["progress"]
        self._model.load_state_dict(ckpt["model"])
        self._optimizer.load_state_dict(ckpt["optimizer"])
        self._scheduler.load_state_dict(ckpt["scheduler"])  # type: ignore[union-attr]
        if self._scaler is not None:
            if "scaler" not in ckpt:
                raise ValueError(f"{path} has no GradScaler state although it was written "
                                 "with amp='fp16': the file is damaged; start a new run")
            self._scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][ctx.rank])
        for key, value in saved_prog.items():
            setattr(prog, key, value)
        history.extend(ckpt["history"])
        return True
