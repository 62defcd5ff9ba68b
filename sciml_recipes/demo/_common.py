"""Shared pieces of the demo parts: the result record, the argument check, the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sciml.utils import check_bool, check_real
from sciml_recipes._checks import check_instance, check_mapping, check_path, check_seed

T = TypeVar("T")


@dataclass
class DemoResult:
    """What one demo part reports: rows ``{case, metric, value}`` and the figures it wrote.

    Raises:
        TypeError, ValueError: a field of the wrong kind (named): ``name`` a non-empty str,
            ``rows`` a list of dicts with ``case``, ``metric`` and ``value``, ``figures`` a
            list of paths, ``seconds`` a finite number >= 0.
    """

    name: str
    rows: list[dict[str, object]]
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        check_instance("name", self.name, str)
        if not self.name:
            raise ValueError("name is empty; name the demo part, such as 'spectral'")
        check_instance("rows", self.rows, list)
        for i, row in enumerate(self.rows):
            check_mapping(f"rows[{i}]", row, ("case", "metric", "value"))
        check_instance("figures", self.figures, list)
        self.figures = [check_path(f"figures[{i}]", f) for i, f in enumerate(self.figures)]
        check_real("seconds", self.seconds, minimum=0.0)


def check_part(out_dir: object, quick: object, seed: object) -> Path:
    """The arguments every demo part takes, checked by name; return ``out_dir`` as a Path."""
    out = check_path("out_dir", out_dir)
    check_bool("quick", quick)
    check_seed(seed)
    return out


def progress(it: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr (plain iteration when tqdm is unavailable)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        yield from it
        return
    yield from tqdm(it, desc=desc, total=total, file=sys.stderr, leave=False,
                    dynamic_ncols=True, mininterval=0.5)
