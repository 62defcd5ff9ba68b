"""Read-only settings: a solver or layer keeps the settings it was built with.

A setting written after construction (``layer.max_iter = 5``) would change every later
call, behind the back of whoever built the object, and could skip the checks of the
constructor. :func:`frozen_settings` makes such a write (or ``del``) raise
``dataclasses.FrozenInstanceError`` (an ``AttributeError``) that says what to do
instead: pass the per-call argument where the call takes one, or build a new object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def _refuse(obj: object, name: str, per_call: frozenset[str]) -> None:
    cls = type(obj).__name__
    if name in per_call:
        how = (f"pass {name}= to the call to change it for that call only "
               f"(layer(..., {name}=...)), or build a new {cls}(..., {name}=...)")
    elif dataclasses.is_dataclass(obj):
        how = (f"build a new {cls}(..., {name}=...), or copy this one with that setting "
               f"changed: dataclasses.replace(obj, {name}=...)")
    else:
        how = f"build a new {cls}(..., {name}=...)"
    raise dataclasses.FrozenInstanceError(
        f"{cls}.{name} is a setting, fixed when the {cls} is built (its checks ran then); "
        f"{how}")


def frozen_settings(names: Iterable[str] | None = None, *,
                    per_call: Iterable[str] = ()) -> Callable[[T], T]:
    """Class decorator: assigning or deleting one of the settings ``names`` raises.

    Args:
        names: the attribute names to protect; ``None`` (for a dataclass) is its fields.
            Other attributes keep the class's own behaviour (an ``nn.Module`` still
            sets ``training``). The constructor sets the settings with
            ``object.__setattr__`` (a frozen dataclass's generated ``__init__`` does).
        per_call: the settings a call of the object can override (``max_iter=``); the
            message points there.
    """
    extra = frozenset(per_call)

    def wrap(cls: T) -> T:
        fixed = frozenset(f.name for f in dataclasses.fields(cls)) if names is None \
            else frozenset(names)
        base_set = cls.__setattr__
        base_del = cls.__delattr__

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if name in fixed:
                _refuse(self, name, extra)
            base_set(self, name, value)

        def __delattr__(self: Any, name: str) -> None:
            if name in fixed:
                _refuse(self, name, extra)
            base_del(self, name)

        cls.__setattr__ = __setattr__  # type: ignore[assignment]
        cls.__delattr__ = __delattr__  # type: ignore[assignment]
        cls._frozen_settings = fixed  # type: ignore[attr-defined]
        return cls

    return wrap
