"""Reading and verifying the weights files sciml writes: the per-tensor checksums stored in
every file, the finiteness check of stored weights, and the loader of the plain weights files
(the DCDM network's ``dcdm_<d>d.pt``, a stepper's ``model.pt``).

These files are plain dicts of tensors and values, read with ``torch.load(weights_only=True)``
so that a foreign pickle never runs. The checksums are a crc32 of each tensor and one of all
the other values (torch does not check the CRCs of its zip files): a byte changed on disk or
in transfer is an error naming the file and the tensor. The Trainer's checkpoints
(:mod:`sciml.train`) use the same checksums; this module imports nothing from
:mod:`sciml.train`, so the solvers can read their shipped weights without it.
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CHECKSUMS", "build", "check_finite", "checksums", "load_weights", "verify_checksums"]

#: Key of the checksums in every file sciml writes.
CHECKSUMS = "checksums"


def checksums(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A crc32 of each tensor in ``obj`` (keyed by its path, e.g. ``model/fc.weight``; over
    its dtype, shape and bytes) and one of all the other values (their paths and reprs)."""
    tensors: dict[str, int] = {}
    values = 0
    for key, leaf in _leaves(obj):
        if isinstance(leaf, torch.Tensor):
            t = leaf.detach().cpu().contiguous().reshape(-1)
            head = zlib.crc32(f"{t.dtype}{tuple(leaf.shape)}".encode())
            tensors[key] = zlib.crc32(t.view(torch.uint8).numpy(), head)
        else:
            values = zlib.crc32(f"{key}={leaf!r}\n".encode(), values)
    return {"algorithm": "crc32", "tensors": tensors, "values": values}


def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every value in nested dicts, lists and tuples, in stored order."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not (prefix == "" and k == CHECKSUMS):
                yield from _leaves(v, f"{prefix}{k}/")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}{i}/")
    else:
        yield prefix.rstrip("/"), obj


def verify_checksums(path: Path, obj: Mapping[str, Any]) -> None:
    """Raise unless ``obj`` (loaded from ``path``) matches the checksums stored in it.

    A file without checksums (written before sciml stored them) passes unchecked.

    Raises:
        ValueError: naming the file and the first tensor (or the other values) whose
            checksum differs.
    """
    stored = obj.get(CHECKSUMS)
    if stored is None:
        return
    fix = ("bytes of the file changed on disk or in transfer: restore it from a copy, or "
           "delete it and train again")
    if not isinstance(stored, Mapping) or not isinstance(stored.get("tensors"), Mapping):
        raise ValueError(f"{path} is corrupt: its checksums entry is damaged; {fix}")
    now, want = checksums(obj), stored["tensors"]
    for key in [*now["tensors"], *(k for k in want if k not in now["tensors"])]:
        got, expected = now["tensors"].get(key), want.get(key)
        if got != expected:
            raise ValueError(
                f"{path} is corrupt: tensor {key!r} has crc32 {got} but the file records "
                f"{expected}; {fix}"
            )
    if now["values"] != stored.get("values"):
        raise ValueError(
            f"{path} is corrupt: the values stored beside the tensors (settings, progress, "
            f"history) have crc32 {now['values']} but the file records "
            f"{stored.get('values')}; {fix}"
        )


def check_finite(path: Path, state: Mapping[str, Any]) -> None:
    """Raise unless every floating-point tensor of the state dict ``state`` is finite.

    Raises:
        ValueError: naming the file, the first tensor holding NaN or Inf and how many of
            its values are not finite.
    """
    bad = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor)
           and (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        name, t = bad[0]
        count = int(t.numel() - torch.isfinite(t).sum())
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise ValueError(
            f"{path} holds weights that are not finite: {name!r} has {count} of {t.numel()} "
            f"values not finite (NaN or Inf){more}; the run that wrote it diverged (or the "
            "file was damaged): start a new run (resume=False, or another out_dir / --out), "
            "e.g. with a lower learning rate"
        )


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
