"""Argument checks the recipes share beyond :mod:`sciml.utils`: paths, callbacks, objects,
lists of choices, seeds and callables. Each raises ``TypeError`` or ``ValueError`` naming
the argument and saying what to pass instead."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sciml.utils import check_choice, check_int


def check_path(name: str, v: object, *, optional: bool = False) -> Path | None:
    """``v`` as a :class:`~pathlib.Path` (a str or an os.PathLike; None when ``optional``)."""
    if v is None and optional:
        return None
    if not isinstance(v, (str, os.PathLike)) or v == "":
        none = " or None" if optional else ""
        raise TypeError(f"{name} must be a path (a str or a pathlib.Path){none}, got {v!r} "
                        f"({type(v).__name__})")
    return Path(v)


def check_callable(name: str, v: object) -> Callable:
    if not callable(v):
        raise TypeError(f"{name} must be callable (such as print), got {v!r} "
                        f"({type(v).__name__})")
    return v


def check_instance(name: str, v: object, cls: type | tuple[type, ...], *,
                   optional: bool = False, hint: str = ""):
    """``v`` must be an instance of ``cls`` (or None when ``optional``); return it."""
    if v is None and optional:
        return None
    if not isinstance(v, cls):
        names = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        none = " or None" if optional else ""
        tail = f"; {hint}" if hint else ""
        raise TypeError(f"{name} must be a {names}{none}, got {type(v).__name__}{tail}")
    return v


def check_choices(name: str, v: object, choices: Sequence[str]) -> list[str]:
    """A non-empty list of names, each one of ``choices`` (a single name is refused)."""
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of names from {list(choices)}, got {v!r}")
    if not v:
        raise ValueError(f"{name} is empty; choose from {list(choices)}")
    return [check_choice(f"{name}[{i}]", e, choices) for i, e in enumerate(v)]


def check_seed(v: object, name: str = "seed") -> int:
    return check_int(name, v, minimum=0, fix="use a non-negative seed such as 0")
