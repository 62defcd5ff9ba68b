"""Default tolerances by dtype: the one table the iterative solvers read their defaults from.

A solver whose tolerance argument is ``None`` (the default) takes the value below for the
dtype of its inputs. float64 keeps the long-standing defaults (scipy's ``rtol=1e-5`` for
CG, a ``1e-9`` marginal error for Sinkhorn like POT's ``stopThr``), so float64 results do
not change; float32 gets a value a few times above the accuracy float32 actually reaches,
so a default solve can converge instead of stopping at the rounding floor (STALLED). An
explicit tolerance always overrides the table, and ``stats`` records the value used.
The table below is generated from ``DEFAULT_TOLERANCES`` in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from ._validation import check_positive

#: the dtypes a table row may name, in column order, with their names in the docs
DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.float32, torch.float16,
                                   torch.bfloat16)
_NAMES = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
          torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class ToleranceDefaults:
    """One solver family's row of the table.

    Attributes:
        solvers: the public names that read this row.
        setting: the argument it fills (``rtol``, ``tol``).
        meaning: what the tolerance is compared with.
        defaults: the default per dtype; a dtype missing here is refused by the solvers.
        evidence: how the float32 value was chosen (the measured rounding floor).
    """

    solvers: str
    setting: str
    meaning: str
    defaults: Mapping[torch.dtype, float]
    evidence: str


DEFAULT_TOLERANCES: Mapping[str, ToleranceDefaults] = MappingProxyType({
    "linear": ToleranceDefaults(
        solvers="cg, CG, flexible_cg, FlexibleCG, dcdm, DCDM, solve (with any preconditioner)",
        setting="rtol",
        meaning="||b - A x|| <= max(rtol ||b||, atol)",
        defaults=MappingProxyType({torch.float64: 1e-5, torch.float32: 1e-4}),
        evidence=(
            "float32 true relative residual floor (CG, Jacobi- and IC(0)-PCG, flexible CG "
            "on -div(k grad u), N x N cells, log-normal k): 3e-7 to 7e-6 for N <= 200 and "
            "sigma <= 1; 4e-5 to 9e-5 at N = 100, sigma = 2.2 (contrast ~1e5)"),
    ),
    "ot": ToleranceDefaults(
        solvers="sinkhorn, Sinkhorn, sns, SNS",
        setting="tol",
        meaning="||P 1 - a||_1 + ||P^T 1 - b||_1",
        defaults=MappingProxyType({torch.float64: 1e-9, torch.float32: 1e-5}),
        evidence=(
            "float32 L1 marginal error floor of the returned plan (masses summing to 1, "
            "random 1D and 2D point clouds, squared distances in [0, 2], n = 50 to "
            "2000): 3e-7 to 8e-7 at reg = 1e-1 and 1e-2, up to 5e-6 at reg = 1e-3; above "
            "1e-5 only from reg ~ 1e-4 (STALLED there: use float64)"),
    ),
})


def default_tol(family: str, dtype: torch.dtype) -> float:
    """The default tolerance of a solver family for inputs of ``dtype``.

    Args:
        family: a key of :data:`DEFAULT_TOLERANCES` (``"linear"`` or ``"ot"``).
        dtype: the dtype of the solver's inputs.

    Returns:
        The table's value.

    Raises:
        KeyError: ``family`` is not in the table.
        TypeError: ``dtype`` has no default in this family (its solvers do not take it).
    """
    if family not in DEFAULT_TOLERANCES:
        raise KeyError(f"no tolerance family {family!r}; the table has "
                       f"{sorted(DEFAULT_TOLERANCES)}")
    row = DEFAULT_TOLERANCES[family]
    if dtype not in row.defaults:
        have = ", ".join(_NAMES.get(d, str(d)) for d in row.defaults)
        raise TypeError(f"no default {row.setting} for dtype {dtype} in the {family!r} "
                        f"family ({row.solvers}): its solvers take {have}")
    return row.defaults[dtype]


def check_tol(name: str, value: object) -> float | None:
    """A tolerance setting: ``None`` (by dtype, resolved at the call) or a finite number
    ``>= 0``, returned as a float.

    Raises:
        TypeError: ``value`` is not a number (a string, a bool, a tensor).
        ValueError: ``value`` is NaN, infinite or negative.
    """
    if value is None:
        return None
    return check_positive(name, value, allow_zero=True,
                          fix="give a finite number >= 0, or None for the default by dtype "
                              "(see sciml._tolerances)")


def resolve_tol(value: float | None, family: str, dtype: torch.dtype) -> float:
    """``value`` as a float, or the family's default for ``dtype`` when it is ``None``."""
    return default_tol(family, dtype) if value is None else float(value)


def _short(v: float) -> str:
    """``1e-5`` rather than ``1e-05`` (as the docstrings write it)."""
    m, e = f"{v:.3e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def table_rst() -> str:
    """The table as a reStructuredText ``list-table`` (what the docs show)."""
    used = [d for d in DTYPES if any(d in r.defaults for r in DEFAULT_TOLERANCES.values())]
    lines = [
        ".. list-table:: Default tolerances by dtype",
        "   :header-rows: 1",
        "",
        "   * - family",
        "     - solvers",
        "     - setting",
        "     - compared with",
        *(f"     - {_NAMES[d]}" for d in used),
        "     - how the float32 value was chosen",
    ]
    for key, row in DEFAULT_TOLERANCES.items():
        lines += [
            f"   * - ``{key}``",
            f"     - {row.solvers}",
            f"     - ``{row.setting}``",
            f"     - ``{row.meaning}``",
            *(f"     - {_short(row.defaults[d])}" if d in row.defaults else "     - n/a"
              for d in used),
            f"     - {row.evidence}",
        ]
    missing = [_NAMES[d] for d in DTYPES if d not in used]
    if missing:
        lines += ["", f"No solver in the table accepts {' or '.join(missing)} (the solvers "
                  "refuse them at the boundary with a TypeError), so no defaults are given."]
    return "\n".join(lines)


__doc__ = f"{__doc__}\n{table_rst()}\n"
