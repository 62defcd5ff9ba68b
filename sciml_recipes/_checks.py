"""Argument checks the recipes share beyond :mod:`sciml.utils`: paths, files, callbacks,
objects, lists of choices, seeds, indices, dicts and callables. Each raises ``TypeError`` or
``ValueError`` (``FileNotFoundError`` for a missing file) naming the argument and saying what
to pass instead."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sciml.utils import check_choice, check_int, check_real


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


def check_reals(name: str, v: object, *, positive: bool = False, minimum: float | None = None,
                fix: str | None = None) -> list[float]:
    """A non-empty sequence of finite real numbers (each checked like :func:`check_real`)."""
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {v!r} ({type(v).__name__})"
                        + (f"; {fix}" if fix else ""))
    if not v:
        raise ValueError(f"{name} is empty; pass at least one number"
                         + (f"; {fix}" if fix else ""))
    return [check_real(f"{name}[{i}]", e, positive=positive, minimum=minimum, fix=fix)
            for i, e in enumerate(v)]


def check_instances(name: str, v: object, cls: type | tuple[type, ...], *, hint: str = ""
                    ) -> list:
    """A non-empty sequence whose items are each an instance of ``cls``; return it as a list."""
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        names = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        tail = f"; {hint}" if hint else ""
        raise TypeError(f"{name} must be a list of {names}, got {type(v).__name__}{tail}")
    if not v:
        raise ValueError(f"{name} is empty" + (f"; {hint}" if hint else ""))
    return [check_instance(f"{name}[{i}]", e, cls, hint=hint) for i, e in enumerate(v)]


def check_time_budget(v: object, name: str = "time_budget") -> float | None:
    """A time limit in seconds (> 0), or None for none."""
    if v is None:
        return None
    return check_real(name, v, positive=True, fix="seconds, or None for no limit")


def check_file(name: str, v: object, *, hint: str = "") -> Path:
    """``v`` as the :class:`~pathlib.Path` of a file that exists.

    Raises:
        TypeError: ``v`` is not a path.
        FileNotFoundError: nothing is at ``v`` (the message names ``name`` and the path).
        ValueError: ``v`` is a directory.
    """
    p = check_path(name, v)
    if not p.is_file():
        tail = f"; {hint}" if hint else ""
        if p.is_dir():
            raise ValueError(f"{name} {str(p)!r} is a directory, not a file{tail}")
        raise FileNotFoundError(f"{name} {str(p)!r} does not exist{tail}")
    return p


def check_index(name: str, v: object, n: int, *, what: str = "items") -> int:
    """An int index into ``n`` items: ``0 <= v < n``, or ``-n <= v < 0`` from the end."""
    i = check_int(name, v)
    if not -n <= i < n:
        raise ValueError(f"{name} = {i} is out of range for {n} {what}; use 0 to {n - 1} "
                         "(or a negative index from the end)")
    return i


def check_indices(name: str, v: object, n: int, *, what: str = "items") -> list[int]:
    """A non-empty sequence of indices into ``n`` items (each as :func:`check_index`)."""
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of int indices, got {v!r} ({type(v).__name__})")
    if not v:
        raise ValueError(f"{name} is empty; pass at least one index into the {n} {what}")
    return [check_index(f"{name}[{i}]", e, n, what=what) for i, e in enumerate(v)]


def check_mapping(name: str, v: object, keys: Sequence[str] = (), *, hint: str = "") -> Mapping:
    """A dict (any mapping) that holds every one of ``keys``; return it."""
    tail = f"; {hint}" if hint else ""
    if not isinstance(v, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(v).__name__}{tail}")
    missing = [k for k in keys if k not in v]
    if missing:
        raise ValueError(f"{name} lacks the key(s) {missing}{tail}")
    return v
