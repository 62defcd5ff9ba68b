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
    """``cpu``, ``cuda`` or ``cuda:N``, refused unless this machine has it."""
    from sciml.utils import check_device

    try:
        check_device(s, "", fix="--device cpu")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return s


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
