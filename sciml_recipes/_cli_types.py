"""Argument types of the command line: argparse prints ``usage`` and ``error: argument
--name: <message>`` and exits with status 2 when one of these refuses a value."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """A whole number ``>= minimum`` (``why``: the reason, appended to the message)."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{why}, got {v}")
        return v
    parse.__name__ = f"int>={minimum}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {s!r}")
    return v


def finite_float(s: str) -> float:
    """Any finite number (not nan or inf)."""
    return _float(s)


def positive_float(s: str) -> float:
    """A finite number > 0."""
    v = _float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s!r}")
    return v


def nonnegative_float(s: str) -> float:
    """A finite number >= 0."""
    v = _float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s!r}")
    return v


def device(s: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``, refused unless this machine has it;
    returned as the device this process runs on (the rule of
    :func:`sciml.utils.check_device` with ``resolve=True``: ``auto`` is the GPU if any,
    and under torchrun ``cuda`` is ``cuda:LOCAL_RANK`` and another index is refused)."""
    from sciml.utils import check_device

    try:
        return str(check_device(s, "", fix="--device cpu", resolve=True))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


#: what each kind of command does without ``--device`` (see ``add_device``)
DEVICE_DEFAULTS = {
    "train": "the CPU, or cuda:LOCAL_RANK per process under torchrun on a CUDA machine",
    "auto": "the GPU if any (cuda:LOCAL_RANK under torchrun), else the CPU",
    "cpu": "the CPU",
}


def add_device(p: argparse.ArgumentParser, default: str) -> None:
    """Add ``--device`` to ``p``: ``default`` is ``"train"`` (None: the Trainer's rule),
    ``"auto"`` or ``"cpu"``, each the command's behaviour before the option existed."""
    p.add_argument(
        "--device", type=device, default=None if default == "train" else default,
        help=f"cpu, cuda, cuda:N or auto (default: {DEVICE_DEFAULTS[default]}); under "
        "torchrun pass cuda: each process takes cuda:LOCAL_RANK")


def check_writable(path: str, *, file: bool, option: str = "--out") -> None:
    """Raise a ValueError unless ``path`` (a folder, or with ``file`` a file) can be written:
    its first existing ancestor must be a folder this process may write in."""
    p = Path(path)
    folder = p.parent if file else p
    q = folder
    while not q.exists() and q != q.parent:
        q = q.parent
    fix = f"pass an {option} {'file' if file else 'folder'} you can write to"
    if q.exists() and not q.is_dir():
        raise ValueError(f"cannot write {option} {path}: {q} is a file, not a folder; {fix}")
    if not os.access(q, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {option} {path}: no permission to write in {q}; {fix}")
