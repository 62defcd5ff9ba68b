"""Shared pieces of the demo parts: the result record and the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass
class DemoResult:
    """What one demo part reports: rows ``{case, metric, value}`` and the figures it wrote."""

    name: str
    rows: list[dict[str, object]]
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def progress(it: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr (plain iteration when tqdm is unavailable)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        yield from it
        return
    yield from tqdm(it, desc=desc, total=total, file=sys.stderr, leave=False,
                    dynamic_ncols=True, mininterval=0.5)
