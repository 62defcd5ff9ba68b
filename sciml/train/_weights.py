"""Reading the weights files sciml writes besides the Trainer's checkpoints (the DCDM
network's ``dcdm_<d>d.pt``, a stepper's ``model.pt``): plain dicts of a config and a state
dict, read with ``torch.load(weights_only=True)`` so that a foreign pickle never runs."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._checkpoint import check_finite, verify_checksums


def load_weights(path: str | os.PathLike, *, keys: Collection[str], fix: str) -> dict[str, Any]:
    """The dict stored at ``path``, checked to hold ``keys``.

    Args:
        path: the file.
        keys: entries the dict must have.
        fix: what to do instead, appended to the messages.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file does not load with ``weights_only=True`` (a foreign pickle,
            which is refused without running it, or a damaged file), or it is not a dict
            with ``keys``, or a tensor does not match its stored checksum, or the weights
            (``state``) hold NaN or Inf; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; {fix}")
    try:
        with warnings.catch_warnings():
            # a foreign pickle's protocol draws a warning before the refusal below
            warnings.simplefilter("ignore", UserWarning)
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path} is not a sciml weights file: it does not load as plain tensors and "
            f"values with torch.load(weights_only=True) ({type(e).__name__}; it is a "
            f"foreign pickle or damaged, and nothing in it was run); {fix}"
        ) from None
    missing = sorted(set(keys) - set(blob)) if isinstance(blob, dict) else sorted(keys)
    if missing:
        found = (f"a dict with {sorted(map(str, blob))}" if isinstance(blob, dict)
                 else f"a {type(blob).__name__}")
        raise ValueError(
            f"{path} is not a sciml weights file: it holds {found}, not the entries "
            f"{sorted(keys)}; {fix}"
        )
    verify_checksums(path, blob)
    if isinstance(blob.get("state"), dict):
        check_finite(path, blob["state"])
    return blob


def build(path: Path, make: Callable[..., nn.Module], config: Any, state: Any, fix: str
          ) -> nn.Module:
    """``make(**config)`` with ``state`` loaded, or a ValueError naming ``path``."""
    try:
        model = make(**config)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        msg = " ".join(str(e).split())
        raise ValueError(
            f"{path} does not hold a {make.__name__} this version of sciml can rebuild "
            f"({type(e).__name__}: {msg[:300]}); {fix}"
        ) from None
    return model
