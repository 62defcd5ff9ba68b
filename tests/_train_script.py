"""A deterministic tiny training run, for the subprocess tests of ``test_train.py``.

Run as a script (alone, or under ``python -m torch.distributed.run``) or import
:func:`run` to do the same run in-process. The model and the data are float64 so that
runs which differ only in summation order (2 processes vs 1) agree to ~1e-15.

Environment hook (test-only, deliberately outside the library): with
``TRAIN_SCRIPT_KILL_AFTER=k`` the process SIGKILLs itself just before training step
``k + 1``, i.e. after ``k`` optimiser steps, as an abrupt crash would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from sciml.train import TrainConfig, Trainer, TrainResult

N_TRAIN = 40
N_EVAL = 10


def data() -> tuple[TensorDataset, TensorDataset]:
    """A smooth 4 -> 2 regression problem (fixed seed)."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(2, 4, generator=g, dtype=torch.float64)
    x = torch.randn(N_TRAIN + N_EVAL, 4, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ w.T)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def model(dropout: float = 0.0) -> nn.Module:
    """A small MLP, initialised from a fixed seed (the caller's RNG state is unchanged)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return nn.Sequential(
            nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 2)
        ).double()


def _forward(net: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
    x, y = batch
    if net.training:
        _forward.calls += 1  # type: ignore[attr-defined]
        kill_after = os.environ.get("TRAIN_SCRIPT_KILL_AFTER")
        if kill_after is not None and _forward.calls > int(kill_after):  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGKILL)
    return net(x), y


_forward.calls = 0  # type: ignore[attr-defined]


def run(
    out: str | None, *, batch: int, epochs: int = 2, checkpoint_every: int | None = 2,
    dropout: float = 0.0, resume: bool = False, lr: float = 1e-2,
) -> tuple[nn.Module, TrainResult]:
    """Train the MLP on :func:`data`; return the model and the result.

    Seeds the global RNG (dropout masks) from the rank: call it under
    ``torch.random.fork_rng()`` in-process.
    """
    torch.manual_seed(5 + int(os.environ.get("RANK", "0")))
    train, test = data()
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch,
                         checkpoint_every=checkpoint_every, progress=False, seed=11)
    trainer = Trainer(
        model(dropout), nn.functional.mse_loss, config, out_dir=out, forward=_forward,
        metrics={"mae": lambda p, t: (p - t).abs().mean(dim=1)},
        model_config={"dropout": dropout},
    )
    return trainer.model, trainer.fit(train, test, resume=resume)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    _, result = run(a.out, batch=a.batch, epochs=a.epochs, checkpoint_every=a.checkpoint_every,
                    dropout=a.dropout, resume=a.resume)
    print(json.dumps({"global_step": result.global_step, "stopped": result.stopped,
                      "rank": int(os.environ.get("RANK", "0"))}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
