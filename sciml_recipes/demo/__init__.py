"""``sciml demo``: a tour of every method in the library, on embedded defaults.

Each part is a function ``run(out_dir, *, quick, seed) -> DemoResult`` registered in
:data:`PARTS`; ``sciml demo`` runs them all, ``sciml demo NAME`` one. The whole tour
stays under 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sciml_recipes._checks import check_callable
from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.demo._common import DemoResult, check_part
from sciml_recipes.demo.dcdm import run as _dcdm
from sciml_recipes.demo.hardc import run as _hardc
from sciml_recipes.demo.inverse import run as _inverse
from sciml_recipes.demo.mppde import run as _mppde
from sciml_recipes.demo.navier_stokes import run as _navier_stokes
from sciml_recipes.demo.ot import run as _ot
from sciml_recipes.demo.probconserv import run as _probconserv
from sciml_recipes.demo.sfno import run as _sfno
from sciml_recipes.demo.spectral import run as _spectral

PARTS: dict[str, Callable[..., DemoResult]] = {
    "spectral": _spectral,
    "navier_stokes": _navier_stokes,
    "ot": _ot,
    "sfno": _sfno,
    "probconserv": _probconserv,
    "hardc": _hardc,
    "dcdm": _dcdm,
    "mppde": _mppde,
    "inverse": _inverse,
}


def _check_names(names: object) -> list[str]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of demo part names from {sorted(PARTS)} (or "
                        f"None for all), got {names!r}")
    if not names:
        raise ValueError(f"names is empty; pass None for all parts or some of {sorted(PARTS)}")
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"names: unknown demo part(s) {unknown}; choose from {sorted(PARTS)}")
    return list(names)


def run_demo(
    names: Sequence[str] | None = None,
    out_dir: str | Path = "sciml-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> list[DemoResult]:
    """Run the named demo parts (all by default), print a results table, save figures.

    Args:
        names: the parts to run, from :data:`PARTS` (None: all of them).
        out_dir: the folder for the figures and ``results.json``.
        quick: the reduced sizes.
        seed: seeds every part.
        echo: where the progress lines and the table go.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), such as an unknown
            part name (the message lists the known ones), before any part runs.
    """
    names = list(PARTS) if names is None else _check_names(names)
    out = check_part(out_dir, quick, seed)
    check_callable("echo", echo)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t_all = time.perf_counter()
    for name in names:
        echo(f"== demo part '{name}' ==")
        t0 = time.perf_counter()
        res = PARTS[name](out, quick=quick, seed=seed)
        res.seconds = time.perf_counter() - t0
        results.append(res)
        echo(f"   done in {res.seconds:.1f} s")
    table = [
        (r.name, row["case"], row["metric"], row["value"]) for r in results for row in r.rows
    ]
    table += [(r.name, "-", "seconds", r.seconds) for r in results]
    echo("")
    echo(format_table(table, ("part", "case", "metric", "value")))
    rows = [
        {"case": f"{r.name}/{row['case']}", "impl": "sciml", "metric": row["metric"],
         "value": float(row["value"])}  # type: ignore[arg-type]
        for r in results for row in r.rows
    ]
    path = write_results(out / "results.json", "demo", rows)
    echo("")
    echo(f"figures: {', '.join(str(f) for r in results for f in r.figures)}")
    echo(f"results: {path}   (total {time.perf_counter() - t_all:.1f} s)")
    return results


__all__ = ["PARTS", "DemoResult", "run_demo"]
