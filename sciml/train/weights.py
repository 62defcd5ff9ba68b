"""Saving and reading model weights and run logs the way the Trainer does.

A weights file is a plain dict of tensors and values written whole (atomically) with a
crc32 of every tensor, so it loads with ``torch.load(path, weights_only=True)`` and a byte
changed on disk is an error naming the file and the tensor. Use these for the models you
save yourself, beside the Trainer's own ``checkpoint.pt`` and ``model.pt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .._weights import build
from .._weights import load_weights as _load_weights
from ._checkpoint import METRICS, read_records, save

__all__ = ["load_weights", "read_metrics", "rebuild_model", "save_weights"]

_FIX = "write it again with sciml.train.save_weights"


def save_weights(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` (a dict of tensors and plain values) to ``path``, whole, with checksums.

    Equivalent to ``torch.save(obj, path)`` plus an atomic rename and a ``"checksums"``
    entry (replacing any stored there) that :func:`load_weights` verifies.

    Raises:
        TypeError: ``obj`` is not a mapping with string keys.
    """
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise TypeError(f"obj must be a dict with str keys (tensors and plain values), got "
                        f"{type(obj).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    save(obj, path)
    return Path(path)


def load_weights(path: str | os.PathLike, *, keys: Collection[str] = (),
                 fix: str = _FIX) -> dict[str, Any]:
    """Read a file written by :func:`save_weights`, checked to hold ``keys``.

    Args:
        path: the file.
        keys: entries the dict must have.
        fix: what the user should do instead, appended to the error messages.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a foreign pickle (refused without running it), a damaged file, a
            missing key, a checksum mismatch or non-finite weights under ``"state"``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"keys must be a collection of str, got {keys!r}")
    if not isinstance(fix, str):
        raise TypeError(f"fix must be a str, got {type(fix).__name__}")
    return _load_weights(path, keys=tuple(keys), fix=fix)


def rebuild_model(path: str | os.PathLike, make: Callable[..., nn.Module],
                  config: Mapping[str, Any], state: Mapping[str, Any], *,
                  fix: str = _FIX) -> nn.Module:
    """``make(**config)`` with ``state`` loaded; a ValueError naming ``path`` if that fails."""
    if not callable(make):
        raise TypeError(f"make must be a model class or factory, got {type(make).__name__}")
    if not isinstance(config, Mapping) or not isinstance(state, Mapping):
        raise TypeError("config and state must be dicts (as stored by save_weights)")
    return build(Path(path), make, dict(config), state, fix)


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a Trainer run's metrics log (``run/metrics.jsonl``), oldest first.

    ``run`` may be the run directory or the log itself; lines cut short by a kill are
    skipped, and a run without a log gives ``[]``.
    """
    if not isinstance(run, (str, os.PathLike)):
        raise TypeError(f"run must be a str or os.PathLike, got {type(run).__name__}")
    p = Path(run)
    return read_records(p / METRICS if p.is_dir() else p)
